//! Zfa's additions to the FP arithmetic of [`super::fpu`]: the `fli`
//! constant table, NaN-propagating min/max, rounding to an integral value in
//! the same format, and the modular double-to-word conversion.

use rustc_apfloat::ieee::Double;
use rustc_apfloat::{Float, Round, Status};

use super::fpu::{flags, min_max, snan_flag, FpResult, Prec};

/// Zfa `fminm`/`fmaxm`: like [`min_max`], but a NaN operand gives the
/// canonical NaN.
pub fn min_max_nan<F: Prec>(a: u64, b: u64, max: bool) -> FpResult {
    let (x, y) = (F::from_reg(a), F::from_reg(b));
    if x.is_nan() || y.is_nan() {
        return FpResult {
            bits: F::CANON,
            flags: snan_flag(&[x, y]),
        };
    }
    min_max::<F>(a, b, max)
}

/// Zfa `fround` (`inexact == false`) and `froundnx`: round to an integral
/// value in the same format.
pub fn round_integral<F: Prec>(a: u64, round: Round, inexact: bool) -> FpResult {
    let x = F::from_reg(a);
    if x.is_nan() {
        return FpResult {
            bits: F::CANON,
            flags: snan_flag(&[x]),
        };
    }
    if x.is_infinite() || x.is_zero() {
        return FpResult { bits: a, flags: 0 };
    }
    let r = x.round_to_integral(round);
    let nx = inexact && r.status.contains(Status::INEXACT);
    FpResult {
        bits: r.value.to_reg(),
        flags: if nx { flags::NX } else { 0 },
    }
}

/// Zfa `fcvtmod.w.d`: a double to a 32-bit integer rounded toward zero and
/// taken modulo 2^32 (sign-extended). NaN and infinity give 0; those and
/// values outside the signed 32-bit range raise only invalid; other
/// non-integral values raise inexact.
pub fn cvtmod_w(a: u64) -> FpResult {
    let exp = (a >> 52) & 0x7ff;
    let frac = a & ((1 << 52) - 1);
    if exp == 0x7ff {
        return FpResult {
            bits: 0,
            flags: flags::NV,
        };
    }
    let (mant, shift) = if exp == 0 {
        (frac, -1074i64)
    } else {
        (frac | (1 << 52), exp as i64 - 1075)
    };
    let (magnitude, lost, huge) = if shift >= 32 {
        // A multiple of 2^32: zero modulo 2^32, far out of range.
        (0u128, false, mant != 0)
    } else if shift >= 0 {
        (u128::from(mant) << shift, false, false)
    } else if shift > -64 {
        let s = (-shift) as u32;
        (u128::from(mant >> s), mant & ((1u64 << s) - 1) != 0, false)
    } else {
        (0, mant != 0, false)
    };
    let value = if a >> 63 == 1 {
        -(magnitude as i128)
    } else {
        magnitude as i128
    };
    let in_range = !huge && value >= i128::from(i32::MIN) && value <= i128::from(i32::MAX);
    FpResult {
        bits: i64::from(value as u32 as i32) as u64,
        flags: if !in_range {
            flags::NV
        } else if lost {
            flags::NX
        } else {
            0
        },
    }
}

/// Zfa `fli`: constant number `index` (0..=31) of the table in the Zfa
/// specification, in precision `F`.
pub fn fli<F: Prec>(index: u8) -> u64 {
    // Entries other than 1 (the smallest normal) and 31 (the canonical NaN)
    // as doubles; they are exact in every precision except 2^16 in half,
    // which rounds to infinity as the specification's table lists.
    const TABLE: [f64; 32] = [
        -1.0,
        0.0, // entry 1: the format's smallest normal
        1.0 / 65536.0,
        1.0 / 32768.0,
        1.0 / 256.0,
        1.0 / 128.0,
        0.0625,
        0.125,
        0.25,
        0.3125,
        0.375,
        0.4375,
        0.5,
        0.625,
        0.75,
        0.875,
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
        2.5,
        3.0,
        4.0,
        8.0,
        16.0,
        128.0,
        256.0,
        32768.0,
        65536.0,
        f64::INFINITY,
        0.0, // entry 31: the canonical NaN
    ];
    match index & 31 {
        1 => F::smallest_normalized().to_reg(),
        31 => F::CANON,
        i => {
            let d = Double::from_bits(u128::from(TABLE[usize::from(i)].to_bits()));
            F::from_double(d, Round::NearestTiesToEven).value.to_reg()
        }
    }
}

#[cfg(test)]
mod tests {
    use rustc_apfloat::ieee::{Half, Single};

    use super::*;

    const RNE: Round = Round::NearestTiesToEven;

    #[test]
    fn zfa_constants_rounding_and_modular_conversion() {
        assert_eq!(fli::<Single>(0), 0xbf80_0000);
        assert_eq!(fli::<Single>(1), 0x0080_0000);
        assert_eq!(fli::<Double>(1), 0x0010_0000_0000_0000);
        assert_eq!(fli::<Half>(1), 0x0400);
        assert_eq!(fli::<Half>(2), 0x0100); // 2^-16: a half subnormal
        assert_eq!(fli::<Single>(9), 0x3ea0_0000); // 0.3125
        assert_eq!(fli::<Half>(29), 0x7c00); // 2^16 does not fit a half
        assert_eq!(fli::<Single>(29), 0x4780_0000);
        assert_eq!(fli::<Double>(30), 0x7ff0_0000_0000_0000);
        assert_eq!(fli::<Half>(31), 0x7e00);
        let snan = 0x7f80_0001u64;
        let one = 1f32.to_bits() as u64;
        assert_eq!(
            min_max_nan::<Single>(snan, one, false),
            FpResult {
                bits: Single::CANON,
                flags: flags::NV
            }
        );
        assert_eq!(
            min_max_nan::<Single>(0x8000_0000, 0, false).bits,
            0x8000_0000
        );
        let r = round_integral::<Double>(2.5f64.to_bits(), RNE, false);
        assert_eq!((r.bits, r.flags), (2f64.to_bits(), 0));
        let r = round_integral::<Double>(2.5f64.to_bits(), RNE, true);
        assert_eq!((r.bits, r.flags), (2f64.to_bits(), flags::NX));
        let r = round_integral::<Double>((-0.5f64).to_bits(), Round::TowardPositive, true);
        assert_eq!(r.bits, (-0f64).to_bits());
        // 2^32 + 5.5: modulo 2^32 is 5, out of range.
        let r = cvtmod_w(4_294_967_301.5f64.to_bits());
        assert_eq!((r.bits, r.flags), (5, flags::NV));
        let r = cvtmod_w((-7.75f64).to_bits());
        assert_eq!((r.bits, r.flags), ((-7i64) as u64, flags::NX));
        let r = cvtmod_w(2_147_483_648f64.to_bits());
        assert_eq!((r.bits, r.flags), (0xffff_ffff_8000_0000, flags::NV));
        let r = cvtmod_w((-2_147_483_648f64).to_bits());
        assert_eq!((r.bits, r.flags), (0xffff_ffff_8000_0000, 0));
        assert_eq!(
            cvtmod_w(1e300f64.to_bits()),
            FpResult {
                bits: 0,
                flags: flags::NV
            }
        );
        assert_eq!(
            cvtmod_w(f64::NAN.to_bits()),
            FpResult {
                bits: 0,
                flags: flags::NV
            }
        );
        assert_eq!(
            cvtmod_w(5e-324f64.to_bits()),
            FpResult {
                bits: 0,
                flags: flags::NX
            }
        );
    }
}
