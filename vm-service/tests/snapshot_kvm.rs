//! Snapshot and restore on KVM x86_64 across processes, with the default
//! seccomp filters: the built-in guest (two vCPUs, the second one halted
//! after INIT/SIPI, and a virtio-blk drive whose virtio-mmio registers it
//! reads) is snapshotted mid-run by one `vm-service run`, restored by
//! another, and the two consoles together are exactly the console of an
//! uninterrupted run. Snapshots whose parts do not fit each other (another
//! architecture's configuration, no hypervisor VM state, a drive that
//! changed size or is gone) are refused with their own errors. Needs
//! `/dev/kvm`.

#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vm_service(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vm-service"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vm-service")
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {:?}\n--- console ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Rewrites the state file's JSON body with `edit` (a valid header and CRC).
fn edit_state(from: &Path, to: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(from.join("state.snap")).expect("state file");
    let body = vm_service::snapshot::format::decode(from, &bytes).expect("valid state file");
    let mut json: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
    edit(&mut json);
    std::fs::create_dir_all(to).expect("mkdir");
    let body = serde_json::to_vec(&json).expect("JSON");
    std::fs::write(
        to.join("state.snap"),
        vm_service::snapshot::format::encode(&body),
    )
    .expect("write state");
    std::fs::copy(from.join("memory.snap"), to.join("memory.snap")).expect("copy memory");
}

#[test]
fn the_builtin_guest_restored_in_a_new_process_prints_the_rest_of_an_uninterrupted_run() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let disk = work.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 64 << 10]).expect("disk");
    let snap = work.path().join("snap");
    let guest = [
        "run",
        "--vcpus",
        "2",
        "--memory",
        "64",
        "--drive",
        path(&disk),
    ];

    let whole = vm_service(&guest);
    assert_eq!(
        whole.status.code(),
        Some(0),
        "{}",
        show("uninterrupted", &whole)
    );
    let whole_console = String::from_utf8_lossy(&whole.stdout).into_owned();
    assert!(
        whole_console.contains("device id 2"),
        "the guest reads the drive's virtio-mmio registers: {}",
        show("uninterrupted", &whole)
    );

    let saved = vm_service(
        &[
            &guest[..],
            &[
                "--snapshot-on-output",
                "vCPUs started: ",
                "--snapshot-dir",
                path(&snap),
            ],
        ]
        .concat(),
    );
    let saved_log = show("snapshotting run", &saved);
    assert_eq!(saved.status.code(), Some(0), "{saved_log}");
    assert!(
        String::from_utf8_lossy(&saved.stderr).contains("snapshot written"),
        "{saved_log}"
    );
    let first = String::from_utf8_lossy(&saved.stdout).into_owned();
    assert!(
        !first.contains("requesting shutdown"),
        "stopped before the end: {saved_log}"
    );
    assert_eq!(
        std::fs::metadata(snap.join("memory.snap"))
            .expect("memory file")
            .len(),
        64 << 20,
        "the memory file is the guest's RAM"
    );

    let restored = vm_service(&["run", "--restore", path(&snap)]);
    let restored_log = show("restored run", &restored);
    assert_eq!(restored.status.code(), Some(0), "{restored_log}");
    let rest = String::from_utf8_lossy(&restored.stdout).into_owned();
    assert!(
        !rest.contains(vm_service::guest::BANNER),
        "the restored guest went on, it did not boot again: {restored_log}"
    );
    assert_eq!(
        format!("{first}{rest}"),
        whole_console,
        "{saved_log}\n{restored_log}"
    );

    refuses_mismatched_parts(&snap, work.path());
    refuses_a_changed_or_missing_disk(&snap, &disk);
}

/// The drive is reopened by path: a restore refuses a disk that grew or is gone.
fn refuses_a_changed_or_missing_disk(snap: &Path, disk: &Path) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .expect("disk");
    file.set_len(128 << 10).expect("grow the disk");
    drop(file);
    let out = vm_service(&["run", "--restore", path(snap)]);
    let log = show("grown disk", &out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("has 256 sectors, 128 when the snapshot was taken"),
        "{log}"
    );
    std::fs::remove_file(disk).expect("remove the disk");
    let out = vm_service(&["run", "--restore", path(snap)]);
    let log = show("missing disk", &out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(path(disk)) && err.contains("No such file"),
        "{log}"
    );
}

/// A change to a state file's JSON body.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

/// A KVM x86_64 snapshot whose parts were made not to fit is refused before
/// anything runs, naming what does not fit.
fn refuses_mismatched_parts(snap: &Path, work: &Path) {
    let cases: [(&str, &str, Edit); 3] = [
        (
            "arch",
            "the configuration is for a riscv64 guest, the vCPU states are x86_64 ones",
            Box::new(|j| j["config"]["arch"] = "riscv64".into()),
        ),
        (
            "no-vm-state",
            "without the VM state of the hypervisor",
            Box::new(|j| j["vm"] = serde_json::Value::Null),
        ),
        (
            "no-rtc",
            "the VM has a CMOS RTC, the snapshot has none",
            Box::new(|j| j["devices"]["rtc"] = serde_json::Value::Null),
        ),
    ];
    for (name, message, edit) in cases {
        let dir = work.join(name);
        edit_state(snap, &dir, edit);
        let out = vm_service(&["run", "--restore", path(&dir)]);
        let log = show(name, &out);
        assert_eq!(out.status.code(), Some(1), "{log}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{log}");
        assert!(!err.contains("panicked"), "{log}");
    }
}
