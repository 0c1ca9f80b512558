//! The A extension: LR/SC and AMOs on host atomics, so they are atomic
//! against other harts running on other threads. SC succeeds when memory
//! still holds the value LR saw (a compare-and-swap).

use std::sync::atomic::Ordering;

use crate::interp::riscv64::decode::{Amo, Op};
use crate::interp::riscv64::hart::Hart;
use crate::interp::riscv64::mmu::READ;
use crate::interp::riscv64::trap::{Exc, CAUSE_MISALIGNED_LOAD};

fn amo_apply(f: Amo, old: u64, src: u64, word: bool) -> u64 {
    let (so, ss) = if word {
        (i64::from(old as i32), i64::from(src as i32))
    } else {
        (old as i64, src as i64)
    };
    let (uo, us) = if word {
        (old & 0xffff_ffff, src & 0xffff_ffff)
    } else {
        (old, src)
    };
    match f {
        Amo::Swap => src,
        Amo::Add => old.wrapping_add(src),
        Amo::Xor => old ^ src,
        Amo::And => old & src,
        Amo::Or => old | src,
        Amo::Min => {
            if so <= ss {
                old
            } else {
                src
            }
        }
        Amo::Max => {
            if so >= ss {
                old
            } else {
                src
            }
        }
        Amo::Minu => {
            if uo <= us {
                old
            } else {
                src
            }
        }
        Amo::Maxu => {
            if uo >= us {
                old
            } else {
                src
            }
        }
    }
}

impl Hart {
    pub(in crate::interp::riscv64) fn exec_lr(
        &mut self,
        op: Op,
        va: u64,
        size: u8,
    ) -> Result<(), Exc> {
        if va & ((1 << size) - 1) != 0 {
            return Err(Exc::trap(CAUSE_MISALIGNED_LOAD, va));
        }
        let host = self.atomic_host(va, size, READ)?;
        let v = if size == 2 {
            u64::from(host.with_atomic32(|a| a.load(Ordering::Acquire)))
        } else {
            host.with_atomic64(|a| a.load(Ordering::Acquire))
        };
        self.reservation = Some((host.addr(), v));
        self.set_x(op.rd, if size == 2 { v as i32 as u64 } else { v });
        Ok(())
    }

    pub(in crate::interp::riscv64) fn exec_sc(
        &mut self,
        op: Op,
        va: u64,
        src: u64,
        size: u8,
    ) -> Result<(), Exc> {
        let host = self.amo_address(va, size)?;
        let ok = match self.reservation.take() {
            Some((addr, expected)) if addr == host.addr() => {
                if size == 2 {
                    host.with_atomic32(|a| {
                        a.compare_exchange(
                            expected as u32,
                            src as u32,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    })
                } else {
                    host.with_atomic64(|a| {
                        a.compare_exchange(expected, src, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    })
                }
            }
            _ => false,
        };
        self.set_x(op.rd, u64::from(!ok));
        Ok(())
    }

    pub(in crate::interp::riscv64) fn exec_amo(
        &mut self,
        op: Op,
        f: Amo,
        va: u64,
        src: u64,
        size: u8,
    ) -> Result<(), Exc> {
        let host = self.amo_address(va, size)?;
        let old = if size == 2 {
            let r = host.with_atomic32(|a| {
                a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                    Some(amo_apply(f, u64::from(old), src, true) as u32)
                })
            });
            let old = match r {
                Ok(v) | Err(v) => v,
            };
            i64::from(old as i32) as u64
        } else {
            let r = host.with_atomic64(|a| {
                a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                    Some(amo_apply(f, old, src, false))
                })
            });
            match r {
                Ok(v) | Err(v) => v,
            }
        };
        self.set_x(op.rd, old);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amo_min_max_signedness() {
        assert_eq!(amo_apply(Amo::Min, 0xffff_ffff, 1, true), 0xffff_ffff);
        assert_eq!(amo_apply(Amo::Minu, 0xffff_ffff, 1, true), 1);
        assert_eq!(amo_apply(Amo::Max, u64::MAX, 1, false), 1);
        assert_eq!(amo_apply(Amo::Maxu, u64::MAX, 1, false), u64::MAX);
    }
}
