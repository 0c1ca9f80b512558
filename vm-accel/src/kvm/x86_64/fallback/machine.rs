//! The machine the fallback emulates on: general registers and flags
//! ([`CpuState`]), and a [`Guest`] that translates linear addresses and
//! reaches guest-physical memory, SSE state and XCR0. The KVM vCPU is one
//! `Guest`; the unit tests' in-memory model is another.

use crate::x86_emulator::gpr::GprRef;
use crate::x86_emulator::{mnemonic_name, operand_value, write_register};
use iced_x86::{Instruction, OpKind, Register};

/// RFLAGS bits the fallback reads or writes.
pub(super) mod flags {
    pub const CF: u64 = 1 << 0;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const OF: u64 = 1 << 11;
    pub const AC: u64 = 1 << 18;
}

const PAGE: u64 = 4096;

/// Why the fallback could not emulate an instruction. The vCPU is left as it
/// was (registers unchanged), and the VMM gets the internal error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FallbackError {
    /// The vCPU is not in 64-bit mode.
    #[error("the instruction fallback runs 64-bit code only")]
    NotLongMode,
    /// The bytes at RIP do not decode.
    #[error("the bytes at RIP do not decode: {0}")]
    Undecodable(String),
    /// The instruction is not emulated, or its group is not enabled.
    #[error("{mnemonic} is not emulated by the fallback{why}")]
    Unsupported {
        /// The mnemonic.
        mnemonic: String,
        /// More detail (e.g. the disabled group or the operand form).
        why: String,
    },
    /// A linear address has no valid translation (a #PF the fallback does not inject).
    #[error("linear address {gva:#x} is not mapped (page fault not injected)")]
    NotMapped {
        /// The linear address.
        gva: u64,
    },
    /// A write to a read-only page.
    #[error("linear address {gva:#x} is not writable (page fault not injected)")]
    NotWritable {
        /// The linear address.
        gva: u64,
    },
    /// A guest-physical range outside guest RAM.
    #[error("guest-physical {gpa:#x} + {len} bytes is outside guest RAM")]
    OutsideRam {
        /// The guest-physical address.
        gpa: u64,
        /// The access length.
        len: usize,
    },
    /// A misaligned operand where the instruction requires alignment (#GP not injected).
    #[error("{mnemonic}: operand at {gva:#x} is not {align}-byte aligned (#GP not injected)")]
    Misaligned {
        /// The mnemonic.
        mnemonic: String,
        /// The linear address.
        gva: u64,
        /// The alignment required.
        align: u64,
    },
    /// The instruction faults on real hardware with these operands (not injected).
    #[error("{mnemonic} would fault: {why} (exception not injected)")]
    WouldFault {
        /// The mnemonic.
        mnemonic: String,
        /// Why.
        why: String,
    },
    /// A KVM ioctl failed.
    #[error("{what}: {error}")]
    Hypervisor {
        /// The ioctl.
        what: &'static str,
        /// The OS error, as text.
        error: String,
    },
}

/// SSE state: the 16 XMM registers and MXCSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SseState {
    /// XMM0..XMM15, little-endian lanes.
    pub xmm: [u128; 16],
    /// MXCSR.
    pub mxcsr: u32,
}

/// What the guest offers the fallback besides the general registers.
pub trait Guest {
    /// The guest-physical address of linear address `gva`, for a read or a write.
    fn translate(&mut self, gva: u64, write: bool) -> Result<u64, FallbackError>;
    /// Reads guest-physical memory, failing outside guest RAM.
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), FallbackError>;
    /// Writes guest-physical memory, failing outside guest RAM.
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), FallbackError>;
    /// The SSE state (loaded on first use; written back if changed).
    fn sse(&mut self) -> Result<&mut SseState, FallbackError>;
    /// XCR0.
    fn xcr0(&mut self) -> Result<u64, FallbackError>;
}

/// The general-purpose state the fallback works on, in iced-x86's register
/// order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuState {
    /// General registers.
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// Current privilege level.
    pub cpl: u8,
    /// FS base (64-bit mode).
    pub fs_base: u64,
    /// GS base (64-bit mode).
    pub gs_base: u64,
}

impl CpuState {
    /// The value of a general register of any width (AH..BH included).
    pub fn reg(&self, reg: Register) -> Option<u64> {
        GprRef::from_iced(reg).map(|r| r.read(&self.gpr))
    }

    /// Writes a general register with x86-64 semantics: 32-bit writes
    /// zero-extend, 8/16-bit writes merge.
    pub fn set_reg(&mut self, reg: Register, value: u64) -> Option<()> {
        GprRef::from_iced(reg)?.write(&mut self.gpr, value);
        Some(())
    }

    /// Sets or clears the RFLAGS bits in `mask`.
    pub fn set_flag(&mut self, mask: u64, on: bool) {
        if on {
            self.rflags |= mask;
        } else {
            self.rflags &= !mask;
        }
    }
}

/// Reads `buf.len()` bytes at linear address `gva`, page by page.
pub(super) fn read_virt(g: &mut dyn Guest, gva: u64, buf: &mut [u8]) -> Result<(), FallbackError> {
    let mut done = 0;
    while done < buf.len() {
        let at = gva.wrapping_add(done as u64);
        let chunk = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
        let gpa = g.translate(at, false)?;
        g.read_phys(gpa, &mut buf[done..done + chunk])?;
        done += chunk;
    }
    Ok(())
}

/// Writes `data` at linear address `gva`, translating every page before the
/// first byte is written, so a fault leaves memory unchanged.
pub(super) fn write_virt(g: &mut dyn Guest, gva: u64, data: &[u8]) -> Result<(), FallbackError> {
    let mut pieces = Vec::with_capacity(2);
    let mut done = 0;
    while done < data.len() {
        let at = gva.wrapping_add(done as u64);
        let chunk = ((PAGE - at % PAGE) as usize).min(data.len() - done);
        pieces.push((g.translate(at, true)?, done, chunk));
        done += chunk;
    }
    for (gpa, from, len) in pieces {
        g.write_phys(gpa, &data[from..from + len])?;
    }
    Ok(())
}

/// One instruction being emulated: the CPU state, the guest, the decoded instruction.
pub(super) struct Exec<'a> {
    pub cpu: &'a mut CpuState,
    pub guest: &'a mut dyn Guest,
    pub insn: &'a Instruction,
}

impl Exec<'_> {
    pub fn mnemonic(&self) -> String {
        mnemonic_name(self.insn.mnemonic())
    }

    pub fn unsupported(&self, why: &str) -> FallbackError {
        FallbackError::Unsupported {
            mnemonic: self.mnemonic(),
            why: format!(" ({why})"),
        }
    }

    /// The linear address of memory operand `op`.
    pub fn address(&self, op: u32) -> Result<u64, FallbackError> {
        let cpu = &*self.cpu;
        self.insn
            .virtual_address(op, 0, |reg, _, _| match reg {
                Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
                Register::FS => Some(cpu.fs_base),
                Register::GS => Some(cpu.gs_base),
                other => cpu.reg(other),
            })
            .ok_or_else(|| self.unsupported("unusual memory operand"))
    }

    /// Checks the memory operand `op` is `align`-byte aligned.
    pub fn check_aligned(&self, op: u32, align: u64) -> Result<(), FallbackError> {
        let gva = self.address(op)?;
        if gva % align != 0 {
            return Err(FallbackError::Misaligned {
                mnemonic: self.mnemonic(),
                gva,
                align,
            });
        }
        Ok(())
    }

    pub fn read_mem(&mut self, op: u32, size: usize) -> Result<u128, FallbackError> {
        let gva = self.address(op)?;
        let mut buf = [0u8; 16];
        read_virt(self.guest, gva, &mut buf[..size])?;
        Ok(u128::from_le_bytes(buf))
    }

    pub fn write_mem(&mut self, op: u32, size: usize, value: u128) -> Result<(), FallbackError> {
        let gva = self.address(op)?;
        write_virt(self.guest, gva, &value.to_le_bytes()[..size])
    }

    /// Reads integer operand `op` (register, memory or immediate) of `size` bytes.
    pub fn read_int(&mut self, op: u32, size: usize) -> Result<u64, FallbackError> {
        match self.insn.op_kind(op) {
            OpKind::Memory => Ok(self.read_mem(op, size)? as u64),
            OpKind::Register => operand_value(self.insn, op, &self.cpu.gpr).ok_or_else(|| {
                self.unsupported(&format!("register {:?}", self.insn.op_register(op)))
            }),
            other => operand_value(self.insn, op, &self.cpu.gpr)
                .ok_or_else(|| self.unsupported(&format!("operand kind {other:?}"))),
        }
    }

    /// Writes integer operand `op` (register or memory) of `size` bytes.
    pub fn write_int(&mut self, op: u32, size: usize, value: u64) -> Result<(), FallbackError> {
        match self.insn.op_kind(op) {
            OpKind::Register => {
                write_register(self.insn, op, &mut self.cpu.gpr, value).ok_or_else(|| {
                    self.unsupported(&format!("register {:?}", self.insn.op_register(op)))
                })
            }
            OpKind::Memory => self.write_mem(op, size, u128::from(value)),
            other => Err(self.unsupported(&format!("destination kind {other:?}"))),
        }
    }

    /// The size in bytes of operand `op`: its register's, or the memory operand's.
    pub fn op_size(&self, op: u32) -> usize {
        match self.insn.op_kind(op) {
            OpKind::Register => self.insn.op_register(op).size(),
            _ => self.insn.memory_size().size(),
        }
    }
}
