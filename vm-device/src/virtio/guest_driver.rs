//! A minimal virtio driver acting from the guest's side, for tests and benches.
//!
//! It writes descriptor tables, available rings and buffers into guest memory,
//! programs a virtio-mmio transport in the order the spec gives (reset,
//! ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queues, DRIVER_OK), notifies,
//! and reads the used rings back — what a guest kernel's driver would do.
//! It trusts nothing it reads back, and returns typed errors.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use super::mmio::{reg, MMIO_MAGIC};
use super::{status, GuestMemory};
use crate::bus::BusDevice;

/// Descriptor flag: the chain continues at `next`.
pub const VRING_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable.
pub const VRING_DESC_F_WRITE: u16 = 2;

/// What went wrong while driving a device.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The MMIO window does not hold a modern virtio device.
    #[error("no virtio 1.x device: magic {magic:#x}, version {version}")]
    NotVirtio {
        /// MagicValue register.
        magic: u32,
        /// Version register.
        version: u32,
    },
    /// The device refused the feature set (FEATURES_OK did not stick).
    #[error("device refused features {0:#x}")]
    FeaturesRefused(u64),
    /// A queue the driver wants is missing or too small.
    #[error("queue {index}: device offers at most {max} entries, driver wants {want}")]
    QueueTooSmall {
        /// Queue index.
        index: u16,
        /// QueueNumMax.
        max: u32,
        /// Requested size.
        want: u16,
    },
    /// The scratch area for rings and buffers is exhausted.
    #[error("driver memory exhausted: need {need:#x} more bytes")]
    OutOfMemory {
        /// Bytes requested.
        need: u64,
    },
    /// No free descriptors for a new chain.
    #[error("queue {0}: no free descriptors")]
    NoDescriptors(u16),
    /// Guest memory access failed.
    #[error("guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    /// The device returned a used element naming a head the driver never offered.
    #[error("queue {queue}: used element with unknown head {id}")]
    BogusUsed {
        /// Queue index.
        queue: u16,
        /// The id the device returned.
        id: u32,
    },
}

/// Driver-side view of one split virtqueue.
#[derive(Debug, Clone)]
pub struct DriverQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table address.
    pub desc: GuestAddress,
    /// Available ring address.
    pub avail: GuestAddress,
    /// Used ring address.
    pub used: GuestAddress,
    free: Vec<u16>,
    chain_len: Vec<u16>,
    avail_idx: u16,
    used_seen: u16,
}

/// A guest-side virtio-mmio driver over `mem`, allocating from a scratch area.
#[derive(Debug)]
pub struct GuestDriver {
    mem: GuestMemory,
    next_free: u64,
    end: u64,
    /// The queues set up by [`GuestDriver::init`].
    pub queues: Vec<DriverQueue>,
}

impl GuestDriver {
    /// A driver that places rings and buffers in `[base, base + len)` of `mem`.
    pub fn new(mem: GuestMemory, base: GuestAddress, len: u64) -> Self {
        Self {
            mem,
            next_free: base.0,
            end: base.0 + len,
            queues: Vec::new(),
        }
    }

    /// Guest memory the driver writes.
    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    /// Reserve `len` bytes aligned to `align` (a power of two) in the scratch area.
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<GuestAddress, DriverError> {
        let start = self.next_free.next_multiple_of(align);
        let end = start
            .checked_add(len)
            .ok_or(DriverError::OutOfMemory { need: len })?;
        if end > self.end {
            return Err(DriverError::OutOfMemory {
                need: end - self.end,
            });
        }
        self.next_free = end;
        Ok(GuestAddress(start))
    }

    /// Read a 32-bit transport register.
    pub fn read_reg(dev: &mut dyn BusDevice, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        dev.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Write a 32-bit transport register.
    pub fn write_reg(dev: &mut dyn BusDevice, offset: u64, value: u32) {
        dev.write(offset, &value.to_le_bytes());
    }

    /// The device status register.
    pub fn status(dev: &mut dyn BusDevice) -> u32 {
        Self::read_reg(dev, reg::STATUS)
    }

    /// Run the spec's initialisation sequence, accepting `wanted & offered`
    /// features and setting up one queue per entry of `queue_sizes`.
    /// Returns the negotiated features.
    pub fn init(
        &mut self,
        dev: &mut dyn BusDevice,
        wanted: u64,
        queue_sizes: &[u16],
    ) -> Result<u64, DriverError> {
        let (magic, version) = (
            Self::read_reg(dev, reg::MAGIC),
            Self::read_reg(dev, reg::VERSION),
        );
        if magic != MMIO_MAGIC || version != 2 {
            return Err(DriverError::NotVirtio { magic, version });
        }
        Self::write_reg(dev, reg::STATUS, 0);
        Self::write_reg(dev, reg::STATUS, status::ACKNOWLEDGE);
        Self::write_reg(dev, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        let mut offered = 0u64;
        for word in 0..2u32 {
            Self::write_reg(dev, reg::DEVICE_FEATURES_SEL, word);
            offered |= u64::from(Self::read_reg(dev, reg::DEVICE_FEATURES)) << (32 * word);
        }
        let features = offered & wanted;
        for word in 0..2u32 {
            Self::write_reg(dev, reg::DRIVER_FEATURES_SEL, word);
            Self::write_reg(dev, reg::DRIVER_FEATURES, (features >> (32 * word)) as u32);
        }
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        Self::write_reg(dev, reg::STATUS, s);
        if Self::status(dev) & status::FEATURES_OK == 0 {
            Self::write_reg(dev, reg::STATUS, s | status::FAILED);
            return Err(DriverError::FeaturesRefused(features));
        }
        self.queues.clear();
        for (index, &size) in queue_sizes.iter().enumerate() {
            let q = self.setup_queue(dev, index as u16, size)?;
            self.queues.push(q);
        }
        Self::write_reg(dev, reg::STATUS, s | status::DRIVER_OK);
        Ok(features)
    }

    fn setup_queue(
        &mut self,
        dev: &mut dyn BusDevice,
        index: u16,
        size: u16,
    ) -> Result<DriverQueue, DriverError> {
        Self::write_reg(dev, reg::QUEUE_SEL, u32::from(index));
        let max = Self::read_reg(dev, reg::QUEUE_NUM_MAX);
        if max < u32::from(size) || size == 0 {
            return Err(DriverError::QueueTooSmall {
                index,
                max,
                want: size,
            });
        }
        let n = u64::from(size);
        let desc = self.alloc(16 * n, 16)?;
        let avail = self.alloc(6 + 2 * n, 2)?;
        let used = self.alloc(6 + 8 * n, 4)?;
        // Fresh rings: zero flags and indices.
        self.mem
            .write_slice(&vec![0u8; (6 + 2 * n) as usize], avail)?;
        self.mem
            .write_slice(&vec![0u8; (6 + 8 * n) as usize], used)?;
        Self::write_reg(dev, reg::QUEUE_NUM, u32::from(size));
        for (lo, addr) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_AVAIL_LOW, avail),
            (reg::QUEUE_USED_LOW, used),
        ] {
            Self::write_reg(dev, lo, addr.0 as u32);
            Self::write_reg(dev, lo + 4, (addr.0 >> 32) as u32);
        }
        Self::write_reg(dev, reg::QUEUE_READY, 1);
        Ok(DriverQueue {
            size,
            desc,
            avail,
            used,
            free: (0..size).rev().collect(),
            chain_len: vec![0; usize::from(size)],
            avail_idx: 0,
            used_seen: 0,
        })
    }

    /// Write descriptor `index` of queue `q` as given (for hostile tests too).
    pub fn write_desc(
        &self,
        q: usize,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), DriverError> {
        let table = self.queues[q].desc;
        let at = table.unchecked_add(16 * u64::from(index));
        write_obj(&self.mem, Descriptor::new(addr, len, flags, next), at)
    }

    /// Publish `head` in the available ring of queue `q` (no notify).
    pub fn push_avail(&mut self, q: usize, head: u16) -> Result<(), DriverError> {
        let dq = &mut self.queues[q];
        let slot = dq
            .avail
            .unchecked_add(4 + 2 * u64::from(dq.avail_idx % dq.size));
        write_obj(&self.mem, head.to_le(), slot)?;
        dq.avail_idx = dq.avail_idx.wrapping_add(1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        write_obj(&self.mem, dq.avail_idx.to_le(), dq.avail.unchecked_add(2))
    }

    /// Set the available ring's index directly (hostile tests).
    pub fn set_avail_idx(&mut self, q: usize, idx: u16) -> Result<(), DriverError> {
        let dq = &mut self.queues[q];
        dq.avail_idx = idx;
        self.mem.write_obj(idx.to_le(), dq.avail.unchecked_add(2))?;
        Ok(())
    }

    /// Build a chain from free descriptors over `(addr, len, device_writable)` buffers and publish it.
    pub fn add_chain(
        &mut self,
        q: usize,
        bufs: &[(GuestAddress, u32, bool)],
    ) -> Result<u16, DriverError> {
        let dq = &mut self.queues[q];
        if dq.free.len() < bufs.len() || bufs.is_empty() {
            return Err(DriverError::NoDescriptors(q as u16));
        }
        let ids: Vec<u16> = (0..bufs.len()).filter_map(|_| dq.free.pop()).collect();
        let head = ids[0];
        dq.chain_len[usize::from(head)] = bufs.len() as u16;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let mut flags = if writable { VRING_DESC_F_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            self.write_desc(q, ids[i], addr.0, len, flags, next)?;
        }
        self.push_avail(q, head)?;
        Ok(head)
    }

    /// Publish a single-buffer chain (no allocation: the benches' fast path).
    pub fn add_buffer(
        &mut self,
        q: usize,
        addr: GuestAddress,
        len: u32,
        writable: bool,
    ) -> Result<u16, DriverError> {
        let dq = &mut self.queues[q];
        let head = dq.free.pop().ok_or(DriverError::NoDescriptors(q as u16))?;
        dq.chain_len[usize::from(head)] = 1;
        let flags = if writable { VRING_DESC_F_WRITE } else { 0 };
        self.write_desc(q, head, addr.0, len, flags, 0)?;
        self.push_avail(q, head)?;
        Ok(head)
    }

    /// Tell the device queue `q` has new buffers.
    pub fn notify(dev: &mut dyn BusDevice, q: u16) {
        Self::write_reg(dev, reg::QUEUE_NOTIFY, u32::from(q));
    }

    /// The device's used index for queue `q`.
    pub fn used_idx(&self, q: usize) -> Result<u16, DriverError> {
        Ok(u16::from_le(read_obj(
            &self.mem,
            self.queues[q].used.unchecked_add(2),
        )?))
    }

    /// Take the next used element `(head, len)` of queue `q`, freeing its descriptors.
    pub fn pop_used(&mut self, q: usize) -> Result<Option<(u16, u32)>, DriverError> {
        let used_idx = self.used_idx(q)?;
        let dq = &mut self.queues[q];
        if dq.used_seen == used_idx {
            return Ok(None);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let elem = dq
            .used
            .unchecked_add(4 + 8 * u64::from(dq.used_seen % dq.size));
        let id: u32 = u32::from_le(read_obj(&self.mem, elem)?);
        let len: u32 = u32::from_le(read_obj(&self.mem, elem.unchecked_add(4))?);
        dq.used_seen = dq.used_seen.wrapping_add(1);
        let head = u16::try_from(id)
            .ok()
            .filter(|&h| h < dq.size && dq.chain_len[usize::from(h)] > 0)
            .ok_or(DriverError::BogusUsed {
                queue: q as u16,
                id,
            })?;
        // Free the chain by walking our own record of it (the table may be hostile-test garbage).
        let mut idx = head;
        for _ in 0..dq.chain_len[usize::from(head)] {
            dq.free.push(idx);
            let d: Descriptor = self
                .mem
                .read_obj(dq.desc.unchecked_add(16 * u64::from(idx)))?;
            idx = d.next();
        }
        dq.chain_len[usize::from(head)] = 0;
        Ok(Some((head, len)))
    }

    /// Acknowledge all pending interrupt causes; returns what was pending.
    pub fn ack_interrupt(dev: &mut dyn BusDevice) -> u32 {
        let pending = Self::read_reg(dev, reg::INTERRUPT_STATUS);
        Self::write_reg(dev, reg::INTERRUPT_ACK, pending);
        pending
    }
}

/// Write `val` at `addr` the way a guest does: straight into the region
/// (vm-memory's general path, built for buffers that span regions, costs
/// more than the ring updates it carries, and a guest pays no such cost).
fn write_obj<T: ByteValued>(
    mem: &GuestMemory,
    val: T,
    addr: GuestAddress,
) -> Result<(), DriverError> {
    let (region, at) = mem
        .to_region_addr(addr)
        .ok_or(vm_memory::GuestMemoryError::InvalidGuestAddress(addr))?;
    region.write_obj(val, at)?;
    Ok(())
}

/// Read a `T` at `addr` straight from its region (see [`write_obj`]).
fn read_obj<T: ByteValued>(mem: &GuestMemory, addr: GuestAddress) -> Result<T, DriverError> {
    let (region, at) = mem
        .to_region_addr(addr)
        .ok_or(vm_memory::GuestMemoryError::InvalidGuestAddress(addr))?;
    Ok(region.read_obj(at)?)
}
