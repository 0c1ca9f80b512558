//! Every thread kind without a vCPU or device poller gets its own filter
//! (README: "Sandbox"): irqfd relays, switch bridges, serial input and the
//! daemon child's control threads. The hidden `--seccomp-probe KIND` makes
//! the first thread of that kind make a syscall its filter forbids: level 1
//! logs the thread and syscall and exits 159, level 2 dies of SIGSYS.
//! A riscv64 guest on the interpreter hosts them, so no /dev/kvm is needed.

#![cfg(target_os = "linux")]

use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A riscv64 Linux `Image` header over a `j .` loop.
fn spinning_riscv_kernel(dir: &Path) -> String {
    let mut image = vec![0u8; 4096];
    image[0..4].copy_from_slice(&0x0000_006f_u32.to_le_bytes());
    image[8..16].copy_from_slice(&0x20_0000_u64.to_le_bytes());
    image[16..24].copy_from_slice(&4096_u64.to_le_bytes());
    image[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
    image[0x38..0x3c].copy_from_slice(b"RSC\x05");
    let path = dir.join("spin-kernel");
    std::fs::write(&path, image).expect("write kernel");
    path.to_str().expect("utf-8 path").to_string()
}

fn vm_service() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-service"));
    cmd.env_remove("VM_SERVICE_SECCOMP_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// `vm-service run` of the spinning guest with a shared switch (so the
/// process has irqfd relays, a switch bridge and serial input), probing `kind`.
fn run_probe(dir: &Path, kind: &str, level: &str) -> Output {
    let kernel = spinning_riscv_kernel(dir);
    let switches = dir.join("switches");
    vm_service()
        .args(["run", "--arch", "riscv64", "--net", "virtual:probe"])
        .arg("--switch-dir")
        .arg(&switches)
        .args(["--kernel", &kernel])
        .args(["--seccomp-level", level, "--seccomp-probe", kind])
        .output()
        .expect("run vm-service")
}

/// `vm-service vmm` on one end of a socketpair (the daemon's child), probing
/// the control threads; the other end stays open until it has ended.
fn vmm_probe(level: &str) -> Output {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let fd = theirs.as_raw_fd();
    let mut cmd = vm_service();
    cmd.args(["vmm", "--fd", "3", "--seccomp-level", level])
        .args(["--seccomp-probe", "control"]);
    // SAFETY: dup2 and fcntl are async-signal-safe; `fd` is open in the
    // parent (owned by `theirs`, alive past spawn) so it is in the child.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run vm-service vmm");
    drop((ours, theirs));
    out
}

/// (probe, the thread's name in the log line)
const LIBRARY_THREADS: &[(&str, &str)] = &[
    ("irqfd", "irqfd-"),
    ("switch", "switch-probe"),
    ("serial", "serial-input"),
];

fn assert_logged(out: &Output, what: &str, thread: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(159),
        "{what}: {:?}\n{err}",
        out.status
    );
    let line = format!("vm-service: seccomp: thread {thread}");
    let tail = format!(" made forbidden syscall {}", libc::SYS_socket);
    assert!(
        err.lines()
            .any(|l| l.starts_with(&line) && l.ends_with(&tail)),
        "{what}: no `{line}..{tail}` in:\n{err}"
    );
}

#[test]
fn a_forbidden_syscall_in_each_library_thread_kind_is_logged_at_level_1() {
    for &(kind, thread) in LIBRARY_THREADS {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_logged(&run_probe(dir.path(), kind, "1"), kind, thread);
    }
}

#[test]
fn a_forbidden_syscall_in_each_library_thread_kind_kills_at_level_2() {
    for &(kind, _) in LIBRARY_THREADS {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_probe(dir.path(), kind, "2");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{kind}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_forbidden_syscall_on_the_vmm_childs_control_thread_is_caught() {
    assert_logged(&vmm_probe("1"), "control", "vmm-frames");
    let out = vmm_probe("2");
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
}
