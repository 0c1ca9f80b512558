//! virtio-net packet rates: guest TX -> virtual switch -> peer guest RX, for
//! 64- and 1500-byte frames, against a copy-only baseline (the bytes any
//! implementation must move); the same between two switches joined by a
//! cross-process segment (Unix datagram sockets and a bridge thread on each
//! side, exactly what two processes use), against the in-process switch; and
//! the TAP path (guest -> tap, host -> guest) inside a private network
//! namespace when the host allows one, guest TX against a plain `write(2)` of
//! the same frames to the same TAP descriptor (the kernel's share of the
//! work, which any VMM pays; the difference is our device's). The same TAP
//! transmit also runs on a thread confined as a sandboxed vCPU thread is
//! (VMM and vCPU seccomp filters, level 2) and on one without filters,
//! alternated: the median per-pair ratio is what the filters cost on the
//! network path (written to `target/bench/extra/net_seccomp_<size>.json`
//! for `cargo xtask bench`).
//!
//! Each iteration moves a batch of frames the way guests would: the sending
//! driver publishes TX buffers and notifies, the receiving NIC polls its
//! backend, and its driver recycles the used RX buffers.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::guest_driver::GuestDriver;
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::net::r#virtual::VirtualSwitch;
use vm_device::virtio::net::{NetBackend, NetDevice, VNET_HDR_LEN};
use vm_device::virtio::{GuestMemory, VIRTIO_F_VERSION_1};
use vm_memory::{Address, Bytes, GuestAddress};

const BATCH: usize = 128;
const RX_BUF: u32 = 2048;
const FEATURES: u64 = VIRTIO_F_VERSION_1 | (1 << 5);

struct Guest {
    t: MmioTransport,
    drv: GuestDriver,
    /// RX buffer address by descriptor head.
    rx_addr: Vec<GuestAddress>,
    tx_addr: GuestAddress,
    tx_len: u32,
}

impl Guest {
    fn new(mac: [u8; 6], backend: Box<dyn NetBackend>, frame_len: usize) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let dev = NetDevice::new(mac, backend);
        let mut t = MmioTransport::new(
            Box::new(dev),
            mem.clone(),
            Arc::new(CountingInterrupt::new()),
        )
        .unwrap();
        let mut drv = GuestDriver::new(mem, GuestAddress(0x1000), 7 << 20);
        drv.init(&mut t, FEATURES, &[256, 256]).unwrap();
        let mut rx_addr = vec![GuestAddress(0); 256];
        for _ in 0..256 {
            let a = drv.alloc(u64::from(RX_BUF), 64).unwrap();
            let h = drv.add_buffer(0, a, RX_BUF, true).unwrap();
            rx_addr[usize::from(h)] = a;
        }
        let mut frame = vec![0u8; VNET_HDR_LEN + frame_len];
        frame[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
        frame[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12].copy_from_slice(&mac);
        frame[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14].copy_from_slice(&[0x88, 0xb5]);
        let tx_addr = drv.alloc(frame.len() as u64, 64).unwrap();
        drv.mem().write_slice(&frame, tx_addr).unwrap();
        GuestDriver::notify(&mut t, 0);
        Self {
            t,
            drv,
            rx_addr,
            tx_addr,
            tx_len: frame.len() as u32,
        }
    }

    fn transmit_batch(&mut self) {
        for _ in 0..BATCH {
            self.drv
                .add_buffer(1, self.tx_addr, self.tx_len, false)
                .unwrap();
        }
        GuestDriver::notify(&mut self.t, 1);
        while self.drv.pop_used(1).unwrap().is_some() {}
    }

    /// Rewrites the destination MAC of the frame this guest transmits.
    fn set_destination(&mut self, dst: [u8; 6]) {
        let at = self.tx_addr.unchecked_add(VNET_HDR_LEN as u64);
        self.drv.mem().write_slice(&dst, at).unwrap();
    }

    /// Poll the backend and recycle used RX buffers; returns frames received.
    fn receive(&mut self) -> usize {
        self.t.poll();
        let mut n = 0;
        while let Some((head, _)) = self.drv.pop_used(0).unwrap() {
            let a = self.rx_addr[usize::from(head)];
            let h = self.drv.add_buffer(0, a, RX_BUF, true).unwrap();
            self.rx_addr[usize::from(h)] = a;
            n += 1;
        }
        n
    }
}

fn virtual_switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("net_virtual");
    g.throughput(Throughput::Elements(BATCH as u64));
    for frame_len in [64usize, 1500] {
        let sw = VirtualSwitch::new();
        let open = || -> Box<dyn NetBackend> { Box::new(sw.add_port()) };
        let mut a = Guest::new([2, 0, 0, 0, 0, 0xa], open(), frame_len);
        let mut b = Guest::new([2, 0, 0, 0, 0, 0xb], open(), frame_len);
        // Let the switch learn B so frames are unicast, not flooded.
        b.transmit_batch();
        a.receive();
        g.bench_function(
            BenchmarkId::new("guest_tx_switch_peer_rx", frame_len),
            |bench| {
                bench.iter(|| {
                    a.transmit_batch();
                    let got = b.receive();
                    assert_eq!(got, BATCH, "every frame arrives");
                });
            },
        );
        // Baseline: only the copies any design needs (guest -> staging -> guest), no queues.
        let mem = a.drv.mem().clone();
        let mut staging = vec![0u8; VNET_HDR_LEN + frame_len];
        let src = a.tx_addr;
        g.bench_function(BenchmarkId::new("copy_only_baseline", frame_len), |bench| {
            bench.iter(|| {
                for i in 0..BATCH {
                    mem.read_slice(&mut staging, src).unwrap();
                    mem.write_slice(&staging, GuestAddress(0x40_0000 + (i as u64) * 2048))
                        .unwrap();
                }
                black_box(&staging);
            });
        });
        #[cfg(unix)]
        segment::bench(&mut g, frame_len);
    }
    g.finish();
}

/// Two switches, each bridged into one segment directory as two processes
/// would be: guest A on one, guest B on the other.
#[cfg(unix)]
mod segment {
    use super::{BenchmarkId, Guest, NetBackend, VirtualSwitch, BATCH};
    use std::time::{Duration, Instant};
    use vm_device::virtio::net::segment::SegmentBridge;

    /// Receives on `g` until `n` frames, less those `lost()` says were dropped, arrived.
    fn receive(g: &mut Guest, n: usize, lost: impl Fn() -> usize) -> usize {
        let start = Instant::now();
        let mut got = 0;
        while got + lost() < n {
            got += g.receive();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "frames went missing: {got} of {n}"
            );
        }
        got
    }

    pub fn bench(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        frame_len: usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (sw_a, sw_b) = (VirtualSwitch::new(), VirtualSwitch::new());
        let bridge_a = SegmentBridge::join(&sw_a, dir.path(), "bench").unwrap();
        let _bridge_b = SegmentBridge::join(&sw_b, dir.path(), "bench").unwrap();
        let open = |sw: &VirtualSwitch| -> Box<dyn NetBackend> { Box::new(sw.add_port()) };
        let mut a = Guest::new([2, 0, 0, 0, 0, 0xa], open(&sw_a), frame_len);
        let mut b = Guest::new([2, 0, 0, 0, 0, 0xb], open(&sw_b), frame_len);
        // B broadcasts once so A's bridge learns which member B is: frames are then unicast.
        b.set_destination([0xff; 6]);
        b.transmit_batch();
        receive(&mut a, BATCH, || 0);
        let congested = || bridge_a.stats().congested;
        // Throughput counts frames that arrived: an iteration is BATCH frames
        // delivered to B, however many batches A had to send for them (a full
        // receiver queue for 2 ms drops frames, counted, as any switch would).
        g.bench_function(
            BenchmarkId::new("guest_tx_segment_peer_rx", frame_len),
            |bench| {
                bench.iter_custom(|iters| {
                    let want = iters as usize * BATCH;
                    let mut got = 0;
                    let start = Instant::now();
                    while got < want {
                        let before = congested();
                        a.transmit_batch();
                        let lost = || usize::try_from(congested() - before).unwrap_or(BATCH);
                        got += receive(&mut b, BATCH, lost);
                    }
                    // The last batch may overshoot: scale to exactly `want` frames.
                    let nanos = start.elapsed().as_nanos() * want as u128 / got as u128;
                    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
                });
            },
        );
        let s = bridge_a.stats();
        eprintln!(
            "segment {frame_len} B: {} sent, {} dropped while the peer's queue was full",
            s.sent, s.congested
        );
    }
}

#[cfg(target_os = "linux")]
mod tap_path {
    use super::{BenchmarkId, Bytes, Criterion, Guest, NetBackend, Throughput, BATCH};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const TAP: &str = "vmdbench0";
    /// The TAP devices of the filtered and unfiltered transmit threads.
    const TAP_FILTERED: &str = "vmdbench1";
    const TAP_PLAIN: &str = "vmdbench2";

    fn setup() -> Result<(String, OwnedFd), String> {
        let ns = format!("vmdev-bench-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("`ip netns add` failed".into());
        }
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| e.to_string())?;
        // SAFETY: setns on a valid namespace fd moves only this (the bench's) thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        Ok((ns, packet_socket_placeholder()?))
    }

    fn packet_socket_placeholder() -> Result<OwnedFd, String> {
        // SAFETY: plain socket(2) call, result checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(3u16.to_be()),
            )
        };
        if fd < 0 {
            return Err(format!(
                "packet socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn bind(sock: &OwnedFd) -> Result<(), String> {
        let name = std::ffi::CString::new(TAP).map_err(|e| e.to_string())?;
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: sockaddr_ll is plain data; zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 3u16.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: pointer and length describe `sll`.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(format!("bind: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    pub fn bench(c: &mut Criterion) {
        let (ns, host) = match setup() {
            Ok(x) => x,
            Err(reason) => {
                test_prerequisites::prerequisite_missing(format_args!("net_tap benches: {reason}"));
                return;
            }
        };
        let mut g = c.benchmark_group("net_tap");
        g.throughput(Throughput::Elements(BATCH as u64));
        for frame_len in [64usize, 1500] {
            let tap: Box<dyn NetBackend> =
                Box::new(vm_device::virtio::net::tap::Tap::open(TAP).unwrap());
            let tap_fd = tap.raw_fd().expect("a TAP backend has a descriptor");
            let mut guest = Guest::new([2, 0, 0, 0, 0, 0xa], tap, frame_len);
            let _ = Command::new("ip")
                .args(["-n", &ns, "link", "set", TAP, "up"])
                .status();
            bind(&host).unwrap();
            g.bench_function(BenchmarkId::new("guest_tx_to_tap", frame_len), |bench| {
                bench.iter(|| guest.transmit_batch());
            });
            // The peer: the bytes the device writes per frame (virtio-net
            // header and frame, read from the guest's TX buffer), written
            // with write(2) to the same descriptor, once per frame, as a
            // VMM's TX path must; no queues, no guest memory walk.
            let mut wire = vec![0u8; guest.tx_len as usize];
            guest
                .drv
                .mem()
                .read_slice(&mut wire, guest.tx_addr)
                .unwrap();
            g.bench_function(BenchmarkId::new("raw_write_to_tap", frame_len), |bench| {
                bench.iter(|| {
                    for _ in 0..BATCH {
                        // SAFETY: `tap_fd` stays open while `guest` (which
                        // owns the backend) lives; the buffer is valid for
                        // its length.
                        let n = unsafe { libc::write(tap_fd, wire.as_ptr().cast(), wire.len()) };
                        assert_eq!(
                            usize::try_from(n).ok(),
                            Some(wire.len()),
                            "tap write: {}",
                            std::io::Error::last_os_error()
                        );
                    }
                });
            });
            let mut frame = vec![0u8; frame_len];
            frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
            frame[12..14].copy_from_slice(&[0x88, 0xb5]);
            g.bench_function(BenchmarkId::new("host_to_guest_rx", frame_len), |bench| {
                bench.iter(|| {
                    for _ in 0..BATCH {
                        // SAFETY: the buffer is valid for its length.
                        unsafe {
                            libc::send(host.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                        };
                    }
                    let mut got = 0;
                    let mut spins = 0;
                    while got < BATCH && spins < 1_000_000 {
                        got += guest.receive();
                        spins += 1;
                    }
                    assert!(got >= BATCH, "host frames reach the guest");
                });
            });
            drop(guest);
            filters_ratio(&ns, frame_len);
        }
        g.finish();
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }

    /// A thread that owns a guest NIC on its own TAP device and transmits
    /// batches on request; `filtered`: it first stacks the VMM and vCPU
    /// seccomp filters (level 2), as the vCPU thread that notifies a
    /// sandboxed VMM's TX queue has.
    struct Runner {
        work: mpsc::Sender<u32>,
        done: mpsc::Receiver<Duration>,
    }

    impl Runner {
        fn spawn(tap: &'static str, ns: &str, frame_len: usize, filtered: bool) -> Self {
            let (work, work_rx) = mpsc::channel::<u32>();
            let (done_tx, done) = mpsc::channel();
            let (ready_tx, ready) = mpsc::channel();
            // Threads start in the creating thread's network namespace (the bench's).
            std::thread::spawn(move || {
                let backend: Box<dyn NetBackend> =
                    Box::new(vm_device::virtio::net::tap::Tap::open(tap).unwrap());
                let mut guest = Guest::new([2, 0, 0, 0, 0, 0xa], backend, frame_len);
                if filtered {
                    use vm_service::sandbox::{filter_current_thread, SeccompLevel, ThreadKind};
                    filter_current_thread(&[ThreadKind::Vmm, ThreadKind::Vcpu], SeccompLevel::Kill)
                        .expect("seccomp filters");
                }
                let _ = ready_tx.send(());
                while let Ok(n) = work_rx.recv() {
                    let start = Instant::now();
                    for _ in 0..n {
                        guest.transmit_batch();
                    }
                    if done_tx.send(start.elapsed()).is_err() {
                        break;
                    }
                }
            });
            ready.recv().expect("TX thread set up");
            let _ = Command::new("ip")
                .args(["-n", ns, "link", "set", tap, "up"])
                .status();
            Self { work, done }
        }

        fn batches(&self, n: u32) -> Duration {
            self.work.send(n).expect("TX thread alive");
            self.done.recv().expect("TX thread alive")
        }
    }

    /// Guest TX into a TAP device with and without the filters, alternated
    /// batch by batch in one run.
    fn filters_ratio(ns: &str, frame_len: usize) {
        let with = Runner::spawn(TAP_FILTERED, ns, frame_len, true);
        let without = Runner::spawn(TAP_PLAIN, ns, frame_len, false);
        let pairs = if std::env::var_os("VM_BENCH_QUICK").is_some() {
            51
        } else {
            201
        };
        let per_pair = 8;
        let m = benches::alternate(
            pairs,
            || with.batches(per_pair),
            || without.batches(per_pair),
        );
        let frames = f64::from(per_pair * u32::try_from(BATCH).expect("a small batch"));
        let (w, o, ratio) = (m.ours, m.peer, m.ratio);
        println!(
            "net: guest TX to TAP ({frame_len} B) with seccomp filters (VMM + vCPU, level 2) vs \
             none, {pairs} alternated pairs of {frames} frames: median {w:?} vs {o:?}, median \
             per-pair ratio {ratio:.3}"
        );
        benches::write_extra(
            &format!("net_seccomp_{frame_len}.json"),
            &serde_json::json!({
                "area": "net",
                "name": format!("guest TX to TAP, {frame_len} B, with seccomp filters (vs none), per frame"),
                "ours_ns": w.as_secs_f64() * 1e9 / frames,
                "peer_name": "same TX without filters",
                "peer_ns": o.as_secs_f64() * 1e9 / frames,
                "runs": pairs,
                "goal": "<= 1.05x the unfiltered time",
            }),
        );
    }
}

#[cfg(target_os = "linux")]
criterion_group!(benches, virtual_switch, tap_path::bench);
#[cfg(not(target_os = "linux"))]
criterion_group!(benches, virtual_switch);
criterion_main!(benches);
