//! Every kind of bad input gets a 4xx with a JSON body naming the problem,
//! and the daemon keeps serving other clients meanwhile. No KVM needed.

mod daemon_support;

use std::time::Duration;

use daemon_support::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vm_service::api::error::ErrorBody;

/// Sends a request and checks status, error code and that the message mentions `needle`.
async fn rejects(
    d: &Daemon,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
    code: &str,
    needle: &str,
) {
    let r = d.req(method, path, body).await;
    assert_eq!(r.status, status, "{method} {path} {body:?}: {}", r.text());
    let e: ErrorBody = r
        .json()
        .unwrap_or_else(|e| panic!("{method} {path}: not a JSON error body ({e}): {}", r.text()));
    assert_eq!(
        e.code, code,
        "{method} {path} {body:?}: {}",
        e.fault_message
    );
    assert!(
        e.fault_message.contains(needle),
        "{method} {path} {body:?}: {:?} does not mention {needle:?}",
        e.fault_message
    );
}

/// Raw bytes on a fresh connection; returns everything the daemon answers.
async fn raw_exchange(d: &Daemon, request: &[u8]) -> String {
    let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_4xx_with_a_json_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;

    // Malformed JSON, empty body, unknown fields, wrong types.
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some("{\"machine-config\": "),
        400,
        "malformed_json",
        "EOF",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some("not json"),
        400,
        "malformed_json",
        "expected",
    )
    .await;
    rejects(&d, "PUT", "/vms/a", None, 400, "empty_body", "JSON body").await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"machine-config": {"vcpu_count": 1, "smt": true}}"#),
        400,
        "invalid_field",
        "unknown field `smt`",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"kernel": "/k"}"#),
        400,
        "invalid_field",
        "unknown field `kernel`",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"machine-config": {"vcpu_count": "two"}}"#),
        400,
        "invalid_field",
        "invalid type",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"machine-config": {"vcpu_count": -1}}"#),
        400,
        "invalid_field",
        "invalid value",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some("[]"),
        400,
        "invalid_field",
        "invalid type",
    )
    .await;

    // Configs that fail validation name the field.
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"machine-config": {"vcpu_count": 0}}"#),
        400,
        "invalid_config",
        "machine-config.vcpu_count",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"machine-config": {"mem_size_mib": 0}}"#),
        400,
        "invalid_config",
        "machine-config.mem_size_mib",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"boot-source": {"kernel_image_path": "/nonexistent/vmlinux"}}"#),
        400,
        "invalid_config",
        "boot-source.kernel_image_path",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"boot-source": {"kernel_image_path": "/"}}"#),
        400,
        "invalid_config",
        "not a regular file",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"boot-source": {"kernel_image_path": "/k", "boot_args": "a\u0001b"}}"#),
        400,
        "invalid_config",
        "boot-source.boot_args",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"network-interfaces": [{"iface_id": "eth 0", "switch": "s"}]}"#),
        400,
        "invalid_config",
        "network-interfaces[0].iface_id",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"network-interfaces": [{"iface_id": "e", "host_dev_name": "t", "switch": "s"}]}"#),
        400,
        "invalid_config",
        "not both",
    )
    .await;
    rejects(&d, "PUT", "/vms/a", Some(r#"{"network-interfaces": [{"iface_id": "e", "switch": "s", "guest_mac": "01:00:00:00:00:01"}]}"#), 400, "invalid_config", "multicast").await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"network-interfaces": [{"iface_id": "e", "switch": "s", "guest_mac": "zz"}]}"#),
        400,
        "invalid_field",
        "hex",
    )
    .await;

    // Bad ids, unknown VMs, unknown routes and methods.
    rejects(
        &d,
        "PUT",
        "/vms/bad%20id",
        Some("{}"),
        400,
        "invalid_vm_id",
        "' '",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/-dash",
        Some("{}"),
        400,
        "invalid_vm_id",
        "must start",
    )
    .await;
    let long = "x".repeat(65);
    rejects(
        &d,
        "GET",
        &format!("/vms/{long}"),
        None,
        400,
        "invalid_vm_id",
        "limit is 64",
    )
    .await;
    rejects(&d, "GET", "/vms/ghost", None, 404, "vm_not_found", "ghost").await;
    rejects(
        &d,
        "DELETE",
        "/vms/ghost",
        None,
        404,
        "vm_not_found",
        "ghost",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/ghost/actions",
        Some(r#"{"action_type": "start"}"#),
        404,
        "vm_not_found",
        "ghost",
    )
    .await;
    rejects(
        &d,
        "GET",
        "/vms/ghost/serial",
        None,
        404,
        "vm_not_found",
        "ghost",
    )
    .await;
    rejects(
        &d,
        "GET",
        "/nowhere",
        None,
        404,
        "no_such_route",
        "/nowhere",
    )
    .await;
    rejects(
        &d,
        "POST",
        "/vms/a",
        Some("{}"),
        405,
        "method_not_allowed",
        "POST",
    )
    .await;

    // Conflicts and illegal transitions (no guest needed).
    d.expect("PUT", "/vms/a", Some("{}"), 201).await;
    // A retried create (same config) is answered with the VM; another config conflicts.
    d.expect("PUT", "/vms/a", Some("{}"), 200).await;
    rejects(
        &d,
        "PUT",
        "/vms/a",
        Some(r#"{"machine-config": {"mem_size_mib": 64}}"#),
        409,
        "vm_exists",
        "already exists",
    )
    .await;
    for (action, word) in [
        ("pause", "cannot pause a VM that is created"),
        ("resume", "cannot resume"),
        ("ctrl-alt-del", "needs a running VM"),
    ] {
        let body = format!(r#"{{"action_type": "{action}"}}"#);
        rejects(
            &d,
            "PUT",
            "/vms/a/actions",
            Some(&body),
            409,
            "invalid_state_transition",
            word,
        )
        .await;
    }
    rejects(
        &d,
        "PUT",
        "/vms/a/actions",
        Some(r#"{"action_type": "explode"}"#),
        400,
        "invalid_field",
        "unknown variant `explode`",
    )
    .await;
    rejects(
        &d,
        "PUT",
        "/vms/a/actions",
        Some(r#"{"action": "start"}"#),
        400,
        "invalid_field",
        "unknown field `action`",
    )
    .await;
    // stop from created is legal; then stop again is not.
    assert_eq!(d.action("a", "stop", 200).await["state"], "stopped");
    rejects(
        &d,
        "PUT",
        "/vms/a/actions",
        Some(r#"{"action_type": "stop"}"#),
        409,
        "invalid_state_transition",
        "cannot stop a VM that is stopped",
    )
    .await;

    // Bodies over the cap: announced, and streamed without a length.
    let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(70 * 1024));
    rejects(
        &d,
        "PUT",
        "/vms/big",
        Some(&big),
        413,
        "body_too_large",
        "limit",
    )
    .await;
    let head = "PUT /vms/big HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let mut chunked = head.as_bytes().to_vec();
    for _ in 0..70 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&d, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    rejects(&d, "GET", "/vms/big", None, 404, "vm_not_found", "big").await;

    // Nothing above was fatal.
    assert_eq!(
        d.expect("GET", "/vms", None, 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_hyper_answers_by_itself_have_a_json_body_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let huge = format!(
        "GET /vms HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(500_000)
    );
    for (request, status, code) in [
        (huge.as_bytes(), "431", "headers_too_large"),
        (
            &b"PUT /vms/a HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n{}"[..],
            "400",
            "bad_request",
        ),
        (b"GARBAGE\r\n\r\n", "400", "bad_request"),
    ] {
        let answer = raw_exchange(&d, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{answer}");
        let e: ErrorBody = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(e.code, code, "{answer}");
    }
    d.expect("GET", "/vms", None, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out_with_408_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await; // --request-timeout 1

    // A body that never finishes.
    let slow_body = tokio::spawn({
        let sock = d.sock.clone();
        async move {
            let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            s.write_all(
                b"PUT /vms/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"machine",
            )
            .await
            .unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    });
    // Headers that never finish.
    let slow_head = tokio::spawn({
        let sock = d.sock.clone();
        async move {
            let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            s.write_all(b"PUT /vms/slow HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    });
    // An idle keep-alive connection after a complete request is closed, not sent a 408.
    let idle = tokio::spawn({
        let sock = d.sock.clone();
        async move {
            let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            s.write_all(b"GET /vms HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    });
    // Meanwhile other clients are served.
    for _ in 0..20 {
        d.expect("GET", "/vms", None, 200).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body_answer = slow_body.await.unwrap();
    assert!(body_answer.starts_with("HTTP/1.1 408"), "{body_answer}");
    assert!(
        body_answer.contains(r#""code":"request_timeout""#),
        "{body_answer}"
    );
    assert!(body_answer.contains("request body"), "{body_answer}");
    let idle_answer = idle.await.unwrap();
    assert!(idle_answer.starts_with("HTTP/1.1 200"), "{idle_answer}");
    assert_eq!(idle_answer.matches("HTTP/1.1 ").count(), 1, "{idle_answer}");
    let head_answer = slow_head.await.unwrap();
    assert!(head_answer.starts_with("HTTP/1.1 408"), "{head_answer}");
    assert!(head_answer.contains("request headers"), "{head_answer}");
    rejects(&d, "GET", "/vms/slow", None, 404, "vm_not_found", "slow").await;
    d.expect("GET", "/vms", None, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_private_and_openapi_is_served() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let mode = std::fs::metadata(&d.state_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "state dir mode {mode:o}");
    let doc = d.expect("GET", "/openapi.json", None, 200).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/vms",
        "/vms/{id}",
        "/vms/{id}/actions",
        "/vms/{id}/snapshot",
        "/vms/{id}/snapshot/load",
        "/vms/{id}/serial",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
    // A second daemon on the same socket refuses to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vm-service"))
        .arg("daemon")
        .arg("--api-sock")
        .arg(&d.sock)
        .arg("--state-dir")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
}
