//! Snapshot and restore on KVM x86_64 across processes, with the default
//! seccomp filters: the built-in guest (two vCPUs, the second one halted
//! after INIT/SIPI, and a virtio-blk drive whose virtio-mmio registers it
//! reads) and a tiny guest that counts ticks of the in-kernel PIT are
//! snapshotted mid-run by one `vm-service run`, restored by another, and the
//! two consoles together are exactly the console of an uninterrupted run. Snapshots whose parts do not fit each other (another
//! architecture's configuration, no hypervisor VM state, a drive that
//! changed size or is gone) are refused with their own errors. Needs
//! `/dev/kvm`.

#![cfg(target_os = "linux")]

mod daemon_support;

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

/// Programs PIT channel 0 (mode 2, reload 65536), counts its wrap-arounds by
/// latching and reading the counter, prints `T1 ` ... `T9 ` on COM1, then
/// asks for a reset through the i8042. Source (GNU as, Intel syntax):
///
/// ```text
///         mov al, 0x34; out 0x43, al; xor eax, eax; out 0x40, al; out 0x40, al
///         mov ebx, 0xffff; xor ecx, ecx; mov edx, 0x3f8
/// 1:      xor eax, eax; out 0x43, al              # latch channel 0
///         in al, 0x40; movzx esi, al; in al, 0x40; movzx eax, al
///         shl eax, 8; or esi, eax                 # esi = count
///         cmp esi, ebx; mov ebx, esi; jbe 1b      # no wrap-around yet
///         inc ecx; mov al, 'T'; out dx, al; lea eax, [rcx + '0']; out dx, al
///         mov al, ' '; out dx, al; cmp ecx, 9; jb 1b
///         mov al, '\n'; out dx, al; mov al, 0xfe; out 0x64, al
/// 2:      hlt; jmp 2b
/// ```
const PIT_TICKS: [u8; 74] = [
    0xb0, 0x34, 0xe6, 0x43, 0x31, 0xc0, 0xe6, 0x40, 0xe6, 0x40, 0xbb, 0xff, 0xff, 0x00, 0x00, 0x31,
    0xc9, 0xba, 0xf8, 0x03, 0x00, 0x00, 0x31, 0xc0, 0xe6, 0x43, 0xe4, 0x40, 0x0f, 0xb6, 0xf0, 0xe4,
    0x40, 0x0f, 0xb6, 0xc0, 0xc1, 0xe0, 0x08, 0x09, 0xc6, 0x39, 0xde, 0x89, 0xf3, 0x76, 0xe7, 0xff,
    0xc1, 0xb0, 0x54, 0xee, 0x8d, 0x41, 0x30, 0xee, 0xb0, 0x20, 0xee, 0x83, 0xf9, 0x09, 0x72, 0xd6,
    0xb0, 0x0a, 0xee, 0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd,
];

#[test]
fn a_guest_counting_pit_ticks_goes_on_counting_after_a_restore() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let kernel = work.path().join("ticks.elf");
    std::fs::write(&kernel, daemon_support::elf_image(&PIT_TICKS)).expect("kernel");
    let snap = work.path().join("snap");
    let guest = ["run", "--memory", "32", "--kernel", path(&kernel)];
    let whole = vm_service(&guest);
    assert_eq!(
        whole.status.code(),
        Some(0),
        "{}",
        show("uninterrupted", &whole)
    );
    let whole_console = String::from_utf8_lossy(&whole.stdout).into_owned();
    assert_eq!(whole_console, "T1 T2 T3 T4 T5 T6 T7 T8 T9 \n");

    let saved = vm_service(
        &[
            &guest[..],
            &["--snapshot-on-output", "T3 ", "--snapshot-dir", path(&snap)],
        ]
        .concat(),
    );
    let saved_log = show("snapshotting run", &saved);
    assert_eq!(saved.status.code(), Some(0), "{saved_log}");
    let first = String::from_utf8_lossy(&saved.stdout).into_owned();
    assert_eq!(
        first, "T1 T2 T3 ",
        "paused at the exit that printed it: {saved_log}"
    );

    // The count goes on from the saved registers (T4, not T1) with the
    // restored PIT still counting.
    let restored = vm_service(&["run", "--restore", path(&snap)]);
    let restored_log = show("restored run", &restored);
    assert_eq!(restored.status.code(), Some(0), "{restored_log}");
    let rest = String::from_utf8_lossy(&restored.stdout).into_owned();
    assert_eq!(format!("{first}{rest}"), whole_console, "{restored_log}");
}
