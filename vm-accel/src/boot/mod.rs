//! The initial state a vCPU starts a guest kernel in, filled in by the
//! platform code and applied with [`Vcpu::apply_boot_state`](crate::Vcpu::apply_boot_state).

pub mod x86_64;

use crate::regs::GuestArch;
use vm_memory::GuestAddress;

/// Where and how a vCPU enters the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    /// x86-64 Linux 64-bit boot protocol on the boot vCPU: long mode with the
    /// identity-mapped page tables and GDT of [`x86_64`] set up by the backend,
    /// `rip = entry`, `rsi = boot_params`, `rsp = rbp = stack`, interrupts off.
    X86_64Linux {
        /// 64-bit entry point (e.g. vmlinux's `startup_64` or bzImage + 0x200).
        entry: GuestAddress,
        /// The `boot_params` ("zero page").
        boot_params: GuestAddress,
        /// Initial stack pointer (see [`x86_64::BOOT_STACK_POINTER`]).
        stack: GuestAddress,
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
            Self::Riscv64 { .. } => GuestArch::Riscv64,
            Self::Secondary { arch } => *arch,
        }
    }
}
