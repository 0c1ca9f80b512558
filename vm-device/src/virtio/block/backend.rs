//! The boundary between the virtio-blk device and where its sectors live.

use std::fmt;
use std::io;
use std::path::PathBuf;

use vm_memory::VolatileSlice;

/// Errors opening a block backend; I/O errors on an open backend are plain
/// `io::Error`s that the device turns into `VIRTIO_BLK_S_IOERR`.
#[derive(Debug, thiserror::Error)]
pub enum BlockBackendError {
    /// The image could not be opened.
    #[error("cannot open disk image {path} ({mode}): {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// `read-only` or `read-write`.
        mode: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The path is not a regular file or a block device (a directory, a FIFO, ...).
    #[error("disk image {path} is not a regular file or a block device")]
    NotADisk {
        /// The path.
        path: PathBuf,
    },
    /// Another process (another VM) holds a conflicting lock on the image.
    #[error("disk image {path} is in use{}: it is locked by another process (a VM that has it open)", holder.map(|p| format!(" by pid {p}")).unwrap_or_default())]
    Locked {
        /// The image.
        path: PathBuf,
        /// Process holding the lock, when `/proc/locks` says.
        holder: Option<u32>,
    },
    /// This backend is not available on this host.
    #[error("{0} backend is not supported on this host")]
    Unsupported(&'static str),
    /// An OS call on the opened image failed.
    #[error("disk image {path}: {op}: {source}")]
    Io {
        /// The image.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Where a drive's sectors live: a raw image file, memory, ...
///
/// Offsets and lengths are in bytes; the device has already checked that
/// every access lies inside `[0, len())` before calling. Buffers are guest
/// memory, so backends move data without a bounce copy.
pub trait BlockBackend: Send + fmt::Debug {
    /// Size in bytes (the device exposes it rounded down to whole sectors).
    fn len(&self) -> u64;
    /// Whether the backend has no sectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether writes are refused (the device then offers `VIRTIO_BLK_F_RO`).
    fn is_read_only(&self) -> bool;
    /// Fill `buf` from `offset`.
    fn read_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()>;
    /// Make every completed write durable.
    fn flush(&mut self) -> io::Result<()>;
    /// Whether [`BlockBackend::discard`] and [`BlockBackend::write_zeroes`] work
    /// (the device offers `DISCARD` and `WRITE_ZEROES` only then).
    fn can_deallocate(&self) -> bool {
        false
    }
    /// Deallocate `[offset, offset + len)`; it reads back as zeroes.
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Make `[offset, offset + len)` read back as zeroes (deallocating is allowed).
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Err(io::ErrorKind::Unsupported.into())
    }
}
