//! A VMM process inherits its control socket and stdio, nothing else: not
//! an fd the daemon itself inherited without close-on-exec.

mod daemon_support;

use std::os::fd::AsRawFd;

use daemon_support::{spinning_guest, Daemon};
use test_prerequisites::kvm_available;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmm_processes_inherit_only_their_control_socket_and_stdio() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("inherited-marker");
    let file = std::fs::File::create(&marker).unwrap();
    // Clears close-on-exec so the daemon inherits it.
    // SAFETY: F_SETFD on an fd this test owns.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0) };
    assert_eq!(rc, 0);
    let d = Daemon::start(dir.path()).await;
    let daemon_fds = std::fs::read_dir(format!("/proc/{}/fd", d.child.id()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| *target == marker)
        .count();
    assert_eq!(daemon_fds, 1, "the daemon did not inherit the marker fd");
    d.expect("PUT", "/vms/v", Some(&spinning_guest(dir.path())), 201)
        .await;
    let pid = d.action("v", "start", 200).await["process"]["pid"]
        .as_u64()
        .unwrap();
    let leaked: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| Some((e.file_name(), std::fs::read_link(e.path()).ok()?)))
        .filter(|(_, target)| *target == marker || target.to_string_lossy().contains("api.sock"))
        .collect();
    assert!(leaked.is_empty(), "VMM process {pid} inherited {leaked:?}");
    d.action("v", "stop", 200).await;
    drop(file);
}
