//! The daemon drives real guests on KVM through its API: the built-in guest
//! (boots, prints, resets), a spinning guest (pause/resume/stop,
//! ctrl-alt-del), restart after stop, delete and re-create, 20 concurrent
//! clients, graceful SIGTERM. Skipped, with the reason printed, without /dev/kvm.

mod daemon_support;

use std::time::Duration;

use daemon_support::{exit_count, spinning_guest, Daemon};
use test_prerequisites::kvm_available;
use vm_service::guest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_guest_create_start_restart_delete() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let vm = d
        .expect(
            "PUT",
            "/vms/web-1",
            Some(r#"{"machine-config": {"vcpu_count": 2, "mem_size_mib": 64}}"#),
            201,
        )
        .await;
    assert_eq!(vm["state"], "created");
    assert_eq!(vm["spec"]["machine-config"]["vcpu_count"], 2);
    for boot in 1..=2 {
        let vm = d.action("web-1", "start", 200).await;
        assert!(
            matches!(vm["state"].as_str(), Some("running" | "stopped")),
            "{vm:#}"
        );
        let vm = d
            .wait_for("web-1", "stopped", |v| v["state"] == "stopped")
            .await;
        assert_eq!(vm["stop_reason"], "guest requested a reset", "{vm:#}");
        assert_eq!(vm["last_exit"]["kind"], "guest_reset");
        assert_eq!(vm["last_exit"]["status"], "exit status 0");
        let tail = vm["serial_tail"].as_str().unwrap();
        assert!(tail.contains(guest::BANNER), "boot {boot}: {tail}");
        assert!(
            tail.contains("memory: 64 MiB") && tail.contains("vCPUs: 2"),
            "{tail}"
        );
    }
    // The serial stream of a stopped VM is its tail, then the end.
    let r = d.req("GET", "/vms/web-1/serial", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(guest::BANNER));
    // Five journaled events: created, started, stopped, started, stopped.
    let vm = d.expect("GET", "/vms/web-1", None, 200).await;
    assert_eq!(vm["journal_sequence"], 5);
    d.expect("DELETE", "/vms/web-1", None, 204).await;
    d.expect("GET", "/vms/web-1", None, 404).await;
    // The id can be used again; its journal stream continues.
    let vm = d.expect("PUT", "/vms/web-1", Some("{}"), 201).await;
    assert_eq!(vm["journal_sequence"], 7);
    let metrics = d.req("GET", "/metrics", None).await.text();
    assert!(metrics.contains("vm_service_vm_boots_total 2"), "{metrics}");
    assert!(
        metrics.contains("vm_service_vms{state=\"created\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guest_pause_resume_stop_and_ctrl_alt_del() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    d.expect("PUT", "/vms/spin", Some(&spinning_guest(dir.path())), 201)
        .await;
    d.action("spin", "pause", 409).await; // not running yet
    let vm = d.action("spin", "start", 200).await;
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["process"]["engine"], "KVM");
    let pid = vm["process"]["pid"].as_u64().unwrap();
    d.action("spin", "start", 409).await; // already running
    d.action("spin", "resume", 409).await;
    d.expect("DELETE", "/vms/spin", None, 409).await;
    d.wait_for("spin", "exited to the VMM", |v| exit_count(v) > 50)
        .await;

    let vm = d.action("spin", "pause", 200).await;
    assert_eq!(vm["state"], "paused");
    let frozen = d.expect("GET", "/vms/spin", None, 200).await["vcpu_exit_counts"].clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = d.expect("GET", "/vms/spin", None, 200).await;
    assert_eq!(
        later["vcpu_exit_counts"], frozen,
        "a paused guest does not run"
    );
    d.action("spin", "pause", 409).await;

    assert_eq!(d.action("spin", "resume", 200).await["state"], "running");
    let before = frozen[0].as_u64().unwrap();
    d.wait_for("spin", "resumed", |v| exit_count(v) > before)
        .await;
    let vm = d.action("spin", "stop", 200).await;
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["stop_reason"], "stopped on request");
    assert_eq!(vm["last_exit"]["status"], "exit status 0");
    // The VMM process was reaped.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    d.action("spin", "stop", 409).await;

    // Started again from its kept config, then Ctrl-Alt-Del.
    d.action("spin", "start", 200).await;
    let vm = d.action("spin", "ctrl-alt-del", 200).await;
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["stop_reason"], "ctrl-alt-del");
    // Firecracker's action names work too.
    d.action("spin", "InstanceStart", 200).await;
    let vm = d.action("spin", "SendCtrlAltDel", 200).await;
    assert_eq!(vm["stop_reason"], "ctrl-alt-del");
    assert_eq!(vm["last_exit"]["kind"], "ctrl_alt_del");
    // The journal keeps the reason, so a restarted daemon says the same.
    drop(d);
    let d = Daemon::start(dir.path()).await;
    let vm = d.expect("GET", "/vms/spin", None, 200).await;
    assert_eq!(vm["stop_reason"], "ctrl-alt-del", "{vm:#}");
    d.expect("DELETE", "/vms/spin", None, 204).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_clients() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = std::sync::Arc::new(Daemon::start(dir.path()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i}");
            let path = format!("/vms/{id}");
            d.expect(
                "PUT",
                &path,
                Some(r#"{"machine-config": {"mem_size_mib": 32}}"#),
                201,
            )
            .await;
            for _ in 0..10 {
                let vm = d.expect("GET", &path, None, 200).await;
                assert_eq!(vm["id"], id.as_str());
                d.expect("GET", "/vms", None, 200).await;
            }
            d.action(&id, "start", 200).await;
            let vm = d
                .wait_for(&id, "stopped", |v| v["state"] == "stopped")
                .await;
            assert!(vm["serial_tail"].as_str().unwrap().contains(guest::BANNER));
            d.expect("DELETE", &path, None, 204).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        d.expect("GET", "/vms", None, 200).await,
        serde_json::json!([])
    );
    let metrics = d.req("GET", "/metrics", None).await.text();
    assert!(
        metrics.contains("vm_service_vm_boots_total 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vm_service_api_responses_total{class=\"4xx\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_guests_journals_and_removes_the_socket() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path()).await;
    d.expect("PUT", "/vms/spin", Some(&spinning_guest(dir.path())), 201)
        .await;
    let pid = d.action("spin", "start", 200).await["process"]["pid"]
        .as_u64()
        .unwrap();
    d.expect("PUT", "/vms/idle", Some("{}"), 201).await;
    let status = d.sigterm();
    assert!(status.success(), "{status}");
    assert!(!d.sock.exists(), "the socket is removed");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The journal itself: every change of both VMs, in order.
    let journal = vm_core::open_store(&d.state_dir.join("journal.v2")).unwrap();
    let kinds = |id: &str| -> Vec<vm_core::EventKind> {
        let id = vm_core::VmId::new(id).unwrap();
        journal
            .read_stream(&id, 1)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    };
    let spin = kinds("spin");
    assert_eq!(spin.len(), 3, "{spin:?}");
    assert!(matches!(spin[0], vm_core::EventKind::Created { .. }));
    assert_eq!(spin[1], vm_core::EventKind::Started);
    assert_eq!(
        spin[2],
        vm_core::EventKind::Stopped {
            reason: vm_core::StopReason::HostShutdown
        }
    );
    assert_eq!(kinds("idle").len(), 1);
    drop(journal);
    drop(d);
    let d = Daemon::start(dir.path()).await;
    let vm = d.expect("GET", "/vms/spin", None, 200).await;
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["stop_reason"], "daemon shut down");
    assert_eq!(
        d.expect("GET", "/vms/idle", None, 200).await["state"],
        "created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_vmm_process_is_reaped_and_recorded_and_others_keep_running() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let spin = spinning_guest(dir.path());
    d.expect("PUT", "/vms/victim", Some(&spin), 201).await;
    d.expect("PUT", "/vms/bystander", Some(&spin), 201).await;
    let pid = d.action("victim", "start", 200).await["process"]["pid"]
        .as_u64()
        .unwrap();
    d.action("bystander", "start", 200).await;
    // SAFETY: kill(2) on the VMM process the daemon reported.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let vm = d
        .wait_for("victim", "failed", |v| v["state"] == "failed")
        .await;
    assert_eq!(vm["last_exit"]["status"], "killed by signal 9", "{vm:#}");
    assert!(
        vm["error"].as_str().unwrap().contains("without reporting"),
        "{vm:#}"
    );
    assert_eq!(vm["last_exit"]["kind"], serde_json::Value::Null);
    // The other VM and the daemon are unaffected; the failed VM boots again.
    let other = d.expect("GET", "/vms/bystander", None, 200).await;
    assert_eq!(other["state"], "running");
    assert_eq!(d.action("victim", "start", 200).await["state"], "running");
    d.action("victim", "stop", 200).await;
    d.action("bystander", "stop", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_failures_are_422_and_leave_the_vm_failed() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    // Not a kernel: the VMM process reports why and exits.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"this is not a kernel image").unwrap();
    let body = format!(
        r#"{{"boot-source": {{"kernel_image_path": {}}}}}"#,
        serde_json::to_string(&junk).unwrap()
    );
    d.expect("PUT", "/vms/junk", Some(&body), 201).await;
    let r = d
        .req(
            "PUT",
            "/vms/junk/actions",
            Some(r#"{"action_type":"start"}"#),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let e: vm_service::api::error::ErrorBody = r.json().unwrap();
    assert_eq!(e.code, "boot_failed");
    assert!(e.fault_message.contains("junk"), "{}", e.fault_message);
    let vm = d.expect("GET", "/vms/junk", None, 200).await;
    assert_eq!(vm["state"], "failed");
    assert!(vm["error"].as_str().is_some());
    // The config is kept: a failed VM can be started again (and fails again).
    let r = d
        .req(
            "PUT",
            "/vms/junk/actions",
            Some(r#"{"action_type":"start"}"#),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let metrics = d.req("GET", "/metrics", None).await.text();
    assert!(
        metrics.contains("vm_service_vm_boot_failures_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmm_process_that_ignores_stop_is_killed_after_the_grace_period() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &["--grace-period", "0.5"]).await;
    d.expect("PUT", "/vms/frozen", Some(&spinning_guest(dir.path())), 201)
        .await;
    let pid = d.action("frozen", "start", 200).await["process"]["pid"]
        .as_u64()
        .unwrap() as i32;
    // A VMM process that cannot answer: stopped by SIGSTOP.
    // SAFETY: kill(2) on the VMM process the daemon reported.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let vm = d.action("frozen", "stop", 200).await;
    assert_eq!(vm["last_exit"]["status"], "killed by signal 9", "{vm:#}");
    assert_eq!(vm["state"], "stopped", "{vm:#}");
    assert_eq!(vm["stop_reason"], "killed after the 500ms grace period");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(d.action("frozen", "start", 200).await["state"], "running");
    d.action("frozen", "stop", 200).await;
}

/// Member sockets of switch `name` in the daemon's switch directory.
fn switch_members(d: &Daemon, name: &str) -> usize {
    std::fs::read_dir(d.state_dir.join("switches").join(name)).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_nics_of_two_vms_join_one_segment() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let body = spinning_guest(dir.path());
    for (id, mac) in [
        ("left", "02:00:00:00:00:01"),
        ("right", "02:00:00:00:00:02"),
    ] {
        let nic = format!(
            r#", "network-interfaces": [{{"iface_id": "eth0", "switch": "lan", "guest_mac": "{mac}"}}]}}"#
        );
        let with_nic = format!("{}{nic}", body.strip_suffix('}').unwrap());
        d.expect("PUT", &format!("/vms/{id}"), Some(&with_nic), 201)
            .await;
        let vm = d.action(id, "start", 200).await;
        assert_eq!(vm["state"], "running", "{vm:#}");
    }
    // Each VM process is a member of the one segment `lan` under the state directory.
    assert_eq!(switch_members(&d, "lan"), 2);
    for id in ["left", "right"] {
        d.action(id, "stop", 200).await;
        d.wait_for(id, "stopped", |v| v["state"] == "stopped").await;
    }
    assert_eq!(switch_members(&d, "lan"), 0, "members leave with their VMs");
}
