//! Clients that hold connections: one that sends requests but never reads
//! the answers is cut off after `--write-timeout`, and connections beyond
//! `--max-connections` wait in the backlog. No KVM needed.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &["--write-timeout", "1"]).await;
    let pid = d.child.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = open_fds(pid);
    let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    // Requests for a 14 KiB document, never reading an answer: the daemon's
    // writes fill the socket and stall.
    let writer = tokio::spawn(async move {
        let request = b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut sent = 0;
        while sent < 10_000 && s.write_all(request).await.is_ok() {
            sent += 1;
        }
        (sent, s)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(open_fds(pid) > baseline, "the connection was never open");
    // Others are served meanwhile.
    d.expect("GET", "/vms", None, 200).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while open_fds(pid) > baseline {
        assert!(
            Instant::now() < deadline,
            "the daemon still holds the connection of a client that never reads ({} fds, {baseline} before)",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sent, mut s) = writer.await.unwrap();
    assert!(
        sent < 10_000,
        "the daemon kept reading requests it could not answer"
    );
    // What was written before the cut is whole answers, then the end.
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    d.expect("GET", "/vms", None, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &["--max-connections", "2"]).await; // --request-timeout 1
                                                                               // Wait for the connection of the start-up probe to be closed (idle timeout).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
        s.write_all(b"GET /vms HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        hogs.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    d.expect("GET", "/vms", None, 200).await;
    let waited = started.elapsed();
    // Served once the two slow clients were answered 408 (after 1 s).
    assert!(
        waited >= Duration::from_millis(700),
        "served after {waited:?} while two connections held both slots"
    );
    for mut s in hogs {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_fds_the_daemon_backs_off_and_says_so_once() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-service"));
    cmd.arg("daemon")
        .arg("--api-sock")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--request-timeout", "3", "--max-connections", "1000"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: setrlimit is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let client = vm_service::api::client::ApiClient::new(&sock);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.request("GET", "/vms", None).await.is_err() {
        assert!(Instant::now() < deadline, "the daemon never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More clients than the daemon has fds, each holding its connection
    // with a request that never completes.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(mut s) = tokio::net::UnixStream::connect(&sock).await {
            let _ = s.write_all(b"GET /vms HTTP/1.1\r\nhost: x\r\n").await;
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(held);
    // Served again once the fds are back.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client.request("GET", "/vms", None).await {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.matches("accept failed").count();
    assert!(
        warnings >= 1,
        "no accept failure seen; raise the client count:\n{text}"
    );
    assert_eq!(warnings, 1, "{warnings} accept warnings in ~2 s:\n{text}");
}
