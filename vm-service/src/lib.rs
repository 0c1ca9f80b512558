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
//! `examples/embed.rs` is a complete embedding program. [`daemon`] runs VMs
//! behind the REST API of [`api`], one process per VM; [`firecracker`] runs
//! one VM behind Firecracker's API, for Firecracker clients.

pub mod api;
mod block;
pub mod ctl;
pub mod daemon;
pub mod dispatch;
pub mod drive_arg;
pub mod executor;
pub mod firecracker;
pub mod guest;
pub mod net;
mod poller;
pub mod sandbox;
pub mod snapshot;
mod vmm;

pub use executor::{ExecutorKind, StopReason};
pub use vmm::{RunningVmm, Snapshotter, Vmm, VmmBuilder, VmmError, VmmInfo};
