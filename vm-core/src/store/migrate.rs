//! Rewriting a v1 journal as a v2 store, crash-safely.

use std::path::{Path, PathBuf};

use super::fs::{StdFs, StoreFs};
use super::{detect_format_in, EventStore, StoreError, StoreFormat, V1Store, V2Store};

/// Events per frame written during migration (well below the frame size limit).
const MIGRATION_BATCH: usize = 512;

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationReport {
    /// The store was v1 and now is v2.
    Migrated {
        /// Events copied.
        events: u64,
        /// Where the original v1 file was kept (hard link).
        backup: PathBuf,
        /// Bytes of a torn v1 tail that were not carried over.
        dropped_tail_bytes: u64,
    },
    /// The store already was v2; nothing was done.
    AlreadyV2,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// True if `backup` already holds exactly the v1 journal at `path`: the link made by a
/// migration interrupted before its rename, which a retry keeps. Any other file there is
/// refused ([`StoreError::AlreadyExists`]) rather than overwritten.
fn is_backup_of(fs: &dyn StoreFs, backup: &Path, path: &Path) -> Result<bool, StoreError> {
    match fs.file_len(backup) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("stat", backup, e)),
    }
    let kept = fs
        .read_up_to(backup, u64::MAX)
        .map_err(|e| StoreError::io("read", backup, e))?;
    let current = fs
        .read_up_to(path, u64::MAX)
        .map_err(|e| StoreError::io("read", path, e))?;
    if kept == current {
        tracing::info!(path = %backup.display(), "keeping the backup of an interrupted migration");
        Ok(true)
    } else {
        Err(StoreError::AlreadyExists {
            path: backup.to_owned(),
        })
    }
}

/// Migrates the v1 journal at `path` to v2 in place.
///
/// Steps: read and upcast every v1 event; write them to `<path>.v2-migrating` as a new v2
/// store (each frame fsync'd); reopen that file and check it replays to exactly the same
/// events; keep the original as `<path>.v1.bak` (hard link; one left by an interrupted
/// migration is kept if it holds the same bytes); atomically rename the new file
/// over `path` and fsync the directory. A crash at any point leaves either the old v1 file
/// or the complete v2 file at `path`.
pub fn migrate_v1_to_v2(path: &Path) -> Result<MigrationReport, StoreError> {
    migrate_in(&StdFs, path)
}

/// [`migrate_v1_to_v2`] on the file system `fs`.
pub(crate) fn migrate_in(fs: &dyn StoreFs, path: &Path) -> Result<MigrationReport, StoreError> {
    match detect_format_in(fs, path)? {
        Some(StoreFormat::V2) => return Ok(MigrationReport::AlreadyV2),
        Some(StoreFormat::V1) => {}
        Some(StoreFormat::Memory) | None => {
            return Err(StoreError::io(
                "migrate",
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no v1 journal here"),
            ))
        }
    }
    let v1 = V1Store::open_in(fs, path)?;
    let events: Vec<_> = v1.read_all()?.collect::<Result<_, _>>()?;
    let dropped_tail_bytes = v1.tail_recovery().map_or(0, |r| r.dropped_bytes);

    let tmp = with_suffix(path, ".v2-migrating");
    match fs.remove_file(&tmp) {
        Ok(()) => {
            tracing::info!(path = %tmp.display(), "removed leftover of an interrupted migration");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove", &tmp, e)),
    }
    {
        let v2 = V2Store::create_in(fs, &tmp)?;
        for chunk in events.chunks(MIGRATION_BATCH) {
            v2.append_batch(chunk)?;
        }
    }
    {
        let check = V2Store::open_in(fs, &tmp)?;
        let mut n = 0usize;
        for (i, got) in check.read_all()?.enumerate() {
            let got = got?;
            if events.get(i) != Some(&got) {
                return Err(StoreError::MigrationMismatch(format!(
                    "event {i} reads back as {got:?}"
                )));
            }
            n += 1;
        }
        if n != events.len() {
            return Err(StoreError::MigrationMismatch(format!(
                "{n} events read back, {} written",
                events.len()
            )));
        }
    }
    let backup = with_suffix(path, ".v1.bak");
    if !is_backup_of(fs, &backup, path)? {
        fs.hard_link(path, &backup)
            .map_err(|e| StoreError::io("link backup", &backup, e))?;
    }
    fs.rename(&tmp, path)
        .map_err(|e| StoreError::io("rename", &tmp, e))?;
    super::v2::sync_dir(fs, path)?;
    tracing::info!(path = %path.display(), events = events.len(), backup = %backup.display(), "migrated v1 event store to v2");
    Ok(MigrationReport::Migrated {
        events: events.len() as u64,
        backup,
        dropped_tail_bytes,
    })
}
