//! The Hypervisor.framework backend (macOS).
//!
//! **Status: type-checked on Linux for `aarch64-apple-darwin` and
//! `x86_64-apple-darwin`, never run.** No Mac was available where it was
//! written. Its OS-independent parts (syndrome decoding, PSCI, ABI tables in
//! [`crate::decode`]) are unit-tested on every host. To try it on an Apple
//! silicon Mac, run the example that boots a tiny built-in guest:
//!
//! ```text
//! cargo build -p vm-accel --example hvf_whpx_smoke
//! codesign --sign - --entitlements vm-accel/examples/hvf.entitlements --force \
//!     target/debug/examples/hvf_whpx_smoke
//! target/debug/examples/hvf_whpx_smoke
//! ```
//!
//! # Constraints, stated plainly
//!
//! - **Apple silicon only.** On Intel Macs Hypervisor.framework is a
//!   different, VMX-level API (VMCS fields, no instruction decoding or
//!   in-kernel devices); [`detect`](crate::detect) there reports HVF
//!   unavailable with that reason instead of pretending.
//! - **One VM per process.** Hypervisor.framework binds the VM to the
//!   process; a second `create_vm` fails with a typed error until the first
//!   VM and all its vCPUs are dropped.
//! - **The entitlement.** A process needs `com.apple.security.hypervisor`,
//!   or `hv_vm_create` returns `HV_DENIED` and detection says so. Sign any
//!   binary that embeds this crate with the plist in
//!   `vm-accel/examples/hvf.entitlements`:
//!   `codesign --sign - --entitlements hvf.entitlements --force <binary>`
//!   (ad-hoc signing is enough for local use; distribution needs a
//!   Developer ID identity and the same entitlement).
//!
//! # Executor contract: a vCPU belongs to the thread that runs it
//!
//! An HVF vCPU is bound to the thread that called `hv_vcpu_create`; every
//! `hv_vcpu_run`, register access and `hv_vcpu_destroy` must come from that
//! thread. [`Vm::create_vcpu`](crate::Vm::create_vcpu) therefore does not
//! create the hardware vCPU: it returns an [`HvfVcpu`] that is `Send` and is
//! created lazily by its **first `run()`**, on the calling thread, which
//! owns it from then on. Both executors in `vm-service` satisfy this as they
//! stand: they move each `Box<dyn Vcpu>` to the thread (or blocking task)
//! that loops on `run()` and never call it elsewhere.
//!
//! - Register writes and `apply_boot_state` made before the first `run()`
//!   (typically by the VMM's set-up thread) are staged and applied when the
//!   vCPU is created; register reads before then return the staged values.
//! - After creation, any call from another thread fails with an error that
//!   names both threads, instead of undefined behaviour (the ownership rule
//!   is [`crate::thread_bound::ThreadBound`], unit-tested on every host). Drop the vCPU on
//!   its own thread: dropped elsewhere, it cannot be destroyed and leaks
//!   (logged) until the VM goes away.
//! - [`KickHandle`](crate::KickHandle)s work from any thread
//!   (`hv_vcpus_exit`), before and after creation.
//!
//! # What the backend does in userspace
//!
//! Hypervisor.framework leaves to the VMM what KVM does in the kernel:
//! data aborts with a valid syndrome become [`VcpuExit::MmioRead`] /
//! [`VcpuExit::MmioWrite`] (aborts without one are reported as internal
//! errors naming the syndrome); `WFI` returns [`VcpuExit::Halt`] (the VMM
//! parks the vCPU until an interrupt is due, as without an in-kernel irqchip
//! on KVM) and `WFE` resumes; PSCI over HVC/SMC is implemented here (`CPU_ON`/`CPU_OFF`,
//! `AFFINITY_INFO`, `SYSTEM_OFF` → [`SystemEvent::Shutdown`],
//! `SYSTEM_RESET` → [`SystemEvent::Reset`]); trapped system-register
//! accesses read as zero and ignore writes; ioeventfds are matched in the
//! run loop. Interrupt lines need the in-kernel GICv3 of macOS 15 and later
//! (found at run time): its distributor and redistributors sit at
//! [`GIC_DISTRIBUTOR_BASE`] and [`GIC_REDISTRIBUTOR_BASE`], which the
//! guest's device tree must describe (one 128 KiB redistributor frame per
//! vCPU). irqfds are relayed by a thread per registration that pulses the
//! line ([`crate::irqfd_relay`]). On older macOS `set_irq_line` and irqfds
//! fail with a typed error. The virtual timer exit is returned as
//! [`VcpuExit::Other`] named `HV_EXIT_REASON_VTIMER_ACTIVATED`; the VMM
//! raises the timer PPI and calls [`HvfVcpu::set_vtimer_masked`]`(false)`.
//!
//! [`VcpuExit::MmioRead`]: crate::VcpuExit::MmioRead
//! [`VcpuExit::MmioWrite`]: crate::VcpuExit::MmioWrite
//! [`VcpuExit::Halt`]: crate::VcpuExit::Halt
//! [`VcpuExit::Other`]: crate::VcpuExit::Other
//! [`SystemEvent::Shutdown`]: crate::SystemEvent::Shutdown
//! [`SystemEvent::Reset`]: crate::SystemEvent::Reset

#[cfg(target_arch = "aarch64")]
mod arm64;
#[cfg(target_arch = "x86_64")]
mod intel;

#[cfg(target_arch = "aarch64")]
pub use arm64::{HvfAccelerator, HvfVcpu, HvfVm, GIC_DISTRIBUTOR_BASE, GIC_REDISTRIBUTOR_BASE};

use crate::accelerator::Probe;

/// The probes for macOS hosts.
pub(crate) fn probes() -> &'static [Probe] {
    #[cfg(target_arch = "aarch64")]
    return &[arm64::probe];
    #[cfg(target_arch = "x86_64")]
    return &[intel::probe];
}
