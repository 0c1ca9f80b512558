//! The in-memory index of a v2 store (stream heads, frames holding each stream), built
//! while opening it.
//!
//! Opening only reads each event's stream id and sequence (current schema) instead of
//! decoding the whole event: the CRC already vouches for the bytes, and payload decoding
//! errors surface, with their offset, when the events are read.

use crate::id::VmId;
use crate::store::codec::{EventDecoder, Peek};

use super::format::split_count;
use super::State;

/// Reusable scratch space for indexing frames.
#[derive(Debug, Default)]
pub(super) struct Indexer {
    decoder: EventDecoder,
    /// Streams seen in the current frame with their first sequence in it.
    in_frame: Vec<(VmId, u64)>,
}

impl Indexer {
    /// Checks and indexes the events of the frame at `offset`.
    pub(super) fn frame(
        &mut self,
        st: &mut State,
        payload: &[u8],
        offset: u64,
    ) -> Result<(), String> {
        let (count, mut rest) = split_count(payload).map_err(|e| e.to_string())?;
        self.in_frame.clear();
        // The stream of the previous event and its last sequence: runs of one stream skip
        // the hash lookups.
        let mut run: Option<(VmId, u64)> = None;
        for i in 0..count {
            let peek = self
                .decoder
                .peek_next(&mut rest)
                .map_err(|e| format!("event {i} of {count}: {e}"))?;
            let (id, sequence, decoded_id) = match &peek {
                Peek::Current { id, sequence } => (*id, *sequence, None),
                Peek::Decoded(ev) => (ev.vm_id.as_str().as_bytes(), ev.sequence, Some(&ev.vm_id)),
            };
            if let Some((run_id, last)) = &mut run {
                if run_id.as_str().as_bytes() == id {
                    if sequence != *last + 1 {
                        return Err(gap(run_id.as_str(), *last + 1, sequence));
                    }
                    *last = sequence;
                    continue;
                }
            }
            if let Some((run_id, last)) = run.take() {
                st.heads.set(run_id, last);
            }
            let id = std::str::from_utf8(id).map_err(|e| format!("event {i}: vm id: {e}"))?;
            let (vm, last) = match st.heads.lookup(id) {
                Some((vm, last)) => (vm.clone(), last),
                None => match decoded_id {
                    Some(vm) => (vm.clone(), 0),
                    None => (VmId::new(id).map_err(|e| format!("event {i}: {e}"))?, 0),
                },
            };
            if sequence != last + 1 {
                return Err(gap(id, last + 1, sequence));
            }
            if !self.in_frame.iter().any(|(v, _)| *v == vm) {
                self.in_frame.push((vm.clone(), sequence));
            }
            run = Some((vm, sequence));
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes after the last of {count} events",
                rest.len()
            ));
        }
        if let Some((run_id, last)) = run {
            st.heads.set(run_id, last);
        }
        for (vm, first) in self.in_frame.drain(..) {
            st.stream_frames
                .entry(vm)
                .or_default()
                .push((first, offset));
        }
        st.durable_events += u64::from(count);
        Ok(())
    }
}

fn gap(id: &str, expected: u64, found: u64) -> String {
    format!("vm {id}: expected sequence {expected}, got {found}")
}
