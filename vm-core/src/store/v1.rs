//! The legacy v1 journal: one JSON object per line (schema-1 events, see [`super::legacy`]).
//!
//! Deprecated: it can be read and migrated, never written. Opening one logs a deprecation
//! warning once per process. A last line without its newline that does not parse is a torn
//! tail: it is reported through [`EventStore::tail_recovery`] and ignored, but the file is
//! left untouched (read-only); a bad line anywhere else is an error naming line and offset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::event::VmEvent;
use crate::id::VmId;

use super::fs::{StdFs, StoreFs};
use super::legacy::upcast_json;
use super::streams::StreamHeads;
use super::{EventIter, EventStore, StoreError, StoreFormat, TailRecovery};

static DEPRECATION: Once = Once::new();

/// A v1 journal loaded into memory, read-only.
#[derive(Debug)]
pub struct V1Store {
    path: PathBuf,
    events: Vec<VmEvent>,
    heads: StreamHeads,
    by_stream: HashMap<VmId, Vec<usize>>,
    recovery: Option<TailRecovery>,
}

impl V1Store {
    /// Reads and upcasts every event of the v1 journal at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_in(&StdFs, path)
    }

    /// [`V1Store::open`] on the file system `fs`.
    pub(crate) fn open_in(fs: &dyn StoreFs, path: &Path) -> Result<Self, StoreError> {
        DEPRECATION.call_once(|| {
            tracing::warn!(
                path = %path.display(),
                "the v1 (JSON-lines) event store format is deprecated and read-only; \
                 migrate it to v2"
            );
        });
        let data = fs
            .read_up_to(path, u64::MAX)
            .map_err(|e| StoreError::io("read", path, e))?;
        let mut store = Self {
            path: path.to_owned(),
            events: Vec::new(),
            heads: StreamHeads::default(),
            by_stream: HashMap::new(),
            recovery: None,
        };
        let mut offset = 0usize;
        let mut line_no = 0u64;
        while offset < data.len() {
            line_no += 1;
            let (line, next, terminated) = match data[offset..].iter().position(|&b| b == b'\n') {
                Some(n) => (&data[offset..offset + n], offset + n + 1, true),
                None => (&data[offset..], data.len(), false),
            };
            if !line.iter().all(u8::is_ascii_whitespace) {
                let bad = |reason: String| StoreError::BadV1Line {
                    path: path.to_owned(),
                    line: line_no,
                    offset: offset as u64,
                    reason,
                };
                match upcast_json(line) {
                    Ok(ev) => {
                        store.heads.observe(&ev).map_err(|e| bad(e.to_string()))?;
                        let idx = store.events.len();
                        store
                            .by_stream
                            .entry(ev.vm_id.clone())
                            .or_default()
                            .push(idx);
                        store.events.push(ev);
                    }
                    Err(e) if !terminated => {
                        let recovery = TailRecovery {
                            offset: offset as u64,
                            dropped_bytes: line.len() as u64,
                            reason: format!("unterminated last line {line_no}: {e}"),
                        };
                        tracing::warn!(
                            path = %path.display(),
                            offset = recovery.offset,
                            dropped = recovery.dropped_bytes,
                            "ignoring torn tail of v1 journal: {}",
                            recovery.reason
                        );
                        store.recovery = Some(recovery);
                    }
                    Err(e) => return Err(bad(e.to_string())),
                }
            }
            offset = next;
        }
        Ok(store)
    }

    /// Path of the journal.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventStore for V1Store {
    fn format(&self) -> StoreFormat {
        StoreFormat::V1
    }

    fn append_batch(&self, _events: &[VmEvent]) -> Result<u64, StoreError> {
        Err(StoreError::ReadOnly {
            format: StoreFormat::V1,
        })
    }

    fn read_stream(&self, vm_id: &VmId, from_sequence: u64) -> Result<Vec<VmEvent>, StoreError> {
        let Some(indices) = self.by_stream.get(vm_id) else {
            return Ok(Vec::new());
        };
        let skip = from_sequence.saturating_sub(1).min(indices.len() as u64) as usize;
        Ok(indices[skip..]
            .iter()
            .map(|&i| self.events[i].clone())
            .collect())
    }

    fn read_all(&self) -> Result<EventIter<'_>, StoreError> {
        Ok(Box::new(self.events.iter().cloned().map(Ok)))
    }

    fn head(&self) -> u64 {
        self.events.len() as u64
    }

    fn stream_head(&self, vm_id: &VmId) -> u64 {
        self.heads.get(vm_id)
    }

    fn tail_recovery(&self) -> Option<&TailRecovery> {
        self.recovery.as_ref()
    }
}
