//! Domain types shared by every crate of the workspace: VM identifiers and
//! configuration, the VM lifecycle state machine, errors, and the versioned
//! event store that `vm-service` uses as its journal.
//!
//! `vm-core` sits at the bottom of the dependency graph: it knows nothing about
//! accelerators, devices or executors, so every other crate can depend on it.
