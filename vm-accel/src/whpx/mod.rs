//! The Windows Hypervisor Platform backend (WHPX, x86_64 Windows).
//!
//! **Status: type-checked on Linux for `x86_64-pc-windows-msvc`, never
//! run.** No Windows machine was available where it was written. Its
//! OS-independent parts (instruction decoding, port-I/O stepping, exit and
//! bitfield tables in [`crate::decode`]) are unit-tested on every host. To
//! try it on Windows 10/11 with the "Windows Hypervisor Platform" feature
//! enabled, run the example that boots a tiny built-in guest:
//!
//! ```text
//! cargo run -p vm-accel --example hvf_whpx_smoke
//! ```
//!
//! # Design
//!
//! - **Run-time loading.** WinHvPlatform.dll is loaded with `LoadLibraryExA`
//!   on first use, so programs embedding this crate start on machines
//!   without the feature; [`detect`](crate::detect) then says what to enable.
//!   Detection also checks `WHvCapabilityCodeHypervisorPresent`.
//! - **MMIO and port I/O are decoded with `iced-x86`, not the WHvEmulator
//!   API.** WHvEmulator completes an access through synchronous callbacks
//!   made while it emulates; [`VcpuExit::MmioRead`](crate::VcpuExit::MmioRead)
//!   instead returns the access to the VMM and completes it on the next
//!   `run()`. Decoding ourselves fits that contract (decode, return the
//!   access, apply the result to the registers on the next `run()`), keeps
//!   the logic OS-independent so it is tested on Linux, and uses the
//!   workspace's existing x86 decoder. Supported MMIO instructions are
//!   `MOV`/`MOVZX`/`MOVSX`/`MOVSXD` (what Linux's MMIO accessors compile to);
//!   others end in a [`VcpuExit::InternalError`](crate::VcpuExit::InternalError)
//!   naming the instruction bytes. `IN`/`OUT` come decoded by WHPX;
//!   `INS`/`OUTS` (also with `REP`) are stepped one element per exit.
//! - **Threads.** WHPX vCPUs are not bound to a thread: `create_vcpu`
//!   creates the virtual processor at once. Kicks use
//!   `WHvCancelRunVirtualProcessor`.
//! - **CPU templates** are applied through CPUID exits: the partition traps
//!   `CPUID` for the leaves the template edits (`CpuidExitList`), and the
//!   backend applies the [`CpuTemplate`](crate::CpuTemplate) edits on top
//!   of the hypervisor's default result.
//! - **Interrupts.** The local APIC is emulated by WHPX (xAPIC mode) when the
//!   host offers it; there is no IOAPIC or PIC in WHPX, so `set_irq_line`
//!   (a GSI) and irqfd return typed errors. Use
//!   [`WhpxVm::request_interrupt`] to deliver a vector to a local APIC, as a
//!   userspace IOAPIC would.
//! - **Secondary vCPUs** start in WHPX's wait-for-SIPI state and are started
//!   by the guest's INIT/SIPI through the emulated local APIC.

mod api;
mod kick;
mod regs;
mod vcpu;
mod vm;

pub use vcpu::WhpxVcpu;
pub use vm::WhpxVm;

use crate::accelerator::{Accelerator, AcceleratorKind, Probe, Unavailable};
use crate::error::AccelError;
use crate::regs::GuestArch;
use crate::vm::{Vm, VmOptions};
use std::sync::Arc;
use windows_sys::Win32::System::Hypervisor::{
    WHvCapabilityCodeFeatures, WHvCapabilityCodeHypervisorPresent, WHV_CAPABILITY,
};

/// Bit of `WHV_CAPABILITY_FEATURES` saying the local APIC can be emulated.
const FEATURE_LOCAL_APIC_EMULATION: u64 = 1 << 1;

/// Most vCPUs one partition is configured with here (Hyper-V's own limit is higher).
const MAX_VCPUS: u32 = 64;

/// The Windows Hypervisor Platform.
#[derive(Debug)]
pub struct WhpxAccelerator {
    apic_emulation: bool,
}

fn capability(code: i32) -> Result<WHV_CAPABILITY, AccelError> {
    let api = api::api()?;
    // SAFETY: WHV_CAPABILITY is plain data for which all-zeroes is valid.
    let mut value: WHV_CAPABILITY = unsafe { std::mem::zeroed() };
    let mut written = 0u32;
    // SAFETY: the buffer and its size describe `value`; `written` is a valid out-pointer.
    let hr = unsafe {
        (api.WHvGetCapability)(
            code,
            (&raw mut value).cast(),
            std::mem::size_of::<WHV_CAPABILITY>() as u32,
            &raw mut written,
        )
    };
    api::check("WHvGetCapability", hr)?;
    Ok(value)
}

impl WhpxAccelerator {
    /// Loads WinHvPlatform.dll and checks that the hypervisor is present.
    pub fn new() -> Result<Self, AccelError> {
        // SAFETY: HypervisorPresent is the member this capability code fills.
        let present = unsafe { capability(WHvCapabilityCodeHypervisorPresent)?.HypervisorPresent };
        if present == 0 {
            return Err(AccelError::hypervisor(
                "probing the Windows Hypervisor Platform",
                std::io::Error::other(
                    "WHvCapabilityCodeHypervisorPresent is false: the hypervisor is not running \
                     (enable virtualisation in the firmware and the \"Windows Hypervisor Platform\" \
                     feature, then reboot)",
                ),
            ));
        }
        // SAFETY: Features is the member this capability code fills.
        let features = unsafe { capability(WHvCapabilityCodeFeatures)?.Features.AsUINT64 };
        Ok(Self {
            apic_emulation: features & FEATURE_LOCAL_APIC_EMULATION != 0,
        })
    }

    /// Creates a VM as the concrete WHPX type (see [`Accelerator::create_vm`]).
    pub fn create_whpx_vm(&self, config: &VmOptions) -> Result<WhpxVm, AccelError> {
        // The emulated local APIC is WHPX's in-kernel interrupt controller.
        WhpxVm::new(
            config,
            MAX_VCPUS,
            self.apic_emulation && config.in_kernel_irqchip,
        )
    }
}

impl Accelerator for WhpxAccelerator {
    fn kind(&self) -> AcceleratorKind {
        AcceleratorKind::Whpx
    }

    fn guest_arch(&self) -> GuestArch {
        GuestArch::X86_64
    }

    fn max_vcpus(&self) -> u32 {
        MAX_VCPUS
    }

    fn create_vm(&self, config: &VmOptions) -> Result<Arc<dyn Vm>, AccelError> {
        Ok(Arc::new(self.create_whpx_vm(config)?))
    }
}

fn probe() -> Result<Arc<dyn Accelerator>, Unavailable> {
    WhpxAccelerator::new()
        .map(|whpx| Arc::new(whpx) as Arc<dyn Accelerator>)
        .map_err(|e| Unavailable {
            kind: AcceleratorKind::Whpx,
            reason: e.to_string(),
        })
}

/// The probes for Windows hosts.
pub(crate) fn probes() -> &'static [Probe] {
    &[probe]
}
