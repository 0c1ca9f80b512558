//! Guest debugging for the KVM architectures without it (arm64, riscv64):
//! every request returns [`AccelError::Unsupported`].

use crate::debug::{DebugStop, GuestDebug, X86_64FpuRegisters};
use crate::error::AccelError;
use crate::kvm::vm::VmShared;
use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuFd;

fn unsupported(what: &'static str) -> AccelError {
    AccelError::Unsupported {
        what,
        backend: "KVM (debugging is x86_64 only)",
    }
}

pub(crate) fn set_guest_debug(_fd: &VcpuFd, _debug: &GuestDebug) -> Result<(), AccelError> {
    Err(unsupported("guest debugging"))
}

/// No debug exit is asked for, so none is decoded.
pub(crate) fn debug_exit(_run: &kvm_run) -> Option<(u64, DebugStop)> {
    None
}

pub(crate) fn read_memory(
    _vm: &VmShared,
    _fd: &VcpuFd,
    _addr: u64,
    _buf: &mut [u8],
) -> Result<usize, AccelError> {
    Err(unsupported("debugger memory reads"))
}

pub(crate) fn write_memory(
    _vm: &VmShared,
    _fd: &VcpuFd,
    _addr: u64,
    _data: &[u8],
) -> Result<usize, AccelError> {
    Err(unsupported("debugger memory writes"))
}

pub(crate) fn fpu_registers(_fd: &VcpuFd) -> Result<X86_64FpuRegisters, AccelError> {
    Err(unsupported("reading x87/SSE registers"))
}
