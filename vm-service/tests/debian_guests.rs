//! Stock Debian guests built by `cargo xtask guest`, booted by `vm-service
//! run`, talking over our virtio-net. riscv64 runs on the interpreter, which
//! boots Debian's kernel in seconds here (the nested KVM would take tens of
//! minutes for x86_64: that is `cargo xtask e2e`):
//!
//! - two guests, in two `vm-service` processes plugged into one virtual switch,
//!   boot to their `/init` marker, ping each other and move data with
//!   `dd | nc`; `vm-service` exits with the guest command's status; once
//!   with hot blocks translated and once on the interpreter alone
//!   (`--riscv-tier`);
//! - a guest pings the host over a TAP device in a network namespace the test
//!   makes (needs root and iproute2);
//! - a guest boots from a copy of `rootfs.ext4` (virtio-blk root disk), writes
//!   a file and syncs, while a second disk attached read-only refuses writes
//!   and stays bit-identical on the host; a second boot of the same image reads
//!   the file back;
//! - two VMs cannot both open one writable image (no boot: two builds).
//!
//! Each is skipped with the reason when the guest has not been built
//! (`cargo xtask guest --arch riscv64`; `cargo xtask ci` builds it).

#![cfg(target_os = "linux")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A hung guest is killed after this long; a safety net, not a measurement.
const WATCHDOG: Duration = Duration::from_mins(15);

/// The built guests' directory, or `None` (reported missing) when riscv64's is missing.
fn guest_dir() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("guest");
    if dir.join("riscv64/kernel").is_file() && dir.join("riscv64/initrd.cpio.gz").is_file() {
        Some(dir)
    } else {
        test_prerequisites::prerequisite_missing(format_args!(
            "no riscv64 Debian guest in {}: run `cargo xtask guest --arch riscv64`",
            dir.display()
        ));
        None
    }
}

/// A copy of the guest's `rootfs.ext4` at `dest` (the published image is
/// shared: a test never boots it in place), or `None` (reported missing).
fn rootfs_copy(dir: &Path, dest: &Path) -> Option<PathBuf> {
    let image = dir.join("riscv64/rootfs.ext4");
    if !image.is_file() {
        test_prerequisites::prerequisite_missing(format_args!(
            "no {}: `cargo xtask guest --arch riscv64` builds it where mkfs.ext4 \
             (e2fsprogs) is installed",
            image.display()
        ));
        return None;
    }
    std::fs::copy(&image, dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", image.display(), dest.display()));
    Some(dest.to_path_buf())
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).expect("open the image");
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).expect("read the image");
    format!("{:x}", hasher.finalize())
}

/// `vm-service run` for the riscv64 Debian guest with `args`.
fn guest(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-service"));
    cmd.args([
        "run", "--guest", "debian", "--arch", "riscv64", "--memory", "256",
    ])
    .args(["--seccomp-level", "2"])
    .arg("--guest-dir")
    .arg(dir)
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// What a finished guest process left behind.
struct Finished {
    code: Option<i32>,
    console: String,
    log: String,
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- console ---\n{}\n--- stderr ---\n{}",
            self.code, self.console, self.log
        )
    }
}

/// Waits for `child`, killing it if the watchdog fires.
fn finish(mut child: Child) -> Finished {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let start = Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if start.elapsed() > WATCHDOG => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("waiting for vm-service: {e}"),
        }
    };
    Finished {
        code,
        console: out.join().unwrap_or_default(),
        log: err.join().unwrap_or_default(),
    }
}

/// A name no other test run on this machine uses at the same time.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn two_riscv64_guests_ping_each_other_over_one_virtual_switch() {
    ping_over_one_switch("translate");
}

#[test]
fn two_interpreted_riscv64_guests_ping_each_other_over_one_virtual_switch() {
    ping_over_one_switch("interpret");
}

/// Two riscv64 guests in execution tier `tier` (`--riscv-tier`) on one
/// virtual switch: pings, then 4 MiB over TCP.
fn ping_over_one_switch(tier: &str) {
    let Some(dir) = guest_dir() else { return };
    let switches = tempfile::tempdir().expect("tempdir");
    let net = format!("virtual:{}", unique("lan"));
    let sw = switches.path().to_str().expect("utf-8 temp path");
    let common = ["--net", &net, "--switch-dir", sw, "--riscv-tier", tier];
    // B answers pings and counts the bytes A sends it.
    let b = guest(
        &dir,
        &[
            &common[..],
            &[
                "--ip",
                "10.0.0.2/24",
                "--",
                "sh",
                "-c",
                "nc -l -p 5001 | wc -c",
            ],
        ]
        .concat(),
    )
    .spawn()
    .expect("spawn guest B");
    // A waits for B's boot (one ping at a time: busybox's `ping -c N` stops
    // sending after N, however long its deadline, so under load B may not be
    // up yet), pings it three times, then sends it 4 MiB, timed by the
    // guest's clock.
    let send = "n=0; until ping -c 1 -W 1 10.0.0.2 >/dev/null; do \
                  n=$((n+1)); [ $n -lt 600 ] || exit 1; done; \
                ping -c 3 -w 60 10.0.0.2 || exit 1; \
                t0=$(cut -d' ' -f1 /proc/uptime); \
                for i in 1 2 3 4 5 6 7 8 9 10; do \
                  dd if=/dev/zero bs=4096 count=1024 2>/dev/null | nc 10.0.0.2 5001 && break; sleep 1; \
                done; \
                echo transfer-seconds $t0 $(cut -d' ' -f1 /proc/uptime); uname -m; \
                grep ^isa /proc/cpuinfo; exit 7";
    let a = guest(
        &dir,
        &[
            &common[..],
            &["--ip", "10.0.0.1/24", "--", "sh", "-c", send],
        ]
        .concat(),
    )
    .spawn()
    .expect("spawn guest A");
    // Both VMMs boot, move data and exit under their seccomp filters.
    for (name, pid) in [("A", a.id()), ("B", b.id())] {
        let start = Instant::now();
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t1") {
                break;
            }
            let gone = status.is_empty() || status.contains("State:\tZ");
            assert!(
                !gone && start.elapsed() < WATCHDOG,
                "guest {name}'s VMM is not filtered: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let a = finish(a);
    let b = finish(b);
    // A's command ends with `exit 7`: vm-service returns the guest command's status.
    assert_eq!(a.code, Some(7), "guest A:\n{a}\n\nguest B:\n{b}");
    for expected in [
        "VM-GUEST-READY uptime=",
        "3 packets received",
        "riscv64",
        // The extensions the device tree advertises, as Linux accepted them.
        "_zicbom_zicbop_zicboz_zicntr_zicond_zicsr_zifencei_zihintpause_zimop_",
        "_zfa_zfh_zfhmin_",
        "_zcmop_",
        "_zba_zbb_zbc_zbkb_zbkc_zbkx_zbs_sstc_svinval_svnapot_svpbmt",
        "VM-GUEST-EXIT status=7",
    ] {
        assert!(
            a.console.contains(expected),
            "guest A did not print {expected:?}:\n{a}"
        );
    }
    assert_eq!(b.code, Some(0), "guest B:\n{b}");
    assert!(
        b.console.lines().any(|l| l.trim() == "4194304"),
        "guest B did not receive 4 MiB:\n{b}"
    );
    if let Some(line) = a
        .console
        .lines()
        .find(|l| l.starts_with("transfer-seconds"))
    {
        let t: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [t0, t1] = t[..] {
            eprintln!(
                "4 MiB guest to guest ({tier}) in {:.2} s of guest time ({:.1} MiB/s)",
                t1 - t0,
                4.0 / (t1 - t0).max(0.01)
            );
        }
    }
}

/// Runs `ip` with `args`, naming the command in the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

#[test]
fn riscv64_guest_pings_the_host_over_tap_in_a_network_namespace() {
    let Some(dir) = guest_dir() else { return };
    let ns = Netns(unique("vmguest"));
    if let Err(e) = ip(&["netns", "add", &ns.0]) {
        test_prerequisites::prerequisite_missing(format_args!(
            "cannot make a network namespace (needs root): {e}"
        ));
        return;
    }
    let n = ns.0.as_str();
    for step in [
        &["-n", n, "link", "set", "lo", "up"][..],
        &["-n", n, "tuntap", "add", "dev", "vmgtap0", "mode", "tap"],
        &["-n", n, "addr", "add", "10.0.1.1/24", "dev", "vmgtap0"],
        &["-n", n, "link", "set", "vmgtap0", "up"],
    ] {
        ip(step).expect("setting up the namespace");
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", n]);
    let inner = guest(
        &dir,
        &[
            "--net",
            "tap:vmgtap0",
            "--ip",
            "10.0.1.2/24",
            "--",
            "ping",
            "-c",
            "3",
            "-w",
            "300",
            "10.0.1.1",
        ],
    );
    cmd.arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let done = finish(cmd.spawn().expect("spawn ip netns exec"));
    assert_eq!(done.code, Some(0), "{done}");
    assert!(done.console.contains("3 packets received"), "{done}");
}

#[test]
fn riscv64_guest_boots_from_a_disk_that_keeps_its_writes_next_to_a_read_only_one() {
    disk_keeps_writes("translate");
}

/// The same on the interpreter alone: blocks the guest reads from disk
/// and then runs reach the decoded-instruction cache by DMA and `fence.i`
/// in both tiers.
#[test]
fn interpreted_riscv64_guest_boots_from_a_disk_that_keeps_its_writes_next_to_a_read_only_one() {
    disk_keeps_writes("interpret");
}

/// One boot does the work of two checks (each boot costs tens of seconds on
/// the interpreter): the root disk takes a write, the read-only data disk
/// refuses one; a second boot of the root disk reads the write back. In
/// execution tier `tier` (`--riscv-tier`).
fn disk_keeps_writes(tier: &str) {
    let Some(dir) = guest_dir() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(root) = rootfs_copy(&dir, &tmp.path().join("root.ext4")) else {
        return;
    };
    let Some(data) = rootfs_copy(&dir, &tmp.path().join("data.ext4")) else {
        return;
    };
    let data_before = sha256(&data);
    let root_arg = format!("{},root", root.display());
    let data_arg = format!("{},ro,id=data", data.display());
    // Each check prints a marker; the command fails unless every one passed.
    // (No double quotes: the kernel's command line carries the script.)
    let script = "set -u; ok=1; \
        grep -q '^/dev/vda / ext4 rw' /proc/mounts && echo CHECK-ROOT-IS-VDA || ok=0; \
        echo disk-data-survives > /persist.txt && sync && echo CHECK-WROTE || ok=0; \
        [ $(cat /sys/block/vdb/ro) = 1 ] && echo CHECK-VDB-RO || ok=0; \
        if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync; then ok=0; \
        else echo CHECK-RAW-WRITE-REFUSED; fi; \
        mkdir -p /mnt && mount -t ext4 -o ro /dev/vdb /mnt && head -1 /mnt/init && \
        if touch /mnt/new-file; then ok=0; else echo CHECK-FS-WRITE-REFUSED; fi; \
        umount /mnt; [ $ok = 1 ]";
    let first = finish(
        guest(
            &dir,
            &[
                "--riscv-tier",
                tier,
                "--net",
                "none",
                "--drive",
                &root_arg,
                "--drive",
                &data_arg,
                "--",
                "sh",
                "-c",
                script,
            ],
        )
        .spawn()
        .expect("spawn the first boot"),
    );
    assert_eq!(first.code, Some(0), "first boot:\n{first}");
    for marker in [
        "vmguest: / is /dev/vda (ext4)",
        "CHECK-ROOT-IS-VDA",
        "CHECK-WROTE",
        "CHECK-VDB-RO",
        "CHECK-RAW-WRITE-REFUSED",
        "#!/bin/busybox sh",
        "CHECK-FS-WRITE-REFUSED",
        "VM-GUEST-EXIT status=0",
    ] {
        assert!(
            first.console.contains(marker),
            "first boot did not print {marker:?}:\n{first}"
        );
    }
    assert!(
        first.console.contains("Read-only file system")
            || first.console.contains("Operation not permitted"),
        "the refused writes say why:\n{first}"
    );
    assert_eq!(
        sha256(&data),
        data_before,
        "the read-only disk changed on the host:\n{first}"
    );
    for refusal in first
        .console
        .lines()
        .filter(|l| l.starts_with("dd:") || l.starts_with("touch:"))
    {
        eprintln!("guest said: {refusal}");
    }

    let second = finish(
        guest(
            &dir,
            &[
                "--riscv-tier",
                tier,
                "--net",
                "none",
                "--drive",
                &root_arg,
                "--",
                "cat",
                "/persist.txt",
            ],
        )
        .spawn()
        .expect("spawn the second boot"),
    );
    assert_eq!(second.code, Some(0), "second boot:\n{second}");
    assert!(
        second
            .console
            .lines()
            .any(|l| l.trim() == "disk-data-survives"),
        "the file written by the first boot is not on the disk:\n{second}"
    );
}

/// No boot: the second VM to open a writable image fails at build time,
/// naming the file, while the first holds it.
#[test]
fn two_vms_cannot_open_one_writable_image() {
    use vm_core::config::{BlockConfig, DeviceConfig, GuestArch, SerialMode, VmConfig};
    let Some(dir) = guest_dir() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("shared.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("write the image");
    let config = |read_only: bool| VmConfig {
        arch: GuestArch::Riscv64,
        memory_mib: 64,
        kernel: Some(dir.join("riscv64/kernel")),
        cmdline: "console=ttyS0".into(),
        devices: vec![DeviceConfig::Block(BlockConfig {
            drive_id: "disk".into(),
            path_on_host: image.clone(),
            is_root_device: false,
            is_read_only: read_only,
        })],
        serial: SerialMode::Off,
        ..VmConfig::default()
    };
    let build = |read_only| vm_service::VmmBuilder::new(config(read_only)).build();
    let first = build(false).expect("the first VM builds");
    let err = |r: Result<vm_service::Vmm, vm_service::VmmError>| {
        let e = r.expect_err("a second VM on a writable image must fail");
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    };
    for read_only in [false, true] {
        let text = err(build(read_only));
        assert!(
            text.contains(&image.display().to_string()) && text.contains("in use"),
            "read_only={read_only}: {text}"
        );
    }
    drop(first);
    // Released with the VM: the image can be opened again.
    build(false).expect("the image is free once the first VM is gone");
}
