//! virtio-blk through the MMIO transport with an in-memory disk: every request
//! type, multi-segment and oddly split requests, read-only disks, flush
//! ordering, config space, deferred (I/O thread) processing, and a hostile
//! guest: each bad request gets the status the spec gives, or the device goes
//! to DEVICE_NEEDS_RESET and comes back after a reset.

use std::sync::Arc;

use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::block::{
    features, request_status, request_type, BlockBackend, BlockDevice, FileBackend, MemoryBackend,
    QUEUE_SIZE,
};
use vm_device::virtio::guest_driver::{GuestDriver, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_device::virtio::mmio::{reg, MmioTransport, INT_CONFIG, INT_VRING};
use vm_device::virtio::{device_type, status, GuestMemory, VIRTIO_F_VERSION_1};
use vm_memory::{Bytes, GuestAddress};

const MEM_SIZE: usize = 16 << 20;
const DISK_SECTORS: u64 = 64;
const DISK_LEN: usize = DISK_SECTORS as usize * 512;
const ALL: u64 = u64::MAX;

struct Drive {
    transport: MmioTransport,
    driver: GuestDriver,
    disk: MemoryBackend,
    irq: Arc<CountingInterrupt>,
    features: u64,
}

/// What the device answered to one request.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u8,
    used_len: u32,
}

impl Drive {
    fn new(disk: MemoryBackend) -> Self {
        Self::with(disk, "disk0", ALL, None)
    }

    fn with(
        disk: MemoryBackend,
        id: &str,
        wanted: u64,
        io: Option<Arc<CountingInterrupt>>,
    ) -> Self {
        Self::over(Box::new(disk.clone()), disk, id, wanted, io)
    }

    /// A drive over `backend`; `disk` is what the test inspects (an unused
    /// empty disk when the backend is not a `MemoryBackend`).
    fn over(
        backend: Box<dyn BlockBackend>,
        disk: MemoryBackend,
        id: &str,
        wanted: u64,
        io: Option<Arc<CountingInterrupt>>,
    ) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let irq = Arc::new(CountingInterrupt::new());
        let mut dev = BlockDevice::new(id, backend);
        if let Some(io) = io {
            dev.set_io_notifier(io);
        }
        let mut transport = MmioTransport::new(Box::new(dev), mem.clone(), irq.clone()).unwrap();
        let mut driver = GuestDriver::new(mem, GuestAddress(0x10_0000), 12 << 20);
        let features = driver.init(&mut transport, wanted, &[QUEUE_SIZE]).unwrap();
        assert_eq!(transport.status() & 0x4f, 0x0f, "driver OK, no error");
        Self {
            transport,
            driver,
            disk,
            irq,
            features,
        }
    }

    fn mem(&self) -> &GuestMemory {
        self.driver.mem()
    }

    fn buffer(&mut self, bytes: &[u8]) -> GuestAddress {
        let a = self.driver.alloc(bytes.len().max(1) as u64, 16).unwrap();
        self.mem().write_slice(bytes, a).unwrap();
        a
    }

    fn header(&mut self, kind: u32, sector: u64) -> GuestAddress {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.buffer(&h)
    }

    fn status_buffer(&mut self) -> GuestAddress {
        self.buffer(&[0xff])
    }

    /// Publish a chain, notify, and return the used element's length.
    fn run(&mut self, bufs: &[(GuestAddress, u32, bool)]) -> u32 {
        self.driver.add_chain(0, bufs).unwrap();
        GuestDriver::notify(&mut self.transport, 0);
        self.drain_polls();
        let (_, len) = self
            .driver
            .pop_used(0)
            .unwrap()
            .expect("the request was completed");
        len
    }

    fn drain_polls(&mut self) {
        while self.transport.poll_after().is_some() {
            self.transport.poll();
        }
    }

    /// A request with `out` as device-readable data and `in_len` device-writable bytes.
    fn request(&mut self, kind: u32, sector: u64, out: &[u8], in_len: u32) -> (Answer, Vec<u8>) {
        let h = self.header(kind, sector);
        let mut bufs = vec![(h, 16, false)];
        if !out.is_empty() {
            let d = self.buffer(out);
            bufs.push((d, out.len() as u32, false));
        }
        let input = self.buffer(&vec![0xee; in_len as usize]);
        if in_len > 0 {
            bufs.push((input, in_len, true));
        }
        let st = self.status_buffer();
        bufs.push((st, 1, true));
        let used_len = self.run(&bufs);
        let status: u8 = self.mem().read_obj(st).unwrap();
        let mut data = vec![0u8; in_len as usize];
        self.mem().read_slice(&mut data, input).unwrap();
        (Answer { status, used_len }, data)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Answer {
        self.request(request_type::OUT, sector, data, 0).0
    }

    fn read(&mut self, sector: u64, len: u32) -> (Answer, Vec<u8>) {
        self.request(request_type::IN, sector, &[], len)
    }

    fn config_u32(&mut self, offset: u64) -> u32 {
        GuestDriver::read_reg(&mut self.transport, reg::CONFIG + offset)
    }

    fn config_u64(&mut self, offset: u64) -> u64 {
        u64::from(self.config_u32(offset)) | (u64::from(self.config_u32(offset + 4)) << 32)
    }

    fn needs_reset(&self) -> bool {
        self.transport.status() & status::DEVICE_NEEDS_RESET != 0
    }

    fn reinit(&mut self) {
        self.driver = GuestDriver::new(self.mem().clone(), GuestAddress(0x10_0000), 12 << 20);
        self.features = self
            .driver
            .init(&mut self.transport, self.features, &[QUEUE_SIZE])
            .unwrap();
    }
}

fn ok(used_len: u32) -> Answer {
    Answer {
        status: request_status::OK,
        used_len,
    }
}

fn err(status: u8) -> Answer {
    Answer {
        status,
        used_len: 1,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn patterned_disk() -> MemoryBackend {
    MemoryBackend::from_bytes(pattern(DISK_LEN, 7))
}

#[test]
fn device_id_features_and_config_space() {
    let mut d = Drive::new(MemoryBackend::new(DISK_LEN));
    assert_eq!(
        GuestDriver::read_reg(&mut d.transport, reg::DEVICE_ID),
        device_type::BLOCK
    );
    let want = VIRTIO_F_VERSION_1
        | features::SEG_MAX
        | features::BLK_SIZE
        | features::FLUSH
        | features::DISCARD
        | features::WRITE_ZEROES;
    assert_eq!(d.features, want);
    assert_eq!(d.config_u64(0), DISK_SECTORS, "capacity");
    assert_eq!(d.config_u32(12), u32::from(QUEUE_SIZE) - 2, "seg_max");
    assert_eq!(d.config_u32(20), 512, "blk_size");
    assert_eq!(d.config_u32(36), (1 << 22) - 1, "max_discard_sectors");
    assert_eq!(d.config_u32(40), 16, "max_discard_seg");
    assert_eq!(d.config_u32(44), 8, "discard_sector_alignment");
    assert_eq!(d.config_u32(48), (1 << 22) - 1, "max_write_zeroes_sectors");
    assert_eq!(d.config_u32(52), 16, "max_write_zeroes_seg");
    assert_eq!(d.config_u32(56) & 0xff, 1, "write_zeroes_may_unmap");
    assert_eq!(d.config_u32(0x200), 0, "past the config space");

    let ro = Drive::new(MemoryBackend::new(DISK_LEN).with_read_only(true));
    assert_ne!(ro.features & features::RO, 0);
    assert_eq!(
        ro.features & (features::DISCARD | features::WRITE_ZEROES),
        0
    );
    let mut plain = Drive::new(MemoryBackend::new(DISK_LEN).with_deallocate(false));
    assert_eq!(
        plain.features & (features::DISCARD | features::WRITE_ZEROES),
        0
    );
    assert_eq!(plain.config_u32(36), 0, "no discard limits without discard");
}

#[test]
fn capacity_rounds_down_to_whole_sectors() {
    let mut d = Drive::new(MemoryBackend::new(DISK_LEN + 100));
    assert_eq!(d.config_u64(0), DISK_SECTORS);
    // The partial sector at the end is out of reach.
    assert_eq!(d.read(DISK_SECTORS, 512).0, err(request_status::IOERR));
    assert_eq!(d.read(DISK_SECTORS - 1, 512).0, ok(513));
}

#[test]
fn write_then_read_back() {
    let mut d = Drive::new(MemoryBackend::new(DISK_LEN));
    let data = pattern(1024, 1);
    assert_eq!(d.write(3, &data), ok(1));
    assert_eq!(&d.disk.contents()[3 * 512..5 * 512], &data[..]);
    let (answer, back) = d.read(3, 1024);
    assert_eq!(answer, ok(1025), "used length counts data and status");
    assert_eq!(back, data);
    assert_ne!(d.irq.count(), 0, "completions interrupt");
    assert_ne!(GuestDriver::ack_interrupt(&mut d.transport) & INT_VRING, 0);
}

#[test]
fn multi_segment_requests() {
    let mut d = Drive::new(patterned_disk());
    // OUT: header, then data in three descriptors of 512, 1024 and 512 bytes.
    let data = pattern(2048, 9);
    let h = d.header(request_type::OUT, 10);
    let first = d.buffer(&data[..512]);
    let second = d.buffer(&data[512..1536]);
    let third = d.buffer(&data[1536..]);
    let st = d.status_buffer();
    let len = d.run(&[
        (h, 16, false),
        (first, 512, false),
        (second, 1024, false),
        (third, 512, false),
        (st, 1, true),
    ]);
    assert_eq!((len, d.mem().read_obj::<u8>(st).unwrap()), (1, 0));
    assert_eq!(&d.disk.contents()[10 * 512..14 * 512], &data[..]);
    // IN: two writable descriptors of 1536 and 512 bytes.
    let h = d.header(request_type::IN, 10);
    let x = d.buffer(&[0; 1536]);
    let y = d.buffer(&[0; 512]);
    let st = d.status_buffer();
    let len = d.run(&[
        (h, 16, false),
        (x, 1536, true),
        (y, 512, true),
        (st, 1, true),
    ]);
    assert_eq!((len, d.mem().read_obj::<u8>(st).unwrap()), (2049, 0));
    let mut back = vec![0u8; 2048];
    d.mem().read_slice(&mut back[..1536], x).unwrap();
    d.mem().read_slice(&mut back[1536..], y).unwrap();
    assert_eq!(back, data);
}

#[test]
fn any_descriptor_layout_the_spec_allows() {
    let mut d = Drive::new(patterned_disk());
    // Header split 10 + 6, the second piece carrying the OUT data too.
    let data = pattern(512, 3);
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&request_type::OUT.to_le_bytes());
    hdr[8..16].copy_from_slice(&5u64.to_le_bytes());
    let first = d.buffer(&hdr[..10]);
    let mut rest = hdr[10..].to_vec();
    rest.extend_from_slice(&data);
    let second = d.buffer(&rest);
    let st = d.status_buffer();
    let len = d.run(&[(first, 10, false), (second, 6 + 512, false), (st, 1, true)]);
    assert_eq!((len, d.mem().read_obj::<u8>(st).unwrap()), (1, 0));
    assert_eq!(&d.disk.contents()[5 * 512..6 * 512], &data[..]);
    // IN with the status byte at the end of the data buffer.
    let h = d.header(request_type::IN, 5);
    let buf = d.buffer(&[0xaa; 513]);
    let len = d.run(&[(h, 16, false), (buf, 513, true)]);
    assert_eq!(len, 513);
    let mut back = vec![0u8; 513];
    d.mem().read_slice(&mut back, buf).unwrap();
    assert_eq!(&back[..512], &data[..]);
    assert_eq!(back[512], request_status::OK);
}

#[test]
fn flush_makes_earlier_writes_durable() {
    let mut d = Drive::new(MemoryBackend::new(DISK_LEN));
    let data = pattern(512, 5);
    assert_eq!(d.write(1, &data), ok(1));
    assert_eq!(
        &d.disk.durable_contents()[512..1024],
        &[0u8; 512][..],
        "not flushed yet"
    );
    assert_eq!(d.request(request_type::FLUSH, 0, &[], 0).0, ok(1));
    assert_eq!(&d.disk.durable_contents()[512..1024], &data[..]);
    assert_eq!(d.disk.flush_count(), 1);

    // A write and a flush published together, one notify: the flush covers the write.
    let data2 = pattern(512, 6);
    let (h1, w, s1) = (
        d.header(request_type::OUT, 2),
        d.buffer(&data2),
        d.status_buffer(),
    );
    let (h2, s2) = (d.header(request_type::FLUSH, 0), d.status_buffer());
    d.driver
        .add_chain(0, &[(h1, 16, false), (w, 512, false), (s1, 1, true)])
        .unwrap();
    d.driver
        .add_chain(0, &[(h2, 16, false), (s2, 1, true)])
        .unwrap();
    GuestDriver::notify(&mut d.transport, 0);
    assert!(d.driver.pop_used(0).unwrap().is_some());
    assert!(d.driver.pop_used(0).unwrap().is_some());
    assert_eq!(&d.disk.durable_contents()[1024..1536], &data2[..]);
}

#[test]
fn get_id_returns_the_drive_id_nul_padded() {
    let mut d = Drive::with(MemoryBackend::new(DISK_LEN), "rootfs", ALL, None);
    let (answer, id) = d.request(request_type::GET_ID, 0, &[], 20);
    assert_eq!(answer, ok(21));
    assert_eq!(&id, b"rootfs\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    // A buffer shorter than 20 bytes is an error, and nothing is written to it.
    let (answer, id) = d.request(request_type::GET_ID, 0, &[], 19);
    assert_eq!(answer, err(request_status::IOERR));
    assert_eq!(id, vec![0xee; 19]);
    // A long id is cut to 20 bytes.
    let mut long = Drive::with(
        MemoryBackend::new(DISK_LEN),
        "a-very-long-drive-identifier",
        ALL,
        None,
    );
    let (answer, id) = long.request(request_type::GET_ID, 0, &[], 32);
    assert_eq!(answer, ok(21));
    assert_eq!(&id[..20], b"a-very-long-drive-id");
}

fn ranges(list: &[(u64, u32, u32)]) -> Vec<u8> {
    list.iter()
        .flat_map(|&(s, n, f)| {
            let mut r = s.to_le_bytes().to_vec();
            r.extend_from_slice(&n.to_le_bytes());
            r.extend_from_slice(&f.to_le_bytes());
            r
        })
        .collect()
}

#[test]
fn discard_and_write_zeroes() {
    let mut d = Drive::new(patterned_disk());
    let before = d.disk.contents();
    let discard = request_type::DISCARD;
    let zeroes = request_type::WRITE_ZEROES;
    assert_eq!(
        d.request(discard, 0, &ranges(&[(2, 2, 0), (8, 1, 0)]), 0).0,
        ok(1)
    );
    let after = d.disk.contents();
    assert!(after[2 * 512..4 * 512].iter().all(|&b| b == 0));
    assert!(after[8 * 512..9 * 512].iter().all(|&b| b == 0));
    assert_eq!(after[4 * 512..8 * 512], before[4 * 512..8 * 512]);
    assert_eq!(
        d.request(zeroes, 0, &ranges(&[(20, 3, 1)]), 0).0,
        ok(1),
        "unmap allowed"
    );
    assert!(d.disk.contents()[20 * 512..23 * 512]
        .iter()
        .all(|&b| b == 0));
    // Discard with the unmap flag, or any unknown flag: UNSUPP.
    let unsupp = err(request_status::UNSUPP);
    assert_eq!(d.request(discard, 0, &ranges(&[(30, 1, 1)]), 0).0, unsupp);
    assert_eq!(d.request(zeroes, 0, &ranges(&[(30, 1, 2)]), 0).0, unsupp);
    // Past the end, too long, or a broken list: IOERR, and nothing changes (even the valid first range).
    let ioerr = err(request_status::IOERR);
    let now = d.disk.contents();
    assert_eq!(
        d.request(discard, 0, &ranges(&[(30, 1, 0), (63, 2, 0)]), 0)
            .0,
        ioerr
    );
    assert_eq!(
        d.request(discard, 0, &ranges(&[(u64::MAX / 8, 1, 0)]), 0).0,
        ioerr
    );
    assert_eq!(
        d.request(discard, 0, &ranges(&[(0, 1 << 22, 0)]), 0).0,
        ioerr
    );
    assert_eq!(
        d.request(discard, 0, &ranges(&[(30, 1, 0)])[..15], 0).0,
        ioerr
    );
    assert_eq!(d.request(discard, 0, &[], 0).0, ioerr, "no ranges");
    let many: Vec<(u64, u32, u32)> = (0..17).map(|i| (i, 1, 0)).collect();
    assert_eq!(d.request(discard, 0, &ranges(&many), 0).0, ioerr);
    assert_eq!(d.disk.contents(), now);
}

#[test]
fn discard_not_negotiated_or_not_supported_is_unsupp() {
    let unsupp = err(request_status::UNSUPP);
    let r = ranges(&[(1, 1, 0)]);
    let wanted = ALL & !(features::DISCARD | features::WRITE_ZEROES);
    let mut d = Drive::with(patterned_disk(), "d", wanted, None);
    assert_eq!(d.request(request_type::DISCARD, 0, &r, 0).0, unsupp);
    assert_eq!(d.request(request_type::WRITE_ZEROES, 0, &r, 0).0, unsupp);
    let mut e = Drive::new(patterned_disk().with_deallocate(false));
    assert_eq!(e.request(request_type::DISCARD, 0, &r, 0).0, unsupp);
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut d = Drive::new(patterned_disk().with_read_only(true));
    let before = d.disk.contents();
    let ioerr = err(request_status::IOERR);
    assert_eq!(d.write(0, &[1; 512]), ioerr);
    assert_eq!(d.disk.contents(), before, "nothing was written");
    assert_eq!(d.read(0, 512).0, ok(513));
    assert_eq!(d.request(request_type::FLUSH, 0, &[], 0).0, ok(1));
    assert_eq!(
        d.request(request_type::DISCARD, 0, &ranges(&[(0, 1, 0)]), 0)
            .0
            .status,
        request_status::UNSUPP
    );
}

#[test]
fn bad_requests_get_their_status() {
    let mut d = Drive::new(patterned_disk());
    let before = d.disk.contents();
    let ioerr = err(request_status::IOERR);
    assert_eq!(d.read(DISK_SECTORS, 512).0, ioerr, "sector past the end");
    assert_eq!(d.read(DISK_SECTORS - 1, 1024).0, ioerr, "runs past the end");
    assert_eq!(
        d.write(DISK_SECTORS - 1, &[0; 1024]),
        ioerr,
        "runs past the end"
    );
    assert_eq!(
        d.read(u64::MAX / 256, 512).0,
        ioerr,
        "sector * 512 overflows"
    );
    assert_eq!(
        d.read(u64::MAX / 512, 1024).0,
        ioerr,
        "offset + len overflows"
    );
    assert_eq!(d.read(0, 100).0, ioerr, "not whole sectors");
    assert_eq!(d.write(0, &[0; 700]), ioerr, "not whole sectors");
    assert_eq!(d.read(0, 0).0, ioerr, "IN without data");
    assert_eq!(d.write(0, &[]), ioerr, "OUT without data");
    assert_eq!(d.request(0x99, 0, &[], 512).0, err(request_status::UNSUPP));
    assert_eq!(
        d.request(request_type::IN | 0x8000_0000, 0, &[], 512)
            .0
            .status,
        request_status::UNSUPP,
        "barrier flag"
    );
    // A header shorter than 16 bytes.
    let h = d.buffer(&[0; 8]);
    let st = d.status_buffer();
    assert_eq!(d.run(&[(h, 8, false), (st, 1, true)]), 1);
    assert_eq!(d.mem().read_obj::<u8>(st).unwrap(), request_status::IOERR);
    assert_eq!(d.disk.contents(), before, "nothing was written");
    assert!(!d.needs_reset());
    assert_eq!(d.read(0, 512).1, &before[..512], "still working");
}

/// Publish hand-written descriptors `(index, addr, len, flags, next)` with `head` and notify.
fn offer(d: &mut Drive, descs: &[(u16, u64, u32, u16, u16)], head: u16) {
    for &(i, addr, len, flags, next) in descs {
        d.driver.write_desc(0, i, addr, len, flags, next).unwrap();
    }
    d.driver.push_avail(0, head).unwrap();
    GuestDriver::notify(&mut d.transport, 0);
}

fn assert_needs_reset_then_recovers(mut d: Drive, why: &str) {
    assert!(d.needs_reset(), "status {:#x}", d.transport.status());
    let error = d
        .transport
        .last_error()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        error.contains(why),
        "error {error:?} should mention {why:?}"
    );
    assert_ne!(GuestDriver::ack_interrupt(&mut d.transport) & INT_CONFIG, 0);
    GuestDriver::notify(&mut d.transport, 0);
    d.transport.poll();
    d.reinit();
    assert!(!d.needs_reset());
    assert_eq!(d.write(0, &[9; 512]), ok(1));
    assert_eq!(&d.disk.contents()[..512], &[9; 512][..]);
}

#[test]
fn status_descriptor_read_only() {
    let mut d = Drive::new(patterned_disk());
    let h = d.header(request_type::IN, 0).0;
    let buf = d.buffer(&[0; 512]).0;
    let st = d.status_buffer().0;
    // Data writable, then the "status" readable: readable after writable.
    offer(
        &mut d,
        &[
            (0, h, 16, VRING_DESC_F_NEXT, 1),
            (1, buf, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2),
            (2, st, 1, 0, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(d, "device-readable");
}

#[test]
fn no_writable_status_byte() {
    let mut d = Drive::new(patterned_disk());
    let h = d.header(request_type::FLUSH, 0).0;
    let st = d.status_buffer().0;
    offer(
        &mut d,
        &[(0, h, 16, VRING_DESC_F_NEXT, 1), (1, st, 1, 0, 0)],
        0,
    );
    assert_needs_reset_then_recovers(d, "status byte");
}

#[test]
fn zero_length_status_descriptor() {
    let mut d = Drive::new(patterned_disk());
    let h = d.header(request_type::FLUSH, 0).0;
    let st = d.status_buffer().0;
    offer(
        &mut d,
        &[
            (0, h, 16, VRING_DESC_F_NEXT, 1),
            (1, st, 0, VRING_DESC_F_WRITE, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(d, "status byte");
}

#[test]
fn data_outside_guest_memory() {
    let mut d = Drive::new(patterned_disk());
    let before = d.disk.contents();
    let h = d.header(request_type::IN, 0).0;
    let st = d.status_buffer().0;
    offer(
        &mut d,
        &[
            (0, h, 16, VRING_DESC_F_NEXT, 1),
            (
                1,
                MEM_SIZE as u64 - 256,
                512,
                VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
                2,
            ),
            (2, st, 1, VRING_DESC_F_WRITE, 0),
        ],
        0,
    );
    assert_eq!(d.disk.contents(), before);
    assert_needs_reset_then_recovers(d, "outside guest memory");
}

#[test]
fn header_outside_guest_memory_and_address_wrap() {
    let mut d = Drive::new(patterned_disk());
    let st = d.status_buffer().0;
    offer(
        &mut d,
        &[
            (0, u64::MAX - 7, 16, VRING_DESC_F_NEXT, 1),
            (1, st, 1, VRING_DESC_F_WRITE, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(d, "outside guest memory");
}

#[test]
fn descriptor_loop() {
    let mut d = Drive::new(patterned_disk());
    let h = d.header(request_type::IN, 0).0;
    offer(
        &mut d,
        &[
            (0, h, 16, VRING_DESC_F_NEXT, 1),
            (1, h, 16, VRING_DESC_F_NEXT, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(d, "descriptors");
}

#[test]
fn avail_index_jump() {
    let mut d = Drive::new(patterned_disk());
    d.driver.set_avail_idx(0, 1000).unwrap();
    GuestDriver::notify(&mut d.transport, 0);
    assert_needs_reset_then_recovers(d, "available index jumped");
}

#[test]
fn a_flood_is_processed_in_bounded_passes() {
    let mut d = Drive::new(patterned_disk());
    let n = usize::from(QUEUE_SIZE) / 2; // two descriptors per request
    let mut statuses = Vec::new();
    for i in 0..n {
        let h = d.header(request_type::FLUSH, 0);
        let st = d.status_buffer();
        d.driver
            .add_chain(0, &[(h, 16, false), (st, 1, true)])
            .unwrap();
        statuses.push((i, st));
    }
    GuestDriver::notify(&mut d.transport, 0);
    let first_pass = d.driver.used_idx(0).unwrap();
    assert!(
        usize::from(first_pass) < n,
        "one notify does not run the whole flood"
    );
    assert!(
        d.transport.poll_after().is_some(),
        "the device asks to be polled again"
    );
    d.drain_polls();
    assert_eq!(usize::from(d.driver.used_idx(0).unwrap()), n);
    for (_, st) in statuses {
        assert_eq!(d.mem().read_obj::<u8>(st).unwrap(), request_status::OK);
    }
    assert_eq!(d.disk.flush_count(), n as u64);
}

#[test]
fn deferred_io_runs_on_poll_only() {
    let io = Arc::new(CountingInterrupt::new());
    let mut d = Drive::with(patterned_disk(), "d", ALL, Some(io.clone()));
    let h = d.header(request_type::IN, 1);
    let buf = d.buffer(&[0; 512]);
    let st = d.status_buffer();
    d.driver
        .add_chain(0, &[(h, 16, false), (buf, 512, true), (st, 1, true)])
        .unwrap();
    let irqs = d.irq.count();
    GuestDriver::notify(&mut d.transport, 0);
    assert_eq!(io.take(), 1, "the notify wakes the I/O thread");
    assert_eq!(d.driver.used_idx(0).unwrap(), 0, "and does no I/O itself");
    d.transport.poll(); // what the I/O thread does
    assert_eq!(d.driver.pop_used(0).unwrap().map(|(_, l)| l), Some(513));
    assert!(
        d.irq.count() > irqs,
        "completion interrupt from the I/O thread"
    );
    let mut back = vec![0u8; 512];
    d.mem().read_slice(&mut back, buf).unwrap();
    assert_eq!(back, d.disk.contents()[512..1024]);
}

#[test]
fn reset_and_reinit_keep_the_disk() {
    let mut d = Drive::new(MemoryBackend::new(DISK_LEN));
    assert_eq!(d.write(0, &[4; 512]), ok(1));
    GuestDriver::write_reg(&mut d.transport, reg::STATUS, 0);
    d.reinit();
    assert_eq!(d.read(0, 512).1, vec![4; 512]);
}

#[test]
fn file_image_through_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, pattern(DISK_LEN, 2)).unwrap();
    let backend = FileBackend::open(&path, false).unwrap();
    let mut d = Drive::over(Box::new(backend), MemoryBackend::new(0), "file", ALL, None);
    assert_eq!(d.config_u64(0), DISK_SECTORS);
    let data = pattern(4096, 11);
    assert_eq!(d.write(8, &data), ok(1));
    assert_eq!(d.request(request_type::FLUSH, 0, &[], 0).0, ok(1));
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(
        &on_disk[8 * 512..16 * 512],
        &data[..],
        "data reached the file"
    );
    assert_eq!(d.read(8, 4096).1, data);
    if d.features & features::DISCARD != 0 {
        assert_eq!(
            d.request(request_type::DISCARD, 0, &ranges(&[(8, 8, 0)]), 0)
                .0,
            ok(1)
        );
        assert_eq!(
            d.read(8, 4096).1,
            vec![0; 4096],
            "a discarded range reads as zeroes"
        );
    }
    // A second VM cannot open the image while this one has it.
    let err = FileBackend::open(&path, false).unwrap_err().to_string();
    assert!(err.contains("disk.img") && err.contains("in use"), "{err}");
}
