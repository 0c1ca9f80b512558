//! The virtio-net device model: queue processing between guest memory and a backend.
//!
//! Queue 0 receives (the device writes frames into guest buffers), queue 1
//! transmits. Each chain is validated by [`collect_segments`] before a byte is
//! copied; a malformed chain is a device error (`DEVICE_NEEDS_RESET`), an
//! oversized or undersized frame is dropped and counted.
//!
//! Hot path: the TX and RX staging buffers, the segment list and the list of
//! used heads are owned by the device and reused, so steady-state processing
//! does not allocate.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::Bytes;

use super::backend::{NetBackend, NetBackendError};
use super::rate_limiter::RateLimiter;
use super::{features, MAX_BUFFER_LEN, VNET_HDR_LEN};
use crate::interrupt::Interrupt;
use crate::virtio::chain::{collect_segments, Direction, Segment};
use crate::virtio::{
    check_avail, device_type, validate_queue, DeviceError, GuestMemory, QueueContext, UsedQueues,
    VirtioDevice, VIRTIO_F_VERSION_1,
};

/// Index of the receive queue.
pub const RX_QUEUE: u16 = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: u16 = 1;
/// Default and maximum queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Most chains (TX) or frames (RX) handled per notify or poll, so one busy
/// queue cannot hold a vCPU or the event loop forever.
const PROCESS_BUDGET: usize = 2 * QUEUE_SIZE as usize;
/// Byte offset of `num_buffers` in `virtio_net_hdr_v1`.
const NUM_BUFFERS_OFFSET: usize = 10;
/// Config space: mac[6], status u16, max_virtqueue_pairs u16.
const CONFIG_LEN: usize = 10;
/// `VIRTIO_NET_S_LINK_UP`.
const LINK_UP: u16 = 1;

/// Counters of one NIC.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the backend.
    pub tx_packets: u64,
    /// Bytes handed to the backend (without virtio-net headers).
    pub tx_bytes: u64,
    /// TX frames dropped (malformed, too large, backend busy).
    pub tx_dropped: u64,
    /// Frames written into guest buffers.
    pub rx_packets: u64,
    /// Bytes written into guest buffers (without virtio-net headers).
    pub rx_bytes: u64,
    /// RX frames dropped (too large for the guest's buffers, malformed).
    pub rx_dropped: u64,
    /// Times TX stopped because the rate limiter ran dry.
    pub tx_throttled: u64,
}

/// Link state of a NIC, shared with the VMM; changing it bumps the config generation.
#[derive(Debug, Clone)]
pub struct LinkControl {
    down: Arc<AtomicBool>,
    generation: Arc<AtomicU32>,
}

impl Default for LinkControl {
    fn default() -> Self {
        Self {
            down: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl LinkControl {
    /// Set the link up or down; the transport raises a config interrupt on its next poll.
    pub fn set_up(&self, up: bool) {
        if self.down.swap(!up, Ordering::AcqRel) == up {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }
}

/// A virtio-net device.
#[derive(Debug)]
pub struct NetDevice {
    mac: [u8; 6],
    link: LinkControl,
    backend: Box<dyn NetBackend>,
    acked: u64,
    active: bool,
    tx_limiter: RateLimiter,
    /// TX stopped at its budget with chains left: poll again soon.
    tx_backlog: bool,
    /// RX stopped at its budget with frames possibly left in the backend.
    rx_backlog: bool,
    /// Length of the frame the rate limiter held back, if any.
    tx_throttled: Option<u64>,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    /// Length of a frame read from the backend but not yet delivered (0 = none).
    rx_pending: usize,
    segs: Vec<Segment>,
    /// (head, bytes written, segment range end) of the chains filled for one RX frame.
    rx_heads: Vec<(u16, u32, usize)>,
    stats: NetStats,
    queue_sizes: [u16; 2],
}

impl NetDevice {
    /// A NIC showing the guest `mac`, sending and receiving through
    /// `backend`, with no transmit limit.
    pub fn new(mac: [u8; 6], backend: Box<dyn NetBackend>) -> Self {
        Self {
            mac,
            link: LinkControl::default(),
            backend,
            acked: 0,
            active: false,
            tx_limiter: RateLimiter::default(),
            tx_throttled: None,
            tx_backlog: false,
            rx_backlog: false,
            tx_buf: vec![0; MAX_BUFFER_LEN],
            rx_buf: vec![0; MAX_BUFFER_LEN],
            rx_pending: 0,
            segs: Vec::with_capacity(usize::from(QUEUE_SIZE)),
            rx_heads: Vec::with_capacity(usize::from(QUEUE_SIZE)),
            stats: NetStats::default(),
            queue_sizes: [QUEUE_SIZE; 2],
        }
    }

    /// The same NIC with its transmissions limited by `limiter` (bytes and packets).
    #[must_use]
    pub fn with_tx_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.tx_limiter = limiter;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The MAC address in config space.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// A handle to change the link state the guest sees, from any thread.
    pub fn link_control(&self) -> LinkControl {
        self.link.clone()
    }

    /// The backend, e.g. to find the file descriptor to poll.
    pub fn backend(&self) -> &dyn NetBackend {
        self.backend.as_ref()
    }

    /// Register the line the backend fires when frames arrive for an idle device.
    pub fn set_rx_notifier(&mut self, notifier: Arc<dyn Interrupt>) {
        self.backend.set_rx_notifier(notifier);
    }

    fn mergeable(&self) -> bool {
        self.acked & features::MRG_RXBUF != 0
    }

    fn process_tx(&mut self, mem: &GuestMemory, q: &mut Queue) -> Result<bool, DeviceError> {
        check_avail(mem, q, TX_QUEUE)?;
        let mut used = false;
        self.tx_throttled = None;
        self.tx_backlog = false;
        let mut budget = PROCESS_BUDGET;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            if budget == 0 {
                // Let other work run; poll_after() asks to be called right back.
                q.go_to_previous_position();
                self.tx_backlog = true;
                break;
            }
            budget -= 1;
            let head = chain.head_index();
            self.segs.clear();
            let total = collect_segments(mem, chain, q.size(), Direction::ReadOnly, &mut self.segs)
                .map_err(|source| DeviceError::Chain {
                    queue: TX_QUEUE,
                    source,
                })? as usize;
            if self.tx_limiter.is_limiting()
                && !self.tx_limiter.try_consume(total as u64, Instant::now())
            {
                // Leave the chain for later: poll() resumes once tokens refill.
                q.go_to_previous_position();
                self.tx_throttled = Some(total as u64);
                self.stats.tx_throttled += 1;
                break;
            }
            self.transmit_one(mem, total)?;
            q.add_used(mem, head, 0)
                .map_err(|source| DeviceError::Queue {
                    queue: TX_QUEUE,
                    source,
                })?;
            used = true;
        }
        Ok(used)
    }

    fn transmit_one(&mut self, mem: &GuestMemory, total: usize) -> Result<(), DeviceError> {
        if total < VNET_HDR_LEN + 14 || total > self.tx_buf.len() {
            // Debug, not warn: a guest could otherwise flood the log.
            tracing::debug!(
                len = total,
                "virtio-net: dropping TX frame of invalid length"
            );
            self.stats.tx_dropped += 1;
            return Ok(());
        }
        let mut off = 0;
        for seg in &self.segs {
            let len = seg.len as usize;
            mem.read_slice(&mut self.tx_buf[off..off + len], seg.addr)
                .map_err(|source| DeviceError::Memory {
                    queue: TX_QUEUE,
                    source,
                })?;
            off += len;
        }
        if !self.tx_header_allowed() {
            tracing::debug!(
                "virtio-net: TX header asks for an offload that was not negotiated; dropped"
            );
            self.stats.tx_dropped += 1;
            return Ok(());
        }
        match self.backend.send(&self.tx_buf[..total]) {
            Ok(()) => {
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += (total - VNET_HDR_LEN) as u64;
            }
            Err(err) => {
                tracing::debug!(%err, "virtio-net: TX frame dropped by backend");
                self.stats.tx_dropped += 1;
            }
        }
        Ok(())
    }

    /// Check the TX header against the negotiated offloads, so a driver cannot
    /// push offload work onto a backend (or a peer guest) that never agreed to it.
    fn tx_header_allowed(&mut self) -> bool {
        const F_NEEDS_CSUM: u8 = 1;
        const GSO_TCPV4: u8 = 1;
        const GSO_TCPV6: u8 = 4;
        const GSO_ECN: u8 = 0x80;
        let (flags, gso) = (self.tx_buf[0], self.tx_buf[1]);
        if self.acked & features::CSUM == 0 {
            // Without offloads the header carries nothing: clear stale bytes.
            self.tx_buf[..NUM_BUFFERS_OFFSET].fill(0);
            return flags & F_NEEDS_CSUM == 0 && gso == 0;
        }
        let needed = match gso & !GSO_ECN {
            0 => 0,
            GSO_TCPV4 => features::HOST_TSO4,
            GSO_TCPV6 => features::HOST_TSO6,
            _ => return false,
        } | if gso & GSO_ECN != 0 {
            features::HOST_ECN
        } else {
            0
        };
        self.acked & needed == needed
    }

    fn process_rx(&mut self, mem: &GuestMemory, q: &mut Queue) -> Result<bool, DeviceError> {
        check_avail(mem, q, RX_QUEUE)?;
        let mut used = false;
        self.rx_backlog = false;
        let mut budget = PROCESS_BUDGET;
        loop {
            if budget == 0 {
                self.rx_backlog = true;
                break;
            }
            budget -= 1;
            if self.rx_pending == 0 {
                match self.backend.recv(&mut self.rx_buf) {
                    Ok(Some(n)) if n >= VNET_HDR_LEN => self.rx_pending = n,
                    Ok(Some(n)) => {
                        tracing::warn!(
                            len = n,
                            "virtio-net: backend frame shorter than its header"
                        );
                        self.stats.rx_dropped += 1;
                        continue;
                    }
                    Ok(None) => break,
                    Err(NetBackendError::BufferTooSmall { len, cap }) => {
                        tracing::warn!(
                            len,
                            cap,
                            "virtio-net: oversized frame from backend dropped"
                        );
                        self.stats.rx_dropped += 1;
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "virtio-net: backend receive failed");
                        break;
                    }
                }
            }
            match self.deliver_pending(mem, q)? {
                Delivery::Done => used = true,
                Delivery::Dropped => {}
                Delivery::NoBuffers => break,
            }
        }
        Ok(used)
    }

    /// Put the pending frame into guest RX buffers (several if mergeable).
    fn deliver_pending(
        &mut self,
        mem: &GuestMemory,
        q: &mut Queue,
    ) -> Result<Delivery, DeviceError> {
        let len = self.rx_pending;
        let mergeable = self.mergeable();
        self.segs.clear();
        self.rx_heads.clear();
        let mut remaining = len;
        while remaining > 0 {
            let Some(chain) = q.pop_descriptor_chain(mem) else {
                rewind(q, self.rx_heads.len());
                return Ok(Delivery::NoBuffers);
            };
            let head = chain.head_index();
            let cap = collect_segments(mem, chain, q.size(), Direction::WriteOnly, &mut self.segs)
                .map_err(|source| DeviceError::Chain {
                queue: RX_QUEUE,
                source,
            })? as usize;
            let take = cap.min(remaining);
            remaining -= take;
            self.rx_heads.push((head, take as u32, self.segs.len()));
            let first_too_small = self.rx_heads.len() == 1 && cap < VNET_HDR_LEN;
            if (!mergeable && remaining > 0) || first_too_small {
                // The guest's buffer cannot hold this frame: drop the frame,
                // keep the buffers for the next one.
                rewind(q, self.rx_heads.len());
                tracing::debug!(
                    len,
                    cap,
                    "virtio-net: RX frame does not fit the guest buffer; dropped"
                );
                self.stats.rx_dropped += 1;
                self.rx_pending = 0;
                return Ok(Delivery::Dropped);
            }
        }
        let num_buffers = self.rx_heads.len() as u16;
        self.rx_buf[NUM_BUFFERS_OFFSET..VNET_HDR_LEN].copy_from_slice(&num_buffers.to_le_bytes());
        let mut off = 0;
        let mut seg_start = 0;
        for &(head, take, seg_end) in &self.rx_heads {
            let mut left = take as usize;
            for seg in &self.segs[seg_start..seg_end] {
                if left == 0 {
                    break;
                }
                let n = (seg.len as usize).min(left);
                mem.write_slice(&self.rx_buf[off..off + n], seg.addr)
                    .map_err(|source| DeviceError::Memory {
                        queue: RX_QUEUE,
                        source,
                    })?;
                off += n;
                left -= n;
            }
            seg_start = seg_end;
            q.add_used(mem, head, take)
                .map_err(|source| DeviceError::Queue {
                    queue: RX_QUEUE,
                    source,
                })?;
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += (len - VNET_HDR_LEN) as u64;
        self.rx_pending = 0;
        Ok(Delivery::Done)
    }
}

enum Delivery {
    Done,
    Dropped,
    NoBuffers,
}

/// Undo `n` pops from the available ring (chains taken but not used).
fn rewind(q: &mut Queue, n: usize) {
    for _ in 0..n {
        q.go_to_previous_position();
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | features::MAC
            | features::STATUS
            | features::MRG_RXBUF
            | (self.backend.offload_features() & features::OFFLOADS)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&self.mac);
        let status = if self.link.is_up() { LINK_UP } else { 0 };
        config[6..8].copy_from_slice(&status.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if let Some(src) = config.get(start..) {
            let n = src.len().min(data.len());
            data[..n].copy_from_slice(&src[..n]);
        }
    }

    fn config_generation(&self) -> u32 {
        self.link.generation.load(Ordering::Acquire)
    }

    fn activate(&mut self, acked_features: u64, ctx: QueueContext<'_>) -> Result<(), DeviceError> {
        for (i, q) in ctx.queues.iter().enumerate() {
            validate_queue(ctx.mem, q, i as u16)?;
        }
        self.backend
            .set_offloads(acked_features)
            .map_err(|e| DeviceError::Activation(format!("backend refused offloads: {e}")))?;
        self.acked = acked_features;
        self.active = true;
        tracing::debug!(features = acked_features, mac = ?self.mac, "virtio-net: activated");
        Ok(())
    }

    fn queue_notify(
        &mut self,
        index: u16,
        ctx: QueueContext<'_>,
    ) -> Result<UsedQueues, DeviceError> {
        let mut used = UsedQueues::default();
        let [rx, tx] = ctx.queues else {
            return Ok(used);
        };
        match index {
            RX_QUEUE => {
                if self.process_rx(ctx.mem, rx)? {
                    used.mark(usize::from(RX_QUEUE));
                }
            }
            TX_QUEUE => {
                if self.process_tx(ctx.mem, tx)? {
                    used.mark(usize::from(TX_QUEUE));
                }
            }
            _ => tracing::warn!(index, "virtio-net: notify for an unknown queue"),
        }
        Ok(used)
    }

    fn poll_after(&self) -> Option<std::time::Duration> {
        if self.tx_backlog || self.rx_backlog {
            return Some(std::time::Duration::ZERO);
        }
        self.tx_throttled
            .map(|len| self.tx_limiter.retry_after(len))
    }

    fn poll(&mut self, ctx: QueueContext<'_>) -> Result<UsedQueues, DeviceError> {
        let mut used = UsedQueues::default();
        if !self.active {
            return Ok(used);
        }
        let [rx, tx] = ctx.queues else {
            return Ok(used);
        };
        if (self.tx_throttled.is_some() || self.tx_backlog) && self.process_tx(ctx.mem, tx)? {
            used.mark(usize::from(TX_QUEUE));
        }
        if self.process_rx(ctx.mem, rx)? {
            used.mark(usize::from(RX_QUEUE));
        }
        Ok(used)
    }

    fn reset(&mut self) {
        self.acked = 0;
        self.active = false;
        self.rx_pending = 0;
        self.tx_throttled = None;
        self.tx_backlog = false;
        self.rx_backlog = false;
    }
}
