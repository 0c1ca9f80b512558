//! The packet hot path does not allocate: after warm-up, moving frames from one
//! guest's TX queue through the virtual switch into another guest's RX queue
//! performs zero heap allocations. (A counting global allocator; this binary
//! holds only this test so no other test thread allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::guest_driver::GuestDriver;
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::net::r#virtual::VirtualSwitch;
use vm_device::virtio::net::{NetDevice, VNET_HDR_LEN};
use vm_device::virtio::{GuestMemory, VIRTIO_F_VERSION_1};
use vm_memory::{Bytes, GuestAddress};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Guest {
    t: MmioTransport,
    drv: GuestDriver,
    rx_addr: Vec<GuestAddress>,
}

fn guest(sw: &VirtualSwitch, mac: [u8; 6]) -> Guest {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let dev = NetDevice::new(mac, Box::new(sw.add_port()));
    let mut t = MmioTransport::new(
        Box::new(dev),
        mem.clone(),
        Arc::new(CountingInterrupt::new()),
    )
    .unwrap();
    let mut drv = GuestDriver::new(mem, GuestAddress(0x1000), 3 << 20);
    drv.init(&mut t, VIRTIO_F_VERSION_1 | (1 << 5), &[256, 256])
        .unwrap();
    let mut rx_addr = vec![GuestAddress(0); 256];
    for _ in 0..256 {
        let a = drv.alloc(2048, 64).unwrap();
        let h = drv.add_buffer(0, a, 2048, true).unwrap();
        rx_addr[usize::from(h)] = a;
    }
    GuestDriver::notify(&mut t, 0);
    Guest { t, drv, rx_addr }
}

fn round(a: &mut Guest, b: &mut Guest, frame: (GuestAddress, u32)) -> usize {
    for _ in 0..64 {
        a.drv.add_buffer(1, frame.0, frame.1, false).unwrap();
    }
    GuestDriver::notify(&mut a.t, 1);
    while a.drv.pop_used(1).unwrap().is_some() {}
    b.t.poll();
    let mut n = 0;
    while let Some((head, _)) = b.drv.pop_used(0).unwrap() {
        let addr = b.rx_addr[usize::from(head)];
        let h = b.drv.add_buffer(0, addr, 2048, true).unwrap();
        b.rx_addr[usize::from(h)] = addr;
        n += 1;
    }
    n
}

#[test]
fn steady_state_forwarding_does_not_allocate() {
    let sw = VirtualSwitch::new();
    let mut a = guest(&sw, [2, 0, 0, 0, 0, 0xa]);
    let mut b = guest(&sw, [2, 0, 0, 0, 0, 0xb]);
    let mut frame = vec![0u8; VNET_HDR_LEN + 1500];
    frame[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    frame[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    let addr = a.drv.alloc(frame.len() as u64, 64).unwrap();
    a.drv.mem().write_slice(&frame, addr).unwrap();
    let f = (addr, frame.len() as u32);
    // Warm-up: the switch's buffer pools fill, the MAC table learns.
    for _ in 0..20 {
        assert_eq!(round(&mut a, &mut b, f), 64);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut delivered = 0;
    for _ in 0..100 {
        delivered += round(&mut a, &mut b, f);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(delivered, 6400);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while forwarding {delivered} frames"
    );
}
