//! Admission control (`--max-vms`, `--max-memory-mib`) and `GET /vms`
//! pages. No KVM needed.

mod daemon_support;

use daemon_support::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vm_service::api::error::ErrorBody;

fn mem(mib: u64) -> String {
    format!(r#"{{"machine-config": {{"mem_size_mib": {mib}}}}}"#)
}

async fn refused(d: &Daemon, id: &str, body: &str, status: u16, code: &str, needle: &str) {
    let r = d.req("PUT", &format!("/vms/{id}"), Some(body)).await;
    assert_eq!(r.status, status, "{id}: {}", r.text());
    let e: ErrorBody = r.json().unwrap();
    assert_eq!(e.code, code, "{}", e.fault_message);
    assert!(e.fault_message.contains(needle), "{}", e.fault_message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_beyond_the_vm_count_or_memory_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &["--max-vms", "3", "--max-memory-mib", "300"]).await;
    d.expect("PUT", "/vms/a", Some(&mem(128)), 201).await;
    d.expect("PUT", "/vms/b", Some(&mem(128)), 201).await;
    refused(&d, "c", &mem(128), 507, "out_of_memory", "limit of 300 MiB").await;
    d.expect("PUT", "/vms/c", Some(&mem(32)), 201).await;
    refused(&d, "d", &mem(16), 409, "too_many_vms", "limit of 3 VMs").await;
    // A retried create is not a new VM.
    d.expect("PUT", "/vms/b", Some(&mem(128)), 200).await;
    d.expect("DELETE", "/vms/a", None, 204).await;
    d.expect("PUT", "/vms/d", Some(&mem(128)), 201).await;
    assert_eq!(
        d.expect("GET", "/vms", None, 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_vms_comes_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let ids: Vec<String> = (0..7).map(|i| format!("vm{i}")).collect();
    for id in ids.iter().rev() {
        d.expect("PUT", &format!("/vms/{id}"), Some("{}"), 201)
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/vms?limit=3".to_string();
    loop {
        let page = d.expect("GET", &path, None, 200).await;
        let page = page.as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|v| v["id"].as_str().unwrap().to_string()));
        if page.len() < 3 {
            break;
        }
        path = format!("/vms?limit=3&after={}", seen.last().unwrap());
    }
    assert_eq!(seen, ids, "pages in id order, each VM once");
    // The answer names the next page's cursor while more follow.
    let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    s.write_all(b"GET /vms?limit=2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out).to_lowercase();
    assert!(out.contains("x-next-after: vm1\r\n"), "{out}");
    for bad in [
        "/vms?limit=0",
        "/vms?limit=101",
        "/vms?limit=x",
        "/vms?page=2",
    ] {
        let r = d.req("GET", bad, None).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let e: ErrorBody = r.json().unwrap();
        assert_eq!(e.code, "invalid_query", "{bad}");
    }
}
