//! Why a daemon operation failed.

use vm_core::{TransitionError, VmState};

use crate::daemon::journal::JournalError;
use crate::daemon::process::{CommandError, SpawnError};

/// Why a daemon operation failed; the API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum VmsError {
    /// No VM has this id.
    #[error("no VM with id {0:?}")]
    NotFound(String),
    /// A VM with this id exists.
    #[error("a VM with id {0:?} already exists")]
    Exists(String),
    /// The state does not allow the action.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The VM must be stopped for this.
    #[error("VM {id:?} is {state}; {what}")]
    Busy {
        /// The VM.
        id: String,
        /// Its state.
        state: VmState,
        /// What to do instead.
        what: &'static str,
    },
    /// The VM could not boot (its kernel, its config on this host, ...).
    #[error("VM {id:?} failed to boot: {source}")]
    Boot {
        /// The VM.
        id: String,
        /// Why.
        #[source]
        source: SpawnError,
    },
    /// Its VMM process failed a command.
    #[error("VM {id:?}: {source}")]
    Command {
        /// The VM.
        id: String,
        /// What failed.
        #[source]
        source: CommandError,
    },
    /// The journal could not record the change, so it was not made.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// Admission control: the daemon holds its maximum number of VMs.
    #[error("the daemon already holds its limit of {max} VMs (--max-vms); delete one first")]
    TooManyVms {
        /// The limit.
        max: usize,
    },
    /// Admission control: the VM's memory would exceed the daemon's total.
    #[error(
        "{requested_mib} MiB more guest memory would exceed the daemon's limit of \
         {limit_mib} MiB (--max-memory-mib); {committed_mib} MiB are defined already"
    )]
    OutOfMemory {
        /// Memory of the VM asked for.
        requested_mib: u64,
        /// Memory of the VMs already defined.
        committed_mib: u64,
        /// The limit.
        limit_mib: u64,
    },
    /// Another VM's gdb stub listens there already.
    #[error("gdb.address {address} is VM {by:?}'s already; give each VM its own")]
    GdbAddressInUse {
        /// The address.
        address: String,
        /// The VM that has it.
        by: String,
    },
    /// The task carrying out the operation failed (a bug: it panicked).
    #[error("the operation's task failed: {0}")]
    Task(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}
