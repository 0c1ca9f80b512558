//! Register state of the guest architectures, as plain data compiled on every
//! host: a software engine runs any guest architecture anywhere.

mod arm64;
mod riscv64;
mod x86_64;

pub use arm64::Arm64CoreRegisters;
pub use riscv64::{Riscv64CoreRegisters, RiscvPrivilege};
pub use x86_64::{X86DescriptorTable, X86Segment, X86_64Registers, X86_64SpecialRegisters};

/// A guest instruction-set architecture, chosen at run time (defined in
/// `vm-core`, so configuration, platform and accelerator share one type).
pub use vm_core::config::GuestArch;

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
