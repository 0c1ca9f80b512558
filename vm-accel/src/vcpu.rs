//! The `Vcpu` trait: run a virtual CPU and access its registers.

use crate::boot::BootState;
use crate::error::AccelError;
use crate::exit::VcpuExit;
use crate::kick::KickHandle;
use crate::regs::{GuestArch, Registers, X86_64SpecialRegisters};
use std::fmt;

/// A vCPU index within its VM (the x86 APIC id, arm64 MPIDR affinity, riscv hart id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VcpuId(pub u32);

impl fmt::Display for VcpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vcpu{}", self.0)
    }
}

/// One virtual CPU, hardware-backed or interpreted. Driven by one thread at a
/// time (`Send`, not `Sync`); other threads stop it through a [`KickHandle`].
/// `Any`, so a VMM can reach the engine's own type where the trait has no
/// word for what it needs (snapshot state capture).
pub trait Vcpu: Send + fmt::Debug + std::any::Any {
    /// This vCPU's id.
    fn id(&self) -> VcpuId;

    /// Its architecture.
    fn arch(&self) -> GuestArch;

    /// Runs the guest until it needs the VMM. Data of `IoIn`/`MmioRead` exits
    /// is filled in by the caller and consumed by the next `run()`.
    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError>;

    /// A handle other threads use to force `run()` to return `Interrupted`.
    fn kick_handle(&self) -> KickHandle;

    /// Reads the general-purpose registers.
    fn registers(&self) -> Result<Registers, AccelError>;

    /// Writes the general-purpose registers (must match [`Vcpu::arch`]).
    fn set_registers(&mut self, regs: &Registers) -> Result<(), AccelError>;

    /// Reads the x86-64 system registers; other architectures refuse.
    fn x86_64_special_registers(&self) -> Result<X86_64SpecialRegisters, AccelError> {
        Err(AccelError::ArchMismatch {
            what: "x86_64 special registers",
            given: GuestArch::X86_64,
            vcpu: self.arch(),
        })
    }

    /// Writes the x86-64 system registers; other architectures refuse.
    fn set_x86_64_special_registers(
        &mut self,
        sregs: &X86_64SpecialRegisters,
    ) -> Result<(), AccelError> {
        let _ = sregs;
        Err(AccelError::ArchMismatch {
            what: "x86_64 special registers",
            given: GuestArch::X86_64,
            vcpu: self.arch(),
        })
    }

    /// Puts the vCPU into the state a kernel expects at entry (see [`BootState`]),
    /// writing any boot tables into guest memory the backend needs.
    fn apply_boot_state(&mut self, boot: &BootState) -> Result<(), AccelError>;
}
