//! IEEE-754 arithmetic for F, D and Zfh with RISC-V semantics: every rounding
//! mode, exception flags (`fflags`), canonical NaNs, min/max and compare
//! rules, saturating conversions. Arithmetic uses `rustc_apfloat` (a port of
//! LLVM's APFloat, a software implementation), never host float shortcuts;
//! square root uses the host's correctly rounded `sqrt` plus an exactness
//! check and a directed-rounding correction.

// Operand names follow the ISA manual (a, b, c, x, y, rd).
#![allow(clippy::many_single_char_names)]

use rustc_apfloat::ieee::{Double, Half, Single};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

/// `fflags` bits.
pub mod flags {
    pub const NX: u64 = 1;
    pub const UF: u64 = 2;
    pub const OF: u64 = 4;
    pub const DZ: u64 = 8;
    pub const NV: u64 = 16;
}

/// A result and the flags it raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpResult {
    /// Result bits (a float, or an integer for conversions/compares).
    pub bits: u64,
    /// Raised `fflags`.
    pub flags: u64,
}

fn status_flags(s: Status) -> u64 {
    let mut f = 0;
    if s.contains(Status::INVALID_OP) {
        f |= flags::NV;
    }
    if s.contains(Status::DIV_BY_ZERO) {
        f |= flags::DZ;
    }
    if s.contains(Status::OVERFLOW) {
        f |= flags::OF;
    }
    if s.contains(Status::UNDERFLOW) {
        f |= flags::UF;
    }
    if s.contains(Status::INEXACT) {
        f |= flags::NX;
    }
    f
}

/// Maps a RISC-V rounding mode (0..=4) to APFloat's.
pub fn round_mode(rm: u64) -> Option<Round> {
    Some(match rm {
        0 => Round::NearestTiesToEven,
        1 => Round::TowardZero,
        2 => Round::TowardNegative,
        3 => Round::TowardPositive,
        4 => Round::NearestTiesToAway,
        _ => return None,
    })
}

/// One of the three precisions.
pub trait Prec:
    Float + Copy + FloatConvert<Half> + FloatConvert<Single> + FloatConvert<Double>
{
    /// The canonical quiet NaN.
    const CANON: u64;
    /// Width in bits.
    const WIDTH: u32;
    /// From register bits (already unboxed for single).
    fn from_reg(bits: u64) -> Self;
    /// To register bits (unboxed).
    fn to_reg(self) -> u64;
    /// Rounds a double to this precision.
    fn from_double(d: Double, round: Round) -> StatusAnd<Self>;
}

impl Prec for Half {
    const CANON: u64 = 0x7e00;
    const WIDTH: u32 = 16;
    fn from_reg(bits: u64) -> Self {
        Half::from_bits(u128::from(bits as u16))
    }
    fn to_reg(self) -> u64 {
        self.to_bits() as u64
    }
    fn from_double(d: Double, round: Round) -> StatusAnd<Self> {
        d.convert_r(round, &mut false)
    }
}

impl Prec for Single {
    const CANON: u64 = 0x7fc0_0000;
    const WIDTH: u32 = 32;
    fn from_reg(bits: u64) -> Self {
        Single::from_bits(u128::from(bits as u32))
    }
    fn to_reg(self) -> u64 {
        self.to_bits() as u64
    }
    fn from_double(d: Double, round: Round) -> StatusAnd<Self> {
        d.convert_r(round, &mut false)
    }
}

impl Prec for Double {
    const CANON: u64 = 0x7ff8_0000_0000_0000;
    const WIDTH: u32 = 64;
    fn from_reg(bits: u64) -> Self {
        Double::from_bits(u128::from(bits))
    }
    fn to_reg(self) -> u64 {
        self.to_bits() as u64
    }
    fn from_double(d: Double, _round: Round) -> StatusAnd<Self> {
        Status::OK.and(d)
    }
}

pub(super) fn snan_flag<F: Prec>(vals: &[F]) -> u64 {
    if vals.iter().any(|v| v.is_signaling()) {
        flags::NV
    } else {
        0
    }
}

fn finish<F: Prec>(r: StatusAnd<F>, inputs: &[F]) -> FpResult {
    let bits = if r.value.is_nan() {
        F::CANON
    } else {
        r.value.to_reg()
    };
    FpResult {
        bits,
        flags: status_flags(r.status) | snan_flag(inputs),
    }
}

/// Binary arithmetic ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// APFloat saturates to the largest finite value without raising overflow
/// when the rounding direction keeps a result finite (toward zero, or toward
/// the other infinity). IEEE raises overflow when the result rounded with an
/// unbounded exponent exceeds the largest value; for a result that saturated
/// to the largest value, that is when the exact magnitude reaches
/// 2^(emax+1). `halved` computes the exact result divided by two (halving
/// the operands away from zero, so a halved tiny operand keeps its sign),
/// rounded toward zero: it reaches 2^emax exactly then.
fn fix_overflow<F: Prec>(r: StatusAnd<F>, halved: impl FnOnce() -> F) -> StatusAnd<F> {
    let v = r.value;
    if v.is_finite()
        && r.status.contains(Status::INEXACT)
        && !r.status.contains(Status::OVERFLOW)
        && v.abs().bitwise_eq(F::largest())
    {
        let two_emax = F::from_u128(1).value.scalbn(F::largest().ilogb());
        if halved().abs() >= two_emax {
            return (r.status | Status::OVERFLOW).and(v);
        }
    }
    r
}

/// `x / 2`, rounded away from zero (exact unless `x` is subnormal).
fn half_away<F: Prec>(x: F) -> F {
    let away = if x.is_negative() {
        Round::TowardNegative
    } else {
        Round::TowardPositive
    };
    x.mul_r(F::from_u128(1).value.scalbn(-1), away).value
}

/// `a op b` in precision `F`.
pub fn binary<F: Prec>(op: BinOp, a: u64, b: u64, round: Round) -> FpResult {
    let (x, y) = (F::from_reg(a), F::from_reg(b));
    let run = |x: F, y: F, round| match op {
        BinOp::Add => x.add_r(y, round),
        BinOp::Sub => x.sub_r(y, round),
        BinOp::Mul => x.mul_r(y, round),
        BinOp::Div => x.div_r(y, round),
    };
    let halved = || {
        // Halving one factor halves a product or quotient; a sum needs both.
        let y2 = if matches!(op, BinOp::Add | BinOp::Sub) {
            half_away(y)
        } else {
            y
        };
        run(half_away(x), y2, Round::TowardZero).value
    };
    finish(fix_overflow(run(x, y, round), halved), &[x, y])
}

/// Fused multiply-add: `(neg_product ? -(a*b) : a*b) + (neg_addend ? -c : c)`.
pub fn fma<F: Prec>(
    a: u64,
    b: u64,
    c: u64,
    neg_product: bool,
    neg_addend: bool,
    round: Round,
) -> FpResult {
    let (x, y, z) = (F::from_reg(a), F::from_reg(b), F::from_reg(c));
    let xm = if neg_product { -x } else { x };
    let zm = if neg_addend { -z } else { z };
    let halved = || {
        half_away(xm)
            .mul_add_r(y, half_away(zm), Round::TowardZero)
            .value
    };
    let mut out = finish(fix_overflow(xm.mul_add_r(y, zm, round), halved), &[x, y, z]);
    // RISC-V: inf * 0 is invalid even when the addend is a quiet NaN.
    if (x.is_infinite() && y.is_zero()) || (x.is_zero() && y.is_infinite()) {
        out.flags |= flags::NV;
    }
    out
}

/// Square root.
pub fn sqrt<F: Prec>(a: u64, round: Round) -> FpResult {
    let x = F::from_reg(a);
    if x.is_nan() {
        return FpResult {
            bits: F::CANON,
            flags: snan_flag(&[x]),
        };
    }
    if x.is_negative() && !x.is_zero() {
        return FpResult {
            bits: F::CANON,
            flags: flags::NV,
        };
    }
    if x.is_zero() || x.is_infinite() {
        return FpResult {
            bits: x.to_reg(),
            flags: 0,
        };
    }
    // Exact widening to the host double (half and single values are exact in f64).
    let mut lost = false;
    let d: Double = x.convert_r(Round::NearestTiesToEven, &mut lost).value;
    let v = f64::from_bits(d.to_bits() as u64);
    // Below 2^-900 the residual r*r - v can fall under the subnormal range
    // and read as zero: work on v * 2^600 (exact) and scale the root back by
    // 2^-300, exact too since every root is at least 2^-537, a normal number.
    let tiny = v < f64::from_bits(0x07b0_0000_0000_0000); // 2^-900
    let v = if tiny {
        v * f64::from_bits(0x6570_0000_0000_0000) // 2^600
    } else {
        v
    };
    let unscale = |x: f64| {
        if tiny {
            x * f64::from_bits(0x2d30_0000_0000_0000) // 2^-300
        } else {
            x
        }
    };
    let r = v.sqrt();
    let residual = r.mul_add(r, -v);
    let exact = residual == 0.0;
    let r = unscale(r);
    if F::WIDTH == 64 {
        let adjusted = if exact {
            r
        } else {
            match round {
                Round::TowardZero | Round::TowardNegative if residual > 0.0 => r.next_down(),
                Round::TowardPositive if residual < 0.0 => r.next_up(),
                _ => r,
            }
        };
        FpResult {
            bits: adjusted.to_bits(),
            flags: if exact { 0 } else { flags::NX },
        }
    } else {
        // sqrt of a 24-bit (or 11-bit) value in 53 bits: rounding to the
        // narrow precision from there is correct (53 >= 2 * 24 + 2).
        let s = F::from_double(Double::from_bits(u128::from(r.to_bits())), round);
        FpResult {
            bits: s.value.to_reg(),
            flags: status_flags(s.status) | if exact { 0 } else { flags::NX },
        }
    }
}

/// fmin/fmax with RISC-V NaN and signed-zero rules.
pub fn min_max<F: Prec>(a: u64, b: u64, max: bool) -> FpResult {
    let (x, y) = (F::from_reg(a), F::from_reg(b));
    let fl = snan_flag(&[x, y]);
    let bits = match (x.is_nan(), y.is_nan()) {
        (true, true) => F::CANON,
        (true, false) => b,
        (false, true) => a,
        _ if x.is_zero() && y.is_zero() => {
            if x.is_negative() == max {
                b
            } else {
                a
            }
        }
        _ => {
            let x_less = x < y;
            if x_less == max {
                b
            } else {
                a
            }
        }
    };
    FpResult { bits, flags: fl }
}

/// Comparisons: 0 = eq, 1 = lt, 2 = le, 3 = quiet lt (Zfa `fltq`),
/// 4 = quiet le (`fleq`). Result is 0 or 1.
pub fn compare<F: Prec>(a: u64, b: u64, kind: u8) -> FpResult {
    let (x, y) = (F::from_reg(a), F::from_reg(b));
    if x.is_nan() || y.is_nan() {
        let fl = if matches!(kind, 0 | 3 | 4) {
            snan_flag(&[x, y])
        } else {
            flags::NV
        };
        return FpResult { bits: 0, flags: fl };
    }
    let r = match kind {
        0 => x == y,
        1 | 3 => x < y,
        _ => x <= y,
    };
    FpResult {
        bits: u64::from(r),
        flags: 0,
    }
}

/// fclass.
pub fn class<F: Prec>(a: u64) -> u64 {
    let x = F::from_reg(a);
    let neg = x.is_negative();
    let bit = if x.is_nan() {
        if x.is_signaling() {
            8
        } else {
            9
        }
    } else if x.is_infinite() {
        if neg {
            0
        } else {
            7
        }
    } else if x.is_zero() {
        if neg {
            3
        } else {
            4
        }
    } else if x.is_denormal() {
        if neg {
            2
        } else {
            5
        }
    } else if neg {
        1
    } else {
        6
    };
    1 << bit
}

/// Float to integer: `bits` 32 or 64, `signed`; saturating, with NV/NX.
/// The result is sign-extended to 64 bits for 32-bit targets.
pub fn to_int<F: Prec>(a: u64, bits: u32, signed: bool, round: Round) -> FpResult {
    let x = F::from_reg(a);
    let (min, max): (i128, i128) = match (bits, signed) {
        (32, true) => (i128::from(i32::MIN), i128::from(i32::MAX)),
        (32, false) => (0, i128::from(u32::MAX)),
        (_, true) => (i128::from(i64::MIN), i128::from(i64::MAX)),
        _ => (0, i128::from(u64::MAX)),
    };
    let pack = |v: i128| -> u64 {
        if bits == 32 {
            i64::from(v as u32 as i32) as u64
        } else {
            v as u64
        }
    };
    if x.is_nan() {
        return FpResult {
            bits: pack(max),
            flags: flags::NV,
        };
    }
    let rounded = x.round_to_integral(round);
    let r = rounded.value;
    let inexact = rounded.status.contains(Status::INEXACT);
    let value = if r.is_infinite() {
        None
    } else {
        let mut exact = true;
        let v = r.to_i128_r(128, Round::TowardZero, &mut exact);
        (!v.status.contains(Status::INVALID_OP)).then_some(v.value)
    };
    match value {
        Some(v) if v >= min && v <= max => FpResult {
            bits: pack(v),
            flags: if inexact { flags::NX } else { 0 },
        },
        _ => FpResult {
            bits: pack(if x.is_negative() { min } else { max }),
            flags: flags::NV,
        },
    }
}

/// Integer to float (`value` already sign- or zero-extended as the source type).
pub fn from_int<F: Prec>(value: i128, round: Round) -> FpResult {
    let halved = || F::from_i128_r(value / 2, Round::TowardZero).value;
    let r = fix_overflow(F::from_i128_r(value, round), halved);
    FpResult {
        bits: r.value.to_reg(),
        flags: status_flags(r.status),
    }
}

/// Between precisions: exact when widening, rounded when narrowing.
pub fn convert<From, To>(a: u64, round: Round) -> FpResult
where
    From: Prec + FloatConvert<To>,
    To: Prec,
{
    let x = From::from_reg(a);
    let halved = || -> To { half_away(x).convert_r(Round::TowardZero, &mut false).value };
    let r = fix_overflow(x.convert_r(round, &mut false), halved);
    let bits = if r.value.is_nan() {
        To::CANON
    } else {
        r.value.to_reg()
    };
    FpResult {
        bits,
        flags: (status_flags(r.status) & !flags::NV) | snan_flag(&[x]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RNE: Round = Round::NearestTiesToEven;

    #[test]
    fn rounding_modes_and_inexact() {
        // 1/3 in single: RNE rounds up (…aaab), RDN down; both inexact.
        let one = 1.0f32.to_bits() as u64;
        let three = 3.0f32.to_bits() as u64;
        let rne = binary::<Single>(BinOp::Div, one, three, RNE);
        let rdn = binary::<Single>(BinOp::Div, one, three, Round::TowardNegative);
        assert_eq!(rne.flags, flags::NX);
        assert_eq!(rne.bits, 0x3eaa_aaab);
        assert_eq!(rdn.bits + 1, rne.bits);
        let dz = binary::<Double>(BinOp::Div, 1f64.to_bits(), 0, RNE);
        assert_eq!((dz.bits, dz.flags), (f64::INFINITY.to_bits(), flags::DZ));
        let nv = binary::<Double>(
            BinOp::Sub,
            f64::INFINITY.to_bits(),
            f64::INFINITY.to_bits(),
            RNE,
        );
        assert_eq!((nv.bits, nv.flags), (Double::CANON, flags::NV));
        let of = binary::<Single>(
            BinOp::Mul,
            f32::MAX.to_bits() as u64,
            2f32.to_bits() as u64,
            Round::TowardZero,
        );
        assert_eq!(of.bits, f32::MAX.to_bits() as u64);
        assert_eq!(of.flags, flags::OF | flags::NX);
    }

    #[test]
    fn sqrt_exactness_and_directed_rounding() {
        assert_eq!(
            sqrt::<Double>(4f64.to_bits(), RNE),
            FpResult {
                bits: 2f64.to_bits(),
                flags: 0
            }
        );
        let down = sqrt::<Double>(2f64.to_bits(), Round::TowardNegative);
        let up = sqrt::<Double>(2f64.to_bits(), Round::TowardPositive);
        assert_eq!(up.bits, down.bits + 1);
        assert_eq!(
            sqrt::<Single>((-1f32).to_bits() as u64, RNE).flags,
            flags::NV
        );
        assert_eq!(
            sqrt::<Single>(2f32.to_bits() as u64, RNE).bits,
            2f32.sqrt().to_bits() as u64
        );
        // Subnormal inputs: sqrt(4 * 2^-1074) = 2^-536 exactly; sqrt(17 *
        // 2^-1074) is inexact, and rounding toward zero ends one below RNE
        // (which rounds up here).
        assert_eq!(
            sqrt::<Double>(4, RNE),
            FpResult {
                bits: 0x1e70_0000_0000_0000,
                flags: 0
            }
        );
        let rne = sqrt::<Double>(17, RNE);
        let rtz = sqrt::<Double>(17, Round::TowardZero);
        assert_eq!((rne.flags, rtz.flags), (flags::NX, flags::NX));
        assert!(rtz.bits <= rne.bits && rne.bits - rtz.bits <= 1);
        assert_eq!(sqrt::<Double>(17, Round::TowardPositive).bits, rtz.bits + 1);
    }

    #[test]
    fn conversions_saturate() {
        let big = 1e20f64.to_bits();
        assert_eq!(
            to_int::<Double>(big, 32, true, RNE),
            FpResult {
                bits: 0x7fff_ffff,
                flags: flags::NV
            }
        );
        assert_eq!(
            to_int::<Double>((-1.5f64).to_bits(), 32, false, RNE).flags,
            flags::NV
        );
        assert_eq!(
            to_int::<Double>((-0.4f64).to_bits(), 64, false, RNE),
            FpResult {
                bits: 0,
                flags: flags::NX
            }
        );
        assert_eq!(
            to_int::<Single>(Single::CANON, 64, true, RNE).bits,
            i64::MAX as u64
        );
        assert_eq!(
            to_int::<Double>((-3.5f64).to_bits(), 32, true, Round::NearestTiesToAway).bits,
            (-4i64) as u64
        );
        assert_eq!(
            to_int::<Double>(0xfff0_0000_0000_0000, 64, true, RNE).bits,
            i64::MIN as u64
        );
        assert_eq!(from_int::<Single>(16_777_217, RNE).flags, flags::NX);
    }

    #[test]
    fn min_max_compare_class() {
        let snan = 0x7f80_0001u64;
        let one = 1f32.to_bits() as u64;
        assert_eq!(
            min_max::<Single>(snan, one, false),
            FpResult {
                bits: one,
                flags: flags::NV
            }
        );
        assert_eq!(min_max::<Single>(0x8000_0000, 0, false).bits, 0x8000_0000);
        assert_eq!(min_max::<Single>(0x8000_0000, 0, true).bits, 0);
        assert_eq!(compare::<Single>(Single::CANON, one, 0).flags, 0);
        assert_eq!(compare::<Single>(Single::CANON, one, 1).flags, flags::NV);
        // Zfa's quiet compares: invalid only for signaling NaNs.
        assert_eq!(compare::<Single>(Single::CANON, one, 3).flags, 0);
        assert_eq!(compare::<Single>(snan, one, 4).flags, flags::NV);
        assert_eq!(class::<Single>(snan), 1 << 8);
        assert_eq!(class::<Double>((-0f64).to_bits()), 1 << 3);
        assert_eq!(class::<Double>(1), 1 << 5);
    }

    #[test]
    fn half_precision_rounds_and_overflows() {
        // 1 + 2^-11 is a tie between 1 and 1 + 2^-10 in half: RNE keeps 1.
        let one = 0x3c00;
        let tiny = 0x1000; // 2^-11
        let r = binary::<Half>(BinOp::Add, one, tiny, RNE);
        assert_eq!((r.bits, r.flags), (0x3c00, flags::NX));
        let r = binary::<Half>(BinOp::Add, one, tiny, Round::TowardPositive);
        assert_eq!(r.bits, 0x3c01);
        // 65504 (largest half) * 2 overflows; toward zero saturates with OF.
        let r = binary::<Half>(BinOp::Mul, 0x7bff, 0x4000, Round::TowardZero);
        assert_eq!((r.bits, r.flags), (0x7bff, flags::OF | flags::NX));
        // 65504 + 8 (between the largest half and 2^16) rounds toward zero
        // to 65504 without overflow (the unbounded-exponent result is 65504).
        let r = binary::<Half>(BinOp::Add, 0x7bff, 0x4800, Round::TowardZero);
        assert_eq!((r.bits, r.flags), (0x7bff, flags::NX));
        let r = binary::<Half>(BinOp::Add, 0x7bff, 0x4800, RNE);
        assert_eq!((r.bits, r.flags), (0x7bff, flags::NX));
        let r = from_int::<Half>(65_535, Round::TowardZero);
        assert_eq!((r.bits, r.flags), (0x7bff, flags::NX));
        let r = from_int::<Half>(70_000, Round::TowardZero);
        assert_eq!((r.bits, r.flags), (0x7bff, flags::OF | flags::NX));
        let r = convert::<Single, Half>(1e6f32.to_bits() as u64, RNE);
        assert_eq!((r.bits, r.flags), (0x7c00, flags::OF | flags::NX));
        let r = convert::<Half, Double>(0x0001, RNE); // smallest subnormal, 2^-24
        assert_eq!((r.bits, r.flags), ((2f64).powi(-24).to_bits(), 0));
        assert_eq!(sqrt::<Half>(0x4400, RNE).bits, 0x4000); // sqrt(4) = 2
        assert_eq!(class::<Half>(0x8001), 1 << 2);
        assert_eq!(to_int::<Half>(0xc100, 32, true, RNE).bits, (-2i64) as u64);
    }

    #[test]
    fn tininess_is_detected_after_rounding() {
        // (1 + 2^-23) * (2^-126 - 2^-149) = 2^-126 - 2^-172 rounds to the
        // smallest normal, which it would also be with an unbounded
        // exponent: not tiny, so inexact without underflow.
        let r = binary::<Single>(BinOp::Mul, 0x3f80_0001, 0x007f_ffff, RNE);
        assert_eq!((r.bits, r.flags), (0x0080_0000, flags::NX));
        // Toward zero it stays subnormal: tiny and inexact.
        let r = binary::<Single>(BinOp::Mul, 0x3f80_0001, 0x007f_ffff, Round::TowardZero);
        assert_eq!((r.bits, r.flags), (0x007f_ffff, flags::UF | flags::NX));
        let r = binary::<Half>(BinOp::Mul, 0x3c01, 0x03ff, RNE);
        assert_eq!((r.bits, r.flags), (0x0400, flags::NX));
    }
}
