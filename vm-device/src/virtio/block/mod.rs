//! virtio-blk: a disk with one request queue, its capacity and limits in
//! config space, and its serial (the drive id) behind `GET_ID`.
//!
//! Requests: `IN`, `OUT`, `FLUSH`, `GET_ID`, and `DISCARD` / `WRITE_ZEROES`
//! when the backend can deallocate ranges (offered only then). Every chain is
//! validated by [`crate::virtio::chain::collect_split_segments`] before a byte
//! moves; the request is then read as two byte streams, so any descriptor
//! layout the spec allows works (a header split across descriptors, data in the
//! header's descriptor, the status byte at the end of the last data buffer).
//!
//! What the guest gets back, following virtio 1.2, 5.2.6:
//! - `S_OK`; `S_IOERR` for a sector range past the capacity (or overflowing),
//!   data that is empty or not a multiple of 512 bytes, a write, discard or
//!   write-zeroes to a read-only disk, a `GET_ID` buffer shorter than 20 bytes,
//!   a header shorter than 16 bytes, too many or too long discard ranges, or a
//!   failing backend; `S_UNSUPP` for unknown request types, discard/write-zeroes
//!   not negotiated, or unknown (or, for discard, the unmap) range flags.
//! - `DEVICE_NEEDS_RESET` when the request cannot be answered at all: a chain
//!   that breaks the rules (outside guest memory, a loop, readable after
//!   writable) or no device-writable status byte.
//!
//! Not offered: `EVENT_IDX`, indirect descriptors, multiple queues, a
//! writeback toggle (`CONFIG_WCE`): the device always has a volatile cache
//! (the host's page cache) and the guest flushes it with `FLUSH`.
//!
//! I/O runs where the VMM wants it: by default a queue notify processes the
//! queue inline; after [`BlockDevice::set_io_notifier`] a notify only fires
//! that line and the VMM's I/O thread calls `MmioTransport::poll`, so a vCPU
//! never waits for the disk.
//!
//! ```
//! use std::sync::Arc;
//! use vm_device::interrupt::CountingInterrupt;
//! use vm_device::virtio::block::{BlockDevice, MemoryBackend, SECTOR_SIZE};
//! use vm_device::virtio::mmio::MmioTransport;
//! use vm_device::virtio::{device_type, GuestMemory, VirtioDevice};
//! use vm_memory::GuestAddress;
//!
//! let disk = MemoryBackend::new(1 << 20); // or FileBackend::open(path, read_only)?
//! let drive = BlockDevice::new("rootfs", Box::new(disk));
//! assert_eq!(drive.capacity_sectors(), (1 << 20) / SECTOR_SIZE);
//! assert_eq!(drive.device_type(), device_type::BLOCK);
//! let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let irq = Arc::new(CountingInterrupt::new()); // an irqfd on KVM
//! let transport = MmioTransport::new(Box::new(drive), mem, irq).unwrap();
//! // Put `transport` on the MMIO bus.
//! # drop(transport);
//! ```

mod backend;
pub mod device;
#[cfg(target_os = "linux")]
pub mod file;
#[cfg(not(target_os = "linux"))]
#[path = "file_unsupported.rs"]
pub mod file;
pub mod memory;
mod request;

pub use backend::{BlockBackend, BlockBackendError};
pub use device::{BlockDevice, BlockStats, QUEUE_SIZE};
pub use file::FileBackend;
pub use memory::MemoryBackend;

/// The unit of virtio-blk addresses and capacity.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the `GET_ID` answer (the drive's serial, NUL padded).
pub const ID_BYTES: usize = 20;

/// virtio-blk feature bits (virtio 1.x, 5.2.3).
pub mod features {
    /// `seg_max` in config space is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// The disk is read-only.
    pub const RO: u64 = 1 << 5;
    /// `blk_size` in config space is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// The device takes `FLUSH` requests.
    pub const FLUSH: u64 = 1 << 9;
    /// The device takes `DISCARD` requests.
    pub const DISCARD: u64 = 1 << 13;
    /// The device takes `WRITE_ZEROES` requests.
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types (`virtio_blk_req.type`).
pub mod request_type {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Flush the volatile write cache.
    pub const FLUSH: u32 = 4;
    /// Read the device's serial.
    pub const GET_ID: u32 = 8;
    /// Deallocate ranges.
    pub const DISCARD: u32 = 11;
    /// Zero ranges.
    pub const WRITE_ZEROES: u32 = 13;
}

/// Request status values (the last byte of a request).
pub mod request_status {
    /// Success.
    pub const OK: u8 = 0;
    /// The request failed.
    pub const IOERR: u8 = 1;
    /// The request is not supported.
    pub const UNSUPP: u8 = 2;
}
