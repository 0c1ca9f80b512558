//! RISC-V 64 core registers (the `KVM_REG_RISCV_CORE` set).

/// The privilege mode a hart is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RiscvPrivilege {
    /// User mode.
    User,
    /// Supervisor mode (where a kernel starts).
    #[default]
    Supervisor,
    /// Machine mode (software engines only; KVM guests never run in M-mode).
    Machine,
}

/// RISC-V core registers: PC, x0..x31 (x0 reads as zero) and the privilege mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Riscv64CoreRegisters {
    /// Program counter.
    pub pc: u64,
    /// x0..x31 by number (x1 = ra, x2 = sp, x10 = a0, ...). x0 is ignored on write.
    pub x: [u64; 32],
    /// Current privilege mode.
    pub mode: RiscvPrivilege,
}
