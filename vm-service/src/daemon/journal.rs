//! The daemon's journal: the v2 event store in `--state-dir`, appended to
//! (and fsync'd) before the API acknowledges a lifecycle change.
//!
//! The file is private (mode 0600) and never reached through a symlink.
//! Every event is checked against the state the journal replays to before it
//! is written, so a daemon bug cannot write what a restarted daemon would
//! refuse to replay.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    /// An event was refused because a replay would refuse it (a daemon bug:
    /// writing it would keep every later daemon from starting).
    #[error("refusing to journal an event the journal could not replay: {0}")]
    Unreplayable(#[source] ProjectionError),
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

/// Appends lifecycle events to the v2 store, each checked first against
/// the state the journal replays to, so that nothing is written that a
/// restarted daemon could not replay.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Arc<V2Store>,
    /// The replayed state including every append so far (ahead of the store
    /// only while an append is being written, or after the store failed).
    replayed: Arc<Mutex<VmRegistry>>,
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
                replayed: Arc::new(Mutex::new(registry.clone())),
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
        self.append_events(vec![VmEvent::new(vm_id.clone(), sequence, kind)])
            .await
    }

    /// Appends `events` atomically and returns once they are durable.
    pub async fn append_events(&self, events: Vec<VmEvent>) -> Result<(), JournalError> {
        for event in &events {
            tracing::debug!(vm_id = %event.vm_id, sequence = event.sequence, kind = event.kind.name(), "journal append");
        }
        let journal = self.clone();
        // Checked and written in one blocking task, which runs to its end
        // even if this future is dropped.
        tokio::task::spawn_blocking(move || journal.append_batch_blocking(&events))
            .await
            .map_err(|e| JournalError::Task(e.to_string()))?
    }

    /// Appends several events at once (atomically) and returns once they are durable.
    pub fn append_batch_blocking(&self, events: &[VmEvent]) -> Result<(), JournalError> {
        {
            let mut replayed = self
                .replayed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut next = None;
            for event in events {
                // The first event checks in place (unchanged on error); a
                // batch's later ones need a copy to stay all-or-nothing.
                let target = if events.len() == 1 {
                    &mut *replayed
                } else {
                    next.get_or_insert_with(|| replayed.clone())
                };
                target.apply(event).map_err(|e| {
                    tracing::error!(vm_id = %event.vm_id, sequence = event.sequence, error = %e, "refused an unreplayable journal event");
                    JournalError::Unreplayable(e)
                })?;
            }
            if let Some(next) = next {
                *replayed = next;
            }
        }
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use vm_core::VmConfig;

    #[test]
    fn an_event_a_replay_would_refuse_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let id = VmId::new("twice").unwrap();
        let created = |seq| VmEvent::new(id.clone(), seq, EventKind::created(VmConfig::default()));
        journal.append_batch_blocking(&[created(1)]).unwrap();
        let err = journal.append_batch_blocking(&[created(2)]).unwrap_err();
        assert!(matches!(err, JournalError::Unreplayable(_)), "{err}");
        assert!(err.to_string().contains("created twice"), "{err}");
        let stopped = VmEvent::new(
            id.clone(),
            2,
            EventKind::Stopped {
                reason: vm_core::StopReason::Requested,
            },
        );
        journal.append_batch_blocking(&[stopped]).unwrap();
        assert_eq!(journal.head(), 2);
        drop(journal);
        let (_, registry) = Journal::open(dir.path()).unwrap();
        assert_eq!(registry.get(&id).map(|r| r.last_sequence), Some(2));
    }
}
