//! The VMM: a builder that assembles accelerator, guest memory, platform and
//! devices into a runnable VM; executor strategies (a thread per vCPU, or
//! tokio) chosen at runtime; and the `vm-service` daemon and CLI that launch
//! guests.
//!
//! Where this crate sits among the others, and a guest boot followed through
//! all of them: `docs/ARCHITECTURE.md` in the repository.
//!
//! ```no_run
//! use vm_core::config::VmConfig;
//! use vm_service::{ExecutorKind, VmmBuilder};
//!
//! // No kernel given: the built-in guest boots, reports what it sees on the
//! // serial console and asks to stop.
//! let vmm = VmmBuilder::new(VmConfig { vcpus: 2, ..VmConfig::default() })
//!     .executor(ExecutorKind::Sync)
//!     .serial_output(Box::new(std::io::stdout()))
//!     .build()?;
//! let running = vmm.start()?;
//! let control = running.control(); // pause(), resume(), stop() from any thread
//! println!("{}", running.wait());
//! # let _ = control;
//! # Ok::<(), vm_service::VmmError>(())
//! ```
//!
//! `examples/embed.rs` is a complete embedding program. An embedder that
//! needs only the VMM depends on this crate with `default-features = false`
//! and compiles none of the HTTP stack (axum, hyper) or clap.
//!
//! With the `daemon` feature (on by default): `daemon` runs VMs behind the
//! REST API of `api`, one process per VM, and `daemon::ctl` drives it from
//! the command line; `firecracker` runs one VM behind Firecracker's API,
//! for Firecracker clients. The `vm-service` binary needs it.

// The front ends (feature `daemon`, on by default): the REST API, the
// daemon with its command-line client, the Firecracker-compatible mode.
#[cfg(feature = "daemon")]
pub mod api;
mod block;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod dispatch;
pub mod drive_arg;
pub mod executor;
#[cfg(feature = "daemon")]
pub mod firecracker;
pub mod gdb;
pub mod guest;
pub mod net;
mod poller;
pub mod profile;
pub mod sandbox;
pub mod snapshot;
mod vmm;

pub use executor::{ExecutorKind, StopReason};
pub use vmm::{RunningVmm, Snapshotter, Vmm, VmmBuilder, VmmError, VmmInfo, VmmParts};
