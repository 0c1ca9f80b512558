//! The `Accelerator` trait and run-time detection of the best one available.

use crate::error::AccelError;
use crate::regs::GuestArch;
use crate::vm::{Vm, VmOptions};
use std::fmt;
use std::sync::Arc;

/// Which engine an accelerator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceleratorKind {
    /// Linux KVM.
    Kvm,
    /// macOS Hypervisor.framework.
    Hvf,
    /// Windows Hypervisor Platform.
    Whpx,
    /// A software engine (interpreter) from `vm-cross-arch`.
    Software,
}

impl fmt::Display for AcceleratorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kvm => "KVM",
            Self::Hvf => "HVF",
            Self::Whpx => "WHPX",
            Self::Software => "software",
        })
    }
}

/// Why an accelerator could not be used on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The accelerator.
    pub kind: AcceleratorKind,
    /// What was missing or failed (e.g. "/dev/kvm: Permission denied").
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unavailable: {}", self.kind, self.reason)
    }
}

/// A hypervisor that can create VMs.
pub trait Accelerator: Send + Sync + fmt::Debug {
    /// Which engine this is.
    fn kind(&self) -> AcceleratorKind;

    /// The guest architecture its VMs run.
    fn guest_arch(&self) -> GuestArch;

    /// The most vCPUs one VM may have.
    fn max_vcpus(&self) -> u32;

    /// Creates a VM.
    fn create_vm(&self, config: &VmOptions) -> Result<Arc<dyn Vm>, AccelError>;
}

/// The accelerator [`detect`] chose, and why the others were passed over.
#[derive(Debug, Clone)]
pub struct Detected {
    /// The best usable accelerator.
    pub accelerator: Arc<dyn Accelerator>,
    /// The candidates that could not be used, with reasons.
    pub unavailable: Vec<Unavailable>,
}

/// Probes the host's hardware accelerators and returns the best usable one:
/// KVM on Linux, HVF on Apple-silicon macOS, WHPX on Windows.
/// Fails with [`AccelError::NoAccelerator`] listing every reason.
pub fn detect() -> Result<Detected, AccelError> {
    let mut unavailable = Vec::new();
    for probe in crate::platform_probes() {
        match probe() {
            Ok(accelerator) => {
                for reason in &unavailable {
                    tracing::info!(%reason, "accelerator skipped");
                }
                tracing::info!(kind = %accelerator.kind(), "accelerator selected");
                return Ok(Detected {
                    accelerator,
                    unavailable,
                });
            }
            Err(reason) => unavailable.push(reason),
        }
    }
    Err(AccelError::NoAccelerator {
        reasons: unavailable,
    })
}

/// One backend's probe: the accelerator, or why it is unusable.
pub(crate) type Probe = fn() -> Result<Arc<dyn Accelerator>, Unavailable>;
