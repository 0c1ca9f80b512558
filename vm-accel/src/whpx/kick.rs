//! Kicking a WHPX virtual processor out of `WHvRunVirtualProcessor`.

use super::vm::PartitionShared;
use crate::decode::whpx_abi as abi;
use crate::kick::Kick;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;

/// Kick: a pending flag plus `WHvCancelRunVirtualProcessor` (any thread).
/// Holds the partition weakly: a handle that outlives its VM does nothing.
#[derive(Debug)]
pub(super) struct WhpxKick {
    pending: AtomicBool,
    partition: Weak<PartitionShared>,
    index: u32,
}

impl Kick for WhpxKick {
    fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let Some(partition) = self.partition.upgrade() else {
            return;
        };
        // SAFETY: the partition is alive (upgraded above); canceling a processor
        // that is not in WHvRunVirtualProcessor (or was deleted) only returns an
        // error, and the pending flag makes the next `run()` return anyway.
        let hr = unsafe {
            (partition.api.WHvCancelRunVirtualProcessor)(partition.handle, self.index, 0)
        };
        if hr < 0 {
            tracing::debug!(error = %abi::describe_hresult(hr), "WHvCancelRunVirtualProcessor failed");
        }
    }
}

impl WhpxKick {
    pub(super) fn new(partition: Weak<PartitionShared>, index: u32) -> Self {
        Self {
            pending: AtomicBool::new(false),
            partition,
            index,
        }
    }

    /// Takes a pending kick.
    pub(super) fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }
}
