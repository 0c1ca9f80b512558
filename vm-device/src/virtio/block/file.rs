//! A raw disk image file: positional I/O straight between the file and guest
//! memory (`pread`/`pwrite`, no bounce buffer), `FLUSH` as `fdatasync`, discard
//! as `fallocate(PUNCH_HOLE)` and write-zeroes as `fallocate(ZERO_RANGE)`
//! (falling back to a punched hole where the filesystem has no ZERO_RANGE).
//!
//! Locking: a read-write open takes an exclusive `flock`, a read-only open a
//! shared one, both non-blocking. So any number of VMs may share an image
//! read-only, but a VM can write an image only while no other VM has it open
//! at all; a conflict fails at once, naming the image and, when `/proc/locks`
//! tells, the pid holding it. Like every `flock`, this is advisory: it guards
//! against VMs (and tools that lock, e.g. QEMU's), not against a plain `dd`.
//!
//! Linux only (`fallocate`, `/proc/locks`).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vm_memory::VolatileSlice;

use super::backend::{BlockBackend, BlockBackendError};

/// A raw image file opened read-only or read-write, locked against other VMs.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    path: PathBuf,
    len: u64,
    read_only: bool,
    punch_hole: bool,
    /// Cleared the first time the filesystem refuses `FALLOC_FL_ZERO_RANGE`.
    zero_range: bool,
}

impl FileBackend {
    /// Open and lock the image at `path` (see the module docs for the lock rules).
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Self, BlockBackendError> {
        let path = path.as_ref().to_path_buf();
        let mode = if read_only { "read-only" } else { "read-write" };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .map_err(|source| BlockBackendError::Open {
                path: path.clone(),
                mode,
                source,
            })?;
        let kind = file
            .metadata()
            .map_err(|source| BlockBackendError::Io {
                path: path.clone(),
                op: "reading its metadata",
                source,
            })?
            .file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(BlockBackendError::NotADisk { path });
        }
        lock(&file, &path, read_only)?;
        // Seeking works for regular files and block devices alike (metadata's
        // length is 0 for a block device).
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|source| BlockBackendError::Io {
                path: path.clone(),
                op: "finding its size",
                source,
            })?;
        let punch_hole = !read_only && probe_punch_hole(&file, len);
        tracing::debug!(path = %path.display(), len, read_only, punch_hole, "disk image opened");
        Ok(Self {
            file,
            path,
            len,
            read_only,
            punch_hole,
            zero_range: true,
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        loop {
            // SAFETY: fallocate only reads its integer arguments; the fd is
            // owned by `self.file` and open for the duration of the call.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset, len) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Take the lock for `read_only` or fail naming the holder.
fn lock(file: &File, path: &Path, read_only: bool) -> Result<(), BlockBackendError> {
    let op = if read_only {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    } | libc::LOCK_NB;
    // SAFETY: flock only takes an fd (owned by `file`, open) and flags.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Err(BlockBackendError::Locked {
            path: path.to_path_buf(),
            holder: file.metadata().ok().and_then(|m| lock_holder(&m)),
        });
    }
    Err(BlockBackendError::Io {
        path: path.to_path_buf(),
        op: "locking it",
        source: err,
    })
}

/// The pid holding a `flock` on the file, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`).
fn lock_holder(meta: &std::fs::Metadata) -> Option<u32> {
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed as "1: -> FLOCK ..."; they hold nothing.
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file_id, ..] if *file_id == id => pid.parse().ok(),
            _ => None,
        }
    })
}

/// Whether the filesystem punches holes: punch one past the end of the file,
/// where there is no data to lose.
fn probe_punch_hole(file: &File, len: u64) -> bool {
    let Ok(offset) = libc::off_t::try_from(len.next_multiple_of(4096)) else {
        return false;
    };
    // SAFETY: fallocate only reads its integer arguments; `file` is open. The
    // range is past the end of the file and KEEP_SIZE leaves the size alone,
    // so no data changes.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            4096,
        )
    };
    rc == 0
}

fn to_off(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Moves `len` bytes at file offset `offset` with `op(done, at)` (a pread or
/// pwrite of the bytes from `done` on, at `at`), retrying short transfers and
/// `EINTR`; a transfer of 0 bytes is `zero`.
fn positional_io(
    offset: u64,
    len: usize,
    zero: io::ErrorKind,
    mut op: impl FnMut(usize, libc::off_t) -> isize,
) -> io::Result<()> {
    let mut done = 0usize;
    while done < len {
        match op(done, to_off(offset + done as u64)?) {
            0 => return Err(zero.into()),
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            n => done += n as usize,
        }
    }
    Ok(())
}

impl BlockBackend for FileBackend {
    fn len(&self) -> u64 {
        self.len
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        let guard = buf.ptr_guard_mut();
        let base = guard.as_ptr();
        let fd = self.file.as_raw_fd();
        positional_io(
            offset,
            buf.len(),
            io::ErrorKind::UnexpectedEof,
            |done, at| {
                // SAFETY: `base..base + buf.len()` is guest memory that stays mapped
                // while `guard` (borrowing the slice) lives; pread writes at most
                // `buf.len() - done` bytes starting `done` bytes in.
                unsafe { libc::pread(fd, base.add(done).cast(), buf.len() - done, at) }
            },
        )
    }

    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        let guard = buf.ptr_guard();
        let base = guard.as_ptr();
        let fd = self.file.as_raw_fd();
        positional_io(offset, buf.len(), io::ErrorKind::WriteZero, |done, at| {
            // SAFETY: `base..base + buf.len()` is guest memory that stays mapped
            // while `guard` lives; pwrite reads at most `buf.len() - done` bytes
            // starting `done` bytes in.
            unsafe { libc::pwrite(fd, base.add(done).cast(), buf.len() - done, at) }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn can_deallocate(&self) -> bool {
        self.punch_hole
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.zero_range {
            match self.fallocate(
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    tracing::debug!(path = %self.path.display(), "no FALLOC_FL_ZERO_RANGE here; punching holes instead");
                    self.zero_range = false;
                }
                other => return other,
            }
        }
        self.discard(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

    use super::*;
    use crate::virtio::block::BlockDevice;
    use crate::virtio::GuestMemory;

    fn image(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn reads_and_writes_go_straight_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = image(&dir, "disk.img", &vec![7u8; 8192]);
        let mut disk = FileBackend::open(&path, false).unwrap();
        assert_eq!((disk.len(), disk.is_read_only()), (8192, false));
        let mem = mem();
        mem.write_slice(&[0xab; 1024], GuestAddress(0x1000))
            .unwrap();
        let slice = mem.get_slice(GuestAddress(0x1000), 1024).unwrap();
        disk.write_at(2048, &slice).unwrap();
        disk.flush().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[2048..3072], &[0xab; 1024][..]);
        assert_eq!(&on_disk[..2048], &[7; 2048][..]);
        let back = mem.get_slice(GuestAddress(0x4000), 512).unwrap();
        disk.read_at(0, &back).unwrap();
        let mut got = [0u8; 512];
        mem.read_slice(&mut got, GuestAddress(0x4000)).unwrap();
        assert_eq!(got, [7; 512]);
        let past = mem.get_slice(GuestAddress(0x4000), 1024).unwrap();
        assert_eq!(
            disk.read_at(8192 - 512, &past).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof,
            "a file truncated under us is an error, not stale guest memory"
        );
    }

    #[test]
    fn a_writable_image_is_locked_against_other_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = image(&dir, "locked.img", &[0u8; 4096]);
        let first = FileBackend::open(&path, false).unwrap();
        let err = FileBackend::open(&path, false).unwrap_err();
        let BlockBackendError::Locked { holder, .. } = &err else {
            panic!("not a lock conflict: {err}");
        };
        assert_eq!(*holder, Some(std::process::id()), "holder from /proc/locks");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(
            matches!(
                FileBackend::open(&path, true),
                Err(BlockBackendError::Locked { .. })
            ),
            "no reader while a VM writes"
        );
        drop(first);
        // Readers share; a writer waits for all of them.
        let r1 = FileBackend::open(&path, true).unwrap();
        let r2 = FileBackend::open(&path, true).unwrap();
        assert!(r1.is_read_only() && !r1.can_deallocate());
        assert!(matches!(
            FileBackend::open(&path, false),
            Err(BlockBackendError::Locked { .. })
        ));
        drop((r1, r2));
        FileBackend::open(&path, false).unwrap();
    }

    #[test]
    fn missing_image_or_a_directory_names_the_path() {
        let err = FileBackend::open("/nonexistent/disk.img", true).unwrap_err();
        assert!(matches!(err, BlockBackendError::Open { .. }));
        assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = FileBackend::open(dir.path(), true).unwrap_err();
        assert!(matches!(err, BlockBackendError::NotADisk { .. }), "{err}");
    }

    #[test]
    fn discard_punches_a_hole_and_write_zeroes_reads_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = image(&dir, "sparse.img", &vec![0x5a; 1 << 20]);
        let mut disk = FileBackend::open(&path, false).unwrap();
        if !disk.can_deallocate() {
            test_prerequisites::prerequisite_missing(format!(
                "the filesystem under {} cannot punch holes",
                path.display()
            ));
            return;
        }
        disk.flush().unwrap();
        let blocks = || std::fs::metadata(&path).unwrap().blocks();
        let before = blocks();
        disk.discard(256 << 10, 512 << 10).unwrap();
        assert!(blocks() < before, "st_blocks {} -> {}", before, blocks());
        disk.write_zeroes(4096, 4096).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 1 << 20, "size unchanged");
        assert!(on_disk[256 << 10..768 << 10].iter().all(|&b| b == 0));
        assert!(on_disk[4096..8192].iter().all(|&b| b == 0));
        assert!(on_disk[..4096].iter().all(|&b| b == 0x5a));
        assert!(on_disk[768 << 10..].iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn a_partial_last_sector_is_not_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = image(&dir, "odd.img", &[0u8; 1000]);
        let disk = FileBackend::open(&path, true).unwrap();
        assert_eq!(
            BlockDevice::new("odd", Box::new(disk)).capacity_sectors(),
            1
        );
    }
}
