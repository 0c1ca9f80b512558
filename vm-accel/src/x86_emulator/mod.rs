//! The x86 instruction-emulation core shared by every backend that finishes
//! instructions in userspace: decoding with `iced-x86` ([`decode`]), the
//! general-register mapping with x86's partial-write rules ([`gpr`]) and
//! register/immediate operand access ([`operand_value`], [`write_register`]).
//!
//! Two users: the WHPX exit decoder, which completes MMIO loads and stores
//! ([`mmio`]) and string port I/O ([`port_io`]) from the faulting
//! instruction; and the KVM instruction fallback (`kvm/x86_64/fallback/`),
//! which emulates whole instructions a host's KVM cannot. Plain Rust, tested
//! on every host; `kvm_differential` checks the WHPX paths against KVM's own
//! emulation where `/dev/kvm` exists.

pub mod gpr;
pub mod mmio;
pub mod port_io;

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod kvm_differential;

use gpr::{GprFile, GprRef};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind};

/// Why the bytes at RIP are not one instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeFailure {
    /// The mode is not 16, 32 or 64.
    #[error("invalid CPU mode: {bitness}-bit")]
    BadMode {
        /// The value given.
        bitness: u32,
    },
    /// The bytes end inside the instruction.
    #[error("truncated after {len} bytes")]
    Truncated {
        /// How many bytes there were.
        len: usize,
    },
    /// Not a valid instruction in this mode.
    #[error("{0:?}")]
    Invalid(DecoderError),
}

/// Decodes the one instruction at the start of `bytes`, fetched at `ip` in
/// `bitness`-bit mode (16, 32 or 64).
pub fn decode(bytes: &[u8], bitness: u32, ip: u64) -> Result<Instruction, DecodeFailure> {
    if !matches!(bitness, 16 | 32 | 64) {
        return Err(DecodeFailure::BadMode { bitness });
    }
    let mut decoder = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
    let insn = decoder.decode();
    match decoder.last_error() {
        DecoderError::None => Ok(insn),
        DecoderError::NoMoreBytes => Err(DecodeFailure::Truncated { len: bytes.len() }),
        other => Err(DecodeFailure::Invalid(other)),
    }
}

/// The code size of an x86 CPU: 64 in long mode with `CS.L`, else 32 with
/// `CS.D/B`, else 16.
pub fn x86_bitness(long_mode_active: bool, cs_l: bool, cs_db: bool) -> u32 {
    if long_mode_active && cs_l {
        64
    } else if cs_db {
        32
    } else {
        16
    }
}

/// A mnemonic as errors and logs show it: `popcnt`, `mov`.
pub fn mnemonic_name(m: Mnemonic) -> String {
    format!("{m:?}").to_lowercase()
}

/// The general register named by operand `op`, if it is one.
pub fn register_operand(insn: &Instruction, op: u32) -> Option<GprRef> {
    (insn.op_kind(op) == OpKind::Register)
        .then(|| GprRef::from_iced(insn.op_register(op)))
        .flatten()
}

/// The value of operand `op` when it is a general register or an immediate
/// (immediates sign-extended as the instruction does); `None` for memory and
/// any other register kind.
pub fn operand_value(insn: &Instruction, op: u32, regs: &impl GprFile) -> Option<u64> {
    match insn.op_kind(op) {
        OpKind::Register => GprRef::from_iced(insn.op_register(op)).map(|r| r.read(regs)),
        OpKind::Memory
        | OpKind::NearBranch16
        | OpKind::NearBranch32
        | OpKind::NearBranch64
        | OpKind::FarBranch16
        | OpKind::FarBranch32 => None,
        _ => insn.try_immediate(op).ok(),
    }
}

/// Writes `value` to operand `op` when it is a general register (with the
/// partial-write rules); `None` for anything else.
pub fn write_register(
    insn: &Instruction,
    op: u32,
    regs: &mut impl GprFile,
    value: u64,
) -> Option<()> {
    register_operand(insn, op)?.write(regs, value);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::X86_64Registers;

    #[test]
    fn decode_names_why_bytes_are_not_an_instruction() {
        assert_eq!(
            decode(&[0x89, 0x07], 48, 0),
            Err(DecodeFailure::BadMode { bitness: 48 })
        );
        assert_eq!(
            decode(&[0xc7, 0x07, 0x78], 64, 0),
            Err(DecodeFailure::Truncated { len: 3 })
        );
        assert_eq!(decode(&[], 64, 0), Err(DecodeFailure::Truncated { len: 0 }));
        // `push es` does not exist in 64-bit mode.
        let invalid = decode(&[0x06, 0x90, 0x90, 0x90], 64, 0);
        assert!(
            matches!(invalid, Err(DecodeFailure::Invalid(_))),
            "{invalid:?}"
        );
        let insn = decode(&[0xf3, 0x0f, 0xb8, 0xc3], 64, 0x1000).unwrap();
        assert_eq!(mnemonic_name(insn.mnemonic()), "popcnt");
        assert_eq!(insn.next_ip(), 0x1004);
    }

    #[test]
    fn bitness_from_mode_bits() {
        assert_eq!(x86_bitness(true, true, false), 64);
        assert_eq!(x86_bitness(true, false, true), 32);
        assert_eq!(x86_bitness(false, true, true), 32);
        assert_eq!(x86_bitness(false, false, false), 16);
    }

    #[test]
    fn operands_read_registers_and_immediates() {
        let regs = X86_64Registers {
            rbx: 0x1122_3344_5566_7788,
            ..X86_64Registers::default()
        };
        // mov eax, ebx
        let insn = decode(&[0x89, 0xd8], 64, 0).unwrap();
        assert_eq!(operand_value(&insn, 1, &regs), Some(0x5566_7788));
        // add rax, -1 (imm8 sign-extended to 64 bits)
        let insn = decode(&[0x48, 0x83, 0xc0, 0xff], 64, 0).unwrap();
        assert_eq!(operand_value(&insn, 1, &regs), Some(u64::MAX));
        // mov [rdi], eax: operand 0 is memory
        let insn = decode(&[0x89, 0x07], 64, 0).unwrap();
        assert_eq!(operand_value(&insn, 0, &regs), None);
        assert_eq!(register_operand(&insn, 0), None);
        let mut array = [0u64; 16];
        array[0] = u64::MAX;
        // mov ax, bx: a 16-bit write merges
        let insn = decode(&[0x66, 0x89, 0xd8], 64, 0).unwrap();
        write_register(&insn, 0, &mut array, 0x1234).unwrap();
        assert_eq!(array[0], 0xffff_ffff_ffff_1234);
        assert!(write_register(&insn, 1, &mut [0u64; 16], 0).is_some());
    }
}
