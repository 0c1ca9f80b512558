//! `PUT /snapshot/create` and `PUT /snapshot/load` of the Firecracker mode,
//! with Firecracker's field names and status codes: a running microVM is
//! refused (400) until paused, a full snapshot is written, and a fresh
//! process loads it paused (or resumed with `resume_vm`); bad bodies, a
//! configured process and a corrupt state file are refused with 400 and a
//! `fault_message` saying why. The guest is the spinning riscv64 `Image` of
//! the contract tests (the interpreter runs it on any host).

#![cfg(target_os = "linux")]

use serde_json::json;

mod fc_support;
use fc_support::Fc;

const CREATE: &str = "/snapshot/create";
const LOAD: &str = "/snapshot/load";

#[test]
fn a_paused_microvm_is_snapshotted_and_loaded_by_a_fresh_process() {
    // The snapshot outlives the process (and scratch directory) that wrote it.
    let work = tempfile::tempdir().expect("tempdir");
    let state = work.path().join("vm.state");
    let memory = work.path().join("vm.mem");
    let first = Fc::spawn(&[]);
    let kernel = first.kernel();
    let create = json!({ "snapshot_path": state, "mem_file_path": memory });
    first.refused("PUT", CREATE, Some(&create.to_string()), "before starting");
    first.ok(
        "PUT",
        "/boot-source",
        &json!({ "kernel_image_path": kernel, "boot_args": "console=ttyS0" }),
    );
    first.ok(
        "PUT",
        "/machine-config",
        &json!({ "vcpu_count": 1, "mem_size_mib": 32 }),
    );
    first.ok(
        "PUT",
        "/actions",
        &json!({ "action_type": "InstanceStart" }),
    );
    first.refused("PUT", CREATE, Some(&create.to_string()), "pause it");
    first.ok("PATCH", "/vm", &json!({ "state": "Paused" }));
    let diff = json!({ "snapshot_path": state, "mem_file_path": memory, "snapshot_type": "Diff" });
    first.refused("PUT", CREATE, Some(&diff.to_string()), "Diff");
    first.refused(
        "PUT",
        CREATE,
        Some(r#"{"snapshot_path": "/s"}"#),
        "mem_file_path",
    );
    first.ok("PUT", CREATE, &create);
    assert_eq!(
        std::fs::metadata(&memory).expect("memory file").len(),
        32 << 20
    );
    assert_eq!(first.state(), "Paused", "the microVM stays paused");
    first.ok("PATCH", "/vm", &json!({ "state": "Resumed" }));
    drop(first);

    let load = json!({
        "snapshot_path": state,
        "mem_backend": { "backend_type": "File", "backend_path": memory },
    });
    let second = Fc::spawn(&[]);
    second.refused(
        "PUT",
        LOAD,
        Some(&json!({ "snapshot_path": state }).to_string()),
        "memory source is missing",
    );
    second.refused(
        "PUT",
        LOAD,
        Some(&json!({ "snapshot_path": state, "mem_backend": { "backend_type": "Uffd", "backend_path": "/u" } }).to_string()),
        "Uffd",
    );
    let corrupt = second.path("corrupt.state");
    std::fs::write(&corrupt, b"not a snapshot at all, just some text").expect("write");
    second.refused(
        "PUT",
        LOAD,
        Some(&json!({ "snapshot_path": corrupt, "mem_file_path": memory }).to_string()),
        "not a snapshot state file",
    );
    assert_eq!(
        second.state(),
        "Not started",
        "a refused load leaves it fresh"
    );
    second.ok("PUT", LOAD, &load);
    assert_eq!(second.state(), "Paused", "loaded without resume_vm: paused");
    assert_eq!(second.get("/machine-config")["mem_size_mib"], 32);
    second.refused(
        "PUT",
        "/boot-source",
        Some(&json!({ "kernel_image_path": second.kernel() }).to_string()),
        "after starting",
    );
    second.refused("PUT", LOAD, Some(&load.to_string()), "after starting");
    second.ok("PATCH", "/vm", &json!({ "state": "Resumed" }));
    assert_eq!(second.state(), "Running");
    drop(second);

    let resumed = Fc::spawn(&[]);
    let mut with_resume = load.clone();
    with_resume["resume_vm"] = true.into();
    resumed.ok("PUT", LOAD, &with_resume);
    assert_eq!(resumed.state(), "Running");

    let configured = Fc::spawn(&[]);
    configured.ok(
        "PUT",
        "/machine-config",
        &json!({ "vcpu_count": 1, "mem_size_mib": 64 }),
    );
    configured.refused("PUT", LOAD, Some(&load.to_string()), "fresh microVM");
}
