//! `PUT /vms/{id}` with Firecracker's `drives`: images checked when the VM
//! is created (400s naming `drives[i].<field>`), shown back by `GET`, kept
//! across a daemon restart. No KVM needed: nothing boots.

mod daemon_support;

use daemon_support::Daemon;
use vm_service::api::error::ErrorBody;

async fn rejects(d: &Daemon, body: &str, needle: &str) {
    rejects_with(d, body, "invalid_config", needle).await;
}

async fn rejects_with(d: &Daemon, body: &str, code: &str, needle: &str) {
    let r = d.req("PUT", "/vms/bad", Some(body)).await;
    assert_eq!(r.status, 400, "{body}: {}", r.text());
    let e: ErrorBody = r.json().expect("a JSON error body");
    assert_eq!(e.code, code, "{body}: {}", e.fault_message);
    assert!(
        e.fault_message.contains(needle),
        "{body}: {:?} does not mention {needle:?}",
        e.fault_message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_are_checked_shown_and_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs.ext4");
    let data = dir.path().join("data.img");
    std::fs::write(&root, vec![0u8; 1 << 16]).unwrap();
    std::fs::write(&data, vec![0u8; 1 << 16]).unwrap();
    let (root, data) = (root.display().to_string(), data.display().to_string());
    let missing = dir.path().join("missing.img").display().to_string();
    let mut d = Daemon::start(dir.path()).await;

    let body = format!(
        r#"{{"machine-config": {{"vcpu_count": 1, "mem_size_mib": 64}},
             "drives": [{{"drive_id": "rootfs", "path_on_host": "{root}", "is_root_device": true}},
                        {{"drive_id": "data", "path_on_host": "{data}", "is_read_only": true}}]}}"#
    );
    let vm = d.expect("PUT", "/vms/disks", Some(&body), 201).await;
    let shown = |vm: &serde_json::Value| {
        let drives = vm["spec"]["drives"].as_array().cloned().unwrap_or_default();
        drives
            .iter()
            .map(|x| {
                (
                    x["drive_id"].as_str().unwrap_or_default().to_string(),
                    x["path_on_host"].as_str().unwrap_or_default().to_string(),
                    x["is_root_device"].as_bool(),
                    x["is_read_only"].as_bool(),
                )
            })
            .collect::<Vec<_>>()
    };
    let want = vec![
        ("rootfs".to_string(), root.clone(), Some(true), Some(false)),
        ("data".to_string(), data.clone(), Some(false), Some(true)),
    ];
    assert_eq!(shown(&vm), want, "{vm:#}");
    let vm = d.expect("GET", "/vms/disks", None, 200).await;
    assert_eq!(shown(&vm), want, "{vm:#}");

    // Each bad drive is a 400 naming the API field.
    let drive = |extra: &str| {
        format!(r#"{{"drives": [{{"drive_id": "ok", "path_on_host": "{data}"}}, {extra}]}}"#)
    };
    rejects(
        &d,
        &drive(&format!(
            r#"{{"drive_id": "d", "path_on_host": "{missing}"}}"#
        )),
        &format!("invalid drives[1].path_on_host: {missing}: No such file"),
    )
    .await;
    rejects(
        &d,
        &drive(&format!(
            r#"{{"drive_id": "d", "path_on_host": "{}", "is_read_only": true}}"#,
            dir.path().display()
        )),
        "invalid drives[1].path_on_host",
    )
    .await;
    rejects(
        &d,
        &drive(r#"{"drive_id": "d", "path_on_host": "/dev/null"}"#),
        "is not a regular file",
    )
    .await;
    rejects(
        &d,
        &format!(
            r#"{{"drives": [{{"drive_id": "a", "path_on_host": "{root}", "is_root_device": true}},
                            {{"drive_id": "b", "path_on_host": "{data}", "is_root_device": true}}]}}"#
        ),
        "invalid drives[1].is_root_device",
    )
    .await;
    rejects(
        &d,
        &drive(&format!(
            r#"{{"drive_id": "ok", "path_on_host": "{root}"}}"#
        )),
        "invalid drives[1].drive_id",
    )
    .await;
    rejects(
        &d,
        &drive(&format!(
            r#"{{"drive_id": "x y", "path_on_host": "{root}"}}"#
        )),
        "invalid drives[1].drive_id",
    )
    .await;
    rejects_with(
        &d,
        &drive(&format!(
            r#"{{"drive_id": "d", "path_on_host": "{root}", "io_engine": "Async"}}"#
        )),
        "invalid_field",
        "unknown field `io_engine`",
    )
    .await;
    d.expect("GET", "/vms/bad", None, 404).await;

    // The journal keeps the drives: a restarted daemon shows them.
    d.kill9();
    let d = Daemon::start(dir.path()).await;
    let vm = d.expect("GET", "/vms/disks", None, 200).await;
    assert_eq!(shown(&vm), want, "{vm:#}");

    // `ctl create --drive` fills the same array (ids by position).
    let sock = d.sock.clone();
    let arg = format!("{data},ro");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vm-service"))
            .args(["ctl", "--api-sock"])
            .arg(&sock)
            .args([
                "create",
                "by-ctl",
                "--drive",
                &arg,
                "--drive",
                "/nope,bogus",
            ])
            .output()
            .expect("run ctl")
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad --drive is refused: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option \"bogus\""));
    let (sock, arg) = (d.sock.clone(), format!("{data},ro"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vm-service"))
            .args(["ctl", "--api-sock"])
            .arg(&sock)
            .args(["create", "by-ctl", "--drive", &arg])
            .output()
            .expect("run ctl")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let vm = d.expect("GET", "/vms/by-ctl", None, 200).await;
    assert_eq!(
        shown(&vm),
        [("drive0".to_string(), data.clone(), Some(false), Some(true))],
        "{vm:#}"
    );

    // The OpenAPI document describes them.
    let doc = d.expect("GET", "/openapi.json", None, 200).await;
    let drive = &doc["components"]["schemas"]["Drive"]["properties"];
    for field in ["drive_id", "path_on_host", "is_root_device", "is_read_only"] {
        assert!(drive[field].is_object(), "openapi: Drive lacks {field}");
    }
    assert!(doc["components"]["schemas"]["VmSpec"]["properties"]["drives"].is_object());
}
