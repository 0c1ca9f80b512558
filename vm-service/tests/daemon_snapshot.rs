//! `PUT /vms/{id}/snapshot` on the daemon: refused with 409 while the VM
//! runs; on a paused KVM x86_64 VM it writes both files from the sandboxed
//! VMM process (KVM vCPU and VM state included), and the VM goes on when
//! resumed. Skipped, with the reason printed, without /dev/kvm. (Snapshots
//! are round-tripped across processes in `snapshot.rs` for the riscv64
//! interpreter and `snapshot_kvm.rs` for KVM.)

mod daemon_support;

use daemon_support::{spinning_guest, Daemon};
use test_prerequisites::kvm_available;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_needs_a_paused_vm_and_saves_the_kvm_state() {
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
    let vm = d
        .expect("PUT", "/vms/spin/snapshot", Some(&body), 200)
        .await;
    assert_eq!(vm["state"], "paused", "{vm:#}");
    assert_eq!(std::fs::metadata(&memory).unwrap().len(), 32 << 20);
    let saved = vm_service::snapshot::VmState::read(&state).expect("a valid state file");
    assert!(
        matches!(saved.vcpus[..], [vm_accel::VcpuState::X86_64Kvm(_)]),
        "{:?}",
        saved.vcpus
    );
    assert!(saved.vm.is_some() && saved.devices.rtc.is_some());
    // The VM is still paused and can go on.
    let vm = d.action("spin", "resume", 200).await;
    assert_eq!(vm["state"], "running", "{vm:#}");
    d.action("spin", "stop", 200).await;
}
