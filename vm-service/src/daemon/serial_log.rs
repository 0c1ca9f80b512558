//! A VM's serial console as the daemon keeps it: a bounded tail for
//! `GET /vms/{id}` and a live feed for `GET /vms/{id}/serial` streams.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::broadcast;

/// Bytes of console output kept per VM.
pub const SERIAL_TAIL_BYTES: usize = 64 * 1024;
/// Chunks a slow stream reader may fall behind before it misses some.
const LIVE_BACKLOG: usize = 1024;

#[derive(Debug, Default)]
struct Inner {
    tail: VecDeque<u8>,
    total: u64,
    live: Option<broadcast::Sender<Bytes>>,
}

/// Console output of one VM across its boots.
#[derive(Debug, Default)]
pub struct SerialLog {
    inner: Mutex<Inner>,
}

impl SerialLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the live feed (when the VM starts).
    pub fn open_live(&self) {
        let (tx, _) = broadcast::channel(LIVE_BACKLOG);
        self.lock().live = Some(tx);
    }

    /// Ends the live feed: streams finish (when the VM stops).
    pub fn close_live(&self) {
        self.lock().live = None;
    }

    /// Appends console output.
    pub fn push(&self, data: &[u8]) {
        let mut inner = self.lock();
        inner.total += data.len() as u64;
        let keep = data.len().min(SERIAL_TAIL_BYTES);
        let overflow = (inner.tail.len() + keep).saturating_sub(SERIAL_TAIL_BYTES);
        inner.tail.drain(..overflow);
        inner.tail.extend(&data[data.len() - keep..]);
        if let Some(tx) = &inner.live {
            // No subscriber is fine.
            let _ = tx.send(Bytes::copy_from_slice(data));
        }
    }

    /// The last [`SERIAL_TAIL_BYTES`] of output.
    pub fn tail(&self) -> Vec<u8> {
        self.lock().tail.iter().copied().collect()
    }

    /// Total bytes ever written.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// The tail so far and, while the VM runs, a feed of what follows (no gap, no overlap).
    pub fn subscribe(&self) -> (Vec<u8>, Option<broadcast::Receiver<Bytes>>) {
        let inner = self.lock();
        let rx = inner.live.as_ref().map(broadcast::Sender::subscribe);
        (inner.tail.iter().copied().collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded_and_feed_follows() {
        let log = SerialLog::new();
        log.push(b"early ");
        log.open_live();
        let (snapshot, rx) = log.subscribe();
        assert_eq!(snapshot, b"early ");
        let mut rx = rx.unwrap();
        log.push(b"late");
        assert_eq!(&rx.try_recv().unwrap()[..], b"late");
        log.push(&vec![b'x'; SERIAL_TAIL_BYTES + 10]);
        assert_eq!(log.tail().len(), SERIAL_TAIL_BYTES);
        assert!(log.tail().iter().all(|&b| b == b'x'));
        assert_eq!(log.total(), 10 + SERIAL_TAIL_BYTES as u64 + 10);
        log.close_live();
        let _ = rx.try_recv();
        assert!(log.subscribe().1.is_none());
    }
}
