//! The snapshot files on disk.
//!
//! The state file is a 24-byte header and a JSON body:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `VMSNAPST` |
//! | 8 | 4 | format version, little endian ([`FORMAT_VERSION`]) |
//! | 12 | 4 | CRC-32C of the body, little endian |
//! | 16 | 8 | body length in bytes, little endian |
//! | 24 | ... | the body: [`super::VmState`] as JSON |
//!
//! The memory file holds guest RAM, region after region, each starting at
//! the page-aligned offset the state file records; its size must be exactly
//! what the configuration's RAM needs. Both files are written to a temporary
//! name and renamed into place, so a failed snapshot never leaves a partial
//! file under the final name.

use std::io::Write;
use std::path::{Path, PathBuf};

/// First bytes of every state file.
pub const MAGIC: [u8; 8] = *b"VMSNAPST";
/// The state-file format this build writes and the newest it reads.
/// Version 2 holds one vCPU-state type for every engine, the KVM VM state,
/// the RTC and each drive's size.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest state-file format this build reads: version 1 bodies (the
/// riscv64 interpreter only, before the state types were merged) cannot be
/// decoded into today's state, so they are refused by version, not by a
/// body mismatch.
pub const OLDEST_VERSION: u32 = 2;
/// Bytes before the body.
pub const HEADER_LEN: usize = 24;
/// Largest state body accepted (the body is small: registers and device state).
pub const MAX_BODY: u64 = 64 << 20;
/// Memory-file regions start on this boundary, so they can be mapped back.
pub const PAGE_SIZE: u64 = 4096;

/// Why a snapshot could not be written or read. Each refusal has its own variant.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file could not be read, written or renamed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the state-file magic.
    #[error("{path} is not a snapshot state file (magic {found:02x?}, expected {MAGIC:02x?})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        found: Vec<u8>,
    },
    /// The file was written by a newer format than this build reads.
    #[error("{path} has snapshot format version {found}; this build reads versions up to {FORMAT_VERSION}")]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// The file's version is older than this build reads (or 0, which never existed).
    #[error("{path} has snapshot format version {found}; this build reads versions {OLDEST_VERSION} to {FORMAT_VERSION} (take the snapshot again with this build)")]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// The file ends before its header or body does.
    #[error("{path} is truncated: {needed} bytes expected, {found} present")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises.
        needed: u64,
        /// Bytes there are.
        found: u64,
    },
    /// There are bytes after the body.
    #[error("{path} has {extra} bytes after the snapshot body")]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// How many.
        extra: u64,
    },
    /// The body's checksum does not match the header's.
    #[error("{path} is corrupt: CRC-32C of the body is {computed:#010x}, the header says {stored:#010x}")]
    CrcMismatch {
        /// The file.
        path: PathBuf,
        /// The header's CRC.
        stored: u32,
        /// The body's CRC.
        computed: u32,
    },
    /// The body's length field is larger than any state body.
    #[error("{path} claims a {len}-byte body (at most {MAX_BODY})")]
    BodyTooLarge {
        /// The file.
        path: PathBuf,
        /// The length field.
        len: u64,
    },
    /// The body passed the CRC but is not a valid state.
    #[error("{path}: the snapshot body does not decode: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// serde's message.
        reason: String,
    },
    /// The memory file's size does not match the configuration's RAM.
    #[error(
        "memory file {path} is {found} bytes, but the snapshot's VM has {expected} bytes of RAM"
    )]
    MemorySize {
        /// The memory file.
        path: PathBuf,
        /// Bytes the state file's configuration needs.
        expected: u64,
        /// Bytes in the file.
        found: u64,
    },
    /// The state file is self-consistent but does not fit the VM it describes.
    #[error("the snapshot does not match its VM: {0}")]
    Mismatch(String),
    /// A device or vCPU refused its saved state.
    #[error("restoring {what}: {source}")]
    State {
        /// The device or vCPU.
        what: String,
        /// What it refused.
        #[source]
        source: vm_device::state::StateError,
    },
    /// The VM must be paused to be snapshotted.
    #[error("the VM is {state}; pause it before taking a snapshot")]
    NotPaused {
        /// Its state.
        state: String,
    },
    /// The VM's engine cannot save its vCPU state.
    #[error("snapshots are not supported for this engine ({engine})")]
    UnsupportedEngine {
        /// The engine.
        engine: String,
    },
    /// The engine could not save a vCPU's or the VM's state, or refused a
    /// saved one (another engine's, another layout version, a host whose
    /// CPU does not match).
    #[error("{what}: {source}")]
    Engine {
        /// What was being saved or restored.
        what: String,
        /// What the engine reported.
        #[source]
        source: vm_accel::AccelError,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A state file's bytes: the header and `body`.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Checks a state file's header and CRC; returns its body. `path` names
/// the file in errors.
pub fn decode<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8], SnapshotError> {
    let path_buf = || path.to_path_buf();
    let found = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(bytes) {
            return Err(SnapshotError::Truncated {
                path: path_buf(),
                needed: HEADER_LEN as u64,
                found,
            });
        }
        return Err(SnapshotError::BadMagic {
            path: path_buf(),
            found: bytes[..bytes.len().min(MAGIC.len())].to_vec(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated {
            path: path_buf(),
            needed: HEADER_LEN as u64,
            found,
        });
    }
    let version = le_u32(&bytes[8..12]);
    if version > FORMAT_VERSION {
        return Err(SnapshotError::NewerVersion {
            path: path_buf(),
            found: version,
        });
    }
    if version < OLDEST_VERSION {
        return Err(SnapshotError::UnknownVersion {
            path: path_buf(),
            found: version,
        });
    }
    let stored = le_u32(&bytes[12..16]);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[16..24]);
    let len = u64::from_le_bytes(len_bytes);
    if len > MAX_BODY {
        return Err(SnapshotError::BodyTooLarge {
            path: path_buf(),
            len,
        });
    }
    let have = found - HEADER_LEN as u64;
    if have < len {
        return Err(SnapshotError::Truncated {
            path: path_buf(),
            needed: HEADER_LEN as u64 + len,
            found,
        });
    }
    if have > len {
        return Err(SnapshotError::TrailingData {
            path: path_buf(),
            extra: have - len,
        });
    }
    let body = &bytes[HEADER_LEN..];
    let computed = crc32c::crc32c(body);
    if computed != stored {
        return Err(SnapshotError::CrcMismatch {
            path: path_buf(),
            stored,
            computed,
        });
    }
    Ok(body)
}

/// Reads and checks a state file; returns its body.
pub fn read_state_file(path: &Path) -> Result<Vec<u8>, SnapshotError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io("state file", path))?;
    // Never read more than a valid file can hold (a device or a huge file is refused).
    let limit = HEADER_LEN as u64 + MAX_BODY + 1;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(io("state file", path))?;
    decode(path, &bytes).map(<[u8]>::to_vec)
}

/// Writes `contents` to `path` through a temporary file renamed into place.
pub fn write_atomically(
    what: &'static str,
    path: &Path,
    contents: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), SnapshotError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        contents(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(what, path))
}

/// Offset of each region in the memory file (regions of `sizes` bytes, page-aligned).
pub fn region_offsets(sizes: &[u64]) -> (Vec<u64>, u64) {
    let mut offsets = Vec::with_capacity(sizes.len());
    let mut at = 0u64;
    for &size in sizes {
        offsets.push(at);
        at = at.saturating_add(size.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE));
    }
    (offsets, at)
}

/// Checks that the memory file at `path` is exactly `expected` bytes.
pub fn check_memory_file(
    path: &Path,
    file: &std::fs::File,
    expected: u64,
) -> Result<(), SnapshotError> {
    let meta = file.metadata().map_err(io("memory file", path))?;
    if !meta.is_file() {
        return Err(SnapshotError::Io {
            what: "memory file",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    if meta.len() != expected {
        return Err(SnapshotError::MemorySize {
            path: path.to_path_buf(),
            expected,
            found: meta.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("state.snap")
    }

    #[test]
    fn a_body_round_trips() {
        let bytes = encode(b"{\"x\":1}");
        assert_eq!(decode(p(), &bytes).unwrap(), b"{\"x\":1}");
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mut bytes = encode(b"{}");
        bytes[0] = b'X';
        assert!(matches!(
            decode(p(), &bytes),
            Err(SnapshotError::BadMagic { .. })
        ));
        assert!(matches!(
            decode(p(), b"\x7fELF\x02\x01\x01\x00rest-of-an-elf"),
            Err(SnapshotError::BadMagic { .. })
        ));
    }

    #[test]
    fn newer_and_unknown_versions_are_refused() {
        let mut bytes = encode(b"{}");
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = decode(p(), &bytes).unwrap_err();
        assert!(
            matches!(err, SnapshotError::NewerVersion { found, .. } if found == FORMAT_VERSION + 1)
        );
        assert!(err.to_string().contains("reads versions up to"), "{err}");
        for old in [0u32, 1] {
            bytes[8..12].copy_from_slice(&old.to_le_bytes());
            assert!(matches!(
                decode(p(), &bytes),
                Err(SnapshotError::UnknownVersion { .. })
            ));
        }
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            decode(p(), &bytes),
            Err(SnapshotError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn a_flipped_body_bit_fails_the_crc() {
        let mut bytes = encode(b"{\"registers\":[1,2,3]}");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x10;
        assert!(matches!(
            decode(p(), &bytes),
            Err(SnapshotError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn truncated_files_are_refused_at_every_length() {
        let bytes = encode(b"{\"a\":\"some body\"}");
        for cut in 0..bytes.len() {
            let err = decode(p(), &bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, SnapshotError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode(p(), &longer),
            Err(SnapshotError::TrailingData { extra: 1, .. })
        ));
    }

    #[test]
    fn a_huge_length_field_is_refused_without_allocating() {
        let mut bytes = encode(b"{}");
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(p(), &bytes),
            Err(SnapshotError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn memory_file_size_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.snap");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        check_memory_file(&path, &file, 8192).unwrap();
        assert!(matches!(
            check_memory_file(&path, &file, 4096),
            Err(SnapshotError::MemorySize {
                expected: 4096,
                found: 8192,
                ..
            })
        ));
    }

    #[test]
    fn regions_are_page_aligned_in_the_memory_file() {
        let (offsets, total) = region_offsets(&[4096, 100, 8192]);
        assert_eq!(offsets, [0, 4096, 8192]);
        assert_eq!(total, 16384);
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.snap");
        let err = write_atomically("state file", &path, |_| {
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
