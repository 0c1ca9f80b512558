//! Snapshots for the KVM architectures without them (arm64, riscv64): every
//! save or restore returns [`AccelError::StateUnsupported`].

use super::arch::GUEST_ARCH;
use crate::error::AccelError;
use crate::kvm::vm::VmShared;
use crate::state::{VcpuState, VmState};
use kvm_ioctls::VcpuFd;

fn unsupported(what: &'static str) -> AccelError {
    AccelError::StateUnsupported {
        what,
        engine: format!("the KVM {GUEST_ARCH} backend"),
    }
}

pub(crate) fn save_vcpu_state(_vm: &VmShared, _fd: &VcpuFd) -> Result<VcpuState, AccelError> {
    Err(unsupported("saving vCPU state"))
}

pub(crate) fn restore_vcpu_state(
    _vm: &VmShared,
    _fd: &VcpuFd,
    _saved: &VcpuState,
) -> Result<(), AccelError> {
    Err(unsupported("restoring vCPU state"))
}

pub(crate) fn save_vm_state(_vm: &VmShared) -> Result<VmState, AccelError> {
    Err(unsupported("saving VM state"))
}

pub(crate) fn restore_vm_state(_vm: &VmShared, _saved: &VmState) -> Result<(), AccelError> {
    Err(unsupported("restoring VM state"))
}
