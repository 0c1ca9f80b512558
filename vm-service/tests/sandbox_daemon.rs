//! The daemon's VMM processes confine themselves as the daemon is told
//! (README: "Sandbox"): a daemon started as root with `--uid/--gid` and a
//! seccomp level runs each VM in a process with that uid and gid, no
//! capabilities, `NoNewPrivs` and the filters on.

#![cfg(target_os = "linux")]

mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use daemon_support::{spinning_riscv_vm, Daemon};

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// `/proc/<pid>/status` once the thread `vcpu0` carries more filters than
/// the process's main thread (its own filter is installed).
fn status_once_vcpu_is_filtered(pid: u64) -> String {
    let start = Instant::now();
    loop {
        let filters = |name: &str| -> Option<u32> {
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
        };
        if let (Some(main), Some(vcpu)) = (filters("vm-service"), filters("vcpu0")) {
            if vcpu > main && main > 0 {
                return std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "VMM {pid}: no filtered vCPU thread"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_daemon_runs_each_vmm_unprivileged_and_filtered() {
    // SAFETY: geteuid only reads this process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        test_prerequisites::prerequisite_missing("the daemon needs root to start VMMs as --uid");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The dropped user must reach the kernel image.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = Daemon::start_with(
        dir.path(),
        &["--uid", "65534", "--gid", "65534", "--seccomp-level", "2"],
    )
    .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).expect("status");
    // The daemon itself keeps root (it starts the VMMs) and is not filtered.
    assert_eq!(field(&status, "Seccomp:"), Some("0"), "{status}");
    assert!(
        field(&status, "Uid:").is_some_and(|u| u.starts_with("0\t")),
        "{status}"
    );

    d.expect(
        "PUT",
        "/vms/v",
        Some(&spinning_riscv_vm(&dir.path().join("spin-kernel"))),
        201,
    )
    .await;
    let pid = d.action("v", "start", 200).await["process"]["pid"]
        .as_u64()
        .expect("pid");
    let status = status_once_vcpu_is_filtered(pid);
    assert_eq!(field(&status, "Seccomp:"), Some("2"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
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
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(&status, caps), Some("0000000000000000"), "{status}");
    }
    d.action("v", "stop", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_forwards_no_seccomp_to_its_vmms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start_with(dir.path(), &["--no-seccomp"]).await;
    d.expect(
        "PUT",
        "/vms/v",
        Some(&spinning_riscv_vm(&dir.path().join("spin-kernel"))),
        201,
    )
    .await;
    let pid = d.action("v", "start", 200).await["process"]["pid"]
        .as_u64()
        .expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(field(&status, "Seccomp:"), Some("0"), "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{status}");
    d.action("v", "stop", 200).await;
}
