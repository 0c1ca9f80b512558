//! Decoding the x86 instruction behind an MMIO exit when the hypervisor
//! reports only the faulting address (WHPX `WHvRunVpExitReasonMemoryAccess`):
//! which register or immediate is moved, how many bytes, and how a read
//! completes into the destination register. Decoding is `iced-x86`.
//!
//! Supported: `MOV` (register, immediate and `moffs` forms), `MOVZX`,
//! `MOVSX`, `MOVSXD` — what compilers emit for Linux's `readb/w/l/q` and
//! `writeb/w/l/q` MMIO accessors. Read-modify-write instructions (`OR`,
//! `AND`, `XCHG`, ...) and string moves are refused with
//! [`MmioDecodeError::Unsupported`], naming the instruction: one access per
//! exit is the contract of [`VcpuExit::MmioRead`](crate::VcpuExit::MmioRead).

use super::gpr::GprRef;
use super::{decode, mnemonic_name, operand_value, register_operand, DecodeFailure};
use crate::exit::InstructionBytes;
use crate::regs::X86_64Registers;
use iced_x86::{Instruction, Mnemonic, OpKind};

/// How a load's value is widened into its destination register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// Same width (`MOV`).
    None,
    /// Zero-extended (`MOVZX`).
    Zero,
    /// Sign-extended (`MOVSX`, `MOVSXD`).
    Sign,
}

/// The memory access an instruction makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioAccess {
    /// A load of `size` bytes into `dest`.
    Read {
        /// Bytes read: 1, 2, 4 or 8.
        size: u8,
        /// The destination register.
        dest: GprRef,
        /// How the value is widened.
        extension: Extension,
    },
    /// A store of the first `size` bytes of `data`.
    Write {
        /// Bytes written: 1, 2, 4 or 8.
        size: u8,
        /// The value, little-endian.
        data: [u8; 8],
    },
}

/// A decoded MMIO instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedMmio {
    /// The access.
    pub access: MmioAccess,
    /// Instruction length in bytes (RIP advances by this once it completes).
    pub len: u64,
}

/// Why an MMIO instruction could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmioDecodeError {
    /// The bytes are not a valid instruction (or are cut short).
    #[error("MMIO instruction bytes [{bytes}] do not decode in {bitness}-bit mode")]
    Undecodable {
        /// The bytes.
        bytes: InstructionBytes,
        /// The CPU mode.
        bitness: u32,
    },
    /// A valid instruction this emulator does not handle.
    #[error(
        "MMIO by `{mnemonic}` (bytes [{bytes}]) is not emulated: only MOV/MOVZX/MOVSX/MOVSXD are"
    )]
    Unsupported {
        /// The instruction's mnemonic.
        mnemonic: String,
        /// The bytes.
        bytes: InstructionBytes,
    },
    /// The mode is not 16, 32 or 64.
    #[error("invalid CPU mode: {bitness}-bit")]
    BadMode {
        /// The value given.
        bitness: u32,
    },
}

fn memory_operand(insn: &Instruction) -> Option<u32> {
    (0..insn.op_count()).find(|i| insn.op_kind(*i) == OpKind::Memory)
}

/// Decodes the instruction in `bytes` (executed in `bitness`-bit mode) that
/// touched MMIO. For stores the value comes from `regs`.
pub fn decode_mmio(
    bytes: &[u8],
    bitness: u32,
    regs: &X86_64Registers,
) -> Result<DecodedMmio, MmioDecodeError> {
    let insn = decode(bytes, bitness, regs.rip).map_err(|e| match e {
        DecodeFailure::BadMode { bitness } => MmioDecodeError::BadMode { bitness },
        DecodeFailure::Truncated { .. } | DecodeFailure::Invalid(_) => {
            MmioDecodeError::Undecodable {
                bytes: InstructionBytes::new(bytes),
                bitness,
            }
        }
    })?;
    let unsupported = || MmioDecodeError::Unsupported {
        mnemonic: mnemonic_name(insn.mnemonic()),
        bytes: InstructionBytes::new(&bytes[..insn.len().min(bytes.len())]),
    };
    let extension = match insn.mnemonic() {
        Mnemonic::Mov => Extension::None,
        Mnemonic::Movzx => Extension::Zero,
        Mnemonic::Movsx | Mnemonic::Movsxd => Extension::Sign,
        _ => return Err(unsupported()),
    };
    let mem = memory_operand(&insn).ok_or_else(unsupported)?;
    let size = u8::try_from(insn.memory_size().size())
        .ok()
        .filter(|s| matches!(s, 1 | 2 | 4 | 8))
        .ok_or_else(unsupported)?;
    let len = insn.len() as u64;
    let access = if mem == 0 {
        if extension != Extension::None || insn.op_count() != 2 {
            return Err(unsupported());
        }
        let value = operand_value(&insn, 1, regs).ok_or_else(unsupported)?;
        MmioAccess::Write {
            size,
            data: value.to_le_bytes(),
        }
    } else {
        let dest = register_operand(&insn, 0).ok_or_else(unsupported)?;
        MmioAccess::Read {
            size,
            dest,
            extension,
        }
    };
    Ok(DecodedMmio { access, len })
}

impl DecodedMmio {
    /// Completes a read: puts the `data` the device returned into the
    /// destination register (widened as decoded) and advances RIP; for a
    /// write only RIP advances. `data` shorter than the access reads as zeroes.
    pub fn complete(&self, regs: &mut X86_64Registers, data: &[u8]) {
        if let MmioAccess::Read {
            size,
            dest,
            extension,
        } = self.access
        {
            let size = usize::from(size).min(8);
            let mut bytes = [0u8; 8];
            let n = size.min(data.len());
            bytes[..n].copy_from_slice(&data[..n]);
            let raw = u64::from_le_bytes(bytes);
            let value = match extension {
                Extension::Sign if size < 8 => {
                    let shift = 64 - 8 * size as u32;
                    (((raw << shift) as i64) >> shift) as u64
                }
                _ => raw,
            };
            dest.write(regs, value);
        }
        regs.rip = regs.rip.wrapping_add(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> X86_64Registers {
        X86_64Registers {
            rax: 0x1122_3344_5566_7788,
            rbx: 0xffff_ffff_ffff_ffff,
            rcx: 0xaaaa_aaaa_aaaa_aaaa,
            r9: 0x0102_0304_0506_0708,
            rip: 0x1000,
            ..X86_64Registers::default()
        }
    }

    #[test]
    fn mov_store_from_register() {
        // mov [rdi], eax
        let d = decode_mmio(&[0x89, 0x07], 64, &regs()).unwrap();
        assert_eq!(d.len, 2);
        let MmioAccess::Write { size, data } = d.access else {
            panic!("{d:?}")
        };
        assert_eq!(size, 4);
        assert_eq!(&data[..4], &[0x88, 0x77, 0x66, 0x55]);
        // mov [rdi], r9 (REX.W + REX.R)
        let d = decode_mmio(&[0x4c, 0x89, 0x0f], 64, &regs()).unwrap();
        assert_eq!(
            d.access,
            MmioAccess::Write {
                size: 8,
                data: regs().r9.to_le_bytes()
            }
        );
        // mov [rdi], ah
        let d = decode_mmio(&[0x88, 0x27], 64, &regs()).unwrap();
        assert!(matches!(d.access, MmioAccess::Write { size: 1, data } if data[0] == 0x77));
    }

    #[test]
    fn mov_store_immediate_and_moffs() {
        // mov dword [rdi], 0x12345678
        let d = decode_mmio(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], 64, &regs()).unwrap();
        assert_eq!(d.len, 6);
        assert!(
            matches!(d.access, MmioAccess::Write { size: 4, data } if data[..4] == [0x78, 0x56, 0x34, 0x12])
        );
        // mov byte [rdi], 0xab
        let d = decode_mmio(&[0xc6, 0x07, 0xab], 64, &regs()).unwrap();
        assert!(matches!(d.access, MmioAccess::Write { size: 1, data } if data[0] == 0xab));
        // mov [0xfee000b0], eax in 32-bit mode (moffs form A3)
        let d = decode_mmio(&[0xa3, 0xb0, 0x00, 0xe0, 0xfe], 32, &regs()).unwrap();
        assert_eq!(d.len, 5);
        assert!(matches!(d.access, MmioAccess::Write { size: 4, .. }));
    }

    #[test]
    fn mov_load_merges_by_width() {
        // mov eax, [rsi]: 32-bit destination zeroes the upper half
        let d = decode_mmio(&[0x8b, 0x06], 64, &regs()).unwrap();
        let mut r = regs();
        d.complete(&mut r, &[1, 2, 3, 4]);
        assert_eq!(r.rax, 0x0403_0201);
        assert_eq!(r.rip, 0x1002);
        // mov cx, [rsi] (operand-size prefix): merges the low 16 bits
        let d = decode_mmio(&[0x66, 0x8b, 0x0e], 64, &regs()).unwrap();
        let mut r = regs();
        d.complete(&mut r, &[0x34, 0x12]);
        assert_eq!(r.rcx, 0xaaaa_aaaa_aaaa_1234);
        assert_eq!(r.rip, 0x1003);
        // mov al, [rsi]
        let d = decode_mmio(&[0x8a, 0x06], 64, &regs()).unwrap();
        let mut r = regs();
        d.complete(&mut r, &[0xee]);
        assert_eq!(r.rax, 0x1122_3344_5566_77ee);
    }

    #[test]
    fn movzx_and_movsx_widen() {
        // movzx eax, byte [rsi]
        let d = decode_mmio(&[0x0f, 0xb6, 0x06], 64, &regs()).unwrap();
        assert!(matches!(
            d.access,
            MmioAccess::Read {
                size: 1,
                extension: Extension::Zero,
                ..
            }
        ));
        let mut r = regs();
        d.complete(&mut r, &[0x80]);
        assert_eq!(r.rax, 0x80);
        // movsx rbx, word [rsi]
        let d = decode_mmio(&[0x48, 0x0f, 0xbf, 0x1e], 64, &regs()).unwrap();
        let mut r = regs();
        r.rbx = 0;
        d.complete(&mut r, &[0x00, 0x80]);
        assert_eq!(r.rbx, 0xffff_ffff_ffff_8000);
        // movsxd rcx, dword [rsi]
        let d = decode_mmio(&[0x48, 0x63, 0x0e], 64, &regs()).unwrap();
        let mut r = regs();
        d.complete(&mut r, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.rcx, u64::MAX);
    }

    #[test]
    fn refuses_read_modify_write_and_garbage() {
        // or dword [rdi], 1
        let err = decode_mmio(&[0x83, 0x0f, 0x01], 64, &regs()).unwrap_err();
        assert!(
            matches!(&err, MmioDecodeError::Unsupported { mnemonic, .. } if mnemonic == "or"),
            "{err}"
        );
        assert!(err.to_string().contains("83 0f 01"), "{err}");
        // mov eax, ebx: no memory operand
        assert!(matches!(
            decode_mmio(&[0x89, 0xd8], 64, &regs()),
            Err(MmioDecodeError::Unsupported { .. })
        ));
        // truncated instruction
        assert!(matches!(
            decode_mmio(&[0xc7, 0x07, 0x78], 64, &regs()),
            Err(MmioDecodeError::Undecodable { .. })
        ));
        assert!(matches!(
            decode_mmio(&[], 64, &regs()),
            Err(MmioDecodeError::Undecodable { .. })
        ));
        assert_eq!(
            decode_mmio(&[0x89, 0x07], 48, &regs()),
            Err(MmioDecodeError::BadMode { bitness: 48 })
        );
    }

    #[test]
    fn short_completion_data_reads_as_zero() {
        let d = decode_mmio(&[0x48, 0x8b, 0x06], 64, &regs()).unwrap();
        let mut r = regs();
        d.complete(&mut r, &[0x55]);
        assert_eq!(r.rax, 0x55);
    }
}
