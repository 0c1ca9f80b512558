//! The jail (README: "Sandbox", "The jail"): `vm-service jailer` runs the
//! built-in guest on KVM inside a jail; a daemon with `--jail-dir` runs each
//! VM in a process whose root holds only that VM's files, in a network
//! namespace of its own and in cgroups limiting its memory and CPU; bad jail
//! configurations are refused, naming what is wrong.

#![cfg(target_os = "linux")]

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use daemon_support::{spinning_riscv_vm, Daemon};

const BIN: &str = env!("CARGO_BIN_EXE_vm-service");

fn is_root() -> bool {
    // SAFETY: geteuid only reads this process's credentials.
    unsafe { libc::geteuid() == 0 }
}

fn jailer(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("jailer")
        .args(args)
        .output()
        .expect("run vm-service jailer")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every path below `root` (relative), not following symlinks.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("list the jail").flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bad_jail_configurations_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().unwrap();
    let ok = ["--uid", "65534", "--gid", "65534"];
    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec!["--id", "j1", "--exec-file", "/nonexistent/vm-service"],
            "/nonexistent/vm-service",
        ),
        (vec!["--id", "j1", "--exec-file", "vm-service"], "absolute"),
        (vec!["--id", "a/b", "--exec-file", BIN], "a/b"),
        (vec!["--id", "..", "--exec-file", BIN], "`..`"),
        (
            vec![
                "--id",
                "j1",
                "--exec-file",
                BIN,
                "--chroot-base-dir",
                "jails",
            ],
            "jails",
        ),
        (
            vec![
                "--id",
                "j1",
                "--exec-file",
                BIN,
                "--chroot-base-dir",
                base,
                "--cgroup",
                "gpu.max=1",
            ],
            "unknown cgroup V1 controller `gpu`",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args;
        args.extend(ok);
        args.extend(["--", "run"]);
        let out = jailer(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: expected {expected:?} in: {}",
            stderr(&out)
        );
    }
    // Nothing was created for the refused jails.
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn a_jailed_vmm_boots_the_builtin_guest_on_kvm() {
    if !is_root() {
        test_prerequisites::prerequisite_missing("the jailer needs root");
        return;
    }
    if !test_prerequisites::kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("jail-test-{}", std::process::id());
    let parent = format!("vm-service-test-{}", std::process::id());
    let out = jailer(&[
        "--id",
        &id,
        "--exec-file",
        BIN,
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--chroot-base-dir",
        dir.path().to_str().unwrap(),
        "--cgroup",
        "cpu.cfs_quota_us=150000",
        "--parent-cgroup",
        &parent,
        "--",
        "run",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The cgroup is left for its owner to remove, as Firecracker's jailer does.
    let cgroup = Path::new("/sys/fs/cgroup/cpu").join(&parent).join(&id);
    let quota = std::fs::read_to_string(cgroup.join("cpu.cfs_quota_us"));
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(cgroup.parent().unwrap());
    assert!(out.status.success(), "{}\n{stdout}", stderr(&out));
    assert!(
        stdout.contains("guest: requesting shutdown"),
        "{stdout}\n{}",
        stderr(&out)
    );
    assert_eq!(quota.expect("the jail's cpu cgroup").trim(), "150000");
    // The root holds the mount points only (the mounts were the process's):
    // here, `dev/` for the tmpfs with its device nodes.
    let root = dir.path().join("vm-service").join(&id).join("root");
    assert_eq!(tree(&root), [PathBuf::from("dev")]);
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// The cgroup directory of `pid` in the v1 hierarchy of `controller` or, when
/// it is not there, in the v2 hierarchy.
fn cgroup_dir(pid: u64, controller: &str) -> (PathBuf, bool) {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let v1 = Path::new("/sys/fs/cgroup").join(controller);
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if ctrls.split(',').any(|c| c == controller) {
            return (v1.join(path.trim_start_matches('/')), true);
        }
    }
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|m| Path::new(m).join("cgroup.controllers").exists())
        .expect("a cgroup v2 mount");
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("v2 line");
    (Path::new(unified).join(path.trim_start_matches('/')), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jailed_daemon_vm_sees_only_its_files_and_has_its_limits() {
    if !is_root() {
        test_prerequisites::prerequisite_missing("the daemon needs root to jail its VMMs");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let jails = dir.path().join("jails");
    let d = Daemon::start_jailed(dir.path()).await;
    let kernel = dir.path().join("spin-kernel");
    d.expect("PUT", "/vms/v", Some(&spinning_riscv_vm(&kernel)), 201)
        .await;
    let pid = d.action("v", "start", 200).await["process"]["pid"]
        .as_u64()
        .expect("pid");

    // Its root: the kernel at its host path, /dev/kvm and /dev/net/tun.
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let seen = tree(&root);
    let mut expected: Vec<PathBuf> = kernel
        .ancestors()
        .filter(|a| *a != Path::new("/"))
        .map(|a| a.strip_prefix("/").unwrap().to_path_buf())
        .collect();
    expected.push("dev".into());
    for node in ["kvm", "net", "net/tun"] {
        if Path::new("/dev").join(node).exists() {
            expected.push(Path::new("dev").join(node));
        }
    }
    expected.sort();
    assert_eq!(seen, expected);
    assert!(!root.join("etc/shadow").exists());
    assert!(std::fs::read(root.join(kernel.strip_prefix("/").unwrap())).is_ok());
    // Its own network namespace (no TAP NIC), with the host's still ours.
    let ns = |p: &str| std::fs::read_link(p).expect("netns link");
    assert_ne!(ns(&format!("/proc/{pid}/ns/net")), ns("/proc/self/ns/net"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(field(&status, "Uid:"), Some("65534\t65534\t65534\t65534"));
    assert_eq!(field(&status, "CapEff:"), Some("0000000000000000"));

    // Its cgroups: 32 MiB of guest memory plus the VMM's 256, 2 CPUs' worth.
    let (memory, v1) = cgroup_dir(pid, "memory");
    assert!(memory.ends_with("vm-service/v"), "{}", memory.display());
    let limit = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        read(memory.join(limit)).trim(),
        ((32 + 256) << 20).to_string()
    );
    let (cpu, v1) = cgroup_dir(pid, "cpu");
    if v1 {
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")).trim(), "200000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")).trim(), "100000");
    } else {
        assert_eq!(read(cpu.join("cpu.max")).trim(), "200000 100000");
    }

    // Stopped, its jail and cgroups are gone.
    d.action("v", "stop", 200).await;
    d.wait_for("v", "stopped", |vm| vm["state"] == "stopped")
        .await;
    let jail = jails.join("vm-service").join("v");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while jail.exists() || memory.exists() || cpu.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "jail {} or cgroups {} {} left behind",
            jail.display(),
            memory.display(),
            cpu.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A VM whose files cannot be placed in a jail does not start, and says why.
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let dotted = dir.path().join("sub/../spin-kernel");
    let body = spinning_riscv_vm(&dotted);
    d.expect("PUT", "/vms/r", Some(&body), 201).await;
    let r = d
        .req("PUT", "/vms/r/actions", Some(r#"{"action_type":"start"}"#))
        .await;
    assert!(
        r.text().contains("must be an absolute path without `..`"),
        "{} {}",
        r.status,
        r.text()
    );
    assert!(!jails.join("vm-service").join("r").exists());
}
