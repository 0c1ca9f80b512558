//! The accelerator layer: [`Accelerator`] (probe and create a VM), [`Vm`]
//! (guest memory, IRQ lines, vCPU creation) and [`Vcpu`] (`run()` and register
//! access), with hardware backends selected by the build target — KVM on
//! Linux (`kvm` module), Hypervisor.framework on macOS (`hvf`), the Windows
//! Hypervisor Platform on Windows (`whpx`). The HVF and WHPX backends are
//! type-checked on Linux for their targets but have not been run; their
//! OS-independent logic (exit decoding, the x86 instruction emulator, the
//! userspace ioeventfd/irqfd/PSCI) is unit-tested everywhere.
//!
//! Where this crate sits among the others, and a guest boot followed through
//! all of them: `docs/ARCHITECTURE.md` in the repository.
//!
//! The software engine in `vm-cross-arch` implements the same `Vcpu` trait, so
//! the executors in `vm-service` drive hardware and software vCPUs alike. The
//! register and boot-state types ([`regs`], [`boot`]) are plain data compiled on
//! every host for the same reason.
//!
//! ```
//! use vm_accel::{detect, VmOptions};
//!
//! match detect() {
//!     Ok(found) => {
//!         let vm = found.accelerator.create_vm(&VmOptions::default()).expect("create VM");
//!         println!("{} VM for {}", found.accelerator.kind(), vm.arch());
//!     }
//!     // No usable hypervisor: the error lists why each candidate was rejected.
//!     Err(e) => println!("{e}"),
//! }
//! ```

#![deny(missing_docs)]

mod accelerator;
pub mod boot;
mod cpu_template;
pub mod debug;
// The hypervisor ABIs and exit decoding of HVF and WHPX, and what those
// backends do in the VMM process that KVM does in the kernel (ioeventfd,
// irqfd, PSCI, thread-bound vCPUs): used only by the macOS and Windows
// backends, compiled and unit-tested on every host.
mod decode;
mod error;
mod exit;
pub mod host_profile;
#[cfg_attr(not(any(target_os = "macos", target_os = "windows")), allow(dead_code))]
mod ioevent_table;
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod irqfd_relay;
mod kick;
mod memory;
mod notifier;
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod psci;
pub mod regs;
pub mod state;
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod thread_bound;
mod vcpu;
mod vm;
// The x86 instruction emulator: each build uses its part of it (the WHPX
// exit completion on Windows, the KVM fallback on x86_64 Linux).
#[allow(dead_code)]
mod x86_emulator;

#[cfg(target_os = "macos")]
pub mod hvf;
#[cfg(target_os = "linux")]
pub mod kvm;
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod no_backend;
#[cfg(target_os = "windows")]
pub mod whpx;

pub use accelerator::{detect, Accelerator, AcceleratorKind, Detected, Unavailable};
pub use boot::BootState;
pub use cpu_template::{CpuTemplate, CpuidEdit, CpuidRegister};
pub use debug::{DebugRegister, DebugStop, GuestDebug, WatchKind, Watchpoint, X86_64FpuRegisters};
pub use error::AccelError;
pub use exit::{
    InstructionBytes, InternalError, InternalErrorKind, RiscvSbiCall, SystemEvent, VcpuExit,
    EXIT_TRACE_TARGET,
};
pub use host_profile::{FallbackGroup, HostProfile, HostProfileError, HOST_PROFILE_ENV};
pub use kick::{Kick, KickFlag, KickHandle};
pub use memory::{MemorySlot, MemorySlots};
pub use notifier::EventNotifier;
pub use regs::{GuestArch, Registers};
pub use state::{VcpuState, VmState};
pub use vcpu::{state_summary, Vcpu, VcpuId};
pub use vm::{IoEventAddress, IoEventMatch, IrqLine, Vm, VmOptions};
pub use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

/// The backend probes for this host, best first.
fn platform_probes() -> &'static [accelerator::Probe] {
    #[cfg(target_os = "linux")]
    return kvm::probes();
    #[cfg(target_os = "macos")]
    return hvf::probes();
    #[cfg(target_os = "windows")]
    return whpx::probes();
    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
    return no_backend::probes();
}
