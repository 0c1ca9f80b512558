//! The file-system operations the persistent stores use, behind one small trait.
//!
//! Production code uses [`StdFs`] (plain `std::fs`); the power-loss test plugs in a
//! simulated file system that forgets whatever was not synced. The choice is made once,
//! when a store is opened: the store keeps a `Box<dyn StoreFile>`, so an append pays one
//! indirect call next to a `pwrite` and an `fdatasync`.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::path::Path;

use super::v2::positional::PositionalIo;

/// An open store file: positional I/O plus the size, sync and lock calls the stores make.
pub(crate) trait StoreFile: PositionalIo + fmt::Debug + Send + Sync {
    /// Current size in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: makes the data (and the size) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: makes data and metadata durable.
    fn sync_all(&self) -> io::Result<()>;
    /// Takes an exclusive advisory lock without waiting.
    fn try_lock(&self) -> Result<(), TryLockError>;
}

/// The directory operations the stores make; `Sync` so one value can serve many threads.
pub(crate) trait StoreFs: fmt::Debug + Sync {
    /// Opens an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn StoreFile>>;
    /// Creates a file that must not exist, for writing (and reading).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StoreFile>>;
    /// Size of the file at `path`; `NotFound` if it is missing.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Up to `limit` bytes from the start of the file at `path`.
    fn read_up_to(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// Removes the name `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Adds the name `link` for the file at `original`.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()>;
    /// Makes the directory `dir`'s entries (creations, renames, links) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StdFs;

impl StoreFile for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn try_lock(&self) -> Result<(), TryLockError> {
        File::try_lock(self)
    }
}

impl StoreFs for StdFs {
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(f))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        // `create_new` does not follow a symlink planted in the file's place.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(f))
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    fn read_up_to(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        File::open(path)?.take(limit).read_to_end(&mut out)?;
        Ok(out)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        std::fs::hard_link(original, link)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}
