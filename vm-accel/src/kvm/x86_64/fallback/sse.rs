//! Legacy-encoded SSE instructions: MXCSR, `movd`/`movq`, 128-bit moves,
//! packed-integer and bitwise operations. Operands are XMM registers (from
//! the guest's SSE state), general registers or memory.

use super::machine::{Exec, FallbackError};
use iced_x86::{Mnemonic, OpKind, Register};

/// MXCSR bits a write may set (MXCSR_MASK of every SSE2 CPU with DAZ).
const MXCSR_WRITABLE: u32 = 0xffff;

fn xmm_index(reg: Register) -> Option<usize> {
    reg.is_xmm()
        .then(|| reg as usize - Register::XMM0 as usize)
        .filter(|&i| i < 16)
}

impl Exec<'_> {
    /// Reads operand `op`: an XMM register (all 128 bits), a general
    /// register, or `size` bytes of memory (zero-extended).
    fn read_vec(&mut self, op: u32, size: usize) -> Result<u128, FallbackError> {
        if self.insn.op_kind(op) == OpKind::Register {
            let reg = self.insn.op_register(op);
            if let Some(i) = xmm_index(reg) {
                return Ok(self.guest.sse()?.xmm[i]);
            }
        }
        match self.insn.op_kind(op) {
            OpKind::Memory => self.read_mem(op, size),
            _ => self.read_int(op, size).map(u128::from),
        }
    }

    /// Writes operand `op`: an XMM register (all 128 bits), a general
    /// register or `size` bytes of memory.
    fn write_vec(&mut self, op: u32, size: usize, value: u128) -> Result<(), FallbackError> {
        if self.insn.op_kind(op) == OpKind::Register {
            let reg = self.insn.op_register(op);
            if let Some(i) = xmm_index(reg) {
                self.guest.sse()?.xmm[i] = value;
                return Ok(());
            }
        }
        match self.insn.op_kind(op) {
            OpKind::Memory => self.write_mem(op, size, value),
            _ => self.write_int(op, size, value as u64),
        }
    }

    /// Legacy SSE memory operands of 16 bytes must be aligned (#GP otherwise).
    fn check_vec_aligned(&self, op: u32) -> Result<(), FallbackError> {
        if self.insn.op_kind(op) == OpKind::Memory && self.insn.memory_size().size() == 16 {
            self.check_aligned(op, 16)?;
        }
        Ok(())
    }

    fn require_legacy(&self) -> Result<(), FallbackError> {
        if self.insn.encoding() == iced_x86::EncodingKind::Legacy {
            Ok(())
        } else {
            Err(self.unsupported(&format!("{:?} encoding", self.insn.encoding())))
        }
    }
}

/// `ldmxcsr m32` / `stmxcsr m32`.
pub(super) fn mxcsr(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    x.require_legacy()?;
    if x.insn.mnemonic() == Mnemonic::Ldmxcsr {
        let value = x.read_mem(0, 4)? as u32;
        if value & !MXCSR_WRITABLE != 0 {
            return Err(FallbackError::WouldFault {
                mnemonic: x.mnemonic(),
                why: format!("reserved MXCSR bits in {value:#x} (#GP)"),
            });
        }
        x.guest.sse()?.mxcsr = value;
        Ok(())
    } else {
        let value = x.guest.sse()?.mxcsr;
        x.write_mem(0, 4, u128::from(value))
    }
}

/// `movd`/`movq` between XMM and general registers or memory, and
/// `movq xmm, xmm/m64` / `movq xmm/m64, xmm`: the low 32/64 bits move, an
/// XMM destination is zero-extended.
pub(super) fn movd_movq(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    x.require_legacy()?;
    let size = if x.insn.mnemonic() == Mnemonic::Movd {
        4
    } else {
        8
    };
    if x.insn.op_kind(0) == OpKind::Register && x.insn.op_register(0).is_mm()
        || x.insn.op_kind(1) == OpKind::Register && x.insn.op_register(1).is_mm()
    {
        return Err(x.unsupported("MMX registers"));
    }
    let mask = (1u128 << (size * 8)) - 1;
    let value = x.read_vec(1, size)? & mask;
    x.write_vec(0, size, value)
}

/// 128-bit moves; the aligned forms check alignment.
pub(super) fn move128(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    x.require_legacy()?;
    let aligned = matches!(
        x.insn.mnemonic(),
        Mnemonic::Movdqa
            | Mnemonic::Movaps
            | Mnemonic::Movapd
            | Mnemonic::Movntdq
            | Mnemonic::Movntps
            | Mnemonic::Movntpd
            | Mnemonic::Movntdqa
    );
    for op in 0..2 {
        if aligned && x.insn.op_kind(op) == OpKind::Memory {
            x.check_aligned(op, 16)?;
        }
    }
    let value = x.read_vec(1, 16)?;
    x.write_vec(0, 16, value)
}

/// Applies `f` lane by lane to lanes of `bits` bits.
fn lanes(a: u128, b: u128, bits: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mask = if bits == 64 {
        u128::from(u64::MAX)
    } else {
        (1u128 << bits) - 1
    };
    (0..128 / bits).fold(0u128, |acc, i| {
        let shift = i * bits;
        let r = u128::from(f(
            ((a >> shift) & mask) as u64,
            ((b >> shift) & mask) as u64,
        ));
        acc | ((r & mask) << shift)
    })
}

fn all_ones_if(cond: bool) -> u64 {
    if cond {
        u64::MAX
    } else {
        0
    }
}

/// Sign-extends the low `bits` of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Interleaves the low (or high) halves of `a` and `b` in lanes of `bits`.
fn unpack(a: u128, b: u128, bits: u32, high: bool) -> u128 {
    let mask = (1u128 << bits) - 1;
    let base = if high { 64 / bits } else { 0 };
    (0..64 / bits).fold(0u128, |acc, i| {
        let from = (base + i) * bits;
        let lo = (a >> from) & mask;
        let hi = (b >> from) & mask;
        acc | (lo << (2 * i * bits)) | (hi << ((2 * i + 1) * bits))
    })
}

/// SSSE3 `pshufb`: byte `i` of the result is byte `b[i] & 15` of `a`, or 0
/// when bit 7 of `b[i]` is set.
fn pshufb(a: u128, b: u128) -> u128 {
    let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
    u128::from_le_bytes(std::array::from_fn(|i| {
        if b[i] & 0x80 == 0 {
            a[usize::from(b[i] & 15)]
        } else {
            0
        }
    }))
}

/// The binary packed operation a mnemonic names: `dst = f(dst, src)`.
fn packed_op(m: Mnemonic) -> Option<fn(u128, u128) -> u128> {
    use Mnemonic as M;
    Some(match m {
        M::Pxor | M::Xorps | M::Xorpd => |a, b| a ^ b,
        M::Por | M::Orps | M::Orpd => |a, b| a | b,
        M::Pand | M::Andps | M::Andpd => |a, b| a & b,
        M::Pandn | M::Andnps | M::Andnpd => |a, b| !a & b,
        M::Paddb => |a, b| lanes(a, b, 8, u64::wrapping_add),
        M::Paddw => |a, b| lanes(a, b, 16, u64::wrapping_add),
        M::Paddd => |a, b| lanes(a, b, 32, u64::wrapping_add),
        M::Paddq => |a, b| lanes(a, b, 64, u64::wrapping_add),
        M::Psubb => |a, b| lanes(a, b, 8, u64::wrapping_sub),
        M::Psubw => |a, b| lanes(a, b, 16, u64::wrapping_sub),
        M::Psubd => |a, b| lanes(a, b, 32, u64::wrapping_sub),
        M::Psubq => |a, b| lanes(a, b, 64, u64::wrapping_sub),
        M::Pcmpeqb => |a, b| lanes(a, b, 8, |x, y| all_ones_if(x == y)),
        M::Pcmpeqw => |a, b| lanes(a, b, 16, |x, y| all_ones_if(x == y)),
        M::Pcmpeqd => |a, b| lanes(a, b, 32, |x, y| all_ones_if(x == y)),
        M::Pcmpeqq => |a, b| lanes(a, b, 64, |x, y| all_ones_if(x == y)),
        M::Pcmpgtb => |a, b| lanes(a, b, 8, |x, y| all_ones_if(signed(x, 8) > signed(y, 8))),
        M::Pcmpgtw => |a, b| lanes(a, b, 16, |x, y| all_ones_if(signed(x, 16) > signed(y, 16))),
        M::Pcmpgtd => |a, b| lanes(a, b, 32, |x, y| all_ones_if(signed(x, 32) > signed(y, 32))),
        M::Pminub => |a, b| lanes(a, b, 8, u64::min),
        M::Pmaxub => |a, b| lanes(a, b, 8, u64::max),
        M::Punpcklbw => |a, b| unpack(a, b, 8, false),
        M::Punpcklwd => |a, b| unpack(a, b, 16, false),
        M::Punpckldq => |a, b| unpack(a, b, 32, false),
        M::Punpcklqdq => |a, b| unpack(a, b, 64, false),
        M::Punpckhbw => |a, b| unpack(a, b, 8, true),
        M::Punpckhwd => |a, b| unpack(a, b, 16, true),
        M::Punpckhdq => |a, b| unpack(a, b, 32, true),
        M::Punpckhqdq => |a, b| unpack(a, b, 64, true),
        M::Pshufb => pshufb,
        _ => return None,
    })
}

/// Whether the fallback has a packed operation for `m`.
pub(super) fn is_packed_op(m: Mnemonic) -> bool {
    packed_op(m).is_some()
}

/// `op xmm, xmm/m128` for the operations [`packed_op`] knows.
pub(super) fn packed(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    x.require_legacy()?;
    let Some(f) = packed_op(x.insn.mnemonic()) else {
        return Err(x.unsupported("no packed operation"));
    };
    if !x.insn.op_register(0).is_xmm() {
        return Err(x.unsupported("MMX registers"));
    }
    x.check_vec_aligned(1)?;
    let a = x.read_vec(0, 16)?;
    let b = x.read_vec(1, 16)?;
    x.write_vec(0, 16, f(a, b))
}

/// `pshufd xmm, xmm/m128, imm8`.
pub(super) fn pshufd(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    x.require_legacy()?;
    x.check_vec_aligned(1)?;
    let src = x.read_vec(1, 16)?;
    let imm = x.insn.immediate(2) as u32;
    let value = (0..4).fold(0u128, |acc, i| {
        let pick = (imm >> (2 * i)) & 3;
        acc | (((src >> (32 * pick)) & 0xffff_ffff) << (32 * i))
    });
    x.write_vec(0, 16, value)
}

/// Shifts: `psrlw/d/q`, `psllw/d/q`, `psraw/d` by an immediate or by the low
/// 64 bits of an XMM/m128 operand; `psrldq`/`pslldq` by an immediate byte count.
pub(super) fn shift(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    use Mnemonic as M;
    x.require_legacy()?;
    if !x.insn.op_register(0).is_xmm() {
        return Err(x.unsupported("MMX registers"));
    }
    let count = if x.insn.op_kind(1) == OpKind::Register || x.insn.op_kind(1) == OpKind::Memory {
        x.check_vec_aligned(1)?;
        x.read_vec(1, 16)? as u64
    } else {
        x.insn.immediate(1)
    };
    let a = x.read_vec(0, 16)?;
    let m = x.insn.mnemonic();
    let value = match m {
        M::Psrldq => a.checked_shr((count.min(16) * 8) as u32).unwrap_or(0),
        M::Pslldq => a.checked_shl((count.min(16) * 8) as u32).unwrap_or(0),
        _ => {
            let (bits, kind) = match m {
                M::Psrlw => (16, 'r'),
                M::Psrld => (32, 'r'),
                M::Psrlq => (64, 'r'),
                M::Psllw => (16, 'l'),
                M::Pslld => (32, 'l'),
                M::Psllq => (64, 'l'),
                M::Psraw => (16, 'a'),
                M::Psrad => (32, 'a'),
                _ => return Err(x.unsupported("not a shift")),
            };
            lanes(a, 0, bits, |v, _| match kind {
                'r' if count < u64::from(bits) => v >> count,
                'l' if count < u64::from(bits) => v << count,
                'a' => (signed(v, bits) >> count.min(u64::from(bits) - 1)) as u64,
                _ => 0,
            })
        }
    };
    x.write_vec(0, 16, value)
}

/// `pmovmskb r32, xmm`: the top bit of each byte.
pub(super) fn pmovmskb(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    x.require_legacy()?;
    if !x.insn.op_register(1).is_xmm() {
        return Err(x.unsupported("MMX registers"));
    }
    let v = x.read_vec(1, 16)?;
    let mask = (0..16).fold(0u64, |acc, i| {
        acc | ((((v >> (8 * i + 7)) & 1) as u64) << i)
    });
    x.write_int(0, 4, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_wrap_per_lane() {
        let a = 0xff_u128 | (1u128 << 120);
        assert_eq!(
            lanes(a, 1, 8, u64::wrapping_add),
            1u128 << 120,
            "no carry out of a lane"
        );
        assert_eq!(lanes(0, 1, 64, u64::wrapping_sub), u128::from(u64::MAX));
    }

    #[test]
    fn unpack_interleaves() {
        let a = 0x0706_0504_0302_0100_u128;
        let b = 0x1716_1514_1312_1110_u128;
        assert_eq!(
            unpack(a, b, 8, false),
            0x1707_1606_1505_1404_1303_1202_1101_1000
        );
        assert_eq!(unpack(a, b, 64, false), (b << 64) | a);
        assert_eq!(unpack(a << 64, b << 64, 64, true), (b << 64) | a);
    }

    #[test]
    fn signed_compare_uses_lane_sign() {
        let f = packed_op(Mnemonic::Pcmpgtb).unwrap();
        // 0x01 > 0xff (-1) in a signed byte lane.
        assert_eq!(f(0x01, 0xff) & 0xff, 0xff);
        assert_eq!(f(0xff, 0x01) & 0xff, 0);
    }
}
