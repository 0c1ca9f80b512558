//! The event store: one trait, adapters chosen at runtime, and migration between formats.
//!
//! - [`v2::V2Store`]: the current binary format (header magic + version, CRC32C-protected,
//!   length-prefixed records, group-committed fsync'd appends, torn-tail recovery);
//! - [`v1::V1Store`]: the legacy JSON-lines journal, read-only and deprecated;
//! - [`memory::MemoryStore`]: no disk, for tests and embedders.
//!
//! [`open`] picks the adapter from the file's first bytes; [`migrate::migrate_v1_to_v2`]
//! rewrites a v1 journal as v2.
//!
//! ```
//! use vm_core::store::{self, EventStore};
//! use vm_core::{EventKind, VmConfig, VmEvent, VmId, VmRegistry, VmState};
//!
//! let dir = tempfile::tempdir()?;
//! let journal = store::open(&dir.path().join("journal"))?; // missing file: a new v2 store
//! let id = VmId::new("web-1")?;
//! journal.append(&VmEvent::new(id.clone(), 1, EventKind::created(VmConfig::default())))?;
//! journal.append(&VmEvent::new(id.clone(), 2, EventKind::Started))?;
//! // Sequence numbers are checked: a stale writer cannot append over a newer event.
//! assert!(journal.append(&VmEvent::new(id.clone(), 2, EventKind::Paused)).is_err());
//!
//! let registry = VmRegistry::replay(journal.as_ref())?;
//! assert_eq!(registry.get(&id).map(|vm| vm.state), Some(VmState::Running));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
mod error;
mod fs;
pub mod legacy;
pub mod memory;
pub mod migrate;
#[cfg(test)]
mod powerloss;
mod streams;
pub mod v1;
pub mod v2;

use std::fmt;
use std::path::Path;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use migrate::{migrate_v1_to_v2, MigrationReport};
pub use v1::V1Store;
pub use v2::{CommitStats, V2Store};

use crate::event::VmEvent;
use crate::id::VmId;

/// On-disk (or in-memory) format of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreFormat {
    /// Legacy JSON lines (read-only).
    V1,
    /// Current binary format.
    V2,
    /// In-memory, no persistence.
    Memory,
}

impl fmt::Display for StoreFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Memory => "memory",
        })
    }
}

/// A torn or corrupt tail found (and for writable formats, cut off) when a store was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRecovery {
    /// Byte offset where the valid data ends.
    pub offset: u64,
    /// Bytes that followed it and were dropped.
    pub dropped_bytes: u64,
    /// What was wrong with them.
    pub reason: String,
}

/// Iterator over every event of a store, in append order.
pub type EventIter<'a> = Box<dyn Iterator<Item = Result<VmEvent, StoreError>> + Send + 'a>;

/// A journal of [`VmEvent`]s, one stream per VM.
///
/// Appends check that each event's `sequence` is the next of its stream (1 for a new
/// stream); a batch is stored atomically: after a crash either all its events are there or
/// none. `append` returns once the events are durable (for persistent adapters).
pub trait EventStore: Send + Sync + fmt::Debug {
    /// The adapter's format.
    fn format(&self) -> StoreFormat;

    /// Appends one event; returns the store's head (event count) afterwards.
    fn append(&self, event: &VmEvent) -> Result<u64, StoreError> {
        self.append_batch(std::slice::from_ref(event))
    }

    /// Appends events atomically; returns the store's head (event count) afterwards.
    fn append_batch(&self, events: &[VmEvent]) -> Result<u64, StoreError>;

    /// Events of `vm_id` with `sequence >= from_sequence`, in order.
    fn read_stream(&self, vm_id: &VmId, from_sequence: u64) -> Result<Vec<VmEvent>, StoreError>;

    /// Iterates every event in append order (a snapshot of the store when called).
    fn read_all(&self) -> Result<EventIter<'_>, StoreError>;

    /// Number of events in the store.
    fn head(&self) -> u64;

    /// Last sequence number of `vm_id`'s stream (0 if it has none).
    fn stream_head(&self, vm_id: &VmId) -> u64;

    /// The torn tail dropped when the store was opened, if any.
    fn tail_recovery(&self) -> Option<&TailRecovery> {
        None
    }
}

/// Size of the longest header prefix used to detect a format.
const DETECT_LEN: usize = v2::HEADER_LEN;

/// Detects the format of an existing store file; `None` if it is missing or empty.
pub fn detect_format(path: &Path) -> Result<Option<StoreFormat>, StoreError> {
    detect_format_in(&fs::StdFs, path)
}

/// [`detect_format`] on the file system `fs`.
pub(crate) fn detect_format_in(
    fs: &dyn fs::StoreFs,
    path: &Path,
) -> Result<Option<StoreFormat>, StoreError> {
    let head = match fs.read_up_to(path, DETECT_LEN as u64) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", path, e)),
    };
    if head.is_empty() {
        return Ok(None);
    }
    if v2::header_prefix_matches(&head) {
        v2::check_header(path, &head)?;
        return Ok(Some(StoreFormat::V2));
    }
    if let Some(first) = head.iter().find(|b| !b.is_ascii_whitespace()) {
        if *first == b'{' {
            return Ok(Some(StoreFormat::V1));
        }
    }
    let found = head
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(StoreError::UnknownFormat {
        path: path.to_owned(),
        found,
    })
}

/// Opens the store at `path` with the adapter its header names; a missing file becomes a
/// new v2 store, an empty one is refused ([`StoreError::Emptied`]). v1 stores open read-only (with a one-time deprecation warning).
pub fn open(path: &Path) -> Result<Box<dyn EventStore>, StoreError> {
    match detect_format(path)? {
        Some(StoreFormat::V1) => Ok(Box::new(V1Store::open(path)?)),
        Some(StoreFormat::V2 | StoreFormat::Memory) | None => Ok(Box::new(V2Store::open(path)?)),
    }
}
