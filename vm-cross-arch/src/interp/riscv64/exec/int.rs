//! RV64I and M: integer ALU operations, 32-bit (`*W`) forms and branches.

// Operand names follow the ISA manual (a, b, c, x, y, rd).
#![allow(clippy::many_single_char_names)]

use crate::interp::riscv64::decode::{Alu, Cond};

/// A 64-bit ALU operation (register or immediate second operand).
#[inline(always)]
pub fn alu(f: Alu, a: u64, b: u64) -> u64 {
    match f {
        Alu::Add => a.wrapping_add(b),
        Alu::Sub => a.wrapping_sub(b),
        Alu::Sll => a << (b & 63),
        Alu::Slt => u64::from((a as i64) < (b as i64)),
        Alu::Sltu => u64::from(a < b),
        Alu::Xor => a ^ b,
        Alu::Srl => a >> (b & 63),
        Alu::Sra => ((a as i64) >> (b & 63)) as u64,
        Alu::Or => a | b,
        Alu::And => a & b,
        Alu::Mul => a.wrapping_mul(b),
        Alu::Mulh => ((i128::from(a as i64) * i128::from(b as i64)) >> 64) as u64,
        Alu::Mulhsu => ((i128::from(a as i64) * (u128::from(b) as i128)) >> 64) as u64,
        Alu::Mulhu => ((u128::from(a) * u128::from(b)) >> 64) as u64,
        Alu::Div => {
            let (a, b) = (a as i64, b as i64);
            if b == 0 {
                u64::MAX
            } else {
                a.wrapping_div(b) as u64
            }
        }
        Alu::Divu => a.checked_div(b).unwrap_or(u64::MAX),
        Alu::Rem => {
            let (a, b) = (a as i64, b as i64);
            if b == 0 {
                a as u64
            } else {
                a.wrapping_rem(b) as u64
            }
        }
        Alu::Remu => {
            if b == 0 {
                a
            } else {
                a % b
            }
        }
    }
}

/// A 32-bit (`*W`) operation, result sign-extended to 64 bits.
#[inline(always)]
pub fn alu_w(f: Alu, a: u64, b: u64) -> u64 {
    let (x, y) = (a as u32, b as u32);
    let r: u32 = match f {
        Alu::Add => x.wrapping_add(y),
        Alu::Sub => x.wrapping_sub(y),
        Alu::Sll => x << (y & 31),
        Alu::Srl => x >> (y & 31),
        Alu::Sra => ((x as i32) >> (y & 31)) as u32,
        Alu::Mul => x.wrapping_mul(y),
        Alu::Div => {
            if y == 0 {
                u32::MAX
            } else {
                (x as i32).wrapping_div(y as i32) as u32
            }
        }
        Alu::Divu => x.checked_div(y).unwrap_or(u32::MAX),
        Alu::Rem => {
            if y == 0 {
                x
            } else {
                (x as i32).wrapping_rem(y as i32) as u32
            }
        }
        Alu::Remu => {
            if y == 0 {
                x
            } else {
                x % y
            }
        }
        // Not encodable as W forms; the decoder never produces them.
        _ => alu(f, a, b) as u32,
    };
    i64::from(r as i32) as u64
}

/// Whether a branch is taken.
#[inline(always)]
pub fn branch(c: Cond, a: u64, b: u64) -> bool {
    match c {
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::Lt => (a as i64) < (b as i64),
        Cond::Ge => (a as i64) >= (b as i64),
        Cond::Ltu => a < b,
        Cond::Geu => a >= b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_edge_cases_follow_the_spec() {
        assert_eq!(alu(Alu::Div, 7, 0), u64::MAX);
        assert_eq!(alu(Alu::Rem, 7, 0), 7);
        assert_eq!(alu(Alu::Div, i64::MIN as u64, u64::MAX), i64::MIN as u64);
        assert_eq!(alu(Alu::Rem, i64::MIN as u64, u64::MAX), 0);
        assert_eq!(
            alu_w(Alu::Div, 0x8000_0000, 0xffff_ffff),
            0xffff_ffff_8000_0000
        );
        assert_eq!(alu_w(Alu::Divu, 5, 0), u64::MAX);
        assert_eq!(alu(Alu::Mulhsu, u64::MAX, 2), u64::MAX);
        assert_eq!(alu(Alu::Mulhu, u64::MAX, 2), 1);
        assert_eq!(alu_w(Alu::Sra, 0x8000_0000, 4), 0xffff_ffff_f800_0000);
    }
}
