//! virtio-net: a network card with one RX and one TX queue, its MAC address in
//! config space, link status, mergeable RX buffers, and checksum/TSO offloads
//! passed through when the backend can carry them.
//!
//! Frames cross the [`NetBackend`] boundary with the 12-byte
//! `virtio_net_hdr_v1` in front, the layout a TAP device with `IFF_VNET_HDR`
//! uses, so offload metadata reaches the host untouched. The backend is a
//! runtime value: a [`tap::Tap`] or a port of a [`r#virtual::VirtualSwitch`].
//!
//! ```
//! use std::sync::Arc;
//! use vm_device::interrupt::CountingInterrupt;
//! use vm_device::virtio::mmio::MmioTransport;
//! use vm_device::virtio::net::r#virtual::VirtualSwitch;
//! use vm_device::virtio::net::NetDevice;
//! use vm_device::virtio::GuestMemory;
//! use vm_memory::GuestAddress;
//!
//! let switch = VirtualSwitch::new();
//! let nic = NetDevice::new([0x02, 0, 0, 0, 0, 1], Box::new(switch.add_port()));
//! let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let irq = Arc::new(CountingInterrupt::new()); // an irqfd on KVM
//! let transport = MmioTransport::new(Box::new(nic), mem, irq).unwrap();
//! // Put `transport` on the MMIO bus; call `transport.poll()` when the backend has frames.
//! assert_eq!(switch.port_count(), 1);
//! # drop(transport);
//! # Ok::<(), vm_device::virtio::net::NetBackendError>(())
//! ```

mod backend;
pub mod device;
mod offload;
pub mod rate_limiter;
#[cfg(unix)]
pub mod segment;
#[cfg(target_os = "linux")]
pub mod tap;
#[cfg(not(target_os = "linux"))]
#[path = "tap_unsupported.rs"]
pub mod tap;
pub mod r#virtual;

pub use backend::{NetBackend, NetBackendError};
pub use device::{LinkControl, NetDevice, NetStats};

/// Length of `virtio_net_hdr_v1` (with `num_buffers`), in front of every frame.
pub const VNET_HDR_LEN: usize = 12;
/// Largest Ethernet frame with TSO (64 KiB of payload plus headers).
pub const MAX_FRAME_LEN: usize = 65550;
/// Largest frame plus its virtio-net header.
pub const MAX_BUFFER_LEN: usize = VNET_HDR_LEN + MAX_FRAME_LEN;

/// virtio-net feature bits (virtio 1.x, 5.1.3).
pub mod features {
    /// Device handles packets with partial checksum (guest TX offload).
    pub const CSUM: u64 = 1 << 0;
    /// Driver handles packets with partial checksum (guest RX offload).
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Device has a MAC address in config space.
    pub const MAC: u64 = 1 << 5;
    /// Driver can receive TSOv4.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// Driver can receive TSOv6.
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// Driver can receive TSO with ECN.
    pub const GUEST_ECN: u64 = 1 << 9;
    /// Device can receive TSOv4.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Device can receive TSOv6.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// Device can receive TSO with ECN.
    pub const HOST_ECN: u64 = 1 << 13;
    /// Driver can merge receive buffers.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// Config space has a link status field.
    pub const STATUS: u64 = 1 << 16;
    /// All offload bits a backend may support.
    pub const OFFLOADS: u64 =
        CSUM | GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | GUEST_ECN | HOST_TSO4 | HOST_TSO6 | HOST_ECN;
}
