//! The riscv64 interpreter's saved hart ([`HartState`]), as plain data: the
//! interpreter (in `vm-cross-arch`) fills it and checks it on restore; it is
//! defined here so that [`super::VcpuState`] is the one saved-vCPU type of
//! every engine.

use serde::{Deserialize, Serialize};

/// The CSR file of one hart (the interpreter's live CSR file is this type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // The field names are the CSRs the RISC-V privileged spec names.
pub struct Csrs {
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// Software-writable pending bits (SSIP, STIP, SEIP); device lines are ORed in on read.
    pub mip: u64,
    pub mtvec: u64,
    pub mcounteren: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub menvcfg: u64,
    pub mcountinhibit: u64,
    pub stvec: u64,
    pub scounteren: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub senvcfg: u64,
    pub satp: u64,
    pub fflags: u64,
    pub frm: u64,
    pub pmpcfg: [u64; 16],
    pub pmpaddr: Vec<u64>,
    /// Added to the instruction count for `mcycle`/`minstret` writes.
    pub cycle_offset: u64,
    pub instret_offset: u64,
    /// Values of `mcycle`/`minstret` while `mcountinhibit` stops them.
    pub cycle_frozen: u64,
    pub instret_frozen: u64,
    /// Sstc supervisor timer compare.
    pub stimecmp: u64,
}

/// An MMIO load that exited to the VMM and completes on the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioLoadState {
    /// Destination register.
    pub rd: u8,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// Zero-extended rather than sign-extended.
    pub unsigned: bool,
    /// An FP register rather than an integer one.
    pub fp: bool,
    /// Bytes the VMM was asked for.
    pub len: u8,
}

/// One hart of the riscv64 interpreter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HartState {
    /// Hart id.
    pub id: u32,
    /// Integer registers (`x0` is always zero).
    pub x: [u64; 32],
    /// FP registers (NaN-boxed bit patterns).
    pub f: [u64; 32],
    /// Program counter.
    pub pc: u64,
    /// Privilege mode (0 U, 1 S, 3 M).
    pub mode: u8,
    /// The CSR file.
    pub csr: Csrs,
    /// Instructions retired (the base of `cycle`/`instret`).
    pub instret: u64,
    /// LR reservation: guest physical address and the value loaded.
    pub reservation: Option<(u64, u64)>,
    /// The built-in SBI is this hart's firmware.
    pub sbi: bool,
    /// The SBI timer's compare value.
    pub sbi_timecmp: u64,
    /// The MMIO data buffer.
    pub mmio_buf: [u8; 8],
    /// An MMIO load waiting for its data.
    pub mmio_load: Option<MmioLoadState>,
    /// SBI console bytes not yet given to the UART.
    pub console: Vec<u8>,
    /// `tohost` address of a test program.
    pub tohost: Option<u64>,
    /// Sleeping in `wfi`.
    pub waiting: bool,
    /// `mip` bits other harts posted (IPIs) and not yet taken.
    pub ipi: u64,
    /// Remote fence requests not yet taken.
    pub requests: u32,
    /// SBI HSM state (started, stopped, start pending).
    pub hsm: u8,
    /// `hart_start` address.
    pub start_addr: u64,
    /// `hart_start` opaque argument.
    pub start_arg: u64,
}
