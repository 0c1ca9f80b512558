//! `cargo xtask e2e --nested-tcg`: the stock x86_64 Debian guest, booted by
//! our release `vm-service` on a standard KVM, end to end: from an initramfs,
//! from a disk, and two guests talking over our virtual switch.
//!
//! A host whose `/dev/kvm` is a nested paravirtual one (kvm_pvm) cannot run
//! stock x86 user space (see the e2e module), but a QEMU TCG machine with
//! `-cpu max,-xsave` emulates an AMD CPU with SVM and nested paging, and
//! Debian's own kernel loads `kvm_amd` there. So this builds an outer
//! initramfs from what `cargo xtask guest --arch x86_64` cached (the same
//! cloud kernel as the outer kernel, busybox, the KVM modules) plus the
//! release `vm-service`, the shared libraries it links and the published
//! x86_64 guest (kernel, initramfs and `rootfs.ext4`); QEMU boots it; the
//! outer `/init` loads KVM and runs the inner VMs of a plan. `cargo xtask
//! ci` runs [`ONE_GUEST`] in two rounds:
//!
//! 1. a 2-vCPU guest runs `uname -a`, then a checksum loop, and is
//!    snapshotted (`--snapshot-on-output`) a third of the way through it;
//! 2. a new `vm-service run --restore` resumes it: it must finish the loop
//!    with the right sum, without booting again, and power off.
//!
//! and then [`TWO_GUESTS`] (alone with `--two-guests`), also in two rounds,
//! with the outer `kvm_amd`'s nested paging off (see [`nested_paging`]):
//!
//! 1. at once, on one virtual switch (`--net virtual:e2e`): VM A (2 vCPUs)
//!    boots from `rootfs.ext4` (`--rootfs`, `/dev/vda`), checks that `/` is
//!    that disk, writes a fresh random id to it and syncs, and VM A and VM B
//!    ping each other (each waits for the other's boot first; B then tells A
//!    it is done over TCP, so neither powers off under the other's pings);
//! 2. VM C boots from the same disk image and prints the file: it must be
//!    A's id.
//!
//! The outer `/init` tags every line of an inner VM (its guest's console and
//! `vm-service`'s messages) `TAG| `; [`console`] sorts them out and checks
//! each VM's markers: `VM-GUEST-READY`, the command's status 0 and
//! `vm-service`'s, the power-off through ACPI S5, the CMOS RTC found without
//! a stall, and what the VM's row in the plan expects. The console is
//! stamped into `target/e2e/nested-tcg-NAME-console.log`.
//!
//! Nothing about speed can be read from this set-up (TCG); correctness can.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{spawn_reader, wall_clock, Stream};
use crate::guest::{self, cpio, initramfs, rootfs, Arch};

mod console;

use console::Console;

/// The outer `/init` prints this once KVM is loaded, with its uptime.
const OUTER_READY: &str = "VM-E2E-OUTER-READY";
/// The outer `/init` prints this, then the round's number, as a round begins.
const ROUND: &str = "VM-E2E-ROUND";
/// The outer `/init` prints this once every inner VM has ended.
const DONE: &str = "VM-E2E-DONE";
/// The outer `/init` prints this with an inner `vm-service`'s exit status.
const RESULT: &str = "VM-E2E-RESULT";
/// The disk-writing guest prints this, then the id it wrote.
const DISK_WROTE: &str = "E2E-DISK-WROTE";
/// Where the guest `cargo xtask guest` built sits in the outer initramfs.
const GUEST_DIR: &str = "guest";
/// The outer machine's directory of the snapshots its inner VMs write,
/// one subdirectory per writer's tag.
const SNAPSHOT_DIR: &str = "/run/snapshots";
/// Steps of [`checksum_loop!`].
const CHECKSUM_STEPS: u64 = 1500;

/// A shell loop of [`CHECKSUM_STEPS`] steps that prints `COUNT i` every 100
/// and then `SUM s` (the sum [`checksum`] computes); long enough to be
/// snapshotted mid-way. A macro, for `concat!`.
macro_rules! checksum_loop {
    () => {
        concat!(
            "i=0; s=0; while [ $i -lt 1500 ]; do i=$((i+1)); ",
            "s=$(( (s*31+i) % 1000000007 )); ",
            "[ $((i%100)) = 0 ] && echo COUNT $i; done; echo SUM $s"
        )
    };
}

/// The sum [`checksum_loop!`] prints.
pub fn checksum() -> u64 {
    (1..=CHECKSUM_STEPS).fold(0, |s, i| (s * 31 + i) % 1_000_000_007)
}

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

/// One `vm-service run` inside the outer machine.
#[derive(Debug)]
pub struct InnerVm {
    /// Tag of its lines on the outer console.
    tag: &'static str,
    /// What it shows, for the report.
    what: &'static str,
    /// Round 1 runs at once; round 2 after round 1 ended.
    round: u32,
    /// `vm-service run` arguments after the common ones (`--guest debian
    /// --arch x86_64 --guest-dir ... --memory 256 --log-level warn`).
    args: &'static str,
    /// The guest's command: a shell script, on the guest kernel's command
    /// line, so without quotes of either kind.
    script: &'static str,
    /// Its console must have a line (printk stamp removed) starting with each.
    expect: &'static [&'static str],
    /// It runs `uname -a`, which must name x86_64.
    uname: bool,
    /// It must print, on a line of its own, the id this VM wrote to the disk.
    reads_disk_of: Option<&'static str>,
    /// Whether it writes a snapshot or restores one.
    snapshot: Snapshot,
}

/// An inner VM's part in a snapshot round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// It boots and runs to power-off.
    None,
    /// It boots, and when its console prints this text it is snapshotted
    /// into [`SNAPSHOT_DIR`]`/TAG` and stops: its command must not finish.
    At(&'static str),
    /// It is the snapshot the VM of this tag wrote, restored (no boot, no
    /// other options); it must finish [`CHECKSUM`] and power off.
    RestoreOf(&'static str),
}

/// Both round-1 guests wait for the other's boot with single pings (busybox's
/// `ping -c N` stops after N, however long its deadline), then ping it.
macro_rules! ping_peer {
    ($peer:literal) => {
        concat!(
            "n=0; until ping -c 1 -W 1 ",
            $peer,
            " >/dev/null; do n=$((n+1)); [ $n -lt 120 ] || exit 4; done; ",
            "ping -c 3 -w 30 ",
            $peer,
            " || exit 5; "
        )
    };
}

/// The one-guest run (`cargo xtask ci`): a 2-vCPU guest alone runs
/// `uname -a` and a checksum loop, and is snapshotted in the loop; round 2
/// restores it in a new `vm-service`.
pub const ONE_GUEST: &[InnerVm] = &[
    InnerVm {
        tag: "A",
        what: "2 vCPUs, initramfs, alone, snapshotted at COUNT 500",
        round: 1,
        args: "--vcpus 2 --net none",
        script: concat!("uname -a; ", checksum_loop!()),
        expect: &["smp: Brought up 1 node, 2 CPUs", "COUNT 500"],
        uname: true,
        reads_disk_of: None,
        snapshot: Snapshot::At("COUNT 500"),
    },
    InnerVm {
        tag: "R",
        what: "A's snapshot restored in a new process",
        round: 2,
        args: "",
        script: "",
        expect: &["COUNT 1500"],
        uname: false,
        reads_disk_of: None,
        snapshot: Snapshot::RestoreOf("A"),
    },
];

/// The two-guest run (`--two-guests`), in the order the outer `/init`
/// starts the VMs; the outer `kvm_amd` runs without nested paging (see
/// [`nested_paging`]).
pub const TWO_GUESTS: &[InnerVm] = &[
    InnerVm {
        tag: "A",
        what: "2 vCPUs, root on rootfs.ext4, pings B",
        round: 1,
        args: "--vcpus 2 --rootfs --net virtual:e2e --switch-dir /run/switches --ip 10.0.0.1/24",
        script: concat!(
            "while read -r dev mnt fs opts rest; do [ $mnt = / ] && echo E2E-ROOT $dev $fs ${opts%%,*}; ",
            "done < /proc/mounts; ",
            "id=$(cat /proc/sys/kernel/random/uuid); ",
            "echo $id > /e2e-disk.txt && sync && echo E2E-DISK-WROTE $id || exit 3; ",
            ping_peer!("10.0.0.2"),
            "timeout 120 nc -l -p 5001 || exit 6; uname -a"
        ),
        expect: &[
            "smp: Brought up 1 node, 2 CPUs",
            "vmguest: / is /dev/vda (ext4)",
            "E2E-ROOT /dev/vda ext4 rw",
            "3 packets transmitted, 3 packets received",
            "E2E-B-PINGED-A",
        ],
        uname: true,
        reads_disk_of: None,
        snapshot: Snapshot::None,
    },
    InnerVm {
        tag: "B",
        what: "1 vCPU, initramfs, pings A",
        round: 1,
        args: "--vcpus 1 --net virtual:e2e --switch-dir /run/switches --ip 10.0.0.2/24",
        script: concat!(
            ping_peer!("10.0.0.1"),
            "n=0; until echo E2E-B-PINGED-A | nc 10.0.0.1 5001; do ",
            "n=$((n+1)); [ $n -lt 60 ] || exit 6; sleep 1; done"
        ),
        expect: &["3 packets transmitted, 3 packets received"],
        uname: false,
        reads_disk_of: None,
        snapshot: Snapshot::None,
    },
    InnerVm {
        tag: "C",
        what: "1 vCPU, root on the disk A wrote, reads A's file",
        round: 2,
        args: "--vcpus 1 --rootfs --net none",
        script: "cat /e2e-disk.txt",
        expect: &["vmguest: / is /dev/vda (ext4)"],
        uname: false,
        reads_disk_of: Some("A"),
        snapshot: Snapshot::None,
    },
];

impl InnerVm {
    /// The outer `/init`'s command that runs this VM.
    fn command(&self) -> String {
        let boot = |extra: &str| {
            format!(
                "vm {} $BOOT {}{extra} -- sh -c '{}'",
                self.tag, self.args, self.script
            )
        };
        match self.snapshot {
            Snapshot::None => boot(""),
            Snapshot::At(text) => boot(&format!(
                " --snapshot-on-output '{text}' --snapshot-dir {SNAPSHOT_DIR}/{}",
                self.tag
            )),
            Snapshot::RestoreOf(writer) => {
                format!("vm {} --restore {SNAPSHOT_DIR}/{writer}", self.tag)
            }
        }
    }
}

/// Whether the outer kernel's `kvm_amd` gives the inner VMs nested paging
/// (`npt`): yes, unless inner VMs run at once. Two inner VMs running at once
/// on TCG's emulated nested paging fail now and then: one dies early in its
/// boot (a triple fault, or a hang on a page fault whose delivery walked
/// guest page tables outside RAM), in 3 runs of 11 on two outer CPUs with
/// QEMU 7.2 and 10.0 alike, once with the outer kernel itself panicking
/// ("corrupted stack end detected inside scheduler"); on one outer CPU, 1 of
/// 14 hung. With `npt=0` (KVM's shadow paging, no emulated NPT walks) none
/// of 10 failed on two CPUs. So the fault lies below our VMM, in TCG's
/// emulated NPT with more than one guest.
pub fn nested_paging(vms: &[InnerVm]) -> bool {
    !vms.iter()
        .any(|vm| vms.iter().filter(|o| o.round == vm.round).count() > 1)
}

/// Runs the nested-TCG e2e; fails unless every check passes within `timeout`.
/// `name` names its files in `target/e2e/`.
pub fn run(root: &Path, timeout: Duration, name: &str, vms: &'static [InnerVm]) -> Result<()> {
    let qemu = "qemu-system-x86_64";
    crate::cmd::output_of(qemu, &["--version"]).with_context(|| {
        format!("`{qemu}` is needed (`cargo xtask setup` installs qemu-system-x86)")
    })?;
    crate::cmd::cargo(root, &["build", "--release", "-p", "vm-service"])?;
    let out_dir = root.join("target/e2e");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let host = guest::vmm_host_kernel(root, Arch::X86_64)?;
    let initrd_path = out_dir.join(format!("nested-tcg-{name}-initramfs.cpio"));
    let t = Instant::now();
    let initrd = outer_initramfs(root, &host, vms)?;
    std::fs::write(&initrd_path, &initrd)
        .with_context(|| format!("writing {}", initrd_path.display()))?;
    eprintln!(
        "e2e: outer initramfs {} ({} MiB) built in {:.1?}",
        initrd_path.display(),
        initrd.len() >> 20,
        t.elapsed()
    );
    drop(initrd);

    let log_path = out_dir.join(format!("nested-tcg-{name}-console.log"));
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
    let mut console = Console::new(vms);
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
                if console.done.is_some() {
                    break true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break false,
            Err(mpsc::RecvTimeoutError::Disconnected) => break true,
        }
    };
    let elapsed = started.elapsed();
    // The outer init powers off after its last marker; QEMU then exits.
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
/// The guest's disk image is the outer machine's own copy: the inner VMs
/// write to it, the published one stays as it is.
fn outer_initramfs(root: &Path, host: &guest::VmmHostKernel, vms: &[InnerVm]) -> Result<Vec<u8>> {
    let vmm = root.join("target/release/vm-service");
    let guest_src = root.join("target/guest/x86_64");
    let paths: Vec<String> = host.modules.iter().map(|(p, _)| p.clone()).collect();
    let mut archive = initramfs::cpio(&initramfs::Contents {
        busybox: &host.busybox,
        release: &host.release,
        modules: &host.modules,
        modules_dep: &host.modules_dep,
        init: &outer_init(&host.release, &paths, vms),
    })?;

    let mut files: Vec<(String, PathBuf, u32)> =
        vec![("bin/vm-service".into(), vmm.clone(), 0o755)];
    for lib in shared_libraries(&vmm)? {
        let path = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.push((path, lib, 0o755));
    }
    for name in ["kernel", "initrd.cpio.gz", rootfs::FILE] {
        let src = guest_src.join(name);
        if !src.is_file() {
            bail!(
                "{} is missing: run `cargo xtask guest --arch x86_64` (rootfs.ext4 needs \
                 mkfs.ext4 from e2fsprogs)",
                src.display()
            );
        }
        files.push((format!("{GUEST_DIR}/x86_64/{name}"), src, 0o644));
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

/// The outer `/init`: load KVM, run the rounds of `vms` (a round's
/// VMs at once), report, power off.
fn outer_init(release: &str, modules: &[String], vms: &[InnerVm]) -> String {
    let mut rounds = String::new();
    let mut round = 0;
    for vm in vms {
        if vm.round != round {
            if round != 0 {
                rounds.push_str("wait\n");
            }
            round = vm.round;
            let _ = writeln!(rounds, "echo \"{ROUND} {round}\"");
        }
        let _ = writeln!(rounds, "{} &", vm.command());
    }
    rounds.push_str("wait\n");
    format!(
        r#"#!/bin/busybox sh
# /init of the outer machine of `cargo xtask e2e --nested-tcg`.
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    case $m in */kvm-amd.ko) opts="npt={npt}" ;; *) opts= ;; esac
    insmod "/lib/modules/{release}/$m" $opts || echo "VM-E2E: insmod $m failed"
done
[ -c /dev/kvm ] || echo "VM-E2E: no /dev/kvm after loading the modules"
mkdir -p /run/switches
read -r uptime _ < /proc/uptime
read -r npt < /sys/module/kvm_amd/parameters/npt
echo "{OUTER_READY} uptime=$uptime npt=$npt"
# The options of every inner VM that boots (a restored one takes its own
# from its snapshot).
BOOT="--guest debian --arch x86_64 --guest-dir /{GUEST_DIR} --memory 256"
# vm TAG ARGS...: one inner VM; each line it or its vm-service prints is
# tagged `TAG| `, and its exit status follows.
vm() {{
    tag=$1
    shift
    {{
        /bin/vm-service run --log-level warn "$@" </dev/null
        echo "{RESULT} status=$?"
    }} 2>&1 | while IFS= read -r line || [ -n "$line" ]; do echo "$tag| $line"; done
}}
{rounds}echo "{DONE}"
poweroff -f
"#,
        modules = modules.join(" "),
        npt = u8::from(nested_paging(vms)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn outer_init_runs_the_rounds_in_order() {
        let init = outer_init(
            "6.1.0-50-cloud-amd64",
            &["kernel/arch/x86/kvm/kvm.ko".into()],
            TWO_GUESTS,
        );
        let at = |needle: &str| {
            init.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in:\n{init}"))
        };
        assert!(at(OUTER_READY) < at(&format!("{ROUND} 1")));
        assert!(at(&format!("{ROUND} 1")) < at("vm A "));
        assert!(at("vm A ") < at("vm B "));
        assert!(at("vm B ") < at("wait\n"));
        assert!(at("wait\n") < at(&format!("{ROUND} 2")));
        assert!(at(&format!("{ROUND} 2")) < at("vm C "));
        assert!(at("vm C ") < at(DONE));
        assert!(at(DONE) < at("poweroff -f"));
        assert_eq!(init.matches("wait\n").count(), 2);
        let one = outer_init("r", &[], ONE_GUEST);
        assert!(one.contains(
            "vm A $BOOT --vcpus 2 --net none --snapshot-on-output 'COUNT 500' \
             --snapshot-dir /run/snapshots/A -- sh -c 'uname -a; i=0;"
        ));
        assert!(one.contains("vm R --restore /run/snapshots/A &"));
        assert!(one.find("vm A ").unwrap() < one.find("wait\n").unwrap());
        assert!(one.find("wait\n").unwrap() < one.find("vm R ").unwrap());
        assert_eq!(one.matches("wait\n").count(), 2);
    }

    #[test]
    fn vms_at_once_get_shadow_paging() {
        assert!(nested_paging(ONE_GUEST));
        assert!(!nested_paging(TWO_GUESTS));
        assert!(outer_init("r", &[], ONE_GUEST).contains("opts=\"npt=1\""));
        assert!(outer_init("r", &[], TWO_GUESTS).contains("opts=\"npt=0\""));
    }

    #[test]
    fn guest_scripts_fit_a_kernel_command_line() {
        for vms in [ONE_GUEST, TWO_GUESTS] {
            scripts_fit(vms);
        }
    }

    #[test]
    fn the_checksum_loop_is_the_one_computed() {
        assert!(checksum_loop!().contains(&format!("-lt {CHECKSUM_STEPS} ]")));
        assert!(checksum_loop!().contains("s=$(( (s*31+i) % 1000000007 ))"));
    }

    #[test]
    fn snapshot_rounds_are_consistent() {
        for vms in [ONE_GUEST, TWO_GUESTS] {
            for vm in vms {
                match vm.snapshot {
                    Snapshot::None => {}
                    Snapshot::At(text) => {
                        // The console echoes the kernel's command line: the
                        // trigger must not be in the script itself.
                        assert!(!vm.script.contains(text), "VM {}", vm.tag);
                        assert!(vm.script.contains(checksum_loop!()), "VM {}", vm.tag);
                    }
                    Snapshot::RestoreOf(writer) => {
                        let w = vms.iter().find(|v| v.tag == writer).unwrap();
                        assert!(matches!(w.snapshot, Snapshot::At(_)));
                        assert!(w.round < vm.round, "the snapshot exists before the restore");
                    }
                }
            }
        }
    }

    fn scripts_fit(vms: &[InnerVm]) {
        let mut tags = BTreeSet::new();
        for vm in vms {
            assert!(tags.insert(vm.tag), "tag {} twice", vm.tag);
            // The outer /init quotes the script with '...'; the kernel's
            // command line cannot carry a double quote.
            assert!(
                !vm.script.contains(['\'', '"']),
                "VM {}: {}",
                vm.tag,
                vm.script
            );
            // x86's COMMAND_LINE_SIZE is 2048, the base line and the ip take some.
            assert!(vm.script.len() < 1500, "VM {}", vm.tag);
            if let Some(writer) = vm.reads_disk_of {
                let w = vms.iter().find(|v| v.tag == writer).unwrap();
                assert!(
                    w.round < vm.round,
                    "the writer ends before the reader boots"
                );
                assert!(w.script.contains(DISK_WROTE));
            }
        }
    }
}
