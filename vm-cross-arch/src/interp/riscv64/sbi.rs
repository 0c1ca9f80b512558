//! A built-in SBI (v2.0 subset) in place of M-mode firmware: Base, Timer,
//! IPI, RFENCE, HSM, SRST and DBCN, plus the legacy console, timer, IPI and
//! shutdown calls. Chosen over booting OpenSBI because it needs no firmware
//! file and no M-mode round trips: an S-mode `ecall` is served in one step.

use std::sync::atomic::Ordering;

use vm_accel::SystemEvent;

use super::csr::irq;
use super::hart::{Hart, HartExit};
use super::machine::{hsm, request};
use super::trap::Exc;

const SUCCESS: i64 = 0;
const ERR_NOT_SUPPORTED: i64 = -2;
const ERR_INVALID_PARAM: i64 = -3;
const ERR_INVALID_ADDRESS: i64 = -5;
const ERR_ALREADY_AVAILABLE: i64 = -6;

const EXT_BASE: u64 = 0x10;
const EXT_TIME: u64 = 0x5449_4d45;
const EXT_IPI: u64 = 0x0073_5049;
const EXT_RFENCE: u64 = 0x5246_4e43;
const EXT_HSM: u64 = 0x0048_534d;
const EXT_SRST: u64 = 0x5352_5354;
const EXT_DBCN: u64 = 0x4442_434e;
/// Our implementation id (not one of the registered ones).
const IMPL_ID: u64 = 0x5653;

const SUPPORTED: [u64; 7] = [
    EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST, EXT_DBCN,
];

/// Longest DBCN write accepted in one call.
const MAX_CONSOLE_WRITE: u64 = 4096;

impl Hart {
    fn sbi_ret(&mut self, error: i64, value: u64) {
        self.x[10] = error as u64;
        self.x[11] = value;
    }

    /// Serves an S-mode `ecall`. `next` is the pc after the `ecall`.
    pub(super) fn sbi_call(&mut self, next: u64) -> Result<(), Exc> {
        let eid = self.x[17];
        let fid = self.x[16];
        let args = [
            self.x[10], self.x[11], self.x[12], self.x[13], self.x[14], self.x[15],
        ];
        self.pc = next;
        tracing::trace!(hart = self.id, eid, fid, "SBI call");
        match eid {
            0x00 => {
                self.set_timer(args[0]);
                self.x[10] = 0;
            }
            0x01 => {
                self.console.push_back(args[0] as u8);
                self.x[10] = 0;
                return self.console_flush();
            }
            0x02 => self.x[10] = u64::MAX,
            0x03 => {
                self.csr.mip &= !irq::SSI;
                self.x[10] = 0;
            }
            0x04..=0x07 => {
                let mask = if args[0] == 0 {
                    u64::MAX
                } else {
                    self.load(args[0], 3)?
                };
                let base = if args[0] == 0 { u64::MAX } else { 0 };
                match eid {
                    0x04 => self.send_ipi(mask, base),
                    0x05 => self.remote(mask, base, request::FENCE_I),
                    _ => self.remote(mask, base, request::SFENCE),
                };
                self.x[10] = 0;
                return Err(Exc::Resync);
            }
            0x08 => return self.power(SystemEvent::Shutdown),
            EXT_BASE => {
                let value = match fid {
                    0 => 2 << 24,
                    1 => IMPL_ID,
                    2 => 1,
                    3 => u64::from(SUPPORTED.contains(&args[0]) || args[0] <= 0x08),
                    4..=6 => 0,
                    _ => {
                        self.unsupported();
                        return Ok(());
                    }
                };
                self.sbi_ret(SUCCESS, value);
            }
            EXT_TIME if fid == 0 => {
                self.set_timer(args[0]);
                self.sbi_ret(SUCCESS, 0);
                return Err(Exc::Resync);
            }
            EXT_IPI if fid == 0 => {
                let e = self.send_ipi(args[0], args[1]);
                self.sbi_ret(e, 0);
                return Err(Exc::Resync);
            }
            EXT_RFENCE if fid <= 6 => {
                let what = if fid == 0 {
                    request::FENCE_I
                } else {
                    request::SFENCE
                };
                let e = self.remote(args[0], args[1], what);
                self.sbi_ret(e, 0);
                return Err(Exc::Resync);
            }
            EXT_HSM => return self.hsm_call(fid, args),
            EXT_SRST if fid == 0 => {
                let event = match args[0] {
                    0 => SystemEvent::Shutdown,
                    1 | 2 => SystemEvent::Reset,
                    _ => {
                        self.sbi_ret(ERR_INVALID_PARAM, 0);
                        return Ok(());
                    }
                };
                return self.power(event);
            }
            EXT_DBCN => match fid {
                0 => {
                    let len = args[0].min(MAX_CONSOLE_WRITE);
                    let pa = args[1];
                    let mut buf = vec![0u8; len as usize];
                    if !self.ram.read(pa, &mut buf) {
                        self.sbi_ret(ERR_INVALID_ADDRESS, 0);
                        return Ok(());
                    }
                    self.console.extend(buf);
                    self.sbi_ret(SUCCESS, len);
                    return self.console_flush();
                }
                1 => self.sbi_ret(SUCCESS, 0),
                2 => {
                    self.console.push_back(args[0] as u8);
                    self.sbi_ret(SUCCESS, 0);
                    return self.console_flush();
                }
                _ => self.unsupported(),
            },
            _ => self.unsupported(),
        }
        Ok(())
    }

    fn unsupported(&mut self) {
        tracing::debug!(
            hart = self.id,
            eid = self.x[17],
            fid = self.x[16],
            "unsupported SBI call"
        );
        self.sbi_ret(ERR_NOT_SUPPORTED, 0);
    }

    fn set_timer(&mut self, when: u64) {
        self.sbi_timecmp = when;
        self.csr.mip &= !irq::STI;
    }

    fn power(&mut self, event: SystemEvent) -> Result<(), Exc> {
        self.exit = Some(HartExit::System(event));
        Err(Exc::Exit)
    }

    fn console_flush(&mut self) -> Result<(), Exc> {
        let Some(uart) = self.machine.devices.uart else {
            self.console.clear();
            return Ok(());
        };
        match self.console.pop_front() {
            Some(b) => {
                self.mmio_buf = [b, 0, 0, 0, 0, 0, 0, 0];
                self.exit = Some(HartExit::MmioWrite { addr: uart, len: 1 });
                self.instret += 1;
                Err(Exc::Exit)
            }
            None => Ok(()),
        }
    }

    /// Harts selected by an SBI hart mask (`base == u64::MAX`: all harts).
    fn for_harts(&self, mask: u64, base: u64, mut f: impl FnMut(u32)) -> i64 {
        let count = self.machine.harts.0.len() as u64;
        if base == u64::MAX {
            (0..count).for_each(|h| f(h as u32));
            return SUCCESS;
        }
        for bit in 0..64 {
            if mask >> bit & 1 == 1 {
                let hart = base.saturating_add(bit);
                if hart >= count {
                    return ERR_INVALID_PARAM;
                }
            }
        }
        for bit in 0..64 {
            if mask >> bit & 1 == 1 {
                f((base + bit) as u32);
            }
        }
        SUCCESS
    }

    fn send_ipi(&mut self, mask: u64, base: u64) -> i64 {
        let machine = self.machine.clone();
        self.for_harts(mask, base, |h| {
            if let Some(s) = machine.signal(h) {
                s.ipi.fetch_or(irq::SSI, Ordering::AcqRel);
                s.wake();
            }
        })
    }

    fn remote(&mut self, mask: u64, base: u64, what: u32) -> i64 {
        let machine = self.machine.clone();
        self.for_harts(mask, base, |h| {
            if let Some(s) = machine.signal(h) {
                s.requests.fetch_or(what, Ordering::AcqRel);
            }
        })
    }

    fn hsm_call(&mut self, fid: u64, args: [u64; 6]) -> Result<(), Exc> {
        match fid {
            0 => {
                let Some(target) = u32::try_from(args[0])
                    .ok()
                    .and_then(|h| self.machine.signal(h).cloned())
                else {
                    self.sbi_ret(ERR_INVALID_PARAM, 0);
                    return Ok(());
                };
                if self.ram.host(args[1], 2).is_none() {
                    self.sbi_ret(ERR_INVALID_ADDRESS, 0);
                    return Ok(());
                }
                target.start_addr.store(args[1], Ordering::Release);
                target.start_arg.store(args[2], Ordering::Release);
                let ok = target
                    .hsm
                    .compare_exchange(
                        hsm::STOPPED,
                        hsm::START_PENDING,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
                target.wake();
                self.sbi_ret(if ok { SUCCESS } else { ERR_ALREADY_AVAILABLE }, 0);
            }
            1 => {
                self.signal.hsm.store(hsm::STOPPED, Ordering::Release);
                self.sbi_ret(SUCCESS, 0);
                return Err(Exc::Resync);
            }
            2 => match u32::try_from(args[0])
                .ok()
                .and_then(|h| self.machine.signal(h))
            {
                Some(s) => {
                    let state = u64::from(s.hsm.load(Ordering::Acquire));
                    self.sbi_ret(SUCCESS, state);
                }
                None => self.sbi_ret(ERR_INVALID_PARAM, 0),
            },
            3 if args[0] == 0 => {
                // Retentive suspend behaves like `wfi`.
                self.sbi_ret(SUCCESS, 0);
                if !self.wfi_should_wake() {
                    self.waiting = true;
                }
                return Err(Exc::Resync);
            }
            _ => self.unsupported(),
        }
        Ok(())
    }
}
