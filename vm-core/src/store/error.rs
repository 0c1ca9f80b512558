//! Errors of the event store.

use std::io;
use std::path::PathBuf;

use crate::id::VmId;
use crate::store::StoreFormat;

/// Everything that can go wrong opening, reading, appending to or migrating a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `fsync`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is shorter than a store header but starts like one.
    #[error("{path}: truncated header ({len} bytes, a v2 header has {need})")]
    TruncatedHeader {
        /// The store file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// Bytes a complete header needs.
        need: u64,
    },
    /// The file starts with bytes no adapter recognises.
    #[error("{path}: unknown store format (first bytes {found})")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Hex dump of its first bytes.
        found: String,
    },
    /// A v2-style header with a format version this build does not know.
    #[error("{path}: unsupported store format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the header.
        version: u32,
    },
    /// The file exists but is empty: a store is created with its header in place, so it
    /// was emptied (truncated) after creation and its events are lost.
    #[error(
        "{path}: the store is empty (0 bytes) although stores are created with a header; \
         it was truncated after creation. Restore it from a backup, or remove it to start \
         with no history"
    )]
    Emptied {
        /// The file.
        path: PathBuf,
    },
    /// The header's checksum does not match.
    #[error("{path}: header checksum mismatch")]
    CorruptHeader {
        /// The file.
        path: PathBuf,
    },
    /// Corruption that is not a torn tail: valid data follows it, so it cannot be truncated.
    #[error("{path}: corrupt record at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record in the file.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a v1 (JSON-lines) journal could not be read.
    #[error("{path}:{line} (byte offset {offset}): bad v1 event: {reason}")]
    BadV1Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's start.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Appends to this format are refused.
    #[error("the {format} store format is read-only (deprecated); run the v1→v2 migration first")]
    ReadOnly {
        /// The format of the store.
        format: StoreFormat,
    },
    /// An appended event's sequence number is not the next one of its stream.
    #[error("vm {vm_id}: expected sequence {expected}, got {found}")]
    SequenceConflict {
        /// The stream.
        vm_id: VmId,
        /// The next sequence the stream accepts.
        expected: u64,
        /// The sequence of the rejected event.
        found: u64,
    },
    /// A batch encodes to more than one record may hold.
    #[error("batch encodes to {bytes} bytes, a record holds at most {max}")]
    BatchTooLarge {
        /// Encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An event could not be encoded (its config or device could not be serialised).
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// A write or fsync failed earlier; the store no longer accepts appends until reopened.
    #[error("store is failed after an earlier write error ({0}); reopen it")]
    Failed(String),
    /// Another process (or handle) holds the store's lock.
    #[error("{path}: store is locked by another process")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// Migration refused to overwrite an existing file.
    #[error("{path}: already exists")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Migration read the written v2 store back and it differed from the source.
    #[error("migration check failed: {0}")]
    MigrationMismatch(String),
}

impl StoreError {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
