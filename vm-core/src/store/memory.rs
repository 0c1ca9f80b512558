//! In-memory adapter: same contract as the file stores, nothing persisted.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::event::VmEvent;
use crate::id::VmId;

use super::streams::StreamHeads;
use super::{EventIter, EventStore, StoreError, StoreFormat};

#[derive(Debug, Default)]
struct Inner {
    events: Vec<VmEvent>,
    heads: StreamHeads,
    by_stream: HashMap<VmId, Vec<usize>>,
}

/// An event store held in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl EventStore for MemoryStore {
    fn format(&self) -> StoreFormat {
        StoreFormat::Memory
    }

    fn append_batch(&self, events: &[VmEvent]) -> Result<u64, StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.heads.check_and_apply(events)?;
        for ev in events {
            let idx = inner.events.len();
            inner
                .by_stream
                .entry(ev.vm_id.clone())
                .or_default()
                .push(idx);
            inner.events.push(ev.clone());
        }
        Ok(inner.events.len() as u64)
    }

    fn read_stream(&self, vm_id: &VmId, from_sequence: u64) -> Result<Vec<VmEvent>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let Some(indices) = inner.by_stream.get(vm_id) else {
            return Ok(Vec::new());
        };
        // Stream sequences are 1, 2, 3, ... so sequence s sits at position s - 1.
        let skip = from_sequence.saturating_sub(1).min(indices.len() as u64) as usize;
        Ok(indices[skip..]
            .iter()
            .map(|&i| inner.events[i].clone())
            .collect())
    }

    fn read_all(&self) -> Result<EventIter<'_>, StoreError> {
        let snapshot = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .clone();
        Ok(Box::new(snapshot.into_iter().map(Ok)))
    }

    fn head(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .len() as u64
    }

    fn stream_head(&self, vm_id: &VmId) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .heads
            .get(vm_id)
    }
}
