//! What a debugger (the gdb stub in `vm-service`) asks of a vCPU beyond
//! [`Vcpu::registers`](crate::Vcpu::registers): registers outside the general
//! set, guest-virtual memory, breakpoints and single-step. Engines that lack an
//! operation answer [`AccelError::Unsupported`](crate::AccelError::Unsupported)
//! (the `Vcpu` trait's default).

/// A register outside [`Registers`](crate::Registers), named by architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DebugRegister {
    /// riscv64 floating-point register `f0`..`f31` (raw 64-bit pattern).
    Riscv64Fpr(u8),
    /// riscv64 CSR by number (`fflags` = 0x001, `sstatus` = 0x100, ...).
    Riscv64Csr(u16),
}

/// How a vCPU should run under a debugger (applied until changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Stop before executing an instruction at any of these guest-virtual
    /// addresses (software and hardware breakpoints alike).
    pub breakpoints: Vec<u64>,
    /// Stop after one instruction (or after entering a trap handler).
    pub single_step: bool,
}

impl GuestDebug {
    /// True when the vCPU runs as if no debugger were attached.
    pub fn is_off(&self) -> bool {
        self.breakpoints.is_empty() && !self.single_step
    }
}
