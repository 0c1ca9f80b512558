//! A GDB remote stub for a VM (`vm-service run --gdb ADDR [--gdb-wait]`, or
//! a daemon VM whose config has a `gdb` section: [`GdbConfig`]).
//!
//! [`check_supported`] says, before anything starts, whether this build and
//! the guest's architecture can be debugged (the daemon's create answers 400
//! when not). [`run_with`] takes a [`GdbControl`] through which another
//! thread pauses, resumes or stops the VM, debugger attached or not.
//!
//! With a stub, the vCPUs do not get an executor: one thread runs them in
//! turn and serves the debugger between runs, so every vCPU is stopped
//! whenever GDB looks (all-stop mode; each vCPU is a thread to GDB). The
//! protocol is `gdbstub`'s, behind the `gdb` cargo feature; built without
//! it, [`run`] refuses with [`GdbError::NotBuilt`].
//!
//! Engines: the riscv64 interpreter (registers x0-x31, pc, f0-f31, the FP
//! and supervisor/machine CSRs, the privilege level; memory through the
//! hart's current Sv39 translation, else physical; breakpoints, single-step,
//! Ctrl-C) and KVM x86_64 (general registers, rip, eflags, segment
//! selectors, x87/SSE read-only; memory through the guest's page tables;
//! single-step and up to four breakpoints, all of them hardware ones in the
//! debug registers, since on a nested paravirtual KVM an `int3` never comes
//! back to the VMM as a debug exit). arm64 is refused with
//! [`GdbError::UnsupportedArch`]; an engine without the `Vcpu` debug methods
//! answers "unsupported" before a debugger attaches.
//!
//! Without `--gdb-wait` the guest runs at once and a debugger may attach at
//! any time; when it detaches (or its packet stream breaks the protocol),
//! breakpoints are cleared and the guest runs on, waiting for the next one.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

pub use control::GdbControl;
use vm_core::config::GuestArch;
pub use vm_core::config::{GdbAddr, GdbAddrError, GdbConfig};

use crate::{StopReason, Vmm};

mod control;
#[cfg(feature = "gdb")]
mod stub;
#[cfg(not(feature = "gdb"))]
#[path = "unavailable.rs"]
mod stub;

/// The stub's listening socket, bound early (before a process sandbox that
/// allows no new TCP sockets is entered).
#[derive(Debug)]
pub enum GdbListener {
    /// A Unix socket and its path (removed when the listener is dropped).
    Unix(UnixListener, PathBuf),
    /// A loopback TCP socket.
    Tcp(TcpListener),
}

impl GdbListener {
    /// Binds `addr`. A stale Unix socket at the path is replaced; any other
    /// file there is an error.
    pub fn bind(addr: &GdbAddr) -> Result<Self, GdbError> {
        let listen_err = |source| GdbError::Listen {
            addr: addr.to_string(),
            source,
        };
        match addr {
            GdbAddr::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if meta.file_type().is_socket() {
                        std::fs::remove_file(path).map_err(listen_err)?;
                    }
                }
                let l = UnixListener::bind(path).map_err(listen_err)?;
                // The debugger reads and writes guest memory: the owner only.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(listen_err)?;
                Ok(Self::Unix(l, path.clone()))
            }
            GdbAddr::Tcp(a) => Ok(Self::Tcp(TcpListener::bind(a).map_err(listen_err)?)),
        }
    }

    /// The socket's descriptor (to keep it open across the sandbox).
    pub fn as_raw_fd(&self) -> i32 {
        match self {
            Self::Unix(l, _) => l.as_raw_fd(),
            Self::Tcp(l) => l.as_raw_fd(),
        }
    }
}

impl Drop for GdbListener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Why the stub could not run.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The address cannot be used.
    #[error(transparent)]
    BadAddress(#[from] GdbAddrError),
    /// This build has no stub.
    #[error("this vm-service was built without the `gdb` feature (cargo build --features gdb)")]
    NotBuilt,
    /// The guest's engine has no debugger support yet.
    #[error("the gdb stub does not support {0} guests yet (riscv64 and x86_64 only)")]
    UnsupportedArch(vm_core::config::GuestArch),
    /// Listening failed.
    #[error("cannot listen for gdb on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// A vCPU refused a debug operation needed to start.
    #[error("cannot prepare the vCPUs for debugging: {0}")]
    Vcpu(#[from] vm_accel::AccelError),
}

/// Whether a VM of `arch` can run under the stub in this build: the
/// daemon's create and `run --gdb` ask before anything starts.
pub fn check_supported(arch: GuestArch) -> Result<(), GdbError> {
    if !stub::BUILT {
        return Err(GdbError::NotBuilt);
    }
    match arch {
        GuestArch::Riscv64 | GuestArch::X86_64 => Ok(()),
        GuestArch::Arm64 => Err(GdbError::UnsupportedArch(arch)),
    }
}

/// Runs `vmm` under a GDB stub listening on `listener`, on the calling
/// thread, until the VM stops. With `wait`, no guest instruction runs before
/// a debugger attaches.
pub fn run(vmm: Vmm, listener: GdbListener, wait: bool) -> Result<StopReason, GdbError> {
    run_with(vmm, listener, wait, &GdbControl::new())
}

/// [`run`], with `control` for another thread to pause, resume or stop the
/// VM (a stop ends it with the control's reason, debugger attached or not).
pub fn run_with(
    vmm: Vmm,
    listener: GdbListener,
    wait: bool,
    control: &GdbControl,
) -> Result<StopReason, GdbError> {
    check_supported(vmm.info().arch)?;
    let reason = stub::run(vmm, listener, wait, control);
    if let Ok(reason) = &reason {
        control.finished(reason);
    } else {
        control.finished(&StopReason::Requested);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_is_refused_in_every_build() {
        assert!(matches!(
            check_supported(GuestArch::Arm64),
            Err(GdbError::UnsupportedArch(GuestArch::Arm64) | GdbError::NotBuilt)
        ));
    }
}
