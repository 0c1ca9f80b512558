//! Bit manipulation: Zba, Zbb, Zbc, Zbs (the B extension), the scalar
//! crypto bit-manipulation subsets Zbkb, Zbkc, Zbkx, and Zicond's
//! `czero.*` (a conditional zero is one more register-to-register ALU op).
//!
//! Decoding happens once per instruction (the instruction cache keeps the
//! result); [`bit`] is a flat `match` with no allocation.

// Operand names follow the ISA manual (a, b, x, y).
#![allow(clippy::many_single_char_names)]

use crate::interp::riscv64::decode::{Kind, Op};

/// One bit-manipulation (or Zicond) operation. `*Uw` forms take the low 32
/// bits of `rs1` zero-extended; `*W` forms produce a sign-extended word.
/// Variants carry the mnemonics the specifications document.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bit {
    // Zba
    AddUw,
    Sh1add,
    Sh2add,
    Sh3add,
    Sh1addUw,
    Sh2addUw,
    Sh3addUw,
    SlliUw,
    // Zbb (and Zbkb's andn/orn/xnor/rol/ror/rev8)
    Andn,
    Orn,
    Xnor,
    Clz,
    Clzw,
    Ctz,
    Ctzw,
    Cpop,
    Cpopw,
    Max,
    Maxu,
    Min,
    Minu,
    SextB,
    SextH,
    Rol,
    Rolw,
    Ror,
    Rorw,
    OrcB,
    Rev8,
    // Zbc / Zbkc
    Clmul,
    Clmulh,
    Clmulr,
    // Zbs
    Bclr,
    Bext,
    Binv,
    Bset,
    // Zbkb (zext.h is `packw rd, rs1, x0`)
    Pack,
    Packh,
    Packw,
    Brev8,
    // Zbkx
    Xperm4,
    Xperm8,
    // Zicond
    CzeroEqz,
    CzeroNez,
}

/// Decodes the bit-manipulation encodings of OP, OP-32, OP-IMM and
/// OP-IMM-32 that the base decoder left over; `None` for anything else.
pub fn decode(i: u32) -> Option<Op> {
    let rd = (i >> 7) & 31;
    let rs1 = (i >> 15) & 31;
    let rs2 = (i >> 20) & 31;
    let f3 = (i >> 12) & 7;
    let f7 = i >> 25;
    let f6 = i >> 26;
    let f12 = i >> 20;
    let shamt = ((i >> 20) & 63) as i32;
    let reg = |b| Some(Op::new(Kind::BitReg(b), rd, rs1, rs2, 0));
    let imm = |b, v| Some(Op::new(Kind::BitImm(b), rd, rs1, 0, v));
    match i & 0x7f {
        0x33 => reg(match (f7, f3) {
            (0x20, 7) => Bit::Andn,
            (0x20, 6) => Bit::Orn,
            (0x20, 4) => Bit::Xnor,
            (0x10, 2) => Bit::Sh1add,
            (0x10, 4) => Bit::Sh2add,
            (0x10, 6) => Bit::Sh3add,
            (0x05, 1) => Bit::Clmul,
            (0x05, 2) => Bit::Clmulr,
            (0x05, 3) => Bit::Clmulh,
            (0x05, 4) => Bit::Min,
            (0x05, 5) => Bit::Minu,
            (0x05, 6) => Bit::Max,
            (0x05, 7) => Bit::Maxu,
            (0x30, 1) => Bit::Rol,
            (0x30, 5) => Bit::Ror,
            (0x24, 1) => Bit::Bclr,
            (0x24, 5) => Bit::Bext,
            (0x14, 1) => Bit::Bset,
            (0x34, 1) => Bit::Binv,
            (0x04, 4) => Bit::Pack,
            (0x04, 7) => Bit::Packh,
            (0x14, 2) => Bit::Xperm4,
            (0x14, 4) => Bit::Xperm8,
            (0x07, 5) => Bit::CzeroEqz,
            (0x07, 7) => Bit::CzeroNez,
            _ => return None,
        }),
        0x3b => reg(match (f7, f3) {
            (0x04, 0) => Bit::AddUw,
            (0x10, 2) => Bit::Sh1addUw,
            (0x10, 4) => Bit::Sh2addUw,
            (0x10, 6) => Bit::Sh3addUw,
            (0x30, 1) => Bit::Rolw,
            (0x30, 5) => Bit::Rorw,
            (0x04, 4) => Bit::Packw,
            _ => return None,
        }),
        0x13 => match (f3, f12) {
            (1, 0x600) => imm(Bit::Clz, 0),
            (1, 0x601) => imm(Bit::Ctz, 0),
            (1, 0x602) => imm(Bit::Cpop, 0),
            (1, 0x604) => imm(Bit::SextB, 0),
            (1, 0x605) => imm(Bit::SextH, 0),
            (5, 0x287) => imm(Bit::OrcB, 0),
            (5, 0x6b8) => imm(Bit::Rev8, 0),
            (5, 0x687) => imm(Bit::Brev8, 0),
            _ => match (f3, f6) {
                (1, 0x0a) => imm(Bit::Bset, shamt),
                (1, 0x12) => imm(Bit::Bclr, shamt),
                (1, 0x1a) => imm(Bit::Binv, shamt),
                (5, 0x12) => imm(Bit::Bext, shamt),
                (5, 0x18) => imm(Bit::Ror, shamt),
                _ => None,
            },
        },
        0x1b => match (f3, f7, rs2) {
            (1, 0x30, 0) => imm(Bit::Clzw, 0),
            (1, 0x30, 1) => imm(Bit::Ctzw, 0),
            (1, 0x30, 2) => imm(Bit::Cpopw, 0),
            (5, 0x30, _) => imm(Bit::Rorw, rs2 as i32),
            (1, _, _) if f6 == 0x02 => imm(Bit::SlliUw, shamt),
            _ => None,
        },
        _ => None,
    }
}

fn sext32(v: u32) -> u64 {
    i64::from(v as i32) as u64
}

/// Carry-less product of `a` and `b`: (high, low) halves of the 128-bit result.
#[inline]
fn clmul128(a: u64, b: u64) -> (u64, u64) {
    let (mut hi, mut lo) = (0u64, 0u64);
    let mut b = b;
    while b != 0 {
        let i = b.trailing_zeros();
        lo ^= a << i;
        if i != 0 {
            hi ^= a >> (64 - i);
        }
        b &= b - 1;
    }
    (hi, lo)
}

/// Applies `f` to every byte of `v`.
#[inline]
fn bytewise(v: u64, f: impl Fn(u8) -> u8) -> u64 {
    u64::from_le_bytes(v.to_le_bytes().map(f))
}

/// Executes `f` on `a = x[rs1]` and `b` (`x[rs2]`, or the shift amount of
/// the immediate forms).
#[inline]
pub fn bit(f: Bit, a: u64, b: u64) -> u64 {
    let sh = (b & 63) as u32;
    match f {
        Bit::AddUw => b.wrapping_add(a & 0xffff_ffff),
        Bit::Sh1add => b.wrapping_add(a << 1),
        Bit::Sh2add => b.wrapping_add(a << 2),
        Bit::Sh3add => b.wrapping_add(a << 3),
        Bit::Sh1addUw => b.wrapping_add((a & 0xffff_ffff) << 1),
        Bit::Sh2addUw => b.wrapping_add((a & 0xffff_ffff) << 2),
        Bit::Sh3addUw => b.wrapping_add((a & 0xffff_ffff) << 3),
        Bit::SlliUw => (a & 0xffff_ffff) << sh,
        Bit::Andn => a & !b,
        Bit::Orn => a | !b,
        Bit::Xnor => !(a ^ b),
        Bit::Clz => u64::from(a.leading_zeros()),
        Bit::Clzw => u64::from((a as u32).leading_zeros()),
        Bit::Ctz => u64::from(a.trailing_zeros()),
        Bit::Ctzw => u64::from((a as u32).trailing_zeros()),
        Bit::Cpop => u64::from(a.count_ones()),
        Bit::Cpopw => u64::from((a as u32).count_ones()),
        Bit::Max => (a as i64).max(b as i64) as u64,
        Bit::Maxu => a.max(b),
        Bit::Min => (a as i64).min(b as i64) as u64,
        Bit::Minu => a.min(b),
        Bit::SextB => a as i8 as u64,
        Bit::SextH => a as i16 as u64,
        Bit::Rol => a.rotate_left(sh),
        Bit::Rolw => sext32((a as u32).rotate_left(sh & 31)),
        Bit::Ror => a.rotate_right(sh),
        Bit::Rorw => sext32((a as u32).rotate_right(sh & 31)),
        Bit::OrcB => bytewise(a, |x| if x == 0 { 0 } else { 0xff }),
        Bit::Rev8 => a.swap_bytes(),
        Bit::Brev8 => bytewise(a, u8::reverse_bits),
        Bit::Clmul => clmul128(a, b).1,
        Bit::Clmulh => clmul128(a, b).0,
        Bit::Clmulr => {
            let (hi, lo) = clmul128(a, b);
            (hi << 1) | (lo >> 63)
        }
        Bit::Bclr => a & !(1 << sh),
        Bit::Bext => (a >> sh) & 1,
        Bit::Binv => a ^ (1 << sh),
        Bit::Bset => a | (1 << sh),
        Bit::Pack => (a & 0xffff_ffff) | (b << 32),
        Bit::Packh => (a & 0xff) | ((b & 0xff) << 8),
        Bit::Packw => sext32(((a & 0xffff) | ((b & 0xffff) << 16)) as u32),
        Bit::Xperm4 => xperm(a, b, 4),
        Bit::Xperm8 => xperm(a, b, 8),
        Bit::CzeroEqz => {
            if b == 0 {
                0
            } else {
                a
            }
        }
        Bit::CzeroNez => {
            if b == 0 {
                a
            } else {
                0
            }
        }
    }
}

/// Crossbar permutation: each `width`-bit element of `b` selects an element
/// of `a` (zero when the index is out of range).
fn xperm(a: u64, b: u64, width: u32) -> u64 {
    let mask = (1u64 << width) - 1;
    let mut r = 0;
    let mut i = 0;
    while i < 64 {
        let idx = (b >> i) & mask;
        let pos = idx * u64::from(width);
        if pos < 64 {
            r |= ((a >> pos) & mask) << i;
        }
        i += width;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shift-and-xor carry-less multiply over the full 128-bit product.
    fn clmul_ref(a: u64, b: u64) -> u128 {
        (0..64)
            .filter(|i| b >> i & 1 == 1)
            .fold(0u128, |acc, i| acc ^ (u128::from(a) << i))
    }

    const SAMPLES: [u64; 8] = [
        0,
        1,
        u64::MAX,
        0x8000_0000_0000_0000,
        0x0123_4567_89ab_cdef,
        0xfedc_ba98_7654_3210,
        0x0000_0000_8000_0001,
        0x5555_aaaa_0f0f_f0f0,
    ];

    #[test]
    fn carry_less_multiply_matches_shift_and_xor() {
        for a in SAMPLES {
            for b in SAMPLES {
                let r = clmul_ref(a, b);
                assert_eq!(bit(Bit::Clmul, a, b), r as u64);
                assert_eq!(bit(Bit::Clmulh, a, b), (r >> 64) as u64);
                assert_eq!(bit(Bit::Clmulr, a, b), (r >> 63) as u64);
            }
        }
    }

    #[test]
    fn counts_match_the_reference_definitions() {
        for a in SAMPLES {
            assert_eq!(bit(Bit::Cpop, a, 0), u64::from(a.count_ones()));
            let clz = (0..64).take_while(|i| a >> (63 - i) & 1 == 0).count() as u64;
            assert_eq!(bit(Bit::Clz, a, 0), clz);
            let ctz = (0..64).take_while(|i| a >> i & 1 == 0).count() as u64;
            assert_eq!(bit(Bit::Ctz, a, 0), ctz);
            let w = a & 0xffff_ffff;
            let clzw = (0..32).take_while(|i| w >> (31 - i) & 1 == 0).count() as u64;
            assert_eq!(bit(Bit::Clzw, a, 0), clzw);
            assert_eq!(bit(Bit::Cpopw, a, 0), u64::from(w.count_ones()));
        }
    }

    #[test]
    fn byte_and_bit_reversals() {
        let v = 0x0123_4567_89ab_cdef;
        assert_eq!(bit(Bit::Rev8, v, 0), 0xefcd_ab89_6745_2301);
        assert_eq!(
            bit(Bit::Brev8, 0x0102_0408_1020_4080, 0),
            0x8040_2010_0804_0201
        );
        assert_eq!(
            bit(Bit::OrcB, 0x0100_2000_0000_00ff, 0),
            0xff00_ff00_0000_00ff
        );
    }

    #[test]
    fn crossbar_permutations_follow_the_pseudocode() {
        // Spec pseudo-code, element by element.
        fn xperm_ref(a: u64, b: u64, w: u32) -> u64 {
            let n = 64 / w;
            let m = (1u64 << w) - 1;
            (0..n).fold(0, |r, i| {
                let idx = (b >> (i * w)) & m;
                let e = if idx < u64::from(n) {
                    (a >> (idx * u64::from(w))) & m
                } else {
                    0
                };
                r | e << (i * w)
            })
        }
        for a in SAMPLES {
            for b in SAMPLES {
                assert_eq!(bit(Bit::Xperm4, a, b), xperm_ref(a, b, 4));
                assert_eq!(bit(Bit::Xperm8, a, b), xperm_ref(a, b, 8));
            }
        }
        assert_eq!(
            bit(Bit::Xperm8, 0x1122_3344_5566_7788, 0x0001_0203_0405_0607),
            0x1122_3344_5566_7788u64.swap_bytes()
        );
    }

    #[test]
    fn decodes_what_gcc_assembles() {
        // Words from `riscv64-unknown-elf-objdump` of the gcc 12 assembler.
        let cases = [
            (0x40c5_f533, Kind::BitReg(Bit::Andn)),
            (0x0ac5_9533, Kind::BitReg(Bit::Clmul)),
            (0x08c5_c533, Kind::BitReg(Bit::Pack)),
            (0x28c5_c533, Kind::BitReg(Bit::Xperm8)),
            (0x0ec5_d533, Kind::BitReg(Bit::CzeroEqz)),
            (0x20c5_a53b, Kind::BitReg(Bit::Sh1addUw)),
            (0x0805_c53b, Kind::BitReg(Bit::Packw)),
            (0x6b85_d513, Kind::BitImm(Bit::Rev8)),
            (0x6875_d513, Kind::BitImm(Bit::Brev8)),
            (0x2835_9513, Kind::BitImm(Bit::Bset)),
            (0x4835_9513, Kind::BitImm(Bit::Bclr)),
            (0x6835_9513, Kind::BitImm(Bit::Binv)),
            (0x4835_d513, Kind::BitImm(Bit::Bext)),
            (0x6035_d513, Kind::BitImm(Bit::Ror)),
            (0x6035_d51b, Kind::BitImm(Bit::Rorw)),
            (0x0835_951b, Kind::BitImm(Bit::SlliUw)),
            (0x6005_951b, Kind::BitImm(Bit::Clzw)),
            (0x2875_d513, Kind::BitImm(Bit::OrcB)),
            (0x6045_9513, Kind::BitImm(Bit::SextB)),
            (0x28c5_a533, Kind::BitReg(Bit::Xperm4)),
            (0x08c5_f533, Kind::BitReg(Bit::Packh)),
        ];
        for (word, kind) in cases {
            let op = crate::interp::riscv64::decode::decode32(word);
            assert_eq!(op.kind, kind, "{word:#010x}");
        }
        // zext.h = packw rd, rs1, x0
        assert_eq!(bit(Bit::Packw, 0xffff_ffff_ffff_8001, 0), 0x8001);
        // Reserved: funct7 0x05 with funct3 0 stays illegal.
        assert_eq!(decode(0x0ac5_8533), None);
    }
}
