//! Register state of the guest architectures, as plain data compiled on every
//! host: a software engine runs any guest architecture anywhere.

mod arm64;
mod riscv64;
mod x86_64;

pub use arm64::Arm64CoreRegisters;
pub use riscv64::{Riscv64CoreRegisters, RiscvPrivilege};
pub use x86_64::{X86DescriptorTable, X86Segment, X86_64Registers, X86_64SpecialRegisters};

use std::fmt;

/// A guest instruction-set architecture, chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestArch {
    /// x86-64 (Intel 64 / AMD64).
    X86_64,
    /// AArch64 (ARMv8-A and later).
    Arm64,
    /// RV64GC.
    Riscv64,
}

impl GuestArch {
    /// The architecture of the host this crate was built for, if it is one of ours.
    pub const fn host() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            Some(Self::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Self::Arm64)
        } else if cfg!(target_arch = "riscv64") {
            Some(Self::Riscv64)
        } else {
            None
        }
    }
}

impl fmt::Display for GuestArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
            Self::Riscv64 => "riscv64",
        })
    }
}

/// The general-purpose register file of a vCPU, for its architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registers {
    /// x86-64 general registers, RIP and RFLAGS.
    X86_64(X86_64Registers),
    /// AArch64 core registers.
    Arm64(Arm64CoreRegisters),
    /// RISC-V core registers.
    Riscv64(Riscv64CoreRegisters),
}

impl Registers {
    /// The architecture these registers belong to.
    pub fn arch(&self) -> GuestArch {
        match self {
            Self::X86_64(_) => GuestArch::X86_64,
            Self::Arm64(_) => GuestArch::Arm64,
            Self::Riscv64(_) => GuestArch::Riscv64,
        }
    }

    /// The program counter (RIP, PC).
    pub fn pc(&self) -> u64 {
        match self {
            Self::X86_64(r) => r.rip,
            Self::Arm64(r) => r.pc,
            Self::Riscv64(r) => r.pc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_report_arch_and_pc() {
        let regs = Registers::X86_64(X86_64Registers {
            rip: 0x1000,
            ..X86_64Registers::default()
        });
        assert_eq!(regs.arch(), GuestArch::X86_64);
        assert_eq!(regs.pc(), 0x1000);
        let rv = Registers::Riscv64(Riscv64CoreRegisters {
            pc: 0x8000_0000,
            ..Riscv64CoreRegisters::default()
        });
        assert_eq!(rv.arch(), GuestArch::Riscv64);
        assert_eq!(rv.pc(), 0x8000_0000);
        assert_eq!(GuestArch::Arm64.to_string(), "arm64");
    }
}
