//! virtio-blk request rates on a raw image file: 4 KiB and 64 KiB reads and
//! writes through the queue, against a raw `pread`/`pwrite` loop moving the
//! same bytes at the same offsets of the same file, one buffer per request as
//! the guest has (the floor any device model on this backend has).
//!
//! Each iteration is a batch the way a guest and the VMM's I/O thread move
//! it: the driver writes the descriptors and publishes the requests, notifies
//! (which only wakes the I/O thread), and `MmioTransport::poll` — what the
//! `blk-io` thread runs — processes them and fills the used ring. The file
//! is in the page cache, so both sides measure the copy and the per-request
//! work, not a disk.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::block::{request_type, BlockDevice, FileBackend};
use vm_device::virtio::guest_driver::{GuestDriver, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::{GuestMemory, VIRTIO_F_VERSION_1};
use vm_memory::{Bytes, GuestAddress};

/// Requests per iteration.
const BATCH: u16 = 32;
const IMAGE_LEN: usize = 8 << 20;

struct Guest {
    t: MmioTransport,
    drv: GuestDriver,
    /// (header, data, status) addresses of request slot i.
    slots: Vec<(GuestAddress, GuestAddress, GuestAddress)>,
    len: u32,
    data_flags: u16,
}

impl Guest {
    fn new(image: &std::path::Path, len: u32, kind: u32) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let mut dev = BlockDevice::new("bench", Box::new(FileBackend::open(image, false).unwrap()));
        // As in the VMM: the notify only wakes the I/O thread.
        dev.set_io_notifier(Arc::new(CountingInterrupt::new()));
        let mut t = MmioTransport::new(
            Box::new(dev),
            mem.clone(),
            Arc::new(CountingInterrupt::new()),
        )
        .unwrap();
        let mut drv = GuestDriver::new(mem.clone(), GuestAddress(0x1000), (8 << 20) - 0x1000);
        drv.init(&mut t, VIRTIO_F_VERSION_1, &[256]).unwrap();
        let slots = (0..BATCH)
            .map(|i| {
                let header = drv.alloc(16, 16).unwrap();
                let data = drv.alloc(u64::from(len), 4096).unwrap();
                let status = drv.alloc(1, 1).unwrap();
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&kind.to_le_bytes());
                let sector = u64::from(i) * u64::from(len) / 512;
                h[8..16].copy_from_slice(&sector.to_le_bytes());
                mem.write_slice(&h, header).unwrap();
                (header, data, status)
            })
            .collect();
        let data_flags = if kind == request_type::IN {
            VRING_DESC_F_WRITE
        } else {
            0
        };
        Self {
            t,
            drv,
            slots,
            len,
            data_flags,
        }
    }

    fn batch(&mut self) {
        let before = self.drv.used_idx(0).unwrap();
        for (i, &(header, data, status)) in self.slots.iter().enumerate() {
            let d = 3 * i as u16;
            self.drv
                .write_desc(0, d, header.0, 16, VRING_DESC_F_NEXT, d + 1)
                .unwrap();
            self.drv
                .write_desc(
                    0,
                    d + 1,
                    data.0,
                    self.len,
                    self.data_flags | VRING_DESC_F_NEXT,
                    d + 2,
                )
                .unwrap();
            self.drv
                .write_desc(0, d + 2, status.0, 1, VRING_DESC_F_WRITE, 0)
                .unwrap();
            self.drv.push_avail(0, d).unwrap();
        }
        GuestDriver::notify(&mut self.t, 0);
        self.t.poll();
        while self.t.poll_after().is_some() {
            self.t.poll();
        }
        assert_eq!(self.drv.used_idx(0).unwrap().wrapping_sub(before), BATCH);
    }
}

fn block(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bench.img");
    std::fs::write(&image, vec![0x5a; IMAGE_LEN]).unwrap();
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    for len in [4096u32, 65536] {
        for (kind, ours, raw) in [
            (request_type::IN, "virtio_blk_read", "raw_pread"),
            (request_type::OUT, "virtio_blk_write", "raw_pwrite"),
        ] {
            let mut guest = Guest::new(&image, len, kind);
            g.bench_function(BenchmarkId::new(ours, len), |b| b.iter(|| guest.batch()));
            drop(guest); // releases the image's lock
            let file = File::options().read(true).write(true).open(&image).unwrap();
            // One buffer per request, as the guest has: the same memory
            // footprint, not one cache-hot buffer reused 32 times.
            let mut bufs = vec![0x5au8; usize::from(BATCH) * len as usize];
            g.bench_function(BenchmarkId::new(raw, len), |b| {
                b.iter(|| {
                    for (i, buf) in bufs.chunks_exact_mut(len as usize).enumerate() {
                        let offset = i as u64 * u64::from(len);
                        if kind == request_type::IN {
                            file.read_exact_at(buf, offset).unwrap();
                        } else {
                            file.write_all_at(buf, offset).unwrap();
                        }
                    }
                    black_box(&bufs);
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, block);
criterion_main!(benches);
