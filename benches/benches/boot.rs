//! Boot benches (issue 8), on KVM with the built-in x86_64 guest:
//!
//! - `boot/build_to_first_serial_byte`: `VmmBuilder::build()` + `start()` until
//!   the guest's first byte reaches the serial console, in-process.
//! - `boot/build_run_stop`: the same until the guest has asked to stop and
//!   every vCPU has ended.
//! - VMM share of a process launch: a fresh process (this bench binary in its
//!   child mode) that builds and runs the VM and exits, against the same
//!   process exiting at once, in alternated pairs (medians, written to
//!   `target/bench/extra/boot_process_share.json` for `cargo xtask bench`).
//!
//! The child also reports memory: resident set beyond what it had before the
//! VM existed, minus the guest pages that are resident (found with mincore),
//! written to `target/bench/boot_memory.json` and printed.
//!
//! Without /dev/kvm, reported through `test_prerequisites` (skipped by hand).

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use vm_core::config::VmConfig;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vm_service::VmmBuilder;

const CHILD_ENV: &str = "VM_BENCH_BOOT_CHILD";

/// Signals the first byte written to it.
#[derive(Clone, Default)]
struct FirstByte(Arc<(Mutex<Option<Instant>>, Condvar)>);

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

fn config() -> VmConfig {
    VmConfig {
        vcpus: 1,
        memory_mib: 128,
        ..VmConfig::default()
    }
}

fn in_process(c: &mut Criterion) {
    let mut group = c.benchmark_group("boot");
    group
        .sample_size(30)
        .measurement_time(benches::measurement_time(Duration::from_secs(5)));
    group.bench_function("build_to_first_serial_byte", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let console = FirstByte::default();
                let start = Instant::now();
                let vmm = VmmBuilder::new(config())
                    .serial_output(Box::new(console.clone()))
                    .build()
                    .expect("build");
                let running = vmm.start().expect("start");
                let (lock, cond) = &*console.0;
                let mut first = lock.lock().expect("lock");
                while first.is_none() {
                    first = cond.wait(first).expect("wait");
                }
                total += first.map_or(Duration::ZERO, |t| t - start);
                drop(first);
                running.wait();
            }
            total
        });
    });
    group.bench_function("build_run_stop", |b| {
        b.iter(|| {
            let vmm = VmmBuilder::new(config())
                .serial_output(Box::new(std::io::sink()))
                .build()
                .expect("build");
            vmm.start().expect("start").wait()
        });
    });
    group.finish();
}

fn spawn_child(mode: &str) -> Duration {
    let exe = std::env::current_exe().expect("bench binary path");
    let start = Instant::now();
    let status = Command::new(exe)
        .env(CHILD_ENV, mode)
        .status()
        .expect("spawn child");
    assert!(status.success(), "child {mode} failed: {status}");
    start.elapsed()
}

/// A process that builds, runs and stops the built-in guest against the same
/// process exiting at once, in alternated pairs (which goes first swaps each
/// pair) so machine noise hits both alike; medians. Too coarse for
/// criterion's sampling, so the result goes to
/// `target/bench/extra/boot_process_share.json`.
fn process_level(_c: &mut Criterion) {
    let pairs = if std::env::var_os("VM_BENCH_QUICK").is_some() {
        11
    } else {
        41
    };
    let (mut ours, mut baseline) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for i in 0..pairs {
        if i % 2 == 0 {
            ours.push(spawn_child("vm"));
            baseline.push(spawn_child("noop"));
        } else {
            baseline.push(spawn_child("noop"));
            ours.push(spawn_child("vm"));
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (ours, baseline) = (median(ours), median(baseline));
    eprintln!(
        "boot: process launch to exit, {pairs} alternated pairs: built-in guest {ours:?}, \
         process exiting at once {baseline:?}"
    );
    benches::write_extra(
        "boot_process_share.json",
        &serde_json::json!({
            "area": "boot",
            "name": "VMM share of a process launch",
            "ours_ns": ours.as_secs_f64() * 1e9,
            "peer_name": "same process exiting at once",
            "peer_ns": baseline.as_secs_f64() * 1e9,
            "runs": pairs,
        }),
    );
}

/// Resident bytes of this process, from /proc/self/status (`VmRSS` or `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Guest pages resident in host memory, in bytes, via mincore(2).
fn guest_resident_bytes(memory: &vm_memory::GuestMemoryMmap) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let mut resident = 0u64;
    for region in memory.iter() {
        let len = region.len() as usize;
        let Ok(ptr) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: [ptr, ptr+len) is the region's live mapping (page aligned, owned by
        // `memory`, which outlives the call) and `vec` has one byte per page of it.
        let rc = unsafe { libc::mincore(ptr.cast(), len, vec.as_mut_ptr()) };
        if rc == 0 {
            resident += vec.iter().filter(|&&b| b & 1 == 1).count() as u64 * page as u64;
        }
    }
    resident
}

/// Child mode: build and run the built-in guest once, report memory, exit.
fn child(mode: &str) {
    if mode == "noop" {
        return;
    }
    let before_kib = status_kib("VmRSS:");
    let vmm = VmmBuilder::new(config())
        .serial_output(Box::new(std::io::sink()))
        .build()
        .expect("build");
    let memory = vmm.memory().clone();
    let reason = vmm.start().expect("start").wait();
    assert!(reason.is_clean(), "guest ended badly: {reason}");
    if mode == "memory" {
        let peak = status_kib("VmHWM:") * 1024;
        let guest = guest_resident_bytes(&memory);
        let overhead = peak.saturating_sub(before_kib * 1024).saturating_sub(guest);
        println!(
            "{{\"rss_before_vm_bytes\":{},\"peak_rss_bytes\":{peak},\"guest_resident_bytes\":{guest},\"vmm_overhead_bytes\":{overhead}}}",
            before_kib * 1024
        );
    }
}

fn memory_report() {
    let exe = std::env::current_exe().expect("bench binary path");
    let out = Command::new(exe)
        .env(CHILD_ENV, "memory")
        .output()
        .expect("spawn child");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(json) = text.lines().find(|l| l.starts_with('{')) else {
        eprintln!("boot memory: the child reported nothing ({})", out.status);
        return;
    };
    println!("boot/memory: {json}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("boot_memory.json"), json);
    }
}

criterion_group!(benches, in_process, process_level);

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        child(&mode);
        return;
    }
    if !test_prerequisites::kvm_available() {
        return;
    }
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
