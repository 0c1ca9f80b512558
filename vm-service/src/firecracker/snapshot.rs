//! `PUT /snapshot/create` and `PUT /snapshot/load` bodies, with Firecracker's
//! field names, and which of their values this VMM honours: full snapshots
//! only (no diff snapshots, no dirty-page tracking) and a memory file loaded
//! from a path (mapped `MAP_PRIVATE`; no userfaultfd backend).

use std::path::PathBuf;

use serde::Deserialize;

use super::model::Unsupported;
use crate::snapshot::SnapshotPaths;

/// `snapshot_type` of `PUT /snapshot/create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SnapshotType {
    /// Guest memory and state, whole.
    #[default]
    Full,
    /// Only the pages written since the last snapshot (refused).
    Diff,
}

/// `PUT /snapshot/create`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    /// Where the state file goes.
    pub snapshot_path: PathBuf,
    /// Where the memory file goes.
    pub mem_file_path: PathBuf,
    /// `Full` (the default) or `Diff`.
    #[serde(default)]
    pub snapshot_type: SnapshotType,
    /// The snapshot format version to write; accepted for compatibility and
    /// ignored (this VMM writes its one format).
    #[serde(default)]
    pub version: Option<String>,
}

impl SnapshotCreateParams {
    /// The two files, once the values are ones this VMM honours.
    pub fn paths(&self) -> Result<SnapshotPaths, Unsupported> {
        if self.snapshot_type == SnapshotType::Diff {
            return Err(Unsupported(
                "snapshot_type Diff is not supported: only full snapshots".into(),
            ));
        }
        Ok(SnapshotPaths {
            state: self.snapshot_path.clone(),
            memory: self.mem_file_path.clone(),
        })
    }
}

/// `backend_type` of `mem_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MemBackendType {
    /// `backend_path` is the memory file.
    File,
    /// `backend_path` is a Unix socket of a userfaultfd page server (refused).
    Uffd,
}

/// `mem_backend` of `PUT /snapshot/load`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemBackend {
    /// `File` or `Uffd`.
    pub backend_type: MemBackendType,
    /// The memory file (or page server socket).
    pub backend_path: PathBuf,
}

/// `PUT /snapshot/load`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    /// The state file.
    pub snapshot_path: PathBuf,
    /// The memory file (deprecated by Firecracker in favour of `mem_backend`).
    #[serde(default)]
    pub mem_file_path: Option<PathBuf>,
    /// Where guest memory comes from.
    #[serde(default)]
    pub mem_backend: Option<MemBackend>,
    /// Track dirty pages for diff snapshots; only `false` is supported.
    #[serde(default)]
    pub enable_diff_snapshots: bool,
    /// Firecracker's newer name for `enable_diff_snapshots`.
    #[serde(default)]
    pub track_dirty_pages: bool,
    /// Resume the microVM once loaded (otherwise it stays paused).
    #[serde(default)]
    pub resume_vm: bool,
}

impl SnapshotLoadParams {
    /// The two files, once exactly one memory source is given and every
    /// value is one this VMM honours.
    pub fn paths(&self) -> Result<SnapshotPaths, Unsupported> {
        if self.enable_diff_snapshots || self.track_dirty_pages {
            return Err(Unsupported(
                "enable_diff_snapshots/track_dirty_pages: true is not supported: there are no diff snapshots".into(),
            ));
        }
        let memory = match (&self.mem_file_path, &self.mem_backend) {
            (Some(path), None) => path.clone(),
            (None, Some(b)) if b.backend_type == MemBackendType::File => b.backend_path.clone(),
            (None, Some(_)) => {
                return Err(Unsupported(
                    "mem_backend.backend_type Uffd is not supported: use File".into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(Unsupported(
                    "mem_file_path and mem_backend are exclusive: give one".into(),
                ))
            }
            (None, None) => {
                return Err(Unsupported(
                    "the memory source is missing: give mem_backend (or mem_file_path)".into(),
                ))
            }
        };
        Ok(SnapshotPaths {
            state: self.snapshot_path.clone(),
            memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<SnapshotPaths, String> {
        let p: SnapshotLoadParams = serde_json::from_str(json).map_err(|e| e.to_string())?;
        p.paths().map_err(|e| e.to_string())
    }

    #[test]
    fn load_takes_exactly_one_file_memory_source() {
        let p = load(
            r#"{"snapshot_path":"s","mem_backend":{"backend_type":"File","backend_path":"m"}}"#,
        )
        .unwrap();
        assert_eq!(p.memory, PathBuf::from("m"));
        assert_eq!(
            load(r#"{"snapshot_path":"s","mem_file_path":"m2"}"#)
                .unwrap()
                .memory,
            PathBuf::from("m2")
        );
        let both = load(
            r#"{"snapshot_path":"s","mem_file_path":"m","mem_backend":{"backend_type":"File","backend_path":"m"}}"#,
        );
        assert!(both.unwrap_err().contains("exclusive"));
        assert!(load(r#"{"snapshot_path":"s"}"#)
            .unwrap_err()
            .contains("missing"));
        let uffd = load(
            r#"{"snapshot_path":"s","mem_backend":{"backend_type":"Uffd","backend_path":"u"}}"#,
        );
        assert!(uffd.unwrap_err().contains("Uffd"));
        let diff =
            load(r#"{"snapshot_path":"s","mem_file_path":"m","enable_diff_snapshots":true}"#);
        assert!(diff.unwrap_err().contains("diff"));
        assert!(
            load(r#"{"snapshot_path":"s","mem_file_path":"m","bogus":1}"#)
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn create_refuses_diff_snapshots() {
        let p: SnapshotCreateParams =
            serde_json::from_str(r#"{"snapshot_path":"s","mem_file_path":"m"}"#).unwrap();
        assert_eq!(p.paths().unwrap().state, PathBuf::from("s"));
        let d: SnapshotCreateParams = serde_json::from_str(
            r#"{"snapshot_path":"s","mem_file_path":"m","snapshot_type":"Diff"}"#,
        )
        .unwrap();
        assert!(d.paths().unwrap_err().to_string().contains("Diff"));
    }
}
