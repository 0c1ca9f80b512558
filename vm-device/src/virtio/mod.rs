//! Virtio devices: the MMIO transport, descriptor-chain validation and the
//! device models (virtio-net, virtio-blk).
//!
//! A [`VirtioDevice`] knows its own registers (features, config space) and how
//! to process its queues; the [`mmio::MmioTransport`] owns the queues, runs the
//! driver handshake, raises interrupts and turns device errors into
//! `DEVICE_NEEDS_RESET`.

pub mod block;
pub mod chain;
pub mod guest_driver;
pub mod mmio;
pub mod net;

use std::fmt;

use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueT};

/// Guest memory as devices see it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// `VIRTIO_F_VERSION_1`: the device is a modern (1.x) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.x, 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready; the device may process queues.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and needs a reset by the driver.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// Device type ids (virtio 1.x, 5).
pub mod device_type {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
}

/// Errors a device reports while processing queues; each one makes the
/// transport set `DEVICE_NEEDS_RESET`.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A descriptor chain broke the rules (see [`chain::ChainError`]).
    #[error("queue {queue}: {source}")]
    Chain {
        /// Queue the chain came from.
        queue: u16,
        /// What was wrong with it.
        source: chain::ChainError,
    },
    /// The available index moved further than the queue size since the last look.
    #[error("queue {queue}: available index jumped from {last} to {now}, more than the queue size {size}")]
    AvailIndexJump {
        /// Queue index.
        queue: u16,
        /// Index the device had consumed up to.
        last: u16,
        /// Index the driver published.
        now: u16,
        /// Queue size.
        size: u16,
    },
    /// A ring or a buffer could not be accessed in guest memory.
    #[error("queue {queue}: {source}")]
    Queue {
        /// Queue index.
        queue: u16,
        /// The virtio-queue error.
        source: virtio_queue::Error,
    },
    /// A buffer address was valid when checked but the copy failed.
    #[error("queue {queue}: guest memory access failed: {source}")]
    Memory {
        /// Queue index.
        queue: u16,
        /// The vm-memory error.
        source: vm_memory::GuestMemoryError,
    },
    /// A request the device cannot even answer (e.g. no device-writable status byte).
    #[error("queue {queue}: request {head}: {reason}")]
    BadRequest {
        /// Queue index.
        queue: u16,
        /// Head descriptor of the request.
        head: u16,
        /// What was wrong.
        reason: &'static str,
    },
    /// Activation was refused (e.g. a required queue is not ready or not in guest memory).
    #[error("activation failed: {0}")]
    Activation(String),
}

/// What processing a queue changed: bit `n` set means queue `n` got used buffers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UsedQueues(pub u32);

impl UsedQueues {
    /// Mark queue `index` as having new used buffers.
    pub fn mark(&mut self, index: usize) {
        self.0 |= 1 << index;
    }
    /// Whether queue `index` has new used buffers.
    pub fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

/// The queues and memory a device processes, lent by the transport.
#[derive(Debug)]
pub struct QueueContext<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemory,
    /// The device's queues, indexed like `queue_max_sizes`.
    pub queues: &'a mut [Queue],
}

/// A virtio device model behind a transport.
pub trait VirtioDevice: Send + fmt::Debug {
    /// Virtio device type id ([`device_type`]).
    fn device_type(&self) -> u32;
    /// Maximum size of each of the device's queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers (must include [`VIRTIO_F_VERSION_1`]).
    fn device_features(&self) -> u64;
    /// Read from the device-specific config space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write to the device-specific config space (most fields are read-only).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(offset, len = data.len(), "virtio: ignoring config write");
    }
    /// Bumped by the device each time its config space changes.
    fn config_generation(&self) -> u32 {
        0
    }
    /// The driver set DRIVER_OK with these features and queues.
    fn activate(&mut self, acked_features: u64, ctx: QueueContext<'_>) -> Result<(), DeviceError>;
    /// The driver notified queue `index`.
    fn queue_notify(
        &mut self,
        index: u16,
        ctx: QueueContext<'_>,
    ) -> Result<UsedQueues, DeviceError>;
    /// When the device wants [`VirtioDevice::poll`] called again even if no
    /// event arrives (e.g. a rate limiter refills); `None` = only on events.
    fn poll_after(&self) -> Option<std::time::Duration> {
        None
    }
    /// Work that does not come from the driver (a backend has frames ready).
    fn poll(&mut self, ctx: QueueContext<'_>) -> Result<UsedQueues, DeviceError> {
        let _ = ctx;
        Ok(UsedQueues::default())
    }
    /// The driver reset the device: drop all queue state and negotiated features.
    fn reset(&mut self);
}

/// Refuse an available index that moved more than the queue size (a driver
/// bug or attack that would make us process stale entries twice).
pub(crate) fn check_avail(mem: &GuestMemory, q: &Queue, queue: u16) -> Result<(), DeviceError> {
    let now = q
        .avail_idx(mem, Ordering::Acquire)
        .map_err(|source| DeviceError::Queue { queue, source })?
        .0;
    let last = q.next_avail();
    if now.wrapping_sub(last) > q.size() {
        return Err(DeviceError::AvailIndexJump {
            queue,
            last,
            now,
            size: q.size(),
        });
    }
    Ok(())
}

/// Refuse activation when queue `index` is not ready or its rings are not in guest memory.
pub(crate) fn validate_queue(mem: &GuestMemory, q: &Queue, index: u16) -> Result<(), DeviceError> {
    if !q.is_valid(mem) {
        return Err(DeviceError::Activation(format!(
            "queue {index} is not ready or its rings are outside guest memory (desc {:#x}, avail {:#x}, used {:#x})",
            q.desc_table(),
            q.avail_ring(),
            q.used_ring()
        )));
    }
    Ok(())
}
