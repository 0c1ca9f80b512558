//! The KVM backend (Linux): `KvmAccelerator`, `KvmVm`, `KvmVcpu`, built on
//! `kvm-ioctls`/`kvm-bindings`.
//!
//! Limits, stated plainly:
//! - x86_64 is the architecture this backend is run and tested on. The
//!   aarch64 (`KVM_ARM_VCPU_INIT` with PSCI 0.2, core registers through
//!   `KVM_SET_ONE_REG`) and riscv64 (core registers, `a0`/`a1` boot
//!   convention) paths type-check for their Linux targets but have never run:
//!   no such host was available. Neither creates an in-kernel interrupt
//!   controller yet (vGIC / AIA), so `set_irq_line` fails there.
//! - Kicking a vCPU uses the real-time signal [`kick_signal`] (`SIGRTMIN`);
//!   the VMM must leave that signal to this crate.
//! - On nested-KVM hosts whose instruction emulator cannot handle software
//!   interrupts (a nested paravirtual KVM such as kvm_pvm), `int3`/`int n`/`int1` in protected or
//!   long mode are re-injected inside `run()`; other emulation failures are
//!   returned as [`VcpuExit::InternalError`](crate::VcpuExit::InternalError)
//!   naming the instruction bytes at RIP.

mod exit;
mod kick;
mod vcpu;
mod vm;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(not(target_arch = "x86_64"))]
mod no_debug;
#[cfg(not(target_arch = "x86_64"))]
mod no_snapshot;
#[cfg(target_arch = "riscv64")]
mod riscv64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
use aarch64 as arch;
#[cfg(target_arch = "riscv64")]
use riscv64 as arch;
#[cfg(target_arch = "x86_64")]
use x86_64 as arch;

pub use kick::kick_signal;
pub use vcpu::KvmVcpu;
pub use vm::KvmVm;
#[cfg(target_arch = "x86_64")]
pub use x86_64::FallbackError;

use crate::accelerator::{Accelerator, AcceleratorKind, Probe, Unavailable};
use crate::error::AccelError;
use crate::regs::GuestArch;
use crate::vm::{Vm, VmOptions};
use kvm_ioctls::{Cap, Kvm};
use std::path::Path;
use std::sync::Arc;

const KVM_API_VERSION: i32 = 12;
const DEV_KVM: &str = "/dev/kvm";

/// The host's page size (memory slots must be aligned to it).
pub(crate) fn host_page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Linux KVM, opened from `/dev/kvm`.
#[derive(Debug)]
pub struct KvmAccelerator {
    kvm: Kvm,
    max_vcpus: u32,
}

impl KvmAccelerator {
    /// Opens `/dev/kvm` and checks the API version and the capabilities this backend needs.
    pub fn new() -> Result<Self, AccelError> {
        Self::open(Path::new(DEV_KVM))
    }

    /// Opens KVM at `path`.
    pub fn open(path: &Path) -> Result<Self, AccelError> {
        let open_error = |detail: String| AccelError::Hypervisor {
            op: "opening the KVM device",
            source: std::io::Error::other(detail),
        };
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| open_error(format!("{}: path contains a NUL byte", path.display())))?;
        let kvm =
            Kvm::new_with_path(&c_path).map_err(|e| open_error(describe_open_error(path, e)))?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(AccelError::hypervisor(
                "KVM_GET_API_VERSION",
                std::io::Error::other(format!(
                    "{} reports API version {version}, this backend needs {KVM_API_VERSION}",
                    path.display()
                )),
            ));
        }
        for (cap, name) in arch_required_caps() {
            if !kvm.check_extension(*cap) {
                return Err(AccelError::Unsupported {
                    what: name,
                    backend: "KVM (kernel lacks the capability)",
                });
            }
        }
        let max_vcpus = u32::try_from(kvm.get_max_vcpus()).unwrap_or(u32::MAX);
        Ok(Self { kvm, max_vcpus })
    }
}

fn arch_required_caps() -> &'static [(Cap, &'static str)] {
    &[
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    ]
}

fn describe_open_error(path: &Path, e: kvm_ioctls::Error) -> String {
    let hint = match e.errno() {
        libc::ENOENT => {
            " (is the kvm module loaded, or is this a VM without nested virtualisation?)"
        }
        libc::EACCES | libc::EPERM => " (add the user to the group owning it, usually `kvm`)",
        _ => "",
    };
    format!("{}: {e}{hint}", path.display())
}

impl Accelerator for KvmAccelerator {
    fn kind(&self) -> AcceleratorKind {
        AcceleratorKind::Kvm
    }

    fn guest_arch(&self) -> GuestArch {
        arch::GUEST_ARCH
    }

    fn max_vcpus(&self) -> u32 {
        self.max_vcpus
    }

    fn create_vm(&self, config: &VmOptions) -> Result<Arc<dyn Vm>, AccelError> {
        Ok(Arc::new(KvmVm::new(&self.kvm, config, self.max_vcpus)?))
    }
}

impl KvmAccelerator {
    /// Creates a VM as the concrete KVM type (see [`Accelerator::create_vm`]).
    pub fn create_kvm_vm(&self, config: &VmOptions) -> Result<KvmVm, AccelError> {
        KvmVm::new(&self.kvm, config, self.max_vcpus)
    }
}

fn probe_kvm() -> Result<Arc<dyn Accelerator>, Unavailable> {
    KvmAccelerator::new()
        .map(|kvm| Arc::new(kvm) as Arc<dyn Accelerator>)
        .map_err(|e| Unavailable {
            kind: AcceleratorKind::Kvm,
            reason: e.to_string(),
        })
}

/// The probes for Linux hosts.
pub(crate) fn probes() -> &'static [Probe] {
    &[probe_kvm]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_explained() {
        let err = KvmAccelerator::open(Path::new("/nonexistent/kvm")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/kvm"), "{text}");
        assert!(text.contains("kvm module"), "{text}");
    }
}
