//! Domain types shared by every crate of the workspace: VM identifiers and
//! configuration, the VM lifecycle state machine, errors, and the versioned
//! event store that `vm-service` uses as its journal.
//!
//! `vm-core` sits at the bottom of the dependency graph: it knows nothing about
//! accelerators, devices or executors, so every other crate can depend on it.
//!
//! Where this crate sits among the others, and a guest boot followed through
//! all of them: `docs/ARCHITECTURE.md` in the repository.
//!
//! ```
//! use vm_core::{GuestArch, Transition, VmConfig, VmId, VmState};
//!
//! let config = VmConfig { vcpus: 2, memory_mib: 256, arch: GuestArch::Riscv64, ..VmConfig::default() };
//! config.validate()?;
//! let id = VmId::new("web-1")?;
//! let state = VmState::Created.apply(Transition::Start)?;
//! assert_eq!(state, VmState::Running);
//! assert!(state.apply(Transition::Resume).is_err());
//! # let _ = id;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod event;
pub mod id;
pub mod state;
pub mod stop;
pub mod thread_role;

pub use config::{
    ConfigError, DeviceConfig, GuestArch, MacAddr, NetBackendConfig, NetConfig, SerialMode,
    VmConfig,
};
pub use event::{EventKind, Timestamp, VmEvent};
pub use id::{VcpuId, VmId, VmIdError};
pub use state::{Transition, TransitionError, VmState};
pub use stop::StopReason;

pub mod projection;
pub mod store;

pub use projection::{ProjectionError, VmRecord, VmRegistry};
pub use store::{open as open_store, EventStore, StoreError, StoreFormat};
