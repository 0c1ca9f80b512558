//! x86 port I/O completion for hypervisors that hand the VMM the raw access
//! (WHPX): `IN` results merged into `AL/AX/EAX`, and the string forms
//! (`INS`/`OUTS`, with or without `REP`) stepped one element per exit —
//! a `REP` string instruction is restartable, so leaving RIP on it until
//! the count reaches zero is exactly what the CPU would do.

use super::decode;
use super::gpr::GprRef;
use crate::exit::InstructionBytes;
use crate::regs::X86_64Registers;
use iced_x86::{Mnemonic, OpKind, Register};

/// Completes a non-string `IN` of `size` bytes: the value goes to
/// AL/AX/EAX (an `EAX` write zeroes the upper half of RAX).
pub fn complete_in(regs: &mut X86_64Registers, size: u8, data: &[u8]) {
    let mut bytes = [0u8; 4];
    let n = usize::from(size).min(4).min(data.len());
    bytes[..n].copy_from_slice(&data[..n]);
    let dest = GprRef {
        index: 0,
        size: size.clamp(1, 4),
        high_byte: false,
    };
    dest.write(regs, u64::from(u32::from_le_bytes(bytes)));
}

/// The first `size` bytes of RAX, as an `OUT` writes them.
pub fn out_data(rax: u64, size: u8) -> [u8; 4] {
    let mut out = [0u8; 4];
    let bytes = rax.to_le_bytes();
    let n = usize::from(size).min(4);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// Which segment a string operand uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// ES (the fixed destination of `INS`).
    Es,
    /// CS.
    Cs,
    /// SS.
    Ss,
    /// DS (the default source of `OUTS`).
    Ds,
    /// FS.
    Fs,
    /// GS.
    Gs,
}

/// A decoded `INS`/`OUTS` instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringIo {
    /// `INS` (port to memory) rather than `OUTS`.
    pub input: bool,
    /// Element size: 1, 2 or 4.
    pub size: u8,
    /// Address size in bytes (2, 4 or 8): the width of RSI/RDI and RCX used.
    pub address_size: u8,
    /// Segment of the memory operand.
    pub segment: Segment,
    /// `REP` prefix.
    pub rep: bool,
    /// Instruction length.
    pub len: u64,
}

/// Why a string I/O instruction could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port I/O instruction bytes [{bytes}] are not INS/OUTS in {bitness}-bit mode")]
pub struct StringIoError {
    /// The bytes.
    pub bytes: InstructionBytes,
    /// The CPU mode.
    pub bitness: u32,
}

fn segment_of(reg: Register) -> Segment {
    match reg {
        Register::ES => Segment::Es,
        Register::CS => Segment::Cs,
        Register::SS => Segment::Ss,
        Register::FS => Segment::Fs,
        Register::GS => Segment::Gs,
        _ => Segment::Ds,
    }
}

/// Decodes the `INS`/`OUTS` in `bytes`.
pub fn decode_string_io(bytes: &[u8], bitness: u32) -> Result<StringIo, StringIoError> {
    let error = || StringIoError {
        bytes: InstructionBytes::new(bytes),
        bitness,
    };
    let insn = decode(bytes, bitness, 0).map_err(|_| error())?;
    let (input, size) = match insn.mnemonic() {
        Mnemonic::Insb => (true, 1),
        Mnemonic::Insw => (true, 2),
        Mnemonic::Insd => (true, 4),
        Mnemonic::Outsb => (false, 1),
        Mnemonic::Outsw => (false, 2),
        Mnemonic::Outsd => (false, 4),
        _ => return Err(error()),
    };
    let mem_op = u32::from(!input);
    let address_size = match insn.op_kind(mem_op) {
        OpKind::MemoryESRDI | OpKind::MemorySegRSI => 8,
        OpKind::MemoryESEDI | OpKind::MemorySegESI => 4,
        OpKind::MemoryESDI | OpKind::MemorySegSI => 2,
        _ => return Err(error()),
    };
    Ok(StringIo {
        input,
        size,
        address_size,
        // INS always writes ES:[rDI]; OUTS reads DS:[rSI] unless overridden.
        segment: if input {
            Segment::Es
        } else {
            segment_of(insn.memory_segment())
        },
        rep: insn.has_rep_prefix(),
        len: insn.len() as u64,
    })
}

fn mask(address_size: u8) -> u64 {
    match address_size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl StringIo {
    /// The index register: RDI for `INS`, RSI for `OUTS`.
    fn index(&self) -> GprRef {
        GprRef {
            index: if self.input { 7 } else { 6 },
            size: self.address_size,
            high_byte: false,
        }
    }

    fn counter(&self) -> GprRef {
        GprRef {
            index: 1,
            size: self.address_size,
            high_byte: false,
        }
    }

    /// Elements left: RCX/ECX/CX for `REP`, else 1.
    pub fn remaining(&self, regs: &X86_64Registers) -> u64 {
        if self.rep {
            self.counter().read(regs)
        } else {
            1
        }
    }

    /// The offset (within [`StringIo::segment`]) of the current element.
    pub fn offset(&self, regs: &X86_64Registers) -> u64 {
        self.index().read(regs) & mask(self.address_size)
    }

    /// Moves to the next element after one was transferred: steps RSI/RDI by
    /// the element size (down when `RFLAGS.DF`), counts RCX down under `REP`,
    /// and advances RIP past the instruction once nothing is left.
    /// Returns true when the instruction is finished.
    pub fn step(&self, regs: &mut X86_64Registers) -> bool {
        const DF: u64 = 1 << 10;
        let index = self.index();
        let delta = u64::from(self.size);
        let next = if regs.rflags & DF != 0 {
            index.read(regs).wrapping_sub(delta)
        } else {
            index.read(regs).wrapping_add(delta)
        };
        index.write(regs, next & mask(self.address_size));
        let done = if self.rep {
            let left = self.counter().read(regs).saturating_sub(1);
            self.counter().write(regs, left);
            left == 0
        } else {
            true
        };
        if done {
            regs.rip = regs.rip.wrapping_add(self.len);
        }
        done
    }

    /// Skips an instruction with nothing to do (`REP` with a zero count).
    pub fn skip(&self, regs: &mut X86_64Registers) {
        regs.rip = regs.rip.wrapping_add(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_merges_into_al_ax_eax() {
        let mut r = X86_64Registers {
            rax: 0xffff_ffff_ffff_ffff,
            ..X86_64Registers::default()
        };
        complete_in(&mut r, 1, &[0x12]);
        assert_eq!(r.rax, 0xffff_ffff_ffff_ff12);
        complete_in(&mut r, 2, &[0x34, 0x12]);
        assert_eq!(r.rax, 0xffff_ffff_ffff_1234);
        complete_in(&mut r, 4, &[1, 2, 3, 4]);
        assert_eq!(r.rax, 0x0403_0201);
        complete_in(&mut r, 4, &[9]);
        assert_eq!(r.rax, 9, "short data reads as zeroes");
        assert_eq!(out_data(0x1122_3344, 2), [0x44, 0x33, 0, 0]);
    }

    #[test]
    fn decodes_ins_and_outs_forms() {
        // rep outsb in 64-bit mode
        let s = decode_string_io(&[0xf3, 0x6e], 64).unwrap();
        assert_eq!(
            s,
            StringIo {
                input: false,
                size: 1,
                address_size: 8,
                segment: Segment::Ds,
                rep: true,
                len: 2
            }
        );
        // insd with a 32-bit address size in 64-bit mode
        let s = decode_string_io(&[0x67, 0x6d], 64).unwrap();
        assert!(s.input && s.size == 4 && s.address_size == 4 && !s.rep);
        assert_eq!(s.segment, Segment::Es);
        // outsw with an FS override in 32-bit mode: 66 64 6f
        let s = decode_string_io(&[0x66, 0x64, 0x6f], 32).unwrap();
        assert_eq!((s.size, s.segment, s.address_size), (2, Segment::Fs, 4));
        let err = decode_string_io(&[0xee], 64).unwrap_err();
        assert!(err.to_string().contains("[ee]"), "{err}");
        assert!(decode_string_io(&[], 64).is_err());
    }

    #[test]
    fn rep_outs_steps_until_the_count_runs_out() {
        let s = decode_string_io(&[0xf3, 0x6e], 64).unwrap();
        let mut r = X86_64Registers {
            rsi: 0x2000,
            rcx: 2,
            rip: 0x100,
            ..X86_64Registers::default()
        };
        assert_eq!(s.remaining(&r), 2);
        assert_eq!(s.offset(&r), 0x2000);
        assert!(!s.step(&mut r));
        assert_eq!((r.rsi, r.rcx, r.rip), (0x2001, 1, 0x100));
        assert!(s.step(&mut r));
        assert_eq!((r.rsi, r.rcx, r.rip), (0x2002, 0, 0x102));
    }

    #[test]
    fn direction_flag_and_address_size_wrap() {
        // insw with a 16-bit address size (16-bit mode), DF set
        let s = decode_string_io(&[0x6d], 16).unwrap();
        assert_eq!((s.size, s.address_size), (2, 2));
        let mut r = X86_64Registers {
            rdi: 0xabcd_0000,
            rflags: 1 << 10,
            rip: 0x10,
            ..X86_64Registers::default()
        };
        assert!(s.step(&mut r));
        assert_eq!(r.rdi, 0xabcd_fffe, "DI wraps, the upper bits of RDI stay");
        assert_eq!(r.rip, 0x11);
        let mut z = X86_64Registers::default();
        let rep = decode_string_io(&[0xf3, 0x6c], 64).unwrap();
        assert_eq!(rep.remaining(&z), 0);
        rep.skip(&mut z);
        assert_eq!(z.rip, 2);
    }
}
