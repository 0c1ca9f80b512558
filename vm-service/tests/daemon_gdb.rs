//! The daemon runs a VM under the gdb stub (a `gdb` section in the create
//! body): a real `gdb-multiarch` in batch mode attaches to the VMM child's
//! socket, breaks, reads a register and lets the riscv64 test Image
//! (`tests/gdb/image.S`) run to its end; stop, pause and resume reach a VM
//! that waits for a debugger or is held by one; a jailed VMM (root only)
//! serves a loopback TCP address bound before its network namespace; bad
//! sections are refused at create. Built with the `gdb` feature only; the
//! riscv64 interpreter runs the guest (no KVM needed).

mod daemon_support;
mod gdb_support;
mod riscv_image;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_support::Daemon;
use gdb_support::{packet, printed_values, run_gdb, text};

/// The create body: the test Image on one hart, under the stub on `socket`.
fn body(image: &Path, socket: &Path, wait: bool) -> String {
    serde_json::json!({
        "arch": "riscv64",
        "boot-source": {"kernel_image_path": image},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
        "gdb": {"address": format!("unix:{}", socket.display()), "wait": wait},
    })
    .to_string()
}

/// Waits until the VMM child listens on `socket` (a liveness timeout).
fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the gdb socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdb_attaches_to_a_daemon_vm_breaks_reads_and_lets_it_finish() {
    let dir = tempfile::tempdir().unwrap();
    let Some((elf, image)) = riscv_image::build_image(dir.path(), "gdb/image.S") else {
        return;
    };
    let Some(gdb) = test_prerequisites::tool("gdb-multiarch", "gdb-multiarch") else {
        return;
    };
    let socket = dir.path().join("vm.gdb");
    let d = Daemon::start(dir.path()).await;
    let vm = d
        .expect("PUT", "/vms/dbg", Some(&body(&image, &socket, true)), 201)
        .await;
    assert_eq!(vm["spec"]["gdb"]["wait"], true, "{vm:#}");
    let vm = d.action("dbg", "start", 200).await;
    assert_eq!(vm["state"], "running", "{vm:#}");
    wait_for_socket(&socket);
    // Held before its first instruction: nothing printed yet.
    let vm = d.expect("GET", "/vms/dbg", None, 200).await;
    assert!(
        !vm["serial_tail"]
            .as_str()
            .unwrap_or_default()
            .contains("gdb-test-done"),
        "{vm:#}"
    );
    let commands = [
        "set architecture riscv:rv64".to_string(),
        format!("file {}", elf.display()),
        format!("target remote {}", socket.display()),
        "break *add_one".into(),
        "continue".into(),
        "p $pc == &add_one".into(),
        "p/d $s1".into(),
        "delete".into(),
        "continue".into(),
    ];
    let out = tokio::task::spawn_blocking(move || run_gdb(&gdb, &commands))
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    let all = format!("gdb:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Breakpoint 1, 0x"), "{all}");
    assert_eq!(printed_values(&stdout), ["1", "5"], "{all}");
    assert!(stdout.contains("exited normally"), "{all}");
    let vm = d
        .wait_for("dbg", "stopped", |v| v["state"] == "stopped")
        .await;
    assert_eq!(vm["last_exit"]["status"], "exit status 0", "{vm:#}");
    assert_ne!(vm["stop_reason"], "stopped on request", "{vm:#}");
    let tail = vm["serial_tail"].as_str().unwrap();
    assert!(tail.contains("gdb-test-done"), "{vm:#}");
    let r = d.req("GET", "/vms/dbg/serial", None).await;
    assert!(r.text().contains("gdb-test-done"), "{}", r.text());
}

/// Asks a stub why the target stopped, as a debugger that has just
/// connected: once the answer is in, the stub holds the vCPUs and waits for
/// the next packet.
fn ask_stop_reason(s: &mut (impl Read + Write)) {
    s.write_all(&packet(b"?")).unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8];
    // `+`, then `$...#xx`.
    loop {
        s.read_exact(&mut byte).expect("the stub answers `?`");
        seen.push(byte[0]);
        if seen.len() >= 3 && seen[seen.len() - 3] == b'#' {
            break;
        }
    }
    s.write_all(b"+").unwrap();
    assert!(
        seen.starts_with(b"+$T") || seen.starts_with(b"+$S"),
        "{seen:?}"
    );
}

/// [`ask_stop_reason`] on a fresh connection to the Unix socket `socket`.
fn attach_raw(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect to the stub");
    ask_stop_reason(&mut s);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_pause_and_resume_reach_a_vm_waiting_for_or_held_by_a_debugger() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_, image)) = riscv_image::build_image(dir.path(), "gdb/image.S") else {
        return;
    };
    let socket = dir.path().join("vm.gdb");
    let d = Daemon::start(dir.path()).await;
    d.expect("PUT", "/vms/held", Some(&body(&image, &socket, true)), 201)
        .await;

    // Waiting for a debugger.
    d.action("held", "start", 200).await;
    wait_for_socket(&socket);
    assert_eq!(d.action("held", "pause", 200).await["state"], "paused");
    assert_eq!(d.action("held", "resume", 200).await["state"], "running");
    let vm = d.action("held", "stop", 200).await;
    assert_eq!(vm["state"], "stopped", "{vm:#}");
    assert_eq!(vm["stop_reason"], "stopped on request", "{vm:#}");
    // The VMM process ended by itself, not killed after the grace period.
    assert_eq!(vm["last_exit"]["status"], "exit status 0", "{vm:#}");
    assert!(!socket.exists(), "the stub removes its socket");

    // Held by a debugger at its first instruction.
    d.action("held", "start", 200).await;
    wait_for_socket(&socket);
    let sock = socket.clone();
    let debugger = tokio::task::spawn_blocking(move || attach_raw(&sock))
        .await
        .unwrap();
    assert_eq!(d.action("held", "pause", 200).await["state"], "paused");
    assert_eq!(d.action("held", "resume", 200).await["state"], "running");
    let vm = d.action("held", "stop", 200).await;
    assert_eq!(vm["state"], "stopped", "{vm:#}");
    assert_eq!(vm["stop_reason"], "stopped on request", "{vm:#}");
    // The VMM process ended by itself, not killed after the grace period.
    assert_eq!(vm["last_exit"]["status"], "exit status 0", "{vm:#}");
    let tail = vm["serial_tail"].as_str().unwrap_or_default();
    assert!(
        !tail.contains("gdb-test-done"),
        "the guest never ran: {vm:#}"
    );
    drop(debugger);
    d.expect("DELETE", "/vms/held", None, 204).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gdb_section_the_daemon_cannot_serve_is_refused_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    for (gdb, needle) in [
        (r#"{"address": "tcp:10.0.0.1:1234"}"#, "loopback"),
        (r#"{"address": "nope"}"#, "unix:PATH"),
        (r#"{"address": "unix:"}"#, "empty socket path"),
        (r#"{"address": "unix:vm.gdb"}"#, "relative"),
    ] {
        let body = format!(r#"{{"arch": "riscv64", "gdb": {gdb}}}"#);
        let r = d.req("PUT", "/vms/bad", Some(&body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains("gdb.address"), "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    let r = d
        .req(
            "PUT",
            "/vms/bad",
            Some(r#"{"arch": "arm64", "gdb": {"address": "unix:/tmp/x.gdb"}}"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid gdb"), "{}", r.text());
    assert!(r.text().contains("arm64"), "{}", r.text());
    let r = d
        .req(
            "PUT",
            "/vms/bad",
            Some(r#"{"gdb": {"address": "unix:/tmp/x.gdb", "port": 1}}"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    d.expect("GET", "/vms/bad", None, 404).await;

    // One VM per address: a second stub would replace the first one's socket.
    let gdb = r#""gdb": {"address": "unix:/tmp/daemon-gdb-test.gdb"}"#;
    d.expect("PUT", "/vms/one", Some(&format!("{{{gdb}}}")), 201)
        .await;
    let r = d
        .req(
            "PUT",
            "/vms/two",
            Some(&format!(
                r#"{{"machine-config": {{"vcpu_count": 2}}, {gdb}}}"#
            )),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("gdb_address_in_use"), "{}", r.text());
    d.expect("DELETE", "/vms/one", None, 204).await;
    d.expect("PUT", "/vms/two", Some(&format!("{{{gdb}}}")), 201)
        .await;

    // A loopback TCP address is a valid config, but the unjailed VMM binds it
    // under its process filter, which allows Unix sockets only: start says so.
    let Some((_, image)) = riscv_image::build_image(dir.path(), "gdb/image.S") else {
        return;
    };
    let body = serde_json::json!({
        "arch": "riscv64",
        "boot-source": {"kernel_image_path": image},
        "gdb": {"address": "tcp:127.0.0.1:1"},
    })
    .to_string();
    d.expect("PUT", "/vms/tcp", Some(&body), 201).await;
    let r = d
        .req(
            "PUT",
            "/vms/tcp/actions",
            Some(r#"{"action_type":"start"}"#),
        )
        .await;
    assert!(r.status >= 400, "{}", r.text());
    assert!(r.text().contains("Unix sockets only"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jailed_vmm_binds_a_tcp_address_before_its_jail_and_stops_held() {
    // SAFETY: geteuid only reads this process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        test_prerequisites::prerequisite_missing("the daemon needs root to jail its VMMs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some((_, image)) = riscv_image::build_image(dir.path(), "gdb/image.S") else {
        return;
    };
    let d = Daemon::start_jailed(dir.path()).await;
    // A free loopback port: bound, read and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let body = serde_json::json!({
        "arch": "riscv64",
        "boot-source": {"kernel_image_path": image},
        "gdb": {"address": format!("tcp:127.0.0.1:{port}"), "wait": true},
    })
    .to_string();
    d.expect("PUT", "/vms/jailed", Some(&body), 201).await;
    let vm = d.action("jailed", "start", 200).await;
    let pid = vm["process"]["pid"].as_u64().expect("pid");
    // The VMM is in a network namespace of its own; the socket it bound
    // before entering it is still reachable from the host's.
    let ns = |p: &str| std::fs::read_link(p).expect("netns link");
    assert_ne!(ns(&format!("/proc/{pid}/ns/net")), ns("/proc/self/ns/net"));
    let debugger = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        ask_stop_reason(&mut s);
        s
    })
    .await
    .unwrap();
    let vm = d.action("jailed", "stop", 200).await;
    assert_eq!(vm["stop_reason"], "stopped on request", "{vm:#}");
    assert_eq!(vm["last_exit"]["status"], "exit status 0", "{vm:#}");
    drop(debugger);
}
