//! The F and D extensions: loads/stores, arithmetic, conversions, moves,
//! compares. Single values live NaN-boxed in the 64-bit registers: a single
//! operand whose upper 32 bits are not all ones reads as the canonical NaN.

// Operand names follow the ISA manual (a, b, c, x, y, rd).
#![allow(clippy::many_single_char_names)]

use rustc_apfloat::ieee::{Double, Single};

use crate::interp::riscv64::decode::{Fp, Kind, Op};
use crate::interp::riscv64::fpu::{self, BinOp, FpResult};
use crate::interp::riscv64::hart::{Hart, MmioDest};
use crate::interp::riscv64::trap::{Exc, CAUSE_ILLEGAL};

const BOX: u64 = 0xffff_ffff_0000_0000;

/// Reads a single operand from a register, checking the NaN box.
#[inline]
fn unbox(v: u64) -> u64 {
    if v & BOX == BOX {
        v & 0xffff_ffff
    } else {
        0x7fc0_0000
    }
}

fn fp_illegal() -> Exc {
    Exc::trap(CAUSE_ILLEGAL, 0)
}

impl Hart {
    fn set_f(&mut self, rd: u8, v: u64, double: bool) {
        self.f[usize::from(rd)] = if double { v } else { v | BOX };
        self.fs_dirty();
    }

    fn accrue(&mut self, r: FpResult) -> u64 {
        if r.flags != 0 {
            self.csr.fflags |= r.flags;
            self.fs_dirty();
        }
        r.bits
    }

    pub(in crate::interp::riscv64) fn exec_fp(
        &mut self,
        op: Op,
        a: u64,
        next: u64,
    ) -> Result<(), Exc> {
        if !self.fp_enabled() {
            return Err(fp_illegal());
        }
        match op.kind {
            Kind::FLoad { double } => {
                let va = a.wrapping_add(i64::from(op.imm) as u64);
                let size = if double { 3 } else { 2 };
                match self.load(va, size) {
                    Ok(v) => self.set_f(op.rd, v, double),
                    Err(Exc::Exit) => {
                        self.mmio_dest = Some(MmioDest {
                            rd: op.rd,
                            size,
                            unsigned: true,
                            fp: true,
                            len: op.len,
                        });
                        return Err(Exc::Exit);
                    }
                    Err(e) => return Err(e),
                }
            }
            Kind::FStore { double } => {
                let va = a.wrapping_add(i64::from(op.imm) as u64);
                let v = self.f[usize::from(op.rs2)];
                self.store(va, if double { 3 } else { 2 }, v)?;
            }
            Kind::FOp { op: f, double } => self.fp_arith(op, f, double, a)?,
            _ => return Err(fp_illegal()),
        }
        self.pc = next;
        Ok(())
    }

    fn fp_arith(&mut self, op: Op, f: Fp, double: bool, xa: u64) -> Result<(), Exc> {
        let raw1 = self.f[usize::from(op.rs1)];
        let raw2 = self.f[usize::from(op.rs2)];
        let raw3 = self.f[usize::from(op.rs3)];
        let (a, b, c) = if double {
            (raw1, raw2, raw3)
        } else {
            (unbox(raw1), unbox(raw2), unbox(raw3))
        };
        // Only ops that round read the rounding mode (and reject a bad one).
        let needs_rm = matches!(
            f,
            Fp::Madd
                | Fp::Msub
                | Fp::Nmsub
                | Fp::Nmadd
                | Fp::Add
                | Fp::Sub
                | Fp::Mul
                | Fp::Div
                | Fp::Sqrt
                | Fp::CvtW
                | Fp::CvtWu
                | Fp::CvtL
                | Fp::CvtLu
                | Fp::FromW
                | Fp::FromWu
                | Fp::FromL
                | Fp::FromLu
                | Fp::CvtFp
        );
        let round = if needs_rm {
            let rm = if op.rm == 7 {
                self.csr.frm
            } else {
                u64::from(op.rm)
            };
            fpu::round_mode(rm).ok_or_else(fp_illegal)?
        } else {
            rustc_apfloat::Round::NearestTiesToEven
        };
        let rd = op.rd;
        match f {
            Fp::Add | Fp::Sub | Fp::Mul | Fp::Div => {
                let bop = match f {
                    Fp::Add => BinOp::Add,
                    Fp::Sub => BinOp::Sub,
                    Fp::Mul => BinOp::Mul,
                    _ => BinOp::Div,
                };
                let r = if double {
                    fpu::binary::<Double>(bop, a, b, round)
                } else {
                    fpu::binary::<Single>(bop, a, b, round)
                };
                let v = self.accrue(r);
                self.set_f(rd, v, double);
            }
            Fp::Madd | Fp::Msub | Fp::Nmsub | Fp::Nmadd => {
                let (np, na) = match f {
                    Fp::Madd => (false, false),
                    Fp::Msub => (false, true),
                    Fp::Nmsub => (true, false),
                    _ => (true, true),
                };
                let r = if double {
                    fpu::fma::<Double>(a, b, c, np, na, round)
                } else {
                    fpu::fma::<Single>(a, b, c, np, na, round)
                };
                let v = self.accrue(r);
                self.set_f(rd, v, double);
            }
            Fp::Sqrt => {
                let r = if double {
                    fpu::sqrt::<Double>(a, round)
                } else {
                    fpu::sqrt::<Single>(a, round)
                };
                let v = self.accrue(r);
                self.set_f(rd, v, double);
            }
            Fp::Sgnj | Fp::Sgnjn | Fp::Sgnjx => {
                let sign = if double { 1u64 << 63 } else { 1u64 << 31 };
                let s = match f {
                    Fp::Sgnj => b & sign,
                    Fp::Sgnjn => !b & sign,
                    _ => (a ^ b) & sign,
                };
                self.set_f(rd, (a & !sign) | s, double);
            }
            Fp::Min | Fp::Max => {
                let max = f == Fp::Max;
                let r = if double {
                    fpu::min_max::<Double>(a, b, max)
                } else {
                    fpu::min_max::<Single>(a, b, max)
                };
                let v = self.accrue(r);
                self.set_f(rd, v, double);
            }
            Fp::CvtW | Fp::CvtWu | Fp::CvtL | Fp::CvtLu => {
                let (bits, signed) = match f {
                    Fp::CvtW => (32, true),
                    Fp::CvtWu => (32, false),
                    Fp::CvtL => (64, true),
                    _ => (64, false),
                };
                let r = if double {
                    fpu::to_int::<Double>(a, bits, signed, round)
                } else {
                    fpu::to_int::<Single>(a, bits, signed, round)
                };
                let v = self.accrue(r);
                self.set_x(rd, v);
            }
            Fp::FromW | Fp::FromWu | Fp::FromL | Fp::FromLu => {
                let value: i128 = match f {
                    Fp::FromW => i128::from(xa as i32),
                    Fp::FromWu => i128::from(xa as u32),
                    Fp::FromL => i128::from(xa as i64),
                    _ => i128::from(xa),
                };
                let r = if double {
                    fpu::from_int::<Double>(value, round)
                } else {
                    fpu::from_int::<Single>(value, round)
                };
                let v = self.accrue(r);
                self.set_f(rd, v, double);
            }
            Fp::CvtFp => {
                let r = if double {
                    fpu::convert::<Single, Double>(unbox(raw1), round)
                } else {
                    fpu::convert::<Double, Single>(raw1, round)
                };
                let v = self.accrue(r);
                self.set_f(rd, v, double);
            }
            Fp::MvToX => {
                let v = if double {
                    raw1
                } else {
                    raw1 as u32 as i32 as u64
                };
                self.set_x(rd, v);
            }
            Fp::MvFromX => self.set_f(rd, if double { xa } else { xa & 0xffff_ffff }, double),
            Fp::Eq | Fp::Lt | Fp::Le => {
                let kind = match f {
                    Fp::Eq => 0,
                    Fp::Lt => 1,
                    _ => 2,
                };
                let r = if double {
                    fpu::compare::<Double>(a, b, kind)
                } else {
                    fpu::compare::<Single>(a, b, kind)
                };
                let v = self.accrue(r);
                self.set_x(rd, v);
            }
            Fp::Class => {
                let v = if double {
                    fpu::class::<Double>(a)
                } else {
                    fpu::class::<Single>(a)
                };
                self.set_x(rd, v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unboxing_checks_upper_bits() {
        assert_eq!(unbox(0xffff_ffff_3f80_0000), 0x3f80_0000);
        assert_eq!(unbox(0x0000_0000_3f80_0000), 0x7fc0_0000);
    }
}
