//! Clients that give up: every operation completes as one unit (decision,
//! journal append, change in memory) whether or not its client waits for the
//! answer, and a retry is harmless. The journal's appends are slowed down by
//! fault injection so that the clients hang up while an append is running.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::{live_children, spinning_guest, Daemon};
use test_prerequisites::kvm_available;
use vm_service::daemon::journal::APPEND_DELAY_ENV;

const SLOW_SYNC: &[(&str, &str)] = &[(APPEND_DELAY_ENV, "1500")];
const HANG_UP: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_ups_mid_create_stop_delete_leave_memory_and_journal_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_env(dir.path(), &[], SLOW_SYNC).await;

    // Create: the client hangs up while the Created event is being synced.
    d.hang_up("PUT", "/vms/a", "{}", HANG_UP).await;
    let vm = d.wait_status("/vms/a", 200).await;
    let vm: serde_json::Value = vm.json().unwrap();
    assert_eq!(vm["state"], "created", "{vm:#}");
    // The retry of the same create is answered with the VM, and journals nothing.
    let again = d.expect("PUT", "/vms/a", Some("{}"), 200).await;
    assert_eq!(again["journal_sequence"], 1, "{again:#}");
    // Another config under the same id is a conflict.
    let other = r#"{"machine-config": {"vcpu_count": 2}}"#;
    d.expect("PUT", "/vms/a", Some(other), 409).await;

    // An action: the client hangs up while Stopped is being synced.
    d.hang_up(
        "PUT",
        "/vms/a/actions",
        r#"{"action_type":"stop"}"#,
        HANG_UP,
    )
    .await;
    d.wait_for("a", "stopped", |v| v["state"] == "stopped")
        .await;
    // Memory and journal agree: the next action appends the next sequence.
    let deleted_after = d.expect("GET", "/vms/a", None, 200).await;
    assert_eq!(deleted_after["journal_sequence"], 2, "{deleted_after:#}");

    // Delete: the client hangs up while Deleted is being synced.
    d.hang_up("DELETE", "/vms/a", "", HANG_UP).await;
    d.wait_status("/vms/a", 404).await;
    // Recreated under the same id: the stream continues.
    d.expect("PUT", "/vms/a", Some(other), 201).await;
    d.hang_up("PUT", "/vms/b", "{}", HANG_UP).await;
    d.wait_status("/vms/b", 200).await;

    // The journal replays: the daemon starts again and sees the same VMs.
    d.kill9();
    drop(d);
    let d = Daemon::start(dir.path()).await;
    let a = d.expect("GET", "/vms/a", None, 200).await;
    assert_eq!(a["config"]["vcpus"], 2, "{a:#}");
    assert_eq!(a["journal_sequence"], 4, "{a:#}");
    assert_eq!(
        d.expect("GET", "/vms/b", None, 200).await["state"],
        "created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_racing_a_delete_is_404_not_500() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_env(dir.path(), &[], SLOW_SYNC).await;
    d.expect("PUT", "/vms/gone", Some("{}"), 201).await;
    let delete = {
        let client = d.client.clone();
        tokio::spawn(async move { client.request("DELETE", "/vms/gone", None).await })
    };
    // The stop arrives while the delete holds the VM (its append is slow).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = d
        .req(
            "PUT",
            "/vms/gone/actions",
            Some(r#"{"action_type":"stop"}"#),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("vm_not_found"), "{}", r.text());
    assert_eq!(delete.await.unwrap().unwrap().status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_mid_start_leaves_a_running_vm_and_no_stray_process() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_env(dir.path(), &[], SLOW_SYNC).await;
    let daemon_pid = d.child.id();
    d.expect("PUT", "/vms/s", Some(&spinning_guest(dir.path())), 201)
        .await;
    // Hang up during the boot (or the Started append after it).
    d.hang_up(
        "PUT",
        "/vms/s/actions",
        r#"{"action_type":"start"}"#,
        HANG_UP,
    )
    .await;
    let vm = d
        .wait_for("s", "running", |v| v["state"] == "running")
        .await;
    let pid = vm["process"]["pid"].as_u64().unwrap() as u32;
    assert_eq!(live_children(daemon_pid), vec![pid]);
    // The VM answers actions normally (memory and journal in step).
    d.hang_up(
        "PUT",
        "/vms/s/actions",
        r#"{"action_type":"pause"}"#,
        HANG_UP,
    )
    .await;
    d.wait_for("s", "paused", |v| v["state"] == "paused").await;
    assert_eq!(d.action("s", "resume", 200).await["state"], "running");
    assert_eq!(d.action("s", "stop", 200).await["state"], "stopped");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live_children(daemon_pid).is_empty() {
        assert!(Instant::now() < deadline, "VMM process outlived its stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_vm_delays_neither_creates_nor_other_deletes() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &["--grace-period", "3"]).await;
    d.expect("PUT", "/vms/stuck", Some(&spinning_guest(dir.path())), 201)
        .await;
    d.expect("PUT", "/vms/idle", Some("{}"), 201).await;
    let pid = d.action("stuck", "start", 200).await["process"]["pid"]
        .as_u64()
        .unwrap() as i32;
    // SAFETY: kill(2) on the VMM process the daemon reported.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let stop = {
        let client = d.client.clone();
        tokio::spawn(async move {
            let r = client
                .request(
                    "PUT",
                    "/vms/stuck/actions",
                    Some(br#"{"action_type":"stop"}"#),
                )
                .await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A delete waiting for the stuck VM...
    let delete = {
        let client = d.client.clone();
        tokio::spawn(async move { client.request("DELETE", "/vms/stuck", None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...holds up neither a create nor the delete of another VM.
    let quick = Instant::now();
    d.expect("PUT", "/vms/new", Some("{}"), 201).await;
    d.expect("DELETE", "/vms/idle", None, 204).await;
    assert!(
        quick.elapsed() < Duration::from_secs(1),
        "create and delete took {:?} behind a stuck VM",
        quick.elapsed()
    );
    let (r, took) = stop.await.unwrap();
    assert_eq!(r.unwrap().status, 200);
    // Killed after one grace period, not two.
    assert!(took < Duration::from_millis(4500), "stop took {took:?}");
    assert!(took >= Duration::from_secs(3), "stop took {took:?}");
    assert_eq!(delete.await.unwrap().unwrap().status, 204);
}
