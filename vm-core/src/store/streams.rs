//! Per-stream sequence bookkeeping shared by the adapters.

use std::collections::HashMap;

use crate::event::VmEvent;
use crate::id::VmId;

use super::StoreError;

/// Last sequence number of each stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct StreamHeads {
    heads: HashMap<VmId, u64>,
}

impl StreamHeads {
    /// Last sequence of `id` (0 if the stream is empty).
    pub(crate) fn get(&self, id: &VmId) -> u64 {
        self.heads.get(id).copied().unwrap_or(0)
    }

    /// The stored key and last sequence of stream `id`, if it exists.
    pub(crate) fn lookup(&self, id: &str) -> Option<(&VmId, u64)> {
        self.heads.get_key_value(id).map(|(k, v)| (k, *v))
    }

    /// Sets the last sequence of `id` (callers checked continuity).
    pub(crate) fn set(&mut self, id: VmId, sequence: u64) {
        self.heads.insert(id, sequence);
    }

    /// Checks that `events` continue their streams, then records them; on error nothing
    /// is recorded.
    pub(crate) fn check_and_apply(&mut self, events: &[VmEvent]) -> Result<(), StoreError> {
        if let [ev] = events {
            self.observe(ev)?;
            return Ok(());
        }
        let mut overlay: HashMap<&VmId, u64> = HashMap::new();
        for ev in events {
            let last = overlay
                .get(&ev.vm_id)
                .copied()
                .unwrap_or_else(|| self.get(&ev.vm_id));
            check(ev, last)?;
            overlay.insert(&ev.vm_id, ev.sequence);
        }
        for (id, seq) in overlay {
            self.heads.insert(id.clone(), seq);
        }
        Ok(())
    }

    /// Checks and records one event.
    pub(crate) fn observe(&mut self, ev: &VmEvent) -> Result<(), StoreError> {
        if let Some(last) = self.heads.get_mut(&ev.vm_id) {
            check(ev, *last)?;
            *last = ev.sequence;
        } else {
            check(ev, 0)?;
            self.heads.insert(ev.vm_id.clone(), ev.sequence);
        }
        Ok(())
    }
}

fn check(ev: &VmEvent, last: u64) -> Result<(), StoreError> {
    let expected = last + 1;
    if ev.sequence == expected {
        Ok(())
    } else {
        Err(StoreError::SequenceConflict {
            vm_id: ev.vm_id.clone(),
            expected,
            found: ev.sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, VmEvent};

    fn ev(id: &str, seq: u64) -> VmEvent {
        VmEvent::new(VmId::new(id).unwrap(), seq, EventKind::Started)
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let mut h = StreamHeads::default();
        h.check_and_apply(&[ev("a", 1), ev("b", 1), ev("a", 2)])
            .unwrap();
        let err = h.check_and_apply(&[ev("a", 3), ev("b", 3)]).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SequenceConflict {
                expected: 2,
                found: 3,
                ..
            }
        ));
        assert_eq!(h.get(&VmId::new("a").unwrap()), 2);
        h.check_and_apply(&[ev("a", 3)]).unwrap();
        assert!(h.check_and_apply(&[ev("c", 2)]).is_err());
    }
}
