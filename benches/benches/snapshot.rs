//! Snapshot benches, on the riscv64 interpreter with a 256 MiB guest whose
//! code writes to the UART in a loop (a tiny `Image` made here):
//!
//! - `snapshot/create_256mib`: `RunningVmm::snapshot` of the paused guest
//!   (state file and the whole memory file, page cache only: no fsync wait
//!   beyond what the files' `sync_all` costs).
//! - `snapshot/restore_to_first_serial_byte`: `VmmBuilder::restore` + build +
//!   start until the restored guest's next UART byte, against
//!   `snapshot/boot_to_first_serial_byte`: a fresh build + start of the same
//!   guest until its first UART byte (the ratio `cargo xtask bench` reports).
//!
//! The memory file's size against guest RAM is printed and written to
//! `target/bench/snapshot_memory.json` (the `cargo xtask bench` report's
//! memory section).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use vm_core::config::{GuestArch, SerialMode, VmConfig};
use vm_service::{VmmBuilder, VmmInfo};

const MEMORY_MIB: u64 = 256;

/// Signals the first byte written to it.
#[derive(Clone, Default)]
struct FirstByte(Arc<(Mutex<Option<Instant>>, Condvar)>);

impl FirstByte {
    fn wait(&self) -> Instant {
        let (lock, cond) = &*self.0;
        let mut first = lock.lock().expect("lock");
        loop {
            if let Some(t) = *first {
                return t;
            }
            first = cond.wait(first).expect("wait");
        }
    }
}

impl Write for FirstByte {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (lock, cond) = &*self.0;
        let mut first = lock.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        if first.is_none() && !buf.is_empty() {
            *first = Some(Instant::now());
            cond.notify_all();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A riscv64 `Image`: the header's first instruction jumps past it to
/// `t0 = UART; t1 = 'x'; loop: sb t1, 0(t0); j loop`.
fn uart_loop_image() -> Vec<u8> {
    let mut image = vec![0u8; 0x1000];
    image[0..4].copy_from_slice(&0x0400_006fu32.to_le_bytes()); // j +0x40
    image[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes()); // text_offset
    image[16..24].copy_from_slice(&0x1000u64.to_le_bytes()); // image_size
    image[0x38..0x3c].copy_from_slice(b"RSC\x05");
    let code: [u32; 4] = [
        0x1000_02b7, // lui t0, 0x10000
        0x0780_0313, // li t1, 'x'
        0x0062_8023, // sb t1, 0(t0)
        0xffdf_f06f, // j -4
    ];
    for (i, w) in code.iter().enumerate() {
        image[0x40 + 4 * i..0x44 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    image
}

fn config(kernel: &Path) -> VmConfig {
    VmConfig {
        arch: GuestArch::Riscv64,
        vcpus: 1,
        memory_mib: MEMORY_MIB,
        kernel: Some(kernel.to_path_buf()),
        cmdline: "console=ttyS0".into(),
        serial: SerialMode::Off,
        ..VmConfig::default()
    }
}

fn boot_to_first_byte(config: &VmConfig) -> Duration {
    let console = FirstByte::default();
    let start = Instant::now();
    let running = VmmBuilder::new(config.clone())
        .serial_output(Box::new(console.clone()))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let took = console.wait() - start;
    running.control().stop();
    running.wait();
    took
}

fn restore_to_first_byte(dir: &Path) -> Duration {
    let console = FirstByte::default();
    let start = Instant::now();
    let running = VmmBuilder::restore(dir)
        .expect("restore")
        .serial_output(Box::new(console.clone()))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let took = console.wait() - start;
    running.control().stop();
    running.wait();
    took
}

fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("bench")
}

fn snapshot(c: &mut Criterion) {
    let work = tempfile::tempdir().expect("tempdir");
    let kernel = work.path().join("uart-loop.Image");
    std::fs::write(&kernel, uart_loop_image()).expect("write the image");
    let config = config(&kernel);
    let snap = work.path().join("snap");

    // One guest, running its loop, then paused: snapshotted again and again.
    let console = FirstByte::default();
    let running = VmmBuilder::new(config.clone())
        .serial_output(Box::new(console.clone()))
        .build()
        .expect("build")
        .start()
        .expect("start");
    console.wait();
    running.control().pause().expect("pause");
    running.snapshot(&snap).expect("snapshot");
    let info: VmmInfo = running.info().clone();
    let memory_file = std::fs::metadata(snap.join("memory.snap"))
        .expect("memory file")
        .len();
    let state_file = std::fs::metadata(snap.join("state.snap"))
        .expect("state file")
        .len();
    let permille = memory_file.saturating_mul(1000) / info.memory_bytes.max(1);
    eprintln!(
        "snapshot: memory file {memory_file} bytes for {} bytes of guest RAM ({}.{:03}x); state file {state_file} bytes",
        info.memory_bytes,
        permille / 1000,
        permille % 1000
    );
    let dir = bench_dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("snapshot_memory.json"),
            format!(
                "{{\"guest_ram_bytes\": {}, \"memory_file_bytes\": {memory_file}, \"state_file_bytes\": {state_file}}}\n",
                info.memory_bytes
            ),
        );
    }

    let mut group = c.benchmark_group("snapshot");
    group
        .sample_size(10)
        .measurement_time(benches::measurement_time(Duration::from_secs(10)));
    group.bench_function("create_256mib", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                running.snapshot(&snap).expect("snapshot");
                total += start.elapsed();
            }
            total
        });
    });
    running.control().stop();
    running.wait();

    group.bench_function("restore_to_first_serial_byte", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| restore_to_first_byte(&snap)).sum());
    });
    group.bench_function("boot_to_first_serial_byte", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| boot_to_first_byte(&config)).sum());
    });
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
