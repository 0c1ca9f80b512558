//! A disk in memory, for tests: it models a volatile write cache, so a test
//! can tell a write that was flushed from one that was not.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use vm_memory::VolatileSlice;

use super::backend::BlockBackend;

#[derive(Debug)]
struct Disk {
    /// What reads see.
    data: Vec<u8>,
    /// What survived the last flush.
    durable: Vec<u8>,
    flushes: u64,
}

/// An in-memory disk. Clones share the same disk, so a test keeps one to
/// inspect what the device wrote.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    disk: Arc<Mutex<Disk>>,
    read_only: bool,
    deallocate: bool,
}

impl MemoryBackend {
    /// A zeroed, writable disk of `len` bytes that supports discard.
    pub fn new(len: usize) -> Self {
        Self::from_bytes(vec![0; len])
    }

    /// A writable disk holding `data` (already durable).
    pub fn from_bytes(data: Vec<u8>) -> Self {
        Self {
            disk: Arc::new(Mutex::new(Disk {
                durable: data.clone(),
                data,
                flushes: 0,
            })),
            read_only: false,
            deallocate: true,
        }
    }

    /// The same disk, refusing writes when `read_only`.
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The same disk, with or without discard / write-zeroes support.
    #[must_use]
    pub fn with_deallocate(mut self, supported: bool) -> Self {
        self.deallocate = supported;
        self
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a read sees now.
    pub fn contents(&self) -> Vec<u8> {
        self.disk().data.clone()
    }

    /// What survived the last flush.
    pub fn durable_contents(&self) -> Vec<u8> {
        self.disk().durable.clone()
    }

    /// How many flushes the device asked for.
    pub fn flush_count(&self) -> u64 {
        self.disk().flushes
    }

    fn range(disk: &Disk, offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= disk.data.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "past the end of the disk"))
    }

    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut disk = self.disk();
        let r = Self::range(&disk, offset, len)?;
        disk.data[r].fill(0);
        Ok(())
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only disk",
            ));
        }
        Ok(())
    }
}

impl BlockBackend for MemoryBackend {
    fn len(&self) -> u64 {
        self.disk().data.len() as u64
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        let disk = self.disk();
        let r = Self::range(&disk, offset, buf.len())?;
        buf.copy_from(&disk.data[r]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        self.check_writable()?;
        let mut disk = self.disk();
        let r = Self::range(&disk, offset, buf.len())?;
        buf.copy_to(&mut disk.data[r]);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut disk = self.disk();
        let Disk {
            data,
            durable,
            flushes,
        } = &mut *disk;
        durable.copy_from_slice(data);
        *flushes += 1;
        Ok(())
    }

    fn can_deallocate(&self) -> bool {
        self.deallocate && !self.read_only
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.zero(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.zero(offset, len)
    }
}
