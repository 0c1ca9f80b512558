//! The boundary between the virtio-net device and where its frames go.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::interrupt::Interrupt;

/// Errors from a network backend.
#[derive(Debug, thiserror::Error)]
pub enum NetBackendError {
    /// The backend cannot take the frame right now (full queue); the frame is dropped.
    #[error("backend busy, frame dropped")]
    WouldBlock,
    /// The frame is malformed for this backend (e.g. shorter than an Ethernet header).
    #[error("malformed frame of {len} bytes: {reason}")]
    BadFrame {
        /// Length of the frame (with its virtio-net header).
        len: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The receive buffer is smaller than the frame waiting.
    #[error("frame of {len} bytes does not fit a {cap}-byte buffer")]
    BufferTooSmall {
        /// Frame length.
        len: usize,
        /// Buffer capacity.
        cap: usize,
    },
    /// This backend is not available on this host.
    #[error("{0} backend is not supported on this host")]
    Unsupported(&'static str),
    /// An OS call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Where a NIC's frames go: a TAP device, a virtual switch port, ...
///
/// Every frame starts with the 12-byte `virtio_net_hdr_v1`.
pub trait NetBackend: Send + fmt::Debug {
    /// Send one frame; never blocks.
    fn send(&mut self, frame: &[u8]) -> Result<(), NetBackendError>;
    /// Receive one frame into `buf`; `Ok(None)` when nothing is waiting. Never blocks.
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetBackendError>;
    /// virtio-net offload feature bits this backend can carry.
    fn offload_features(&self) -> u64 {
        0
    }
    /// Tell the backend which offloads the driver accepted.
    fn set_offloads(&mut self, acked_features: u64) -> Result<(), NetBackendError> {
        let _ = acked_features;
        Ok(())
    }
    /// Register a line fired when frames arrive while the device was idle
    /// (backends polled through a file descriptor ignore it: see `raw_fd`).
    fn set_rx_notifier(&mut self, notifier: Arc<dyn Interrupt>) {
        let _ = notifier;
    }
    /// The file descriptor an event loop should poll for readability, if any.
    fn raw_fd(&self) -> Option<i32> {
        None
    }
}
