//! The F, D, Zfh/Zfhmin and Zfa extensions: loads/stores, arithmetic,
//! conversions, moves, compares. Single and half values live NaN-boxed in
//! the 64-bit registers: a narrow operand whose upper bits are not all ones
//! reads as the canonical NaN.

// Operand names follow the ISA manual (a, b, c, x, y, rd).
#![allow(clippy::many_single_char_names)]

use rustc_apfloat::ieee::{Double, Half, Single};

use crate::interp::riscv64::decode::{Fmt, Fp, Kind, Op};
use crate::interp::riscv64::fpu::{self, BinOp, FpResult};
use crate::interp::riscv64::hart::{Hart, MmioDest};
use crate::interp::riscv64::trap::{Exc, CAUSE_ILLEGAL};
use crate::interp::riscv64::zfa;

/// The upper bits that must be ones for a value of `fmt` (none for double).
#[inline]
fn box_bits(fmt: Fmt) -> u64 {
    match fmt {
        Fmt::H => 0xffff_ffff_ffff_0000,
        Fmt::S => 0xffff_ffff_0000_0000,
        Fmt::D => 0,
    }
}

/// Reads an operand of `fmt` from a register, checking the NaN box.
#[inline]
fn unbox(v: u64, fmt: Fmt) -> u64 {
    let high = box_bits(fmt);
    if v & high == high {
        v & !high
    } else {
        match fmt {
            Fmt::H => 0x7e00,
            _ => 0x7fc0_0000,
        }
    }
}

/// Calls `$module::$f::<precision of $fmt>($args)`.
macro_rules! per_fmt {
    ($fmt:expr, $module:ident::$f:ident($($arg:expr),*)) => {
        match $fmt {
            Fmt::H => $module::$f::<Half>($($arg),*),
            Fmt::S => $module::$f::<Single>($($arg),*),
            Fmt::D => $module::$f::<Double>($($arg),*),
        }
    };
}

fn fp_illegal() -> Exc {
    Exc::trap(CAUSE_ILLEGAL, 0)
}

/// The source format of an `fcvt` between formats (its `rs2` field).
fn source_fmt(rs2: u8) -> Fmt {
    match rs2 {
        0 => Fmt::S,
        1 => Fmt::D,
        _ => Fmt::H,
    }
}

impl Hart {
    fn set_f(&mut self, rd: u8, v: u64, fmt: Fmt) {
        self.f[usize::from(rd)] = v | box_bits(fmt);
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
            Kind::FLoad { fmt } => {
                let va = a.wrapping_add(i64::from(op.imm) as u64);
                let size = fmt.size();
                match self.load(va, size) {
                    Ok(v) => self.set_f(op.rd, v, fmt),
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
            Kind::FStore { fmt } => {
                let va = a.wrapping_add(i64::from(op.imm) as u64);
                let v = self.f[usize::from(op.rs2)];
                self.store(va, fmt.size(), v)?;
            }
            Kind::FOp { op: f, fmt } => self.fp_arith(op, f, fmt, a)?,
            _ => return Err(fp_illegal()),
        }
        self.pc = next;
        Ok(())
    }

    fn fp_arith(&mut self, op: Op, f: Fp, fmt: Fmt, xa: u64) -> Result<(), Exc> {
        let raw1 = self.f[usize::from(op.rs1)];
        let raw2 = self.f[usize::from(op.rs2)];
        let raw3 = self.f[usize::from(op.rs3)];
        let (a, b, c) = (unbox(raw1, fmt), unbox(raw2, fmt), unbox(raw3, fmt));
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
                | Fp::Round
                | Fp::RoundNx
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
                let v = self.accrue(per_fmt!(fmt, fpu::binary(bop, a, b, round)));
                self.set_f(rd, v, fmt);
            }
            Fp::Madd | Fp::Msub | Fp::Nmsub | Fp::Nmadd => {
                let (np, na) = match f {
                    Fp::Madd => (false, false),
                    Fp::Msub => (false, true),
                    Fp::Nmsub => (true, false),
                    _ => (true, true),
                };
                let v = self.accrue(per_fmt!(fmt, fpu::fma(a, b, c, np, na, round)));
                self.set_f(rd, v, fmt);
            }
            Fp::Sqrt => {
                let v = self.accrue(per_fmt!(fmt, fpu::sqrt(a, round)));
                self.set_f(rd, v, fmt);
            }
            Fp::Sgnj | Fp::Sgnjn | Fp::Sgnjx => {
                let sign = 1u64 << ((8u32 << fmt.size()) - 1);
                let s = match f {
                    Fp::Sgnj => b & sign,
                    Fp::Sgnjn => !b & sign,
                    _ => (a ^ b) & sign,
                };
                self.set_f(rd, (a & !sign) | s, fmt);
            }
            Fp::Min | Fp::Max => {
                let v = self.accrue(per_fmt!(fmt, fpu::min_max(a, b, f == Fp::Max)));
                self.set_f(rd, v, fmt);
            }
            Fp::Minm | Fp::Maxm => {
                let v = self.accrue(per_fmt!(fmt, zfa::min_max_nan(a, b, f == Fp::Maxm)));
                self.set_f(rd, v, fmt);
            }
            Fp::Round | Fp::RoundNx => {
                let v = self.accrue(per_fmt!(
                    fmt,
                    zfa::round_integral(a, round, f == Fp::RoundNx)
                ));
                self.set_f(rd, v, fmt);
            }
            Fp::Fli => self.set_f(rd, per_fmt!(fmt, zfa::fli(op.rs1)), fmt),
            Fp::CvtModW => {
                let v = self.accrue(zfa::cvtmod_w(a));
                self.set_x(rd, v);
            }
            Fp::CvtW | Fp::CvtWu | Fp::CvtL | Fp::CvtLu => {
                let (bits, signed) = match f {
                    Fp::CvtW => (32, true),
                    Fp::CvtWu => (32, false),
                    Fp::CvtL => (64, true),
                    _ => (64, false),
                };
                let v = self.accrue(per_fmt!(fmt, fpu::to_int(a, bits, signed, round)));
                self.set_x(rd, v);
            }
            Fp::FromW | Fp::FromWu | Fp::FromL | Fp::FromLu => {
                let value: i128 = match f {
                    Fp::FromW => i128::from(xa as i32),
                    Fp::FromWu => i128::from(xa as u32),
                    Fp::FromL => i128::from(xa as i64),
                    _ => i128::from(xa),
                };
                let v = self.accrue(per_fmt!(fmt, fpu::from_int(value, round)));
                self.set_f(rd, v, fmt);
            }
            Fp::CvtFp => {
                let from = source_fmt(op.rs2);
                let x = unbox(raw1, from);
                let r = match (from, fmt) {
                    (Fmt::S, Fmt::D) => fpu::convert::<Single, Double>(x, round),
                    (Fmt::S, Fmt::H) => fpu::convert::<Single, Half>(x, round),
                    (Fmt::D, Fmt::S) => fpu::convert::<Double, Single>(x, round),
                    (Fmt::D, Fmt::H) => fpu::convert::<Double, Half>(x, round),
                    (Fmt::H, Fmt::S) => fpu::convert::<Half, Single>(x, round),
                    (Fmt::H, Fmt::D) => fpu::convert::<Half, Double>(x, round),
                    // The decoder never pairs a format with itself.
                    _ => return Err(fp_illegal()),
                };
                let v = self.accrue(r);
                self.set_f(rd, v, fmt);
            }
            Fp::MvToX => {
                let v = match fmt {
                    Fmt::D => raw1,
                    Fmt::S => raw1 as u32 as i32 as u64,
                    Fmt::H => raw1 as u16 as i16 as u64,
                };
                self.set_x(rd, v);
            }
            Fp::MvFromX => self.set_f(rd, xa & !box_bits(fmt), fmt),
            Fp::Eq | Fp::Lt | Fp::Le | Fp::Ltq | Fp::Leq => {
                let kind = match f {
                    Fp::Eq => 0,
                    Fp::Lt => 1,
                    Fp::Le => 2,
                    Fp::Ltq => 3,
                    _ => 4,
                };
                let v = self.accrue(per_fmt!(fmt, fpu::compare(a, b, kind)));
                self.set_x(rd, v);
            }
            Fp::Class => {
                let v = per_fmt!(fmt, fpu::class(a));
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
        assert_eq!(unbox(0xffff_ffff_3f80_0000, Fmt::S), 0x3f80_0000);
        assert_eq!(unbox(0x0000_0000_3f80_0000, Fmt::S), 0x7fc0_0000);
        assert_eq!(unbox(0xffff_ffff_ffff_3c00, Fmt::H), 0x3c00);
        assert_eq!(unbox(0xffff_ffff_0000_3c00, Fmt::H), 0x7e00);
        assert_eq!(unbox(0x0123_4567_89ab_cdef, Fmt::D), 0x0123_4567_89ab_cdef);
    }
}
