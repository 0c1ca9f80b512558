//! The daemon's API: request latency under 20 concurrent clients, and VMs
//! created-and-started per second with the built-in guest.
//!
//! The daemon runs in this process (its real server, journal and router);
//! VMs run in child processes, for which this bench binary re-executes
//! itself as `api-bench vmm --fd 3` (the daemon is told to use it as its
//! VMM binary).
//!
//! - `get/openapi`: `GET /openapi.json`, a static answer: the baseline cost of
//!   HTTP/1.1 over the Unix socket;
//! - `get/vm_created`: `GET /vms/{id}` of a VM that is not running;
//! - `get/vm_running`: `GET /vms/{id}` of a running guest, which asks its
//!   VMM process for per-vCPU exit counts (one more round trip);
//! - `create_start/daemon`: `PUT /vms/{id}` + `start` of the built-in guest
//!   (journaled, a process spawned and booted) against
//!   `create_start/in_process`: `VmmBuilder::build()` + `start()` of the same
//!   guest in this process.
//!
//! p50/p99 per request (20 clients, one keep-alive connection each) and
//! VMs/s are printed at the end, with ratios to the baselines.

#![allow(clippy::cast_precision_loss)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;
use vm_core::VmConfig;
use vm_service::api::client::ApiClient;
use vm_service::api::Limits;
use vm_service::daemon::server::{self, DaemonOptions};
use vm_service::daemon::vms::VmsConfig;
use vm_service::{ExecutorKind, VmmBuilder};

const CLIENTS: usize = 20;

/// Per-request latencies (ns) of each benchmark.
static LATENCIES: Mutex<Vec<(String, Vec<u64>)>> = Mutex::new(Vec::new());
/// (name, VMs, seconds) of the create-and-start benchmarks.
static RATES: Mutex<Vec<(String, u64, f64)>> = Mutex::new(Vec::new());

fn record_latencies(name: &str, mut lat: Vec<u64>) {
    let mut all = LATENCIES.lock().unwrap();
    match all.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => v.append(&mut lat),
        None => all.push((name.to_owned(), lat)),
    }
}

fn record_rate(name: &str, vms: u64, elapsed: Duration) {
    let mut all = RATES.lock().unwrap();
    match all.iter_mut().find(|(n, _, _)| n == name) {
        Some((_, n, s)) => {
            *n += vms;
            *s += elapsed.as_secs_f64();
        }
        None => all.push((name.to_owned(), vms, elapsed.as_secs_f64())),
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

async fn start_daemon(dir: &Path) -> ApiClient {
    let sock = dir.join("api.sock");
    let opts = DaemonOptions {
        api_sock: sock.clone(),
        state_dir: dir.join("state"),
        vms: VmsConfig {
            exe: std::env::current_exe().expect("bench executable"),
            executor: ExecutorKind::Sync,
            boot_timeout: Duration::from_mins(1),
            command_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(5),
            log_filter: "warn".into(),
            switch_dir: None,
            max_vms: 10_000,
            max_memory_mib: u64::MAX,
            sandbox: vm_service::sandbox::SandboxConfig::default(),
        },
        limits: Limits::default(),
    };
    tokio::spawn(async move {
        if let Err(e) = server::run(opts).await {
            eprintln!("daemon failed: {e}");
        }
    });
    let client = ApiClient::new(&sock);
    while client.request("GET", "/vms", None).await.is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
}

/// `iters` requests of `GET path` spread over 20 concurrent keep-alive clients.
async fn concurrent_gets(client: &ApiClient, path: &str, iters: u64) -> (Duration, Vec<u64>) {
    let per_client = iters.div_ceil(CLIENTS as u64);
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(client.connect().await.expect("connect"));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client as usize);
            for _ in 0..per_client {
                let t = Instant::now();
                let r = conn.request("GET", &path, None).await.expect("GET");
                assert_eq!(r.status, 200, "{}", r.text());
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    // Criterion wants the time for `iters` requests; the clients ran in parallel.
    (
        elapsed.mul_f64(iters as f64 / (per_client * CLIENTS as u64) as f64),
        all,
    )
}

fn spin_kernel(dir: &Path) -> PathBuf {
    // out 0x80, al ; jmp back — as in vm-service's tests.
    let code = [0xe6u8, 0x80, 0xeb, 0xfc];
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes());
    elf.extend_from_slice(&62u16.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&0x10_0000u64.to_le_bytes());
    elf.extend_from_slice(&64u64.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&7u32.to_le_bytes());
    for v in [120u64, 0x10_0000, 0x10_0000, 4, 4, 0x1000] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&code);
    let path = dir.join("spin.elf");
    std::fs::write(&path, elf).expect("write the spinning guest");
    path
}

fn benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, dir: &Path) {
    let client = rt.block_on(start_daemon(dir));
    let kvm = test_prerequisites::kvm_available();
    rt.block_on(async {
        let r = client.request("PUT", "/vms/idle", Some(b"{}")).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        if kvm {
            let body = format!(
                r#"{{"boot-source": {{"kernel_image_path": {}}}, "machine-config": {{"mem_size_mib": 32}}}}"#,
                serde_json::to_string(&spin_kernel(dir)).unwrap()
            );
            let r = client.request("PUT", "/vms/spin", Some(body.as_bytes())).await.unwrap();
            assert_eq!(r.status, 201, "{}", r.text());
            let r = client
                .request("PUT", "/vms/spin/actions", Some(br#"{"action_type":"start"}"#))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    });

    let mut g = c.benchmark_group("get");
    let mut targets = vec![("openapi", "/openapi.json"), ("vm_created", "/vms/idle")];
    if kvm {
        targets.push(("vm_running", "/vms/spin"));
    }
    for (name, path) in targets {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (t, lat) = rt.block_on(concurrent_gets(&client, path, iters));
                record_latencies(name, lat);
                t
            });
        });
    }
    g.finish();

    if !kvm {
        return;
    }
    let mut g = c.benchmark_group("create_start");
    g.sample_size(10);
    let mut n = 0u64;
    g.bench_function("daemon", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    n += 1;
                    let path = format!("/vms/b{n}");
                    let r = client.request("PUT", &path, Some(b"{}")).await.unwrap();
                    assert_eq!(r.status, 201, "{}", r.text());
                    let r = client
                        .request(
                            "PUT",
                            &format!("{path}/actions"),
                            Some(br#"{"action_type":"start"}"#),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            });
            let t = start.elapsed();
            record_rate("daemon", iters, t);
            t
        });
    });
    g.bench_function("in_process", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let running = VmmBuilder::new(VmConfig::default())
                    .serial_output(Box::new(std::io::sink()))
                    .build()
                    .and_then(vm_service::Vmm::start)
                    .expect("built-in guest");
                t += start.elapsed();
                running.wait();
            }
            record_rate("in_process", iters, t);
            t
        });
    });
    g.finish();
}

fn report() {
    println!("\nGET latency, {CLIENTS} concurrent keep-alive clients (µs):");
    let lat = LATENCIES.lock().unwrap();
    let mut baseline = None;
    for (name, v) in lat.iter() {
        let mut v = v.clone();
        v.sort_unstable();
        let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
        let ratio = baseline.map_or(String::new(), |(b50, b99): (f64, f64)| {
            format!("  ({:.2}x / {:.2}x openapi)", p50 / b50, p99 / b99)
        });
        println!(
            "  {name:<12} p50 {p50:>8.1}  p99 {p99:>8.1}  n={}{ratio}",
            v.len()
        );
        if name == "openapi" {
            baseline = Some((p50, p99));
        }
    }
    let rates = RATES.lock().unwrap();
    if !rates.is_empty() {
        println!("VMs created and started per second (built-in guest):");
    }
    let base = rates
        .iter()
        .find(|(n, _, _)| n == "in_process")
        .map(|(_, n, s)| *n as f64 / s);
    for (name, n, s) in rates.iter() {
        let rate = *n as f64 / s;
        let ratio = base.map_or(String::new(), |b| {
            format!("  ({:.2}x in-process)", rate / b)
        });
        println!("  {name:<12} {rate:>8.1} VMs/s  n={n}{ratio}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Re-executed by the daemon as a VM process.
    if args.get(1).map(String::as_str) == Some("vmm") {
        let fd = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(-1);
        if let Err(e) = vm_service::daemon::vmm_process::serve_fd(fd) {
            eprintln!("vmm: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &rt, dir.path());
    c.final_summary();
    report();
}
