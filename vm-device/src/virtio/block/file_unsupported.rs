//! Raw image files need Linux here (`fallocate`, `/proc/locks`): elsewhere
//! opening one is a typed error.

use std::io;
use std::path::Path;

use vm_memory::VolatileSlice;

use super::backend::{BlockBackend, BlockBackendError};

/// A raw image file; not available on this host.
#[derive(Debug)]
pub struct FileBackend(());

impl FileBackend {
    /// Always fails: see the module docs.
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Self, BlockBackendError> {
        let _ = (path, read_only);
        Err(BlockBackendError::Unsupported("raw image file"))
    }
}

impl BlockBackend for FileBackend {
    fn len(&self) -> u64 {
        0
    }
    fn is_read_only(&self) -> bool {
        true
    }
    fn read_at(&mut self, _: u64, _: &VolatileSlice<'_>) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn write_at(&mut self, _: u64, _: &VolatileSlice<'_>) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
