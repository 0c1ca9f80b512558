//! Snapshot and restore of a riscv64 Debian guest across processes: a
//! command that computes a checksum is snapshotted mid-way by one
//! `vm-service run`, restored by another, and finishes with the checksum an
//! uninterrupted run prints; a restored guest's NIC still reaches another VM
//! over a virtual switch; corrupt or mismatched snapshots are refused with
//! their own errors. Needs the riscv64 guest (`cargo xtask guest --arch riscv64`).

#![cfg(target_os = "linux")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A hung guest is killed after this long; a safety net, not a measurement.
const WATCHDOG: Duration = Duration::from_mins(15);

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

fn vm_service() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-service"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `vm-service run` booting the riscv64 Debian guest with `args`.
fn boot(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = vm_service();
    cmd.args([
        "run", "--guest", "debian", "--arch", "riscv64", "--memory", "256",
    ])
    .args(["--seccomp-level", "2", "--guest-dir"])
    .arg(dir)
    .args(args);
    cmd
}

/// `vm-service run --restore snapshot` with `args`.
fn restore(snapshot: &Path, args: &[&str]) -> Command {
    let mut cmd = vm_service();
    cmd.args(["run", "--seccomp-level", "2", "--restore"])
        .arg(snapshot)
        .args(args);
    cmd
}

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

/// A checksum over 600 steps, printing progress every 100.
const CHECKSUM: &str = "i=0; s=0; while [ $i -lt 600 ]; do i=$((i+1)); \
                        s=$(( (s*31+i) % 1000000007 )); \
                        [ $((i%100)) = 0 ] && echo COUNT $i; done; echo SUM $s";

fn expected_sum() -> u64 {
    (1..=600u64).fold(0, |s, i| (s * 31 + i) % 1_000_000_007)
}

/// Across tiers too: the guest snapshotted with hot code translated goes on
/// interpreted after the restore, and the run it is compared with is
/// interpreted throughout (a snapshot holds no translated code).
#[test]
fn a_guest_restored_in_a_new_process_finishes_like_an_uninterrupted_run() {
    let Some(dir) = guest_dir() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let snap = work.path().join("snap");
    let snap_arg = snap.to_str().expect("utf-8 temp path");
    let command = ["--net", "none", "--", "sh", "-c", CHECKSUM];
    let uninterrupted = boot(
        &dir,
        &[&["--riscv-tier", "interpret"][..], &command[..]].concat(),
    )
    .spawn()
    .expect("spawn");
    let snapshotting = boot(
        &dir,
        &[
            &[
                "--riscv-tier",
                "translate",
                "--snapshot-on-output",
                "COUNT 200",
                "--snapshot-dir",
                snap_arg,
            ][..],
            &command[..],
        ]
        .concat(),
    )
    .spawn()
    .expect("spawn");

    let sum = format!("SUM {}", expected_sum());
    let saved = finish(snapshotting);
    assert_eq!(saved.code, Some(0), "{saved}");
    assert!(saved.log.contains("snapshot written"), "{saved}");
    assert!(
        !saved.console.contains(&sum),
        "stopped before the end: {saved}"
    );
    let memory = std::fs::metadata(snap.join("memory.snap")).expect("memory file");
    assert_eq!(
        memory.len(),
        256 << 20,
        "the memory file is the guest's RAM"
    );

    let restored = finish(
        restore(&snap, &["--riscv-tier", "interpret"])
            .spawn()
            .expect("spawn"),
    );
    let whole = finish(uninterrupted);
    assert_eq!(whole.code, Some(0), "{whole}");
    assert!(whole.console.contains(&sum), "{whole}");
    assert_eq!(restored.code, Some(0), "{restored}");
    assert!(restored.console.contains(&sum), "{restored}");
    assert!(
        !restored.console.contains("Run /init") && !restored.console.contains("COUNT 100"),
        "the restored guest went on, it did not boot again: {restored}"
    );
    assert!(restored.console.contains("COUNT 600"), "{restored}");

    refuses_corrupt_snapshots(&snap, work.path());
}

/// Each damaged copy of `snap` is refused with its own message.
fn refuses_corrupt_snapshots(snap: &Path, work: &Path) {
    let state = std::fs::read(snap.join("state.snap")).expect("state file");
    let memory = snap.join("memory.snap");
    let mut cases: Vec<(&str, Vec<u8>, Option<u64>)> = Vec::new();
    let mut magic = state.clone();
    magic[..4].copy_from_slice(b"ELF!");
    cases.push(("not a snapshot state file", magic, None));
    let mut newer = state.clone();
    newer[8..12].copy_from_slice(&99u32.to_le_bytes());
    cases.push(("snapshot format version 99", newer, None));
    let mut flipped = state.clone();
    let mid = state.len() / 2;
    flipped[mid] ^= 0x01;
    cases.push(("is corrupt: CRC-32C", flipped, None));
    cases.push(("is truncated", state[..state.len() - 10].to_vec(), None));
    cases.push(("bytes of RAM", state.clone(), Some(4096)));
    for (i, (message, bytes, memory_len)) in cases.into_iter().enumerate() {
        let dir = work.join(format!("bad{i}"));
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("state.snap"), bytes).expect("write");
        match memory_len {
            Some(len) => {
                std::fs::write(dir.join("memory.snap"), vec![0u8; len as usize]).expect("write");
            }
            None => std::os::unix::fs::symlink(&memory, dir.join("memory.snap")).expect("link"),
        }
        let out = finish(restore(&dir, &[]).spawn().expect("spawn"));
        assert_eq!(out.code, Some(1), "{message}: {out}");
        assert!(out.log.contains(message), "expected `{message}`: {out}");
        assert!(!out.log.contains("panicked"), "{out}");
    }
}

#[test]
fn a_restored_guest_still_reaches_another_vm_over_the_virtual_switch() {
    let Some(dir) = guest_dir() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let switches = work.path().join("switches");
    let sw = switches.to_str().expect("utf-8 temp path");
    let net = format!("virtual:lan{}", std::process::id());
    let snap = work.path().join("snap");
    let snap_arg = snap.to_str().expect("utf-8 temp path");
    // B answers pings until the test is done with it.
    let mut b = boot(
        &dir,
        &[
            "--net",
            &net,
            "--switch-dir",
            sw,
            "--ip",
            "10.0.0.2/24",
            "--",
            "sleep",
            "3600",
        ],
    )
    .spawn()
    .expect("spawn guest B");
    // A is snapshotted before its first ping; the restored A must reach B.
    // The marker is computed by the guest: the kernel command line that
    // carries this script must not match it. A runs interpreted until the
    // snapshot and with hot code translated after the restore (the test
    // above crosses the tiers the other way).
    let ping = "echo SNAPSHOT-$((40+2)); sleep 1; n=0; \
                until ping -c 1 -W 1 10.0.0.2 >/dev/null; do \
                  n=$((n+1)); [ $n -lt 900 ] || exit 1; done; \
                ping -c 3 -w 60 10.0.0.2 && exit 7";
    let saved = finish(
        boot(
            &dir,
            &[
                "--riscv-tier",
                "interpret",
                "--net",
                &net,
                "--switch-dir",
                sw,
                "--ip",
                "10.0.0.1/24",
                "--snapshot-on-output",
                "SNAPSHOT-42",
                "--snapshot-dir",
                snap_arg,
                "--",
                "sh",
                "-c",
                ping,
            ],
        )
        .spawn()
        .expect("spawn guest A"),
    );
    assert_eq!(saved.code, Some(0), "{saved}");
    let restored = finish(
        restore(&snap, &["--switch-dir", sw, "--riscv-tier", "translate"])
            .spawn()
            .expect("spawn restored A"),
    );
    let _ = b.kill();
    let _ = b.wait();
    assert_eq!(restored.code, Some(7), "{restored}");
    assert!(
        restored.console.contains("3 packets received"),
        "{restored}"
    );
}
