//! A guest-side harness for virtio-net tests: one "guest" per NIC, with its
//! own memory, a driver that posts RX buffers, sends frames and reads used
//! rings through the MMIO transport.

// Each test binary uses a different subset of this shared harness.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::guest_driver::GuestDriver;
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::net::{features, NetBackend, NetDevice, VNET_HDR_LEN};
use vm_device::virtio::{GuestMemory, VIRTIO_F_VERSION_1};
use vm_memory::{Bytes, GuestAddress};

pub const MEM_SIZE: usize = 16 << 20;
pub const SCRATCH: u64 = 0x10_0000;

pub fn guest_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

pub const BASE_FEATURES: u64 = VIRTIO_F_VERSION_1 | features::MAC | features::STATUS;

pub struct Nic {
    pub transport: MmioTransport,
    pub driver: GuestDriver,
    pub irq: Arc<CountingInterrupt>,
    pub features: u64,
    rx_buffers: HashMap<u16, (GuestAddress, u32)>,
}

impl Nic {
    pub fn new(mac: [u8; 6], backend: Box<dyn NetBackend>, wanted: u64) -> Self {
        Self::with_device(NetDevice::new(mac, backend), wanted)
    }

    pub fn with_device(dev: NetDevice, wanted: u64) -> Self {
        Self::with_memory(guest_memory(), dev, wanted)
    }

    pub fn with_memory(mem: GuestMemory, dev: NetDevice, wanted: u64) -> Self {
        let irq = Arc::new(CountingInterrupt::new());
        let mut transport = MmioTransport::new(Box::new(dev), mem.clone(), irq.clone()).unwrap();
        let mut driver = GuestDriver::new(mem, GuestAddress(SCRATCH), 8 << 20);
        let features = driver.init(&mut transport, wanted, &[256, 256]).unwrap();
        assert_eq!(transport.status() & 0x4f, 0x0f, "driver OK, no error");
        Self {
            transport,
            driver,
            irq,
            features,
            rx_buffers: HashMap::new(),
        }
    }

    pub fn mem(&self) -> &GuestMemory {
        self.driver.mem()
    }

    /// Post `n` receive buffers of `size` bytes and notify the RX queue.
    pub fn post_rx(&mut self, n: usize, size: u32) {
        for _ in 0..n {
            let addr = self.driver.alloc(u64::from(size), 16).unwrap();
            let head = self.driver.add_chain(0, &[(addr, size, true)]).unwrap();
            self.rx_buffers.insert(head, (addr, size));
        }
        GuestDriver::notify(&mut self.transport, 0);
    }

    /// Transmit an Ethernet frame (header and payload in two descriptors); returns used len.
    pub fn send(&mut self, frame: &[u8]) -> u32 {
        let hdr = self.driver.alloc(VNET_HDR_LEN as u64, 2).unwrap();
        let body = self.driver.alloc(frame.len() as u64, 2).unwrap();
        self.mem().write_slice(&[0u8; VNET_HDR_LEN], hdr).unwrap();
        self.mem().write_slice(frame, body).unwrap();
        self.driver
            .add_chain(
                1,
                &[
                    (hdr, VNET_HDR_LEN as u32, false),
                    (body, frame.len() as u32, false),
                ],
            )
            .unwrap();
        GuestDriver::notify(&mut self.transport, 1);
        let (_, len) = self.driver.pop_used(1).unwrap().expect("TX chain returned");
        len
    }

    /// Let the device pull frames from its backend, then read one received
    /// frame (Ethernet part) from the used ring, following num_buffers.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        self.transport.poll();
        let (head, len) = self.driver.pop_used(0).unwrap()?;
        let mut bytes = self.read_buffer(head, len);
        let num_buffers = u16::from_le_bytes([bytes[10], bytes[11]]);
        for _ in 1..num_buffers {
            let (head, len) = self.driver.pop_used(0).unwrap().expect("merged buffer");
            bytes.extend(self.read_buffer(head, len));
        }
        Some(bytes[VNET_HDR_LEN..].to_vec())
    }

    fn read_buffer(&mut self, head: u16, len: u32) -> Vec<u8> {
        let (addr, size) = self.rx_buffers.remove(&head).expect("known RX head");
        assert!(len <= size);
        let mut v = vec![0u8; len as usize];
        self.mem().read_slice(&mut v, addr).unwrap();
        v
    }

    /// Reset the device and run the initialisation sequence again with a fresh driver.
    pub fn reinit(&mut self, wanted: u64) {
        let mem = self.mem().clone();
        self.driver = GuestDriver::new(mem, GuestAddress(SCRATCH + (8 << 20)), 4 << 20);
        self.rx_buffers.clear();
        self.features = self
            .driver
            .init(&mut self.transport, wanted, &[256, 256])
            .unwrap();
    }

    pub fn status(&mut self) -> u32 {
        GuestDriver::status(&mut self.transport)
    }
}

pub fn eth_frame(dst: [u8; 6], src: [u8; 6], payload_len: usize, tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload_len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend((0..payload_len).map(|i| tag.wrapping_add(i as u8)));
    f
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub const BROADCAST: [u8; 6] = [0xff; 6];
