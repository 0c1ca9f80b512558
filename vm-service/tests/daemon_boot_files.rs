//! Kernels and initrds are opened once and checked as opened (a regular
//! file no larger than guest memory), at create and again at every start:
//! a path swapped after create for a device, a FIFO or a huge sparse file
//! fails the boot at once instead of reading forever, hanging or eating
//! memory. Configs that can never boot are refused at create. No KVM needed:
//! the files are checked before any engine is chosen.

mod daemon_support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_support::{elf_image, Daemon};
use vm_service::api::error::ErrorBody;

fn spec(kernel: &Path) -> String {
    format!(
        r#"{{"boot-source": {{"kernel_image_path": {}}}, "machine-config": {{"mem_size_mib": 32}}}}"#,
        serde_json::to_string(kernel).unwrap()
    )
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Replaces `path` by a device, a FIFO or a 2 GiB sparse file.
fn swap(path: &Path, kind: &str) {
    std::fs::remove_file(path).unwrap();
    match kind {
        "device" => symlink("/dev/zero", path).unwrap(),
        "fifo" => mkfifo(path),
        "huge" => std::fs::File::create(path)
            .unwrap()
            .set_len(2 << 30)
            .unwrap(),
        other => unreachable!("{other}"),
    }
}

const SWAPS: [(&str, &str); 3] = [
    ("device", "not a regular file (a device)"),
    ("fifo", "not a regular file (a FIFO)"),
    (
        "huge",
        "2147483648 bytes, more than the 33554432 bytes of guest memory",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_swapped_after_create_fail_the_boot_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path()).await;
    for (kind, reason) in SWAPS {
        let kernel = dir.path().join(format!("{kind}.elf"));
        std::fs::write(&kernel, elf_image(&[0xf4])).unwrap();
        d.expect("PUT", &format!("/vms/{kind}"), Some(&spec(&kernel)), 201)
            .await;
        swap(&kernel, kind);
        let started = Instant::now();
        let r = d
            .req(
                "PUT",
                &format!("/vms/{kind}/actions"),
                Some(r#"{"action_type":"start"}"#),
            )
            .await;
        assert_eq!(r.status, 422, "{kind}: {}", r.text());
        let e: ErrorBody = r.json().unwrap();
        assert_eq!(e.code, "boot_failed", "{kind}");
        assert!(
            e.fault_message.contains(reason),
            "{kind}: {}",
            e.fault_message
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{kind}: start took {:?}",
            started.elapsed()
        );
        // The same file is refused at create.
        let r = d
            .req("PUT", &format!("/vms/{kind}-2"), Some(&spec(&kernel)))
            .await;
        assert_eq!(r.status, 400, "{kind}: {}", r.text());
        assert!(r.text().contains(reason), "{kind}: {}", r.text());
        // A failed VM that fails to boot again is journaled so that it replays.
        let r = d
            .req(
                "PUT",
                &format!("/vms/{kind}/actions"),
                Some(r#"{"action_type":"start"}"#),
            )
            .await;
        assert_eq!(r.status, 422, "{kind}: {}", r.text());
    }
    d.kill9();
    drop(d);
    let d = Daemon::start(dir.path()).await;
    for (kind, _) in SWAPS {
        let vm = d.expect("GET", &format!("/vms/{kind}"), None, 200).await;
        assert_eq!(vm["state"], "failed", "{vm:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_that_can_never_boot_are_refused_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let nics = (0..40)
        .map(|i| format!(r#"{{"iface_id": "n{i}", "switch": "lan"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    for (body, needle) in [
        (
            r#"{"network-interfaces": [{"iface_id": "eth0", "switch": ".."}]}"#.to_string(),
            "network-interfaces[0].switch",
        ),
        (
            r#"{"network-interfaces": [{"iface_id": "eth0", "switch": "."}]}"#.to_string(),
            "network-interfaces[0].switch",
        ),
        (format!(r#"{{"network-interfaces": [{nics}]}}"#), "virtio"),
        (
            r#"{"arch": "arm64"}"#.to_string(),
            "no built-in arm64 guest",
        ),
        (
            r#"{"arch": "riscv64"}"#.to_string(),
            "no built-in riscv64 guest",
        ),
        (
            r#"{"boot-source": {"kernel_image_path": "vmlinux"}}"#.to_string(),
            "is relative",
        ),
        (
            r#"{"boot-source": {"kernel_image_path": "/bin/sh", "initrd_path": "initrd.img"}}"#
                .to_string(),
            "boot-source.initrd_path",
        ),
    ] {
        let r = d.req("PUT", "/vms/never", Some(&body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e: ErrorBody = r.json().unwrap();
        assert_eq!(e.code, "invalid_config", "{body}");
        assert!(
            e.fault_message.contains(needle),
            "{body}: {:?} does not mention {needle:?}",
            e.fault_message
        );
    }
    d.expect("GET", "/vms/never", None, 404).await;

    // boot_args within the API's limit that the kernel cannot take once the
    // VMM adds `root=/dev/vda rw` for the root drive (riscv64: no host
    // profile, so the same on every host); without the drive they fit.
    let kernel = dir.path().join("Image");
    let disk = dir.path().join("root.img");
    std::fs::write(&kernel, [0u8; 4096]).unwrap();
    std::fs::write(&disk, [0u8; 4096]).unwrap();
    let body = |drive: bool| {
        let drives = if drive {
            format!(
                r#", "drives": [{{"drive_id": "root", "path_on_host": {}, "is_root_device": true}}]"#,
                serde_json::to_string(&disk).unwrap()
            )
        } else {
            String::new()
        };
        format!(
            r#"{{"arch": "riscv64", "boot-source": {{"kernel_image_path": {}, "boot_args": "{}"}}{drives}}}"#,
            serde_json::to_string(&kernel).unwrap(),
            "x".repeat(2040)
        )
    };
    let r = d.req("PUT", "/vms/long", Some(&body(true))).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e: ErrorBody = r.json().unwrap();
    assert_eq!(e.code, "invalid_config");
    assert!(
        e.fault_message.contains("boot-source.boot_args") && e.fault_message.contains("2047"),
        "{:?}",
        e.fault_message
    );
    d.expect("GET", "/vms/long", None, 404).await;
    d.expect("PUT", "/vms/long", Some(&body(false)), 201).await;
}
