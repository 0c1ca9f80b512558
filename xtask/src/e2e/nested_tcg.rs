//! `cargo xtask e2e --nested-tcg`: the stock x86_64 Debian guest, booted by
//! our release `vm-service` on a standard KVM, end to end.
//!
//! A host whose `/dev/kvm` is a nested paravirtual one (kvm_pvm) cannot run
//! stock x86 user space (see the e2e module), but a QEMU TCG machine with
//! `-cpu max,-xsave` emulates an AMD CPU with SVM and nested paging, and
//! Debian's own kernel loads `kvm_amd` there. So this builds an outer
//! initramfs from what `cargo xtask guest --arch x86_64` cached (the same
//! cloud kernel as the outer kernel, busybox, the KVM modules) plus the
//! release `vm-service`, the shared libraries it links and the published
//! x86_64 guest; QEMU boots it; the outer `/init` loads KVM and runs
//! `vm-service run --guest debian --arch x86_64 -- uname -a`. The console
//! (ours and the inner guest's, through `vm-service`'s standard output) is
//! checked for the markers below and stamped into
//! `target/e2e/nested-tcg-console.log`.
//!
//! Nothing about speed can be read from this set-up (TCG); correctness can.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{spawn_reader, wall_clock, Stream, READY_MARKER};
use crate::guest::{self, cpio, initramfs, Arch};

/// The outer `/init` prints this once KVM is loaded, with its uptime.
const OUTER_READY: &str = "VM-E2E-OUTER-READY";
/// The outer `/init` prints this with `vm-service`'s exit status.
const RESULT: &str = "VM-E2E-RESULT";
/// The guest's `/init` prints this with its command's status.
const GUEST_EXIT: &str = "VM-GUEST-EXIT";
/// What `vm-service` prints when the guest powered off (ACPI S5).
const POWERED_OFF: &str = "vm-service: guest powered off";
/// What the guest kernel prints when it finds no CMOS RTC (after a stall of seconds).
const NO_RTC: &str = "rtc_cmos: broken or not accessible";
/// The guest kernel line after which a VMM without a CMOS RTC stalls.
const BEFORE_RTC: &str = "i8042: ";
/// Longest pause (guest seconds) allowed after [`BEFORE_RTC`]: without an
/// RTC it is 4-9 s, with one a few hundredths.
const MAX_RTC_PAUSE: f64 = 2.0;
/// Lines of console shown when the run fails.
const TAIL_LINES: usize = 40;
/// Where the guest `cargo xtask guest` built sits in the outer initramfs.
const GUEST_DIR: &str = "guest";
/// The outer machine: QEMU's TCG with an AMD CPU that has SVM (`max`);
/// without `-xsave`, because the emulated SVM does not intercept XSETBV and
/// the inner kernel warns about XSAVE consistency.
const QEMU_MACHINE: &[&str] = &[
    "-accel",
    "tcg,thread=multi",
    "-smp",
    "2",
    "-cpu",
    "max,-xsave",
    "-m",
    "2048",
    "-nographic",
    "-no-reboot",
];

/// Runs the nested-TCG e2e; fails unless every marker is seen within `timeout`.
pub fn run(root: &Path, timeout: Duration) -> Result<()> {
    let qemu = "qemu-system-x86_64";
    crate::cmd::output_of(qemu, &["--version"]).with_context(|| {
        format!("`{qemu}` is needed (`cargo xtask setup` installs qemu-system-x86)")
    })?;
    crate::cmd::cargo(root, &["build", "--release", "-p", "vm-service"])?;
    let out_dir = root.join("target/e2e");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let host = guest::vmm_host_kernel(root, Arch::X86_64)?;
    let initrd_path = out_dir.join("nested-tcg-initramfs.cpio");
    let t = Instant::now();
    let initrd = outer_initramfs(root, &host)?;
    std::fs::write(&initrd_path, &initrd)
        .with_context(|| format!("writing {}", initrd_path.display()))?;
    eprintln!(
        "e2e: outer initramfs {} ({} MiB) built in {:.1?}",
        initrd_path.display(),
        initrd.len() >> 20,
        t.elapsed()
    );

    let log_path = out_dir.join("nested-tcg-console.log");
    let mut log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let kernel = host.kernel.to_string_lossy().into_owned();
    let initrd_arg = initrd_path.to_string_lossy().into_owned();
    let mut args: Vec<&str> = QEMU_MACHINE.to_vec();
    args.extend([
        "-kernel",
        &kernel,
        "-initrd",
        &initrd_arg,
        "-append",
        "console=ttyS0 loglevel=1 panic=-1",
    ]);
    eprintln!("$ {qemu} {}", args.join(" "));
    eprintln!(
        "e2e: console -> {} (timeout {:.0?})",
        log_path.display(),
        timeout
    );
    let mut child = Command::new(qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {qemu}"))?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    spawn_reader(
        child.stdout.take().context("qemu stdout")?,
        Stream::Serial,
        tx.clone(),
    );
    spawn_reader(child.stderr.take().context("qemu stderr")?, Stream::Vmm, tx);
    let mut console = Console::default();
    let finished = loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break false;
        }
        match rx.recv_timeout(left) {
            Ok((_, line)) => {
                let secs = started.elapsed().as_secs_f64();
                writeln!(log, "[{} +{secs:8.3}s] {line}", wall_clock())?;
                console.observe(&line, secs);
                if console.result.is_some() {
                    break true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break false,
            Err(mpsc::RecvTimeoutError::Disconnected) => break true,
        }
    };
    let elapsed = started.elapsed();
    // The outer init powers off after its result line; QEMU then exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait()?.is_none() {
        child.kill().context("stopping QEMU")?;
    }
    let status = child.wait().context("waiting for QEMU")?;
    let verdict = console.verdict(finished, elapsed, timeout);
    console.report(elapsed, &status.to_string());
    if let Err(e) = verdict {
        eprintln!("e2e: last console lines ({}):", log_path.display());
        for line in &console.tail {
            eprintln!("    {line}");
        }
        return Err(e);
    }
    Ok(())
}

/// The outer initramfs: busybox, the KVM modules and `/init` (laid out like
/// a guest's), then a second archive with `vm-service`, its libraries and
/// the x86_64 guest (the kernel unpacks concatenated archives in order).
fn outer_initramfs(root: &Path, host: &guest::VmmHostKernel) -> Result<Vec<u8>> {
    let vmm = root.join("target/release/vm-service");
    let guest_src = root.join("target/guest/x86_64");
    let paths: Vec<String> = host.modules.iter().map(|(p, _)| p.clone()).collect();
    let mut archive = initramfs::cpio(&initramfs::Contents {
        busybox: &host.busybox,
        release: &host.release,
        modules: &host.modules,
        modules_dep: &host.modules_dep,
        init: &outer_init(&host.release, &paths),
    })?;

    let mut files: Vec<(String, PathBuf, u32)> =
        vec![("bin/vm-service".into(), vmm.clone(), 0o755)];
    for lib in shared_libraries(&vmm)? {
        let path = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.push((path, lib, 0o755));
    }
    for name in ["kernel", "initrd.cpio.gz"] {
        files.push((
            format!("{GUEST_DIR}/x86_64/{name}"),
            guest_src.join(name),
            0o644,
        ));
    }
    let mut w = cpio::Writer::new();
    let mut dirs = BTreeSet::new();
    for (path, _, _) in &files {
        let mut dir = path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            dirs.insert(parent.to_string());
            dir = parent;
        }
    }
    // Sorted order puts every parent before its children; a directory the
    // first archive already made is harmless.
    for d in &dirs {
        w.add(d, 0o755, &cpio::Kind::Dir)?;
    }
    for (path, src, perm) in files {
        let data = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        w.add(&path, perm, &cpio::Kind::File(data))?;
    }
    archive.extend(w.finish());
    Ok(archive)
}

/// The files `ldd` resolves for `exe` (libraries and the dynamic loader).
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = crate::cmd::output_of("ldd", &[&exe.to_string_lossy()])?;
    let libs = ldd_paths(&out);
    if libs.is_empty() {
        bail!("ldd {} named no libraries:\n{out}", exe.display());
    }
    Ok(libs)
}

/// The absolute paths in `ldd` output (`lib => /path (addr)`, `/path (addr)`).
fn ldd_paths(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The outer `/init`: load KVM, run the guest, report, power off.
fn outer_init(release: &str, modules: &[String]) -> String {
    format!(
        r#"#!/bin/busybox sh
# /init of the outer machine of `cargo xtask e2e --nested-tcg`.
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod "/lib/modules/{release}/$m" || echo "VM-E2E: insmod $m failed"
done
[ -c /dev/kvm ] || echo "VM-E2E: no /dev/kvm after loading the modules"
read -r uptime _ < /proc/uptime
echo "{OUTER_READY} uptime=$uptime"
/bin/vm-service run --guest debian --arch x86_64 --guest-dir /{GUEST_DIR} \
    --vcpus 2 --memory 512 --net none --log-level warn -- uname -a
echo "{RESULT} status=$?"
poweroff -f
"#,
        modules = modules.join(" "),
    )
}

/// What the console showed, gathered line by line.
#[derive(Debug, Default)]
struct Console {
    tail: Vec<String>,
    /// Wall seconds at the outer marker, and the outer kernel's uptime then.
    outer_ready: Option<(f64, String)>,
    /// Wall seconds at the guest's marker, and the guest's uptime then.
    guest_ready: Option<(f64, String)>,
    uname: Option<String>,
    guest_exit: Option<String>,
    result: Option<String>,
    /// `vm-service` said the guest powered off.
    powered_off: bool,
    /// The guest kernel found no CMOS RTC.
    no_rtc: bool,
    /// The guest kernel's printk stamps: (seconds, line), in order.
    stamps: Vec<(f64, String)>,
}

/// The value after `key=` up to whitespace.
fn value_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].strip_prefix('=')?.split_whitespace().next()
}

/// The printk stamp of a kernel console line (`[    1.234567] ...`).
fn printk_stamp(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split_once(']')?.0.trim().parse().ok()
}

impl Console {
    fn observe(&mut self, line: &str, wall: f64) {
        self.tail.push(line.to_string());
        if self.tail.len() > TAIL_LINES {
            self.tail.remove(0);
        }
        self.powered_off |= line.contains(POWERED_OFF);
        self.no_rtc |= line.contains(NO_RTC);
        // A marker can follow console output that ended without a newline.
        let marked = |marker: &str, key: &str| {
            let at = line.find(marker)?;
            Some(value_after(&line[at..], key).unwrap_or("?").to_string())
        };
        if let Some(up) = marked(OUTER_READY, "uptime") {
            self.outer_ready = Some((wall, up));
        } else if let Some(up) = marked(READY_MARKER, "uptime") {
            self.guest_ready = Some((wall, up));
        } else if let Some(status) = marked(GUEST_EXIT, "status") {
            self.guest_exit = Some(status);
        } else if let Some(status) = marked(RESULT, "status") {
            self.result = Some(status);
        } else if self.guest_ready.is_some() && self.uname.is_none() && line.starts_with("Linux ") {
            self.uname = Some(line.to_string());
        } else if self.outer_ready.is_some() && self.guest_ready.is_none() {
            if let Some(t) = printk_stamp(line) {
                self.stamps.push((t, line.to_string()));
            }
        }
    }

    /// The longest pause between two consecutive guest kernel lines: (seconds, the line after it).
    fn longest_pause(&self) -> Option<(f64, &str)> {
        self.stamps
            .windows(2)
            .map(|w| (w[1].0 - w[0].0, w[1].1.as_str()))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// The pause between the last guest kernel line containing `needle` and the next one.
    fn pause_after(&self, needle: &str) -> Option<f64> {
        let i = self.stamps.iter().rposition(|(_, l)| l.contains(needle))?;
        Some(self.stamps.get(i + 1)?.0 - self.stamps[i].0)
    }

    fn verdict(&self, finished: bool, elapsed: Duration, timeout: Duration) -> Result<()> {
        if !finished {
            bail!(
                "the nested-TCG e2e did not finish within {timeout:.0?} (stopped after {elapsed:.1?})"
            );
        }
        if self.outer_ready.is_none() {
            bail!("the outer machine never reported {OUTER_READY} (KVM modules, initramfs)");
        }
        if self.guest_ready.is_none() {
            bail!("the guest never reached {READY_MARKER}");
        }
        match &self.uname {
            Some(u) if u.contains("x86_64") => {}
            other => bail!("the guest's `uname -a` printed no x86_64 Linux line (got {other:?})"),
        }
        if self.guest_exit.as_deref() != Some("0") {
            bail!(
                "the guest's command ended with {:?}, not 0",
                self.guest_exit
            );
        }
        if self.result.as_deref() != Some("0") {
            bail!("vm-service exited with {:?}, not 0", self.result);
        }
        if !self.powered_off {
            bail!("the guest did not power off (no `{POWERED_OFF}`): ACPI S5");
        }
        if self.no_rtc {
            bail!("the guest kernel found no CMOS RTC (`{NO_RTC}`)");
        }
        if let Some(pause) = self.pause_after(BEFORE_RTC).filter(|p| *p > MAX_RTC_PAUSE) {
            bail!("the guest kernel paused {pause:.2} s after its `{BEFORE_RTC}` line (the stall of a missing RTC)");
        }
        Ok(())
    }

    fn report(&self, elapsed: Duration, qemu_status: &str) {
        println!("e2e --nested-tcg report ({}):", wall_clock());
        println!(
            "  wall time: {:.1} s (QEMU {qemu_status})",
            elapsed.as_secs_f64()
        );
        if let Some((wall, up)) = &self.outer_ready {
            println!("  outer machine up with KVM: {wall:.1} s wall (outer uptime {up} s)");
        }
        if let (Some((outer, _)), Some((wall, up))) = (&self.outer_ready, &self.guest_ready) {
            println!(
                "  guest {READY_MARKER}: {:.1} s after the outer one (guest uptime {up} s)",
                wall - outer
            );
        }
        if let Some((pause, line)) = self.longest_pause() {
            println!("  longest pause in the guest's boot log: {pause:.2} s, before: {line}");
        }
        if let Some(pause) = self.pause_after(BEFORE_RTC) {
            println!("  pause after the i8042 probe (where a missing RTC stalls): {pause:.2} s");
        }
        println!("  uname: {}", self.uname.as_deref().unwrap_or("(none)"));
        println!(
            "  guest command status: {}, vm-service status: {}",
            self.guest_exit.as_deref().unwrap_or("(none)"),
            self.result.as_deref().unwrap_or("(none)")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_markers_and_pauses() {
        let mut c = Console::default();
        for (wall, line) in [
            "Probing EDD (edd=off to disable)... okVM-E2E-OUTER-READY uptime=4.20",
            "[    0.100000] Linux version 6.1",
            "[    1.000000] i8042: PNP: No PS/2 controller found.",
            "[    8.500000] rtc_cmos 00:00: registered as rtc0",
            "VM-GUEST-READY uptime=12.5",
            "Linux (none) 6.1.0-50-cloud-amd64 #1 SMP x86_64 GNU/Linux",
            "VM-GUEST-EXIT status=0",
            "vm-service: guest powered off (vCPU exits: [1, 2])",
            "VM-E2E-RESULT status=0",
        ]
        .iter()
        .enumerate()
        {
            c.observe(line, f64::from(wall as u32));
        }
        assert_eq!(c.outer_ready.as_ref().map(|o| o.1.as_str()), Some("4.20"));
        assert_eq!(c.guest_ready.as_ref().map(|o| o.1.as_str()), Some("12.5"));
        assert!(c.uname.as_deref().unwrap().contains("x86_64"));
        let (pause, line) = c.longest_pause().unwrap();
        assert!((pause - 7.5).abs() < 1e-9 && line.contains("rtc_cmos"));
        assert!((c.pause_after("i8042: ").unwrap() - 7.5).abs() < 1e-9);
        assert!(
            c.verdict(true, Duration::ZERO, Duration::ZERO).is_err(),
            "stall"
        );
        c.stamps[2].0 = 1.05;
        c.verdict(true, Duration::ZERO, Duration::ZERO).unwrap();
        c.observe("[    9.1] rtc_cmos rtc_cmos: broken or not accessible", 9.0);
        assert!(c.verdict(true, Duration::ZERO, Duration::ZERO).is_err());
        c.no_rtc = false;
        c.result = Some("1".into());
        assert!(c.verdict(true, Duration::ZERO, Duration::ZERO).is_err());
    }

    #[test]
    fn ldd_lines_are_parsed() {
        let out = "\tlinux-vdso.so.1 (0x00007fe)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)";
        assert_eq!(
            ldd_paths(out),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
