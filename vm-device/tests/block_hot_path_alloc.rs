//! The virtio-blk hot path does not allocate: after warm-up, 4 KiB reads and
//! writes of a raw image through the queue perform zero heap allocations. (A
//! global allocator counting per thread, so the test harness's own threads
//! do not count.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::block::{request_type, BlockDevice, FileBackend};
use vm_device::virtio::guest_driver::{GuestDriver, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::{GuestMemory, VIRTIO_F_VERSION_1};
use vm_memory::{Bytes, GuestAddress};

struct Counting;

thread_local! {
    // Const-initialised and without a destructor: using it never allocates.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: u16 = 16;

#[test]
fn steady_state_block_io_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let backend = FileBackend::open(&path, false).unwrap();
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let dev = BlockDevice::new("hot", Box::new(backend));
    let mut t = MmioTransport::new(
        Box::new(dev),
        mem.clone(),
        Arc::new(CountingInterrupt::new()),
    )
    .unwrap();
    let mut drv = GuestDriver::new(mem.clone(), GuestAddress(0x1000), 3 << 20);
    drv.init(&mut t, VIRTIO_F_VERSION_1, &[256]).unwrap();
    // Request i uses descriptors 3i (header), 3i+1 (4 KiB data), 3i+2 (status).
    let mut reqs = Vec::new();
    for i in 0..BATCH {
        let header = drv.alloc(16, 16).unwrap();
        let data = drv.alloc(4096, 4096).unwrap();
        let status = drv.alloc(1, 1).unwrap();
        let kind = if i % 2 == 0 {
            request_type::OUT
        } else {
            request_type::IN
        };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&u64::from(i * 8).to_le_bytes());
        mem.write_slice(&h, header).unwrap();
        let data_flags = if kind == request_type::IN {
            VRING_DESC_F_WRITE
        } else {
            0
        };
        reqs.push((header, data, status, data_flags));
    }
    let round = |drv: &mut GuestDriver, t: &mut MmioTransport| {
        let before = drv.used_idx(0).unwrap();
        for (i, &(header, data, status, data_flags)) in reqs.iter().enumerate() {
            let d = 3 * i as u16;
            drv.write_desc(0, d, header.0, 16, VRING_DESC_F_NEXT, d + 1)
                .unwrap();
            drv.write_desc(
                0,
                d + 1,
                data.0,
                4096,
                data_flags | VRING_DESC_F_NEXT,
                d + 2,
            )
            .unwrap();
            drv.write_desc(0, d + 2, status.0, 1, VRING_DESC_F_WRITE, 0)
                .unwrap();
            drv.push_avail(0, d).unwrap();
        }
        GuestDriver::notify(t, 0);
        while t.poll_after().is_some() {
            t.poll();
        }
        assert_eq!(drv.used_idx(0).unwrap().wrapping_sub(before), BATCH);
    };
    for _ in 0..3 {
        round(&mut drv, &mut t);
    }
    let start = allocs();
    for _ in 0..100 {
        round(&mut drv, &mut t);
    }
    let count = allocs() - start;
    assert_eq!(count, 0, "{count} allocations in 1600 block requests");
}
