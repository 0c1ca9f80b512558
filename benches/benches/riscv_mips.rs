//! Guest MIPS of the riscv64 engine, interpreted and with hot blocks
//! translated (the `jit` tier), against QEMU's user-mode
//! `qemu-riscv64` (Debian `qemu-user`) on the same programs, in the same run:
//! an integer loop and a small C program (sieve + CRC32 + insertion sort),
//! both built at bench time with the riscv64 cross gcc. Each program is
//! linked twice from one source: bare metal (ends by writing `tohost`, for
//! the interpreter) and Linux user (ends with `exit`, for qemu-riscv64).
//! The instruction count comes from the interpreter; QEMU runs the same
//! instructions, so MIPS = count / time for both.
//!
//! Each program is built at two workload sizes ([`SCALES`]: the loop's
//! iterations, the C program's rounds) and each side is measured on the
//! difference: one iteration runs the small and the large program and counts
//! the large one's time less the small one's, and the instructions are the
//! difference of the two counts. What does not grow with the workload —
//! QEMU's process start-up, its JIT translating the code the first time,
//! loading the ELF, our machine's set-up — is in both runs and cancels out:
//! the ratio compares the engines' steady-state speed.
//!
//! Skips a side with a printed reason when gcc or qemu-riscv64 is missing.
//! The riscv64 Debian guest's measures (boot, network, disk in `block`) run
//! against `qemu-system-riscv64` the same way: alternated runs, medians.
//! `cargo bench -p benches --bench riscv_mips`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use benches::write_extra;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use test_prerequisites::{find_program as find, prerequisite_missing};
use vm_cross_arch::interp::riscv64::elf::{self, Outcome};
use vm_cross_arch::interp::riscv64::Tier;

/// Guest disk throughput against QEMU (`riscv_mips/block.rs`).
#[path = "riscv_mips/block.rs"]
mod block;

/// Integer-loop iterations per unit of workload.
const LOOP_ITERATIONS: u64 = 4_000_000;
/// The two workload sizes, in units (loop: [`LOOP_ITERATIONS`] each; C: rounds).
const SCALES: [u64; 2] = [1, 4];
const MEM: u64 = 64 << 20;

const START: &str = r#"
    .section .text.init
    .globl _start
_start:
#ifndef LINUX
    li sp, 0x80800000
#endif
#ifdef QEMU_SYSTEM
    li t0, 0x6000
    csrs mstatus, t0
#endif
    call bench_main
#if defined(LINUX)
    li a7, 93
    li a0, 0
    ecall
#elif defined(QEMU_SYSTEM)
    li t0, 0x100000
    li t1, 0x5555
    sw t1, 0(t0)
#else
    li a0, 1
    la t0, tohost
    sd a0, 0(t0)
#endif
1:  j 1b
#ifndef LINUX
    .section .tohost, "aw", @progbits
    .align 6
    .globl tohost
tohost: .dword 0
#endif
"#;

const INT_LOOP: &str = r"
    .text
    .globl bench_main
bench_main:
    li t0, ITERATIONS
    li t1, 0
    li t2, 1
1:  add t1, t1, t2
    xor t2, t2, t1
    slli t3, t1, 3
    srli t3, t3, 1
    sub t1, t1, t3
    addi t0, t0, -1
    bnez t0, 1b
    ret
";

const C_PROGRAM: &str = r"
typedef unsigned long u64;
typedef unsigned int u32;
static unsigned char sieve[200000];
static u32 table[256];
static u32 arr[3000];
volatile u64 sink;
static u32 crc32(const unsigned char *p, u64 n) {
    u32 c = 0xffffffffu;
    for (u64 i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}
void bench_main(void) {
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    u64 total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (u64 i = 0; i < sizeof sieve; i++) sieve[i] = 1;
        for (u64 i = 2; i * i < sizeof sieve; i++)
            if (sieve[i]) for (u64 j = i * i; j < sizeof sieve; j += i) sieve[j] = 0;
        total += crc32(sieve, sizeof sieve);
        u32 x = 12345 + round;
        for (int i = 0; i < 3000; i++) { x = x * 1103515245u + 12345u; arr[i] = x >> 8; }
        for (int i = 1; i < 3000; i++) {
            u32 v = arr[i]; int j = i - 1;
            while (j >= 0 && arr[j] > v) { arr[j + 1] = arr[j]; j--; }
            arr[j + 1] = v;
        }
        total += arr[1500];
    }
    sink = total;
}
";

const LINK: &str = r"
ENTRY(_start)
SECTIONS {
  . = 0x80000000;
  .text : { *(.text.init) *(.text*) }
  . = ALIGN(0x1000);
  .data : { *(.rodata*) *(.data*) *(.sdata*) *(.bss*) *(.sbss*) *(COMMON) }
  . = ALIGN(0x1000);
  .tohost : { *(.tohost) }
}
";

/// A workload built for each engine.
struct Program {
    /// Bare metal, for our engine.
    bare: Vec<u8>,
    /// Linux user, for qemu-riscv64.
    linux: PathBuf,
    /// Bare metal ending at the `virt` machine's test finisher, for
    /// qemu-system-riscv64.
    system: PathBuf,
}

/// Builds the [`Program`] ELF files from the workload `source` (`.S` or
/// `.c`) at workload size `scale`.
fn build(dir: &Path, name: &str, source: &str, c: bool, scale: u64) -> Option<Program> {
    let gcc = test_prerequisites::riscv64_gcc()?;
    std::fs::write(dir.join("start.S"), START).ok()?;
    std::fs::write(dir.join("link.ld"), LINK).ok()?;
    let src = dir.join(if c {
        format!("{name}.c")
    } else {
        format!("{name}.S")
    });
    std::fs::write(&src, source).ok()?;
    let mut out = Vec::new();
    for kind in ["bare", "linux", "system"] {
        let elf = dir.join(format!("{name}-x{scale}-{kind}.elf"));
        let mut cmd = Command::new(&gcc);
        cmd.args([
            "-O2",
            "-march=rv64gc",
            "-mabi=lp64d",
            "-mcmodel=medany",
            "-nostdlib",
            "-nostartfiles",
            "-ffreestanding",
            "-static",
        ])
        .arg(format!("-DITERATIONS={}", LOOP_ITERATIONS * scale))
        .arg(format!("-DROUNDS={scale}"))
        .arg("-Wl,--no-relax")
        .arg("-T")
        .arg(dir.join("link.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(dir.join("start.S"))
        .arg(&src);
        match kind {
            "linux" => {
                cmd.arg("-DLINUX");
            }
            "system" => {
                cmd.arg("-DQEMU_SYSTEM");
            }
            _ => {}
        }
        let result = cmd.output().ok()?;
        assert!(
            result.status.success(),
            "building {name}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        out.push(elf);
    }
    let bare = std::fs::read(&out[0]).ok()?;
    Some(Program {
        bare,
        linux: out[1].clone(),
        system: out[2].clone(),
    })
}

/// Runs a bare-metal program on our engine in `tier`.
fn engine_run(program: &[u8], tier: Tier) -> u64 {
    let report = elf::run_with(program, MEM, 20_000_000_000, tier).expect("run");
    assert_eq!(report.outcome, Outcome::Pass, "benchmark program failed");
    report.instructions
}

fn qemu_run(qemu: &Path, program: &Path) {
    let status = Command::new(qemu)
        .arg(program)
        .status()
        .expect("qemu-riscv64");
    assert!(
        status.success(),
        "qemu-riscv64 failed on {}",
        program.display()
    );
}

/// Runs a bare-metal program under `qemu-system-riscv64 -M virt` in M-mode
/// (no firmware): a full-system emulator, whose loads and stores go
/// through its software TLB as ours do.
fn qemu_system_run(qemu: &Path, program: &Path) {
    let status = Command::new(qemu)
        .args([
            "-M", "virt", "-m", "64", "-bios", "none", "-display", "none", "-serial", "none",
            "-monitor", "none", "-kernel",
        ])
        .arg(program)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("qemu-system-riscv64");
    assert!(
        status.success(),
        "qemu-system-riscv64 failed on {}",
        program.display()
    );
}

/// The time of `large` less that of `small`, summed over `iters` runs of
/// both (alternated, small first); a run where noise made the large one the
/// faster counts zero.
fn marginal<T>(iters: u64, mut small: impl FnMut() -> T, mut large: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let small_time = timed(&mut small);
        total += timed(&mut large).saturating_sub(small_time);
    }
    total
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mips(instructions: u64, d: Duration) -> f64 {
    // Display only; counts are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let n = instructions as f64;
    n / d.as_secs_f64() / 1e6
}

fn bench(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let qemu = find(&["qemu-riscv64", "qemu-riscv64-static"]);
    if qemu.is_none() {
        prerequisite_missing("QEMU side: qemu-riscv64 not on PATH (install Debian's qemu-user)");
    }
    let qemu_system = find(&["qemu-system-riscv64"]);
    if qemu_system.is_none() {
        prerequisite_missing(
            "full-system QEMU side: qemu-system-riscv64 not on PATH (install Debian's qemu-system-misc)",
        );
    }
    for (name, source, is_c) in [
        ("int_loop", INT_LOOP, false),
        ("c_program", C_PROGRAM, true),
    ] {
        let [Some(small), Some(large)] =
            SCALES.map(|scale| build(dir.path(), name, source, is_c, scale))
        else {
            return;
        };
        let (small_count, large_count) = (
            engine_run(&small.bare, Tier::Interpret),
            engine_run(&large.bare, Tier::Interpret),
        );
        assert_eq!(
            (small_count, large_count),
            (
                engine_run(&small.bare, Tier::Translate),
                engine_run(&large.bare, Tier::Translate)
            ),
            "{name}: both tiers retire the same instructions"
        );
        assert!(
            large_count > small_count,
            "{name}: the large workload ran {large_count} instructions, the small one {small_count}"
        );
        let instructions = large_count - small_count;
        let mut group = c.benchmark_group(format!("riscv64_marginal/{name}"));
        group.sample_size(10);
        group.measurement_time(benches::measurement_time(Duration::from_secs(10)));
        // Per iteration: the extra instructions of the large workload.
        group.throughput(Throughput::Elements(instructions));
        for (name, tier) in [("interpreter", Tier::Interpret), ("jit", Tier::Translate)] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    marginal(
                        iters,
                        || engine_run(&small.bare, tier),
                        || engine_run(&large.bare, tier),
                    )
                });
            });
        }
        if let Some(q) = &qemu {
            group.bench_function("qemu-riscv64", |b| {
                b.iter_custom(|iters| {
                    marginal(
                        iters,
                        || qemu_run(q, &small.linux),
                        || qemu_run(q, &large.linux),
                    )
                });
            });
        }
        if let Some(q) = &qemu_system {
            group.bench_function("qemu-system-riscv64", |b| {
                b.iter_custom(|iters| {
                    marginal(
                        iters,
                        || qemu_system_run(q, &small.system),
                        || qemu_system_run(q, &large.system),
                    )
                });
            });
        }
        group.finish();
        // Alternate the two engines for the summary (medians of 5 each), and
        // show what the difference removed: the small run's whole time.
        let (mut ours, mut jit, mut theirs, mut ours_small, mut theirs_small) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let s = timed(|| engine_run(&small.bare, Tier::Interpret));
            ours.push(timed(|| engine_run(&large.bare, Tier::Interpret)).saturating_sub(s));
            ours_small.push(s);
            let s = timed(|| engine_run(&small.bare, Tier::Translate));
            jit.push(timed(|| engine_run(&large.bare, Tier::Translate)).saturating_sub(s));
            if let Some(q) = &qemu {
                let s = timed(|| qemu_run(q, &small.linux));
                theirs.push(timed(|| qemu_run(q, &large.linux)).saturating_sub(s));
                theirs_small.push(s);
            }
        }
        let ours = median(ours);
        let jit = median(jit);
        let whole = |v: Vec<Duration>| {
            let d = median(v);
            format!("{d:.2?} ({:.0} MIPS)", mips(small_count, d))
        };
        if theirs.is_empty() {
            eprintln!(
                "{name}: {instructions} instructions (large - small): interpreter {:.0} MIPS, \
                 jit {:.0} MIPS ({:.2}x the interpreter); the whole small run took {}",
                mips(instructions, ours),
                mips(instructions, jit),
                ours.as_secs_f64() / jit.as_secs_f64(),
                whole(ours_small)
            );
        } else {
            let theirs = median(theirs);
            eprintln!(
                "{name}: {instructions} instructions (large - small): interpreter {:.0} MIPS, \
                 jit {:.0} MIPS, qemu-riscv64 {:.0} MIPS: the interpreter at {:.2}x and the \
                 jit at {:.2}x QEMU's MIPS; the whole small run (start-up included) took {} \
                 on the interpreter, {} on qemu-riscv64",
                mips(instructions, ours),
                mips(instructions, jit),
                mips(instructions, theirs),
                theirs.as_secs_f64() / ours.as_secs_f64(),
                theirs.as_secs_f64() / jit.as_secs_f64(),
                whole(ours_small),
                whole(theirs_small)
            );
        }
    }
}

/// How long `f` took.
fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

/// Linux boot-to-marker: the riscv64 engine in its default tier (through `vm-service run`) against
/// `qemu-system-riscv64 -M virt` (Debian `qemu-system-misc`, OpenSBI as
/// firmware) on the same Debian kernel and busybox initramfs. Too slow for
/// criterion sampling: alternated runs, medians. Uses the guest
/// `cargo xtask guest --arch riscv64` publishes in `target/guest/riscv64/`;
/// skipped with a reason when it or the tools are missing.
fn linux_boot(_c: &mut Criterion) {
    let Some((kernel, initrd)) = riscv_guest("Linux boot") else {
        return;
    };
    let qemu = find(&["qemu-system-riscv64"]);
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vm-service");
    if !ours.is_file() {
        prerequisite_missing("Linux boot: build target/release/vm-service first (cargo build --release -p vm-service)");
        return;
    }
    // The guest's /init prints the marker once userspace is up, runs `true`
    // and powers off.
    let cmdline = "console=ttyS0 panic=-1 -- true";
    let boot = |cmd: &mut Command| -> Option<Duration> {
        let t = Instant::now();
        let out = cmd.output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains(MARKER).then(|| t.elapsed())
    };
    let (kernel, initrd) = (kernel.as_path(), initrd.as_path());
    let Some(Alternated {
        runs,
        ours,
        peer: theirs,
    }) = alternate(
        "Linux boot",
        |_| {
            boot(
                Command::new(&ours)
                    .args([
                        "run",
                        "--arch",
                        "riscv64",
                        "--net",
                        "none",
                        "--memory",
                        "256",
                        "--cmdline",
                        cmdline,
                    ])
                    .arg("--kernel")
                    .arg(kernel)
                    .arg("--initrd")
                    .arg(initrd),
            )
        },
        qemu.as_deref()
            .map(|q| move |_| boot(&mut qemu_virt(q, kernel, initrd, cmdline))),
    )
    else {
        return;
    };
    match theirs {
        None => eprintln!("linux_boot: vm-service {ours:?} to the userspace marker (no qemu-system-riscv64: install qemu-system-misc)"),
        Some(theirs) => eprintln!(
            "linux_boot: vm-service {ours:?}, qemu-system-riscv64 {theirs:?} to the userspace marker: {:.2}x QEMU's time",
            ours.as_secs_f64() / theirs.as_secs_f64()
        ),
    }
    // For `cargo xtask bench`: a measure criterion could not host.
    write_extra(
        "riscv_linux_boot.json",
        &serde_json::json!({
            "area": "riscv_mips",
            "name": "riscv64 Debian Linux boot to the userspace marker",
            "ours_ns": ours.as_secs_f64() * 1e9,
            "peer_name": "qemu-system-riscv64 -M virt (OpenSBI), same kernel and initramfs",
            "peer_ns": theirs.map(|t| t.as_secs_f64() * 1e9),
            "runs": runs,
            "goal": "<= 1.0x QEMU's time",
        }),
    );
}

/// What the guest's `/init` prints once userspace is up.
const MARKER: &str = "VM-GUEST-READY";

/// The riscv64 Debian guest's kernel and initramfs, or `None` (reported missing).
fn riscv_guest(what: &str) -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let guest = std::env::var_os("CARGO_TARGET_DIR")
        .map_or(root, PathBuf::from)
        .join("guest/riscv64");
    let (kernel, initrd) = (guest.join("kernel"), guest.join("initrd.cpio.gz"));
    if kernel.is_file() && initrd.is_file() {
        Some((kernel, initrd))
    } else {
        prerequisite_missing(format_args!(
            "{what}: no riscv64 guest in {}: run `cargo xtask guest --arch riscv64`",
            guest.display()
        ));
        None
    }
}

/// Guest-to-guest TCP: guest A sends `RISCV_NET_MIB` MiB (default 4) of
/// zeros to guest B with `dd | nc`, timed by A's clock. Ours: two
/// `vm-service` processes on one named virtual switch (a cross-process
/// segment). Peer: two `qemu-system-riscv64 -M virt` joined by a `-netdev
/// socket` link, same kernel, initramfs and commands. Alternated rounds,
/// medians; the result goes to `target/bench/extra/riscv_guest_net.json`.
fn guest_network(_c: &mut Criterion) {
    let Some((kernel, initrd)) = riscv_guest("guest network") else {
        return;
    };
    let (kernel, initrd) = (kernel.as_path(), initrd.as_path());
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vm-service");
    if !ours.is_file() {
        prerequisite_missing("guest network: build target/release/vm-service first");
        return;
    }
    let mib: u32 = std::env::var("RISCV_NET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let receiver =
        r#"console=ttyS0 panic=-1 vmguest.ip=10.0.0.2/24 -- sh -c "nc -l -p 5001 | wc -c""#;
    let sender = format!(
        "console=ttyS0 panic=-1 vmguest.ip=10.0.0.1/24 -- sh -c \"ping -c 1 -w 300 10.0.0.2 >/dev/null || exit 1; \
         t0=$(cut -d' ' -f1 /proc/uptime); \
         for i in 1 2 3 4 5 6 7 8 9 10; do dd if=/dev/zero bs=4096 count={} 2>/dev/null | nc 10.0.0.2 5001 && break; sleep 1; done; \
         echo transfer-seconds $t0 $(cut -d' ' -f1 /proc/uptime)\"",
        mib * 256
    );
    // Seconds of guest time the sender's `transfer-seconds t0 t1` line reports.
    let seconds = |out: std::io::Result<std::process::Output>| -> Option<f64> {
        let out = out.ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with("transfer-seconds"))?;
        let t: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        match t[..] {
            [t0, t1] if t1 > t0 => Some(t1 - t0),
            _ => None,
        }
    };
    let ours_pair = |round: usize| -> Option<f64> {
        let dir = tempfile::tempdir().ok()?;
        let vm = |cmdline: &str| {
            let mut cmd = Command::new(&ours);
            cmd.args(["run", "--arch", "riscv64", "--memory", "256"])
                .arg("--net")
                .arg(format!("virtual:bench{}x{round}", std::process::id()))
                .arg("--switch-dir")
                .arg(dir.path())
                .arg("--kernel")
                .arg(kernel)
                .arg("--initrd")
                .arg(initrd)
                .args(["--cmdline", cmdline])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            cmd
        };
        let b = vm(receiver).spawn().ok()?;
        let a = vm(&sender).output();
        let _ = b.wait_with_output();
        seconds(a)
    };
    let qemu = find(&["qemu-system-riscv64"]);
    let qemu_pair = |q: &Path, round: usize| -> Option<f64> {
        let port = 20_000 + (std::process::id() % 20_000) as usize + round;
        let vm = |cmdline: &str, netdev: String, mac: &str| {
            let mut cmd = qemu_virt(q, kernel, initrd, cmdline);
            cmd.args(["-netdev", &netdev, "-device"])
                .arg(format!("virtio-net-device,netdev=n0,mac={mac}"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            cmd
        };
        let b = vm(
            receiver,
            format!("socket,id=n0,listen=127.0.0.1:{port}"),
            "52:54:00:00:00:02",
        )
        .spawn()
        .ok()?;
        // The listener must be up before the other side connects.
        std::thread::sleep(Duration::from_secs(2));
        let a = vm(
            &sender,
            format!("socket,id=n0,connect=127.0.0.1:{port}"),
            "52:54:00:00:00:01",
        )
        .output();
        let _ = b.wait_with_output();
        seconds(a)
    };
    let secs = |t: Option<f64>| t.map(Duration::from_secs_f64);
    let Some(Alternated {
        runs,
        ours,
        peer: theirs,
    }) = alternate(
        "guest network",
        |round| secs(ours_pair(round)),
        qemu.as_deref()
            .map(|q| move |round| secs(qemu_pair(q, round))),
    )
    else {
        return;
    };
    let rate = |d: Duration| f64::from(mib) / d.as_secs_f64().max(1e-3);
    match theirs {
        None => eprintln!("guest network: {mib} MiB in {ours:?} ({:.2} MiB/s); no qemu-system-riscv64 peer", rate(ours)),
        Some(t) => eprintln!(
            "guest network: {mib} MiB in {ours:?} ({:.2} MiB/s) vs QEMU {t:?} ({:.2} MiB/s): {:.2}x QEMU's time",
            rate(ours),
            rate(t),
            ours.as_secs_f64() / t.as_secs_f64()
        ),
    }
    write_extra(
        "riscv_guest_net.json",
        &serde_json::json!({
            "area": "riscv_mips",
            "name": format!("riscv64 guest to guest over the virtual switch, {mib} MiB from dd through nc (guest time)"),
            "ours_ns": ours.as_secs_f64() * 1e9,
            "peer_name": "two qemu-system-riscv64 -M virt joined by -netdev socket, same guests",
            "peer_ns": theirs.map(|t| t.as_secs_f64() * 1e9),
            "runs": runs,
            "goal": "<= 1.0x QEMU's time (>= its throughput)",
        }),
    );
}

/// `qemu-system-riscv64 -M virt` with 256 MiB, OpenSBI, no display, booting
/// `kernel` and `initrd` with `cmdline`.
fn qemu_virt(qemu: &Path, kernel: &Path, initrd: &Path, cmdline: &str) -> Command {
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-M",
        "virt",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-bios",
        "default",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", cmdline]);
    cmd
}

/// Medians of alternated runs of ours and the peer (only runs that completed).
struct Alternated {
    runs: usize,
    ours: Duration,
    peer: Option<Duration>,
}

/// Runs `ours` and `peer` alternately, `RISCV_BOOT_ROUNDS` times (default 2):
/// a run returning `None` did not complete and is reported, not counted.
fn alternate<P: FnMut(usize) -> Option<Duration>>(
    what: &str,
    mut ours: impl FnMut(usize) -> Option<Duration>,
    mut peer: Option<P>,
) -> Option<Alternated> {
    let rounds: usize = std::env::var("RISCV_BOOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        match ours(round) {
            Some(d) => a.push(d),
            None => eprintln!("{what}: our run did not complete"),
        }
        if let Some(peer) = &mut peer {
            match peer(round) {
                Some(d) => b.push(d),
                None => eprintln!("{what}: the peer's run did not complete"),
            }
        }
    }
    (!a.is_empty()).then(|| Alternated {
        runs: a.len(),
        ours: median(a),
        peer: (!b.is_empty()).then(|| median(b)),
    })
}

criterion_group!(
    benches,
    bench,
    linux_boot,
    guest_network,
    block::guest_block
);
criterion_main!(benches);
