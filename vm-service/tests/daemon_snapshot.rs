//! `PUT /vms/{id}/snapshot` on the daemon: refused with 409 while the VM
//! runs; on a paused KVM x86_64 VM it writes both files from the sandboxed
//! VMM process (KVM vCPU and VM state included), and the VM goes on when
//! resumed; a VM created from that snapshot (`PUT /vms/{id}/snapshot/load`)
//! restores it at each start, and bad sources are refused. Skipped, with the reason printed, without /dev/kvm. (Snapshots
//! are round-tripped across processes in `snapshot.rs` for the riscv64
//! interpreter and `snapshot_kvm.rs` for KVM.)

mod daemon_support;

use daemon_support::{exit_count, spinning_guest, Daemon};
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

    // A second VM created from the snapshot: journaled like any create,
    // and each start restores the snapshot in a new VMM process.
    let load = |state: &std::path::Path, memory: &std::path::Path| {
        serde_json::json!({ "snapshot_path": state, "mem_file_path": memory }).to_string()
    };
    let clone = d
        .expect(
            "PUT",
            "/vms/clone/snapshot/load",
            Some(&load(&state, &memory)),
            201,
        )
        .await;
    assert_eq!(clone["state"], "created", "{clone:#}");
    assert_eq!(
        clone["config"]["restore"]["snapshot_path"],
        serde_json::json!(state)
    );
    // A retried load of the same snapshot is the same VM.
    d.expect(
        "PUT",
        "/vms/clone/snapshot/load",
        Some(&load(&state, &memory)),
        200,
    )
    .await;
    d.action("clone", "start", 200).await;
    let running = d
        .wait_for("clone", "restored and running", |v| exit_count(v) > 10)
        .await;
    let kernel = running["process"]["kernel"].as_str().unwrap_or_default();
    assert!(
        kernel.starts_with("snapshot "),
        "built from the snapshot: {kernel}"
    );
    d.action("clone", "stop", 200).await;
    d.action("clone", "start", 200).await;
    d.wait_for("clone", "restored again", |v| exit_count(v) > 10)
        .await;
    d.action("clone", "stop", 200).await;

    // Bad sources are refused at create, naming what is wrong.
    let short = dir.path().join("short.mem");
    std::fs::write(&short, vec![0u8; 4096]).unwrap();
    let garbage = dir.path().join("garbage.state");
    std::fs::write(&garbage, b"definitely not a snapshot").unwrap();
    for (body, word) in [
        (load(std::path::Path::new("rel.state"), &memory), "relative"),
        (load(&garbage, &memory), "not a snapshot state file"),
        (load(&state, &short), "bytes of RAM"),
        (
            load(&dir.path().join("gone.state"), &memory),
            "No such file",
        ),
    ] {
        let r = d
            .expect("PUT", "/vms/bad/snapshot/load", Some(&body), 400)
            .await;
        let message = r["fault_message"].as_str().unwrap();
        assert!(message.contains(word), "{word}: {message}");
    }
    d.expect("GET", "/vms/bad", None, 404).await;
}
