//! The daemon's journal: the v2 event store in `--state-dir`, appended to
//! (and fsync'd) before the API acknowledges a lifecycle change.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vm_core::store::V2Store;
use vm_core::{EventKind, EventStore, ProjectionError, StoreError, VmEvent, VmId, VmRegistry};

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "journal.v2";

/// A journal operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Replaying the journal found an event that does not fit.
    #[error("replaying the journal: {0}")]
    Replay(#[from] ProjectionError),
    /// The blocking append task was lost.
    #[error("journal append task failed: {0}")]
    Task(String),
    /// The journal path is not a regular file (a symlink is not followed).
    #[error("the journal {path} is {what}, not a regular file; refusing to use it")]
    NotAFile {
        /// The journal path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The journal's permissions could not be made private.
    #[error("cannot make the journal {path} private (mode 0600): {source}")]
    Permissions {
        /// The journal path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Environment variable naming a delay, in milliseconds, before every journal
/// append: fault injection for tests (a slow `fdatasync`). Unset in production.
pub const APPEND_DELAY_ENV: &str = "VM_SERVICE_FAULT_JOURNAL_DELAY_MS";

/// Appends lifecycle events to the v2 store.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Arc<V2Store>,
    delay: Option<Duration>,
}

impl Journal {
    /// Opens (or creates) the journal in `state_dir` and replays it.
    pub fn open(state_dir: &Path) -> Result<(Self, VmRegistry), JournalError> {
        let dir_err = |source| JournalError::StateDir {
            path: state_dir.to_owned(),
            source,
        };
        if !state_dir.exists() {
            // The journal holds every VM's config: private to the daemon's user.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(dir_err)?;
        }
        let path = state_dir.join(JOURNAL_FILE);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_file() => {
                let what = if m.file_type().is_symlink() {
                    "a symbolic link"
                } else if m.is_dir() {
                    "a directory"
                } else {
                    "a special file"
                };
                return Err(JournalError::NotAFile { path, what });
            }
            _ => {}
        }
        let store = V2Store::open(&path)?;
        // It holds every VM's config: private, whatever the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| JournalError::Permissions {
                path: path.clone(),
                source,
            },
        )?;
        if let Some(tail) = store.tail_recovery() {
            tracing::warn!(
                offset = tail.offset,
                dropped = tail.dropped_bytes,
                reason = %tail.reason,
                "journal had a torn tail (a crash mid-append); it was cut off"
            );
        }
        let registry = VmRegistry::replay(&store)?;
        let delay = std::env::var(APPEND_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        if let Some(delay) = delay {
            tracing::warn!(?delay, "fault injection: every journal append is delayed");
        }
        Ok((
            Self {
                store: Arc::new(store),
                delay,
            },
            registry,
        ))
    }

    /// Appends event `sequence` of `vm_id` and returns once it is durable.
    pub async fn append(
        &self,
        vm_id: &VmId,
        sequence: u64,
        kind: EventKind,
    ) -> Result<(), JournalError> {
        let event = VmEvent::new(vm_id.clone(), sequence, kind);
        let store = self.store.clone();
        tracing::debug!(vm_id = %vm_id, sequence, kind = event.kind.name(), "journal append");
        let delay = self.delay;
        tokio::task::spawn_blocking(move || {
            if let Some(delay) = delay {
                std::thread::sleep(delay);
            }
            store.append(&event)
        })
        .await
        .map_err(|e| JournalError::Task(e.to_string()))??;
        Ok(())
    }

    /// Appends several events at once (atomically) and returns once they are durable.
    pub fn append_batch_blocking(&self, events: &[VmEvent]) -> Result<(), JournalError> {
        self.store.append_batch(events)?;
        Ok(())
    }

    /// Last sequence of `vm_id`'s stream (0 if it has none).
    pub fn stream_head(&self, vm_id: &VmId) -> u64 {
        self.store.stream_head(vm_id)
    }

    /// Number of events in the journal.
    pub fn head(&self) -> u64 {
        self.store.head()
    }
}
