//! The VMM process sandboxes itself (README: "Sandbox"): seccomp filters
//! per thread kind, `NoNewPrivs`, and `--uid/--gid` as root.
//!
//! - the built-in guest boots on KVM with the filters on (both executors);
//! - a live VMM's `/proc/<pid>/status` shows `Seccomp: 2`, `NoNewPrivs: 1`,
//!   and its vCPU and device I/O (`net-rx`, `blk-io`) threads carry more
//!   filters than its main thread;
//! - the hidden `--seccomp-probe` makes one thread of a kind make a syscall
//!   its filter forbids: level 1 logs the thread and syscall and exits 159,
//!   level 2 dies of SIGSYS;
//! - as root, `--uid/--gid` leave the process with that uid/gid and no
//!   capabilities (skipped with the reason otherwise);
//! - the riscv64 Debian guest reads and writes a drive under the filters
//!   (skipped with the reason when the guest has not been built).

#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kvm_available() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("skipped: /dev/kvm is not usable here");
    }
    ok
}

fn vm_service() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-service"));
    // The level under test is given on the command line, never inherited.
    cmd.env_remove("VM_SERVICE_SECCOMP_LEVEL")
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Output {
    vm_service()
        .arg("run")
        .args(args)
        .output()
        .expect("run vm-service")
}

/// A riscv64 Linux `Image` header over a `j .` loop: a guest that spins
/// until killed, on the interpreter (no KVM needed).
fn spinning_riscv_kernel(dir: &Path) -> PathBuf {
    let mut image = vec![0u8; 4096];
    image[0..4].copy_from_slice(&0x0000_006f_u32.to_le_bytes());
    image[8..16].copy_from_slice(&0x20_0000_u64.to_le_bytes());
    image[16..24].copy_from_slice(&4096_u64.to_le_bytes());
    image[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
    image[0x38..0x3c].copy_from_slice(b"RSC\x05");
    let path = dir.join("spin-kernel");
    std::fs::write(&path, image).expect("write kernel");
    path
}

/// A running VMM that is killed when dropped.
struct Live(Child);

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Live {
    fn spawn(cmd: &mut Command) -> Self {
        Self(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        )
    }

    /// `/proc/<pid>/status` once the vCPU thread exists (with its filter
    /// installed, when `filtered`).
    fn status_with_vcpu(&mut self, filtered: bool) -> String {
        let pid = self.0.id();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("the VMM ended early ({status}):\n{err}");
            }
            if let Some(filters) = thread_filters(pid, "vcpu0") {
                if filters > 0 || !filtered {
                    return std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no vCPU thread");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `Seccomp_filters` of the first thread named `name` in process `pid`.
fn thread_filters(pid: u32, name: &str) -> Option<u32> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            return field(&status, "Seccomp_filters:")?.parse().ok();
        }
    }
    None
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

#[test]
fn builtin_guest_boots_on_kvm_with_filters_on() {
    if !kvm_available() {
        return;
    }
    for executor in ["sync", "async"] {
        let out = run(&[
            "--executor",
            executor,
            "--vcpus",
            "2",
            "--seccomp-level",
            "2",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{executor}: {err}");
        assert!(!err.contains("seccomp:"), "{executor}: {err}");
    }
}

#[test]
fn a_live_vmm_shows_seccomp_and_no_new_privs_in_its_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = spinning_riscv_kernel(dir.path());
    let mut live = Live::spawn(vm_service().args([
        "run",
        "--arch",
        "riscv64",
        "--net",
        "virtual",
        "--kernel",
        kernel.to_str().expect("utf-8 path"),
    ]));
    let status = live.status_with_vcpu(true);
    assert_eq!(field(&status, "Seccomp:"), Some("2"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
    let pid = live.0.id();
    // Every thread inherits the VMM filter; vCPU and device I/O threads stack theirs.
    let main = thread_filters(pid, "vm-service").expect("main thread");
    let vcpu = thread_filters(pid, "vcpu0").expect("vCPU thread");
    let io = thread_filters(pid, "net-rx").expect("net-rx thread");
    assert!(main > 0 && vcpu > main && io > main, "{main} {vcpu} {io}");

    // --no-seccomp turns the filters off (NoNewPrivs stays).
    let mut off = Live::spawn(vm_service().args([
        "run",
        "--arch",
        "riscv64",
        "--net",
        "none",
        "--no-seccomp",
        "--kernel",
        kernel.to_str().expect("utf-8 path"),
    ]));
    let status = off.status_with_vcpu(false);
    assert_eq!(field(&status, "Seccomp:"), Some("0"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
}

#[test]
fn firecracker_mode_is_filtered_before_and_after_instance_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("api.sock");
    let live = Live::spawn(vm_service().args([
        "firecracker",
        "--api-sock",
        socket.to_str().expect("utf-8 path"),
    ]));
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "no API socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = live.0.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(field(&status, "Seccomp:"), Some("2"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
    // InstanceStart opens the kernel and builds the VM under the VMM filter.
    let kernel = spinning_riscv_kernel(dir.path());
    let boot = format!(
        r#"{{"kernel_image_path": {}}}"#,
        serde_json::to_string(&kernel).expect("json")
    );
    assert!(put(&socket, "/boot-source", &boot).starts_with("HTTP/1.1 204"));
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 65536]).expect("disk");
    let drive = format!(
        r#"{{"drive_id": "rootfs", "path_on_host": {}, "is_root_device": true, "is_read_only": true}}"#,
        serde_json::to_string(&disk).expect("json")
    );
    let answer = put(&socket, "/drives/rootfs", &drive);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let started = put(&socket, "/actions", r#"{"action_type": "InstanceStart"}"#);
    assert!(started.starts_with("HTTP/1.1 204"), "{started}");
    let start = Instant::now();
    while thread_filters(pid, "vcpu0").unwrap_or(0) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no filtered vCPU thread"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(field(&status, "Seccomp:"), Some("2"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
    // The drive's I/O thread stacks its own filter too, once it runs (it
    // may not have yet when the vCPU thread has).
    let main = thread_filters(pid, "vm-service").expect("main thread");
    let start = Instant::now();
    loop {
        let io = thread_filters(pid, "blk-io");
        if io.is_some_and(|io| io > main) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "blk-io {io:?} vs main {main}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut off = vm_service()
        .args(["firecracker", "--no-seccomp", "--api-sock"])
        .arg(dir.path().join("off.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(dir.path().join("off.sock")).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "no API socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", off.id())).expect("status");
    let _ = off.kill();
    let _ = off.wait();
    assert_eq!(field(&status, "Seccomp:"), Some("0"), "{status}");
}

/// One HTTP/1.1 PUT on the Unix socket; the whole answer.
fn put(socket: &Path, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// (probe, extra run flags, thread name in the log line, syscall number)
const PROBES: &[(&str, &[&str], &str, i64)] = &[
    ("main", &[], "vm-service", libc::SYS_execve),
    ("vcpu", &[], "vcpu0", libc::SYS_socket),
    ("vcpu", &["--executor", "async"], "vcpu0", libc::SYS_socket),
    ("io", &[], "net-rx", libc::SYS_socket),
];

#[test]
fn a_forbidden_syscall_in_each_thread_kind_is_logged_at_level_1() {
    if !kvm_available() {
        return;
    }
    for &(probe, extra, thread, nr) in PROBES {
        let out = run(&[&["--seccomp-level", "1", "--seccomp-probe", probe], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(159), "{probe} {extra:?}: {err}");
        let line = format!("vm-service: seccomp: thread {thread} made forbidden syscall {nr}");
        assert!(
            err.contains(&line),
            "{probe} {extra:?}: no {line:?} in:\n{err}"
        );
    }
}

#[test]
fn a_forbidden_syscall_in_each_thread_kind_kills_at_level_2() {
    if !kvm_available() {
        return;
    }
    for &(probe, extra, _, _) in PROBES {
        let out = run(&[&["--seccomp-probe", probe], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{probe} {extra:?}: {:?}\n{err}",
            out.status
        );
    }
}

#[test]
fn uid_and_gid_as_root_leave_no_capabilities() {
    // SAFETY: geteuid only reads this process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: --uid/--gid need root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The dropped user must reach the kernel image.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let kernel = spinning_riscv_kernel(dir.path());
    let mut live = Live::spawn(vm_service().args([
        "run",
        "--arch",
        "riscv64",
        "--net",
        "none",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--kernel",
        kernel.to_str().expect("utf-8 path"),
    ]));
    let status = live.status_with_vcpu(true);
    assert_eq!(
        field(&status, "Uid:"),
        Some("65534\t65534\t65534\t65534"),
        "{status}"
    );
    assert_eq!(
        field(&status, "Gid:"),
        Some("65534\t65534\t65534\t65534"),
        "{status}"
    );
    assert_eq!(field(&status, "Groups:"), Some(""), "{status}");
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(&status, caps), Some("0000000000000000"), "{status}");
    }
    assert_eq!(field(&status, "Seccomp:"), Some("2"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
}

/// The built riscv64 Debian guest's directory, or `None` (printing why), as
/// `tests/debian_guests.rs` does.
fn debian_guest_dir() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("guest/riscv64");
    if dir.join("kernel").is_file() && dir.join("initrd.cpio.gz").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no riscv64 Debian guest in {}: run `cargo xtask guest --arch riscv64`",
            dir.display()
        );
        None
    }
}

/// The drive's data path (virtio-blk on the `blk-io` thread: reads, writes,
/// flushes) under level 1, so a forbidden syscall would name itself. The only
/// Debian boot with a drive: `run` has no `--drive`, so Firecracker mode boots it.
#[test]
fn riscv64_debian_guest_reads_and_writes_a_drive_under_the_filters() {
    let Some(guest) = debian_guest_dir() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    let mut image = b"HELLO-FROM-DISK".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).expect("disk");
    let command = "head -c 15 /dev/vda; echo; \
                   printf WRITTEN | dd of=/dev/vda bs=1 seek=100 conv=notrunc,fsync 2>/dev/null; \
                   exit 0";
    let config = serde_json::json!({
        "boot-source": {
            "kernel_image_path": guest.join("kernel"),
            "initrd_path": guest.join("initrd.cpio.gz"),
            "boot_args": format!(
                "console=ttyS0 reboot=k panic=-1 cryptomgr.notests=1 -- sh -c \"{command}\""
            ),
        },
        "drives": [{
            "drive_id": "data",
            "path_on_host": disk,
            "is_root_device": false,
            "is_read_only": false,
        }],
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
    });
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let child = vm_service()
        .args([
            "firecracker",
            "--seccomp-level",
            "1",
            "--no-api",
            "--config-file",
        ])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A hung guest is killed: a safety net, not a measurement.
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_mins(10));
        // SAFETY: kill with a pid this test spawned; at worst it has exited.
        unsafe { libc::kill(i32::try_from(pid).unwrap_or(i32::MAX), libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait");
    drop(watchdog);
    let console = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}\n{console}");
    assert!(!err.contains("seccomp:"), "{err}");
    assert!(console.contains("HELLO-FROM-DISK"), "{console}");
    assert!(console.contains("VM-GUEST-EXIT status=0"), "{console}");
    let written = std::fs::read(&disk).expect("disk");
    assert_eq!(&written[100..107], b"WRITTEN");
}
