//! A GDB remote stub for a VM (`vm-service run --gdb ADDR [--gdb-wait]`).
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

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::str::FromStr;

use crate::{StopReason, Vmm};

#[cfg(feature = "gdb")]
mod stub;
#[cfg(not(feature = "gdb"))]
#[path = "unavailable.rs"]
mod stub;

/// Where the stub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddr {
    /// A Unix socket at this path (`unix:PATH`), created by the stub.
    Unix(PathBuf),
    /// A loopback TCP address (`tcp:127.0.0.1:PORT`).
    Tcp(SocketAddr),
}

impl FromStr for GdbAddr {
    type Err = GdbError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| GdbError::BadAddress {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e: std::net::AddrParseError| bad(&e.to_string()))?;
            // The stub reads and writes guest memory: never offer it to the network.
            if !addr.ip().is_loopback() {
                return Err(bad("only loopback addresses are accepted"));
            }
            return Ok(Self::Tcp(addr));
        }
        Err(bad("expected unix:PATH or tcp:127.0.0.1:PORT"))
    }
}

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

impl std::fmt::Display for GdbAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Why the stub could not run.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// `--gdb` was given an address it cannot use.
    #[error("invalid --gdb address {given:?}: {reason}")]
    BadAddress {
        /// What was given.
        given: String,
        /// Why it was refused.
        reason: String,
    },
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

/// Runs `vmm` under a GDB stub listening on `listener`, on the calling
/// thread, until the VM stops. With `wait`, no guest instruction runs before
/// a debugger attaches.
pub fn run(vmm: Vmm, listener: GdbListener, wait: bool) -> Result<StopReason, GdbError> {
    stub::run(vmm, listener, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_non_loopback_is_refused() {
        assert_eq!(
            "unix:/tmp/x.sock".parse::<GdbAddr>().unwrap(),
            GdbAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:1234".parse::<GdbAddr>().unwrap(),
            GdbAddr::Tcp("127.0.0.1:1234".parse().unwrap())
        );
        for bad in ["unix:", "tcp:0.0.0.0:1234", "tcp:nope", "1234", ""] {
            assert!(bad.parse::<GdbAddr>().is_err(), "{bad}");
        }
    }
}
