//! `PUT /vms/{id}/snapshot` on the daemon: refused with 409 while the VM
//! runs; on a paused VM whose engine has no state capture (KVM) it fails
//! with a clear error and writes no file. Skipped, with the reason printed,
//! without /dev/kvm. (The riscv64 interpreter's snapshots are round-tripped
//! across processes in `snapshot.rs`.)

mod daemon_support;

use daemon_support::{spinning_guest, Daemon};
use test_prerequisites::kvm_available;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_needs_a_paused_vm_and_an_engine_with_state_capture() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    d.expect("PUT", "/vms/spin", Some(&spinning_guest(dir.path())), 201)
        .await;
    let state = dir.path().join("vm.state");
    let memory = dir.path().join("vm.mem");
    let body = serde_json::json!({
        "snapshot_path": state,
        "mem_file_path": memory,
    })
    .to_string();

    // Not started, then running: 409 either way.
    let r = d
        .expect("PUT", "/vms/spin/snapshot", Some(&body), 409)
        .await;
    assert!(
        r["fault_message"].as_str().unwrap().contains("pause it"),
        "{r}"
    );
    d.action("spin", "start", 200).await;
    let r = d
        .expect("PUT", "/vms/spin/snapshot", Some(&body), 409)
        .await;
    assert!(
        r["fault_message"].as_str().unwrap().contains("running"),
        "{r}"
    );

    // Unknown fields and snapshot types are the client's mistake.
    d.expect(
        "PUT",
        "/vms/spin/snapshot",
        Some(r#"{"snapshot_path": "a", "mem_file_path": "b", "snapshot_type": "Diff"}"#),
        400,
    )
    .await;
    d.expect(
        "PUT",
        "/vms/spin/snapshot",
        Some(r#"{"snapshot_path": "a", "mem_path": "b"}"#),
        400,
    )
    .await;

    d.action("spin", "pause", 200).await;
    let r = d
        .expect("PUT", "/vms/spin/snapshot", Some(&body), 500)
        .await;
    let message = r["fault_message"].as_str().unwrap();
    assert!(
        message.contains("snapshots are not supported for this engine"),
        "{message}"
    );
    assert!(!state.exists() && !memory.exists(), "no partial snapshot");
    // The VM is still paused and can go on.
    let vm = d.action("spin", "resume", 200).await;
    assert_eq!(vm["state"], "running", "{vm:#}");
    d.action("spin", "stop", 200).await;
}
