//! The initial state a vCPU starts a guest kernel in, filled in by the
//! platform code and applied with [`Vcpu::apply_boot_state`](crate::Vcpu::apply_boot_state).

#[doc(hidden)]
pub mod test_support;
pub mod x86_64;

use crate::regs::{GuestArch, X86_64Registers};
use vm_memory::GuestAddress;
pub use x86_64::X86_64SystemRegisters;

/// Where and how a vCPU enters the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Built once per vCPU and copied around a handful of times: the x86 register
// values are kept inline so the state stays `Copy`.
#[allow(clippy::large_enum_variant)]
pub enum BootState {
    /// x86-64 boot vCPU entering 64-bit code (the Linux 64-bit boot
    /// protocol): the backend loads these registers as given. The GDT, IDT
    /// and page tables they point at are already in guest memory, written by
    /// the platform that chose their addresses.
    X86_64Linux {
        /// General registers, RIP and RFLAGS (for Linux: `rip` = the 64-bit
        /// entry, `rsi` = the zero page, `rsp` = `rbp` = the stack).
        regs: X86_64Registers,
        /// Descriptor tables, segments and control registers.
        system: X86_64SystemRegisters,
    },
    /// arm64 Linux boot protocol: EL1h with interrupts masked, `pc = entry`,
    /// `x0 = fdt`, x1..x3 zero.
    Arm64Linux {
        /// Kernel image entry.
        entry: GuestAddress,
        /// Device tree blob.
        fdt: GuestAddress,
    },
    /// riscv64 (Linux or firmware) entry in S-mode: `pc = entry`, `a0 = hart_id`,
    /// `a1 = fdt`.
    Riscv64 {
        /// Entry point.
        entry: GuestAddress,
        /// This hart's id.
        hart_id: u64,
        /// Device tree blob.
        fdt: GuestAddress,
    },
    /// A bare-metal riscv64 program (the riscv-tests convention) entered in
    /// M-mode at `entry`, with no firmware; its write of a non-zero value to
    /// `tohost` ends it (1: passed, `(n << 1) | 1`: test `n` failed). Only the
    /// software engine runs these.
    Riscv64Bare {
        /// Entry point.
        entry: GuestAddress,
        /// Address of the program's `tohost` symbol, if it has one.
        tohost: Option<GuestAddress>,
    },
    /// A secondary vCPU that waits to be started by the boot vCPU
    /// (x86 INIT/SIPI, arm64 PSCI `CPU_ON`, riscv64 SBI HSM `hart_start`).
    Secondary {
        /// Architecture of the vCPU.
        arch: GuestArch,
    },
}

impl BootState {
    /// The architecture this state is for.
    pub fn arch(&self) -> GuestArch {
        match self {
            Self::X86_64Linux { .. } => GuestArch::X86_64,
            Self::Arm64Linux { .. } => GuestArch::Arm64,
            Self::Riscv64 { .. } | Self::Riscv64Bare { .. } => GuestArch::Riscv64,
            Self::Secondary { arch } => *arch,
        }
    }
}
