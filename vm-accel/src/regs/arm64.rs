//! AArch64 core registers (the `KVM_REG_ARM_CORE` set).

/// AArch64 core registers: X0..X30, SP_EL0, PC, PSTATE and the EL1 banked SP/ELR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arm64CoreRegisters {
    /// X0..X30.
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    /// Program counter.
    pub pc: u64,
    /// PSTATE (SPSR format).
    pub pstate: u64,
    /// SP_EL1.
    pub sp_el1: u64,
    /// ELR_EL1.
    pub elr_el1: u64,
}
