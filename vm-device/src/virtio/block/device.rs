//! The virtio-blk device model: one request queue between guest memory and a
//! [`BlockBackend`].
//!
//! Hot path: the segment list is owned by the device and reused, headers and
//! status bytes live on the stack, and data moves straight between guest
//! memory and the backend, so steady-state processing does not allocate.
//! While it works through the queue the device sets `VRING_USED_F_NO_NOTIFY`,
//! so a guest adding requests meanwhile does not exit to notify.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::{DescriptorChain, Queue, QueueT};

use super::backend::BlockBackend;
use super::request::{byte_range, Failure, Header, Range, Span, HEADER_LEN, RANGE_LEN};
use super::{features, request_status as status, request_type, ID_BYTES, SECTOR_SIZE};
use crate::interrupt::Interrupt;
use crate::virtio::chain::{collect_split_segments, Segment};
use crate::virtio::{
    check_avail, device_type, validate_queue, DeviceError, GuestMemory, QueueContext, UsedQueues,
    VirtioDevice, VIRTIO_F_VERSION_1,
};

/// The request queue.
const REQUEST_QUEUE: u16 = 0;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// Requests handled per notify or poll before the device lets go (and asks to
/// be polled again), so a flood cannot hold the device's lock for long.
const PROCESS_BUDGET: usize = 32;
/// Most data segments per request: every descriptor but the header's and the status's.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest discard / write-zeroes range, in sectors (just under 2 GiB).
const MAX_DEALLOCATE_SECTORS: u32 = (1 << 22) - 1;
/// Most ranges in one discard / write-zeroes request.
const MAX_DEALLOCATE_SEGMENTS: u32 = 16;
/// Discard alignment hint in sectors: 4 KiB, the usual filesystem block.
const DISCARD_ALIGNMENT: u32 = 8;
/// `VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP`.
const FLAG_UNMAP: u32 = 1;
/// Length of the config space exposed (up to `write_zeroes_may_unmap` and its padding).
const CONFIG_LEN: usize = 60;

/// Counters of one drive.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// Completed `IN` requests.
    pub reads: u64,
    /// Bytes read into the guest.
    pub read_bytes: u64,
    /// Completed `OUT` requests.
    pub writes: u64,
    /// Bytes written from the guest.
    pub write_bytes: u64,
    /// Completed `FLUSH` requests.
    pub flushes: u64,
    /// Completed `DISCARD` and `WRITE_ZEROES` requests.
    pub deallocations: u64,
    /// Requests answered with `IOERR` or `UNSUPP`.
    pub errors: u64,
}

/// A virtio-blk device.
#[derive(Debug)]
pub struct BlockDevice {
    backend: Box<dyn BlockBackend>,
    serial: [u8; ID_BYTES],
    capacity: u64,
    features: u64,
    config: [u8; CONFIG_LEN],
    acked: u64,
    active: bool,
    /// Stopped at its budget with requests left: poll again.
    backlog: bool,
    io_notifier: Option<Arc<dyn Interrupt>>,
    segs: Vec<Segment>,
    stats: BlockStats,
    queue_sizes: [u16; 1],
}

/// What a request came to: its status and how many data bytes went to the guest.
struct Completion {
    status: u8,
    written: u32,
}

impl Completion {
    const fn status(status: u8) -> Self {
        Self { status, written: 0 }
    }
}

impl BlockDevice {
    /// A drive whose serial is `drive_id` (its first 20 bytes, NUL padded),
    /// holding what `backend` holds; read-only when the backend is.
    ///
    /// A backend whose size is not a whole number of sectors shows its
    /// whole sectors only (with a warning): the tail is never read or written.
    pub fn new(drive_id: &str, backend: Box<dyn BlockBackend>) -> Self {
        let mut serial = [0u8; ID_BYTES];
        let n = drive_id.len().min(ID_BYTES);
        serial[..n].copy_from_slice(&drive_id.as_bytes()[..n]);
        let len = backend.len();
        let capacity = len / SECTOR_SIZE;
        if !len.is_multiple_of(SECTOR_SIZE) {
            tracing::warn!(
                drive = drive_id,
                len,
                capacity_bytes = capacity * SECTOR_SIZE,
                "virtio-blk: image size is not a multiple of 512 bytes; the partial last sector is not visible to the guest"
            );
        }
        let read_only = backend.is_read_only();
        let deallocate = backend.can_deallocate() && !read_only;
        let mut features =
            VIRTIO_F_VERSION_1 | features::SEG_MAX | features::BLK_SIZE | features::FLUSH;
        if read_only {
            features |= features::RO;
        }
        if deallocate {
            features |= features::DISCARD | features::WRITE_ZEROES;
        }
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        config[34..36].copy_from_slice(&1u16.to_le_bytes()); // num_queues
        if deallocate {
            for (at, value) in [
                (36, MAX_DEALLOCATE_SECTORS),
                (40, MAX_DEALLOCATE_SEGMENTS),
                (44, DISCARD_ALIGNMENT),
                (48, MAX_DEALLOCATE_SECTORS),
                (52, MAX_DEALLOCATE_SEGMENTS),
            ] {
                config[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            config[56] = 1; // write_zeroes_may_unmap
        }
        Self {
            backend,
            serial,
            capacity,
            features,
            config,
            acked: 0,
            active: false,
            backlog: false,
            io_notifier: None,
            segs: Vec::with_capacity(usize::from(QUEUE_SIZE)),
            stats: BlockStats::default(),
            queue_sizes: [QUEUE_SIZE],
        }
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity
    }

    /// Whether the guest sees a read-only disk.
    pub fn is_read_only(&self) -> bool {
        self.features & features::RO != 0
    }

    /// Counters so far.
    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    /// Defer I/O: a queue notify only fires `notifier`, and the VMM's I/O
    /// thread processes the queue through `MmioTransport::poll`.
    pub fn set_io_notifier(&mut self, notifier: Arc<dyn Interrupt>) {
        self.io_notifier = Some(notifier);
    }

    fn process_queue(&mut self, mem: &GuestMemory, q: &mut Queue) -> Result<bool, DeviceError> {
        let qerr = |source| DeviceError::Queue {
            queue: REQUEST_QUEUE,
            source,
        };
        let mut used = false;
        let mut budget = PROCESS_BUDGET;
        self.backlog = false;
        loop {
            check_avail(mem, q, REQUEST_QUEUE)?;
            q.disable_notification(mem).map_err(qerr)?;
            while budget > 0 {
                let Some(chain) = q.pop_descriptor_chain(mem) else {
                    break;
                };
                budget -= 1;
                let head = chain.head_index();
                let len = self.process_chain(mem, q.size(), chain)?;
                q.add_used(mem, head, len).map_err(qerr)?;
                used = true;
            }
            let pending = q.avail_idx(mem, Ordering::Acquire).map_err(qerr)?.0 != q.next_avail();
            if budget == 0 && pending {
                // Leave notifications off: we come back without one.
                self.request_poll();
                return Ok(used);
            }
            // Requests published between our last look and re-enabling
            // notifications would otherwise wait for the next notify.
            if !q.enable_notification(mem).map_err(qerr)? {
                return Ok(used);
            }
            if budget == 0 {
                self.request_poll();
                return Ok(used);
            }
        }
    }

    /// Stopped at the budget with requests left: ask to be polled again.
    fn request_poll(&mut self) {
        self.backlog = true;
        if let Some(n) = &self.io_notifier {
            if let Err(err) = n.trigger() {
                tracing::warn!(%err, "virtio-blk: cannot wake the I/O thread");
            }
        }
    }

    /// Validate and execute one request; returns the used length.
    fn process_chain(
        &mut self,
        mem: &GuestMemory,
        queue_size: u16,
        chain: DescriptorChain<&GuestMemory>,
    ) -> Result<u32, DeviceError> {
        let head = chain.head_index();
        self.segs.clear();
        let split =
            collect_split_segments(mem, chain, queue_size, &mut self.segs).map_err(|source| {
                DeviceError::Chain {
                    queue: REQUEST_QUEUE,
                    source,
                }
            })?;
        if split.writable_len == 0 {
            return Err(DeviceError::BadRequest {
                queue: REQUEST_QUEUE,
                head,
                reason: "no device-writable status byte",
            });
        }
        let (readable, writable) = self.segs.split_at(split.readable_segments);
        let input = Span::new(readable, 0, u64::from(split.readable_len));
        let data_out = u64::from(split.writable_len - 1);
        let output = Span::new(writable, 0, data_out);
        let done = execute(
            &mut Request {
                backend: self.backend.as_mut(),
                serial: &self.serial,
                capacity: self.capacity,
                features: self.features & self.acked,
                stats: &mut self.stats,
            },
            mem,
            input,
            output,
        )
        .map_err(|source| DeviceError::Memory {
            queue: REQUEST_QUEUE,
            source,
        })?;
        if done.status != status::OK {
            self.stats.errors += 1;
        }
        Span::new(writable, data_out, 1)
            .write(mem, 0, &[done.status])
            .map_err(|source| DeviceError::Memory {
                queue: REQUEST_QUEUE,
                source,
            })?;
        Ok(done.written + 1)
    }
}

/// What one request may touch: the device minus its segment list.
struct Request<'a> {
    backend: &'a mut dyn BlockBackend,
    serial: &'a [u8; ID_BYTES],
    capacity: u64,
    /// Negotiated features.
    features: u64,
    stats: &'a mut BlockStats,
}

/// Run the request whose readable bytes are `input` and whose writable bytes
/// (before the status byte) are `output`. Guest mistakes become a status;
/// only a guest-memory failure is an error.
fn execute(
    req: &mut Request<'_>,
    mem: &GuestMemory,
    input: Span<'_>,
    output: Span<'_>,
) -> Result<Completion, vm_memory::GuestMemoryError> {
    if input.len() < HEADER_LEN {
        tracing::debug!(len = input.len(), "virtio-blk: request header too short");
        return Ok(Completion::status(status::IOERR));
    }
    let mut raw = [0u8; HEADER_LEN as usize];
    input.read(mem, 0, &mut raw)?;
    let header = Header::parse(&raw);
    let payload = input.tail(HEADER_LEN);
    let read_only = req.features & features::RO != 0 || req.backend.is_read_only();
    match header.kind {
        request_type::IN => transfer(req, mem, header.sector, output, true),
        request_type::OUT if read_only => Ok(Completion::status(status::IOERR)),
        request_type::OUT => transfer(req, mem, header.sector, payload, false),
        request_type::FLUSH => Ok(match req.backend.flush() {
            Ok(()) => {
                req.stats.flushes += 1;
                Completion::status(status::OK)
            }
            Err(err) => {
                tracing::warn!(%err, "virtio-blk: flush failed");
                Completion::status(status::IOERR)
            }
        }),
        request_type::GET_ID => {
            if output.len() < ID_BYTES as u64 {
                tracing::debug!(len = output.len(), "virtio-blk: GET_ID buffer too small");
                return Ok(Completion::status(status::IOERR));
            }
            output.write(mem, 0, req.serial)?;
            Ok(Completion {
                status: status::OK,
                written: ID_BYTES as u32,
            })
        }
        kind @ (request_type::DISCARD | request_type::WRITE_ZEROES) => {
            let feature = if kind == request_type::DISCARD {
                features::DISCARD
            } else {
                features::WRITE_ZEROES
            };
            if req.features & feature == 0 {
                return Ok(Completion::status(status::UNSUPP));
            }
            if read_only {
                return Ok(Completion::status(status::IOERR));
            }
            deallocate(req, mem, kind, payload)
        }
        kind => {
            tracing::debug!(kind, "virtio-blk: unsupported request type");
            Ok(Completion::status(status::UNSUPP))
        }
    }
}

/// Move the sectors of an `IN` (`to_guest`) or `OUT` request through `data`.
fn transfer(
    req: &mut Request<'_>,
    mem: &GuestMemory,
    sector: u64,
    data: Span<'_>,
    to_guest: bool,
) -> Result<Completion, vm_memory::GuestMemoryError> {
    let len = data.len();
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        tracing::debug!(
            len,
            "virtio-blk: data length is not a whole number of sectors"
        );
        return Ok(Completion::status(status::IOERR));
    }
    let Some(offset) = byte_range(sector, len, req.capacity) else {
        tracing::debug!(
            sector,
            len,
            capacity = req.capacity,
            "virtio-blk: request past the end of the disk"
        );
        return Ok(Completion::status(status::IOERR));
    };
    let backend = &mut *req.backend;
    let result = data.for_each_slice(mem, |slice, at| {
        if to_guest {
            backend.read_at(offset + at, slice)
        } else {
            backend.write_at(offset + at, slice)
        }
    });
    match result {
        Ok(()) if to_guest => {
            req.stats.reads += 1;
            req.stats.read_bytes += len;
            Ok(Completion {
                status: status::OK,
                written: len as u32,
            })
        }
        Ok(()) => {
            req.stats.writes += 1;
            req.stats.write_bytes += len;
            Ok(Completion::status(status::OK))
        }
        Err(Failure::Backend(err)) => {
            tracing::warn!(%err, sector, len, write = !to_guest, "virtio-blk: backend I/O failed");
            Ok(Completion::status(status::IOERR))
        }
        Err(Failure::Memory(err)) => Err(err),
    }
}

/// Check every range of a discard / write-zeroes request, then apply them all.
fn deallocate(
    req: &mut Request<'_>,
    mem: &GuestMemory,
    kind: u32,
    payload: Span<'_>,
) -> Result<Completion, vm_memory::GuestMemoryError> {
    let count = payload.len() / RANGE_LEN;
    if count == 0
        || !payload.len().is_multiple_of(RANGE_LEN)
        || count > u64::from(MAX_DEALLOCATE_SEGMENTS)
    {
        tracing::debug!(
            len = payload.len(),
            "virtio-blk: bad discard/write-zeroes range list"
        );
        return Ok(Completion::status(status::IOERR));
    }
    // Copied once: another vCPU may rewrite the list while we work on it.
    let mut ranges = [Range::default(); MAX_DEALLOCATE_SEGMENTS as usize];
    let ranges = &mut ranges[..count as usize];
    for (i, r) in ranges.iter_mut().enumerate() {
        let mut raw = [0u8; RANGE_LEN as usize];
        payload.read(mem, i as u64 * RANGE_LEN, &mut raw)?;
        *r = Range::parse(&raw);
    }
    let allowed = if kind == request_type::DISCARD {
        0
    } else {
        FLAG_UNMAP
    };
    if ranges.iter().any(|r| r.flags & !allowed != 0) {
        return Ok(Completion::status(status::UNSUPP));
    }
    let fits = |r: &Range| {
        r.num_sectors <= MAX_DEALLOCATE_SECTORS
            && byte_range(r.sector, r.len(), req.capacity).is_some()
    };
    if !ranges.iter().all(fits) {
        return Ok(Completion::status(status::IOERR));
    }
    for r in ranges.iter().filter(|r| r.num_sectors > 0) {
        let (offset, len) = (r.sector * SECTOR_SIZE, r.len());
        let result = if kind == request_type::DISCARD {
            req.backend.discard(offset, len)
        } else {
            req.backend.write_zeroes(offset, len)
        };
        if let Err(err) = result {
            tracing::warn!(%err, offset, len, kind, "virtio-blk: discard/write-zeroes failed");
            return Ok(Completion::status(status::IOERR));
        }
    }
    req.stats.deallocations += 1;
    Ok(Completion::status(status::OK))
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if let Some(src) = self.config.get(start..) {
            let n = src.len().min(data.len());
            data[..n].copy_from_slice(&src[..n]);
        }
    }

    fn activate(&mut self, acked_features: u64, ctx: QueueContext<'_>) -> Result<(), DeviceError> {
        for (i, q) in ctx.queues.iter().enumerate() {
            validate_queue(ctx.mem, q, i as u16)?;
        }
        self.acked = acked_features;
        self.active = true;
        tracing::debug!(
            features = acked_features,
            capacity = self.capacity,
            "virtio-blk: activated"
        );
        Ok(())
    }

    fn queue_notify(
        &mut self,
        index: u16,
        ctx: QueueContext<'_>,
    ) -> Result<UsedQueues, DeviceError> {
        let mut used = UsedQueues::default();
        if index != REQUEST_QUEUE {
            tracing::warn!(index, "virtio-blk: notify for an unknown queue");
            return Ok(used);
        }
        if let Some(n) = &self.io_notifier {
            match n.trigger() {
                Ok(()) => return Ok(used),
                Err(err) => {
                    tracing::warn!(%err, "virtio-blk: cannot wake the I/O thread; processing inline");
                }
            }
        }
        let [q] = ctx.queues else {
            return Ok(used);
        };
        if self.process_queue(ctx.mem, q)? {
            used.mark(usize::from(REQUEST_QUEUE));
        }
        Ok(used)
    }

    fn poll_after(&self) -> Option<Duration> {
        self.backlog.then_some(Duration::ZERO)
    }

    fn poll(&mut self, ctx: QueueContext<'_>) -> Result<UsedQueues, DeviceError> {
        let mut used = UsedQueues::default();
        if !self.active {
            return Ok(used);
        }
        let [q] = ctx.queues else {
            return Ok(used);
        };
        if self.process_queue(ctx.mem, q)? {
            used.mark(usize::from(REQUEST_QUEUE));
        }
        Ok(used)
    }

    fn reset(&mut self) {
        self.acked = 0;
        self.active = false;
        self.backlog = false;
    }
}
