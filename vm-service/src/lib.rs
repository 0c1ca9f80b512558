//! The VMM: a builder that assembles accelerator, guest memory, platform and
//! devices into a runnable VM; executor strategies (a thread per vCPU, or
//! tokio) chosen at runtime; and the `vm-service` daemon and CLI that launch
//! guests.

pub mod dispatch;
pub mod executor;
pub mod guest;
pub mod net;
mod vmm;

pub use executor::{ExecutorKind, StopReason};
pub use vmm::{RunningVmm, Vmm, VmmBuilder, VmmError, VmmInfo};
