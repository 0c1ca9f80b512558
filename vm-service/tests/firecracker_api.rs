//! Contract of `vm-service firecracker` against Firecracker's published API
//! (written from its description, not copied): every path we claim accepts
//! its documented bodies with the documented codes (204, empty body), bad
//! bodies and unsupported routes get 400 with a `fault_message`, pre-boot
//! resources are refused after `InstanceStart`; plus the flags, the config
//! file, and hostile clients (oversized bodies, malformed JSON, hang-ups,
//! slow headers and bodies, never reading the answers).
//!
//! The guest is a 4 KiB riscv64 `Image` written by the test whose code is
//! one `j .` loop: it starts at once on the interpreter and runs until stopped.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod fc_support;
use fc_support::{read_answer, spinning_riscv_image, Fc};

#[test]
fn pre_boot_resources_follow_the_contract() {
    let fc = Fc::spawn(&[]);
    let info = fc.get("/");
    assert_eq!(info["id"], "contract");
    assert_eq!(info["state"], "Not started");
    assert_eq!(info["app_name"], "Firecracker");
    assert!(info["vmm_version"].is_string());
    assert!(fc.get("/version")["firecracker_version"].is_string());
    let m = fc.get("/machine-config");
    assert!(m["vcpu_count"].is_u64() && m["mem_size_mib"].is_u64());

    // machine-config: documented bodies, defaults of the optional fields, refusals.
    fc.ok(
        "PUT",
        "/machine-config",
        &json!({"vcpu_count": 2, "mem_size_mib": 256}),
    );
    fc.ok(
        "PUT",
        "/machine-config",
        &json!({"vcpu_count": 1, "mem_size_mib": 128, "smt": false, "track_dirty_pages": false,
                "cpu_template": "None", "huge_pages": "None"}),
    );
    fc.ok("PATCH", "/machine-config", &json!({"vcpu_count": 2}));
    assert_eq!(fc.get("/machine-config")["vcpu_count"], 2);
    for (body, word) in [
        (r#"{"vcpu_count": 1}"#, "mem_size_mib"),
        (
            r#"{"vcpu_count": 1, "mem_size_mib": 64, "smt": true}"#,
            "smt",
        ),
        (
            r#"{"vcpu_count": 1, "mem_size_mib": 64, "track_dirty_pages": true}"#,
            "track_dirty_pages",
        ),
        (
            r#"{"vcpu_count": 1, "mem_size_mib": 64, "cpu_template": "T2"}"#,
            "T2",
        ),
        (
            r#"{"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "2M"}"#,
            "2M",
        ),
        (r#"{"vcpu_count": 0, "mem_size_mib": 64}"#, "vcpu_count"),
        (r#"{"vcpu_count": "1", "mem_size_mib": 64}"#, "invalid type"),
    ] {
        fc.refused("PUT", "/machine-config", Some(body), word);
    }
    fc.refused("PATCH", "/machine-config", Some(r#"{"smt": true}"#), "smt");

    // boot-source.
    let kernel = fc.kernel();
    fc.ok(
        "PUT",
        "/boot-source",
        &json!({"kernel_image_path": kernel, "boot_args": "console=ttyS0"}),
    );
    fc.refused(
        "PUT",
        "/boot-source",
        Some(r#"{"boot_args": "x"}"#),
        "kernel_image_path",
    );
    fc.refused(
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "/nonexistent/vmlinux"}"#),
        "kernel_image_path",
    );
    fc.refused(
        "PUT",
        "/boot-source",
        Some(&json!({"kernel_image_path": kernel, "initrd_path": "/nonexistent"}).to_string()),
        "initrd_path",
    );

    // drives.
    let disk = fc.path("disk.img");
    std::fs::write(&disk, vec![0u8; 65536]).expect("disk");
    let drive = json!({"drive_id": "rootfs", "path_on_host": disk, "is_root_device": true, "is_read_only": false});
    fc.ok("PUT", "/drives/rootfs", &drive);
    fc.ok("PUT", "/drives/rootfs", &drive); // replaces
    fc.refused(
        "PUT",
        "/drives/other",
        Some(&drive.to_string()),
        "does not match",
    );
    fc.refused(
        "PUT",
        "/drives/data",
        Some(&json!({"drive_id": "data", "path_on_host": disk}).to_string()),
        "is_root_device",
    );
    fc.refused(
        "PUT",
        "/drives/data",
        Some(
            &json!({"drive_id": "data", "path_on_host": disk, "is_root_device": true}).to_string(),
        ),
        "already the root device",
    );
    fc.refused(
        "PUT",
        "/drives/data",
        Some(&json!({"drive_id": "data", "path_on_host": disk, "is_root_device": false, "io_engine": "Async"}).to_string()),
        "Async",
    );
    fc.refused(
        "PATCH",
        "/drives/rootfs",
        Some(&json!({"drive_id": "rootfs", "path_on_host": disk}).to_string()),
        "before starting",
    );

    // network-interfaces.
    fc.ok(
        "PUT",
        "/network-interfaces/eth0",
        &json!({"iface_id": "eth0", "host_dev_name": "fctap0", "guest_mac": "06:00:ac:10:00:02"}),
    );
    fc.refused(
        "PUT",
        "/network-interfaces/eth1",
        Some(r#"{"iface_id": "eth0", "host_dev_name": "fctap0"}"#),
        "does not match",
    );
    fc.refused(
        "PUT",
        "/network-interfaces/eth1",
        Some(r#"{"iface_id": "eth1"}"#),
        "host_dev_name",
    );
    fc.refused(
        "PUT",
        "/network-interfaces/eth1",
        Some(r#"{"iface_id": "eth1", "host_dev_name": "t1", "guest_mac": "nope"}"#),
        "nope",
    );
    fc.refused(
        "PATCH",
        "/network-interfaces/eth0",
        Some(r#"{"iface_id": "eth0"}"#),
        "before starting",
    );

    // logger and metrics.
    let log = fc.path("fc.log");
    fc.ok(
        "PUT",
        "/logger",
        &json!({"log_path": log, "level": "Info", "show_level": true, "show_log_origin": false}),
    );
    fc.refused("PUT", "/logger", Some(r#"{"level": "Loud"}"#), "Loud");
    let log_text = std::fs::read_to_string(&log).expect("log file");
    assert!(
        log_text.contains("WARN") && log_text.contains("path=/logger"),
        "the log file has leveled lines: {log_text}"
    );
    let metrics = fc.path("metrics.json");
    fc.ok("PUT", "/metrics", &json!({"metrics_path": metrics}));
    fc.refused(
        "PUT",
        "/metrics",
        Some(&json!({"metrics_path": metrics}).to_string()),
        "already",
    );
    fc.ok("PUT", "/actions", &json!({"action_type": "FlushMetrics"}));
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&metrics)
            .expect("metrics")
            .lines()
            .last()
            .expect("a line"),
    )
    .expect("JSON line");
    assert!(
        line["put_api_requests"]["drive_count"].as_u64() >= Some(5),
        "{line}"
    );
    assert!(
        line["put_api_requests"]["machine_cfg_fails"].as_u64() >= Some(7),
        "{line}"
    );

    // Post-boot operations before the start.
    fc.refused(
        "PATCH",
        "/vm",
        Some(r#"{"state": "Paused"}"#),
        "before starting",
    );
    fc.refused(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
        "before starting",
    );
    fc.refused(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "Explode"}"#),
        "Explode",
    );
    fc.refused("PATCH", "/vm", Some(r#"{"state": "Sleeping"}"#), "Sleeping");

    // Everything configured shows in /vm/config.
    let config = fc.get("/vm/config");
    assert_eq!(config["boot-source"]["kernel_image_path"], json!(kernel));
    assert_eq!(config["drives"][0]["drive_id"], "rootfs");
    assert_eq!(config["network-interfaces"][0]["host_dev_name"], "fctap0");
    assert_eq!(config["machine-config"]["vcpu_count"], 2);
    assert_eq!(config["metrics"]["metrics_path"], json!(metrics));
    assert!(config["vsock"].is_null() && config["balloon"].is_null());
    assert_eq!(fc.state(), "Not started");
}

#[test]
fn unsupported_routes_answer_400_with_a_reason() {
    let fc = Fc::spawn(&[]);
    for (method, path, word) in [
        ("PUT", "/mmds", "MMDS"),
        ("GET", "/mmds", "MMDS"),
        ("PATCH", "/mmds", "MMDS"),
        ("PUT", "/mmds/config", "MMDS"),
        ("PUT", "/vsock", "vsock"),
        ("PUT", "/balloon", "balloon"),
        ("GET", "/balloon", "balloon"),
        ("PATCH", "/balloon/statistics", "balloon"),
        ("PUT", "/entropy", "entropy"),
        ("PUT", "/cpu-config", "CPU templates"),
        ("PUT", "/serial", "serial"),
        ("PUT", "/hotplug/memory", "hot-plug"),
        ("PUT", "/pmem/p0", "pmem"),
        (
            "GET",
            "/no-such-thing",
            "invalid request method and/or path",
        ),
        ("DELETE", "/", "invalid request method and/or path"),
        ("POST", "/actions", "invalid request method and/or path"),
        ("PUT", "/drives", "missing"),
    ] {
        fc.refused(method, path, Some("{}"), word);
    }
}

#[test]
fn after_instance_start_pre_boot_resources_are_refused() {
    let mut fc = Fc::spawn(&[]);
    let kernel = fc.kernel();
    fc.refused(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        "boot-source",
    );
    fc.ok("PUT", "/boot-source", &json!({"kernel_image_path": kernel}));
    fc.ok(
        "PUT",
        "/machine-config",
        &json!({"vcpu_count": 1, "mem_size_mib": 32}),
    );
    fc.ok("PUT", "/actions", &json!({"action_type": "InstanceStart"}));
    assert_eq!(fc.state(), "Running");
    let disk = fc.path("disk.img");
    std::fs::write(&disk, [0u8; 512]).expect("disk");
    for (method, path, body) in [
        ("PUT", "/boot-source", json!({"kernel_image_path": kernel})),
        (
            "PUT",
            "/machine-config",
            json!({"vcpu_count": 1, "mem_size_mib": 32}),
        ),
        ("PATCH", "/machine-config", json!({"vcpu_count": 1})),
        (
            "PUT",
            "/drives/d",
            json!({"drive_id": "d", "path_on_host": disk, "is_root_device": false}),
        ),
        (
            "PUT",
            "/network-interfaces/e",
            json!({"iface_id": "e", "host_dev_name": "t0"}),
        ),
        ("PUT", "/logger", json!({"level": "Info"})),
        ("PUT", "/metrics", json!({"metrics_path": fc.path("m")})),
        ("PUT", "/actions", json!({"action_type": "InstanceStart"})),
    ] {
        fc.refused(method, path, Some(&body.to_string()), "after starting");
    }
    fc.refused(
        "PATCH",
        "/drives/d",
        Some(r#"{"drive_id": "d"}"#),
        "no drive",
    );
    fc.refused(
        "PATCH",
        "/network-interfaces/e",
        Some(r#"{"iface_id": "e"}"#),
        "no network interface",
    );
    fc.refused(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "FlushMetrics"}"#),
        "never configured",
    );

    fc.ok("PATCH", "/vm", &json!({"state": "Paused"}));
    assert_eq!(fc.state(), "Paused");
    fc.ok("PATCH", "/vm", &json!({"state": "Resumed"}));
    assert_eq!(fc.state(), "Running");
    assert_eq!(fc.get("/vm/config")["machine-config"]["mem_size_mib"], 32);

    // Ctrl-Alt-Del stops the VM; the process ends with status 0, socket removed.
    fc.ok("PUT", "/actions", &json!({"action_type": "SendCtrlAltDel"}));
    assert_eq!(fc.exit_code(), Some(0));
    assert!(!fc.socket.exists());
}

#[test]
fn instance_start_with_a_drive_boots_and_a_vanished_image_is_a_clear_fault() {
    for vanish in [false, true] {
        let fc = Fc::spawn(&[]);
        let kernel = fc.kernel();
        let disk = fc.path("disk.img");
        std::fs::write(&disk, vec![0u8; 65536]).expect("disk");
        fc.ok("PUT", "/boot-source", &json!({"kernel_image_path": kernel}));
        fc.ok(
            "PUT",
            "/drives/rootfs",
            &json!({"drive_id": "rootfs", "path_on_host": disk, "is_root_device": true, "is_read_only": true}),
        );
        if vanish {
            std::fs::remove_file(&disk).expect("remove the image");
        }
        let a = fc.call(
            "PUT",
            "/actions",
            Some(r#"{"action_type": "InstanceStart"}"#),
        );
        if vanish {
            assert_eq!(a.status, 400, "{a:?}");
            assert!(a.fault().contains("rootfs"), "{a:?}");
            assert_eq!(fc.state(), "Not started");
        } else {
            assert_eq!(a.status, 204, "{a:?}");
            assert_eq!(fc.state(), "Running");
        }
    }
}

#[test]
fn flags_and_config_file() {
    let bin = env!("CARGO_BIN_EXE_vm-service");
    let run = |args: &[&str]| {
        Command::new(bin)
            .arg("firecracker")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run")
    };
    let v = run(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("Firecracker v"));
    for (args, word) in [
        (&["--no-api"][..], "--config-file"),
        (&["--seccomp-filter", "/f"][..], "seccomp"),
        (&["--metadata", "/m"][..], "MMDS"),
        (&["--describe-snapshot", "/s"][..], "snapshots"),
        (&["--http-api-max-payload-size", "0"][..], "payload"),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(word), "{args:?}: {err}");
    }

    // Accepted-and-ignored flags do not stop the process from serving.
    let fc = Fc::spawn(&[
        "--no-seccomp",
        "--boot-timer",
        "--mmds-size-limit",
        "1024",
        "--start-time-us",
        "1",
        "--start-time-cpu-us",
        "1",
        "--parent-cpu-time-us",
        "1",
        "--level",
        "Debug",
        "--show-level",
        "--show-log-origin",
    ]);
    assert_eq!(fc.state(), "Not started");

    // A config file boots the VM without API calls; with --no-api, no socket.
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    std::fs::write(&kernel, spinning_riscv_image()).expect("kernel");
    let metrics = dir.path().join("metrics.json");
    let config = dir.path().join("vm.json");
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                r#"{{"boot-source": {{"kernel_image_path": {k}, "boot_args": "console=ttyS0"}},
                    "machine-config": {{"vcpu_count": 1, "mem_size_mib": 32, "smt": false}},
                    "drives": [], "network-interfaces": [],
                    "metrics": {{"metrics_path": {m}}}{extra}}}"#,
                k = json!(kernel),
                m = json!(metrics),
            ),
        )
        .expect("config");
    };
    write_config("");
    let socket = dir.path().join("never.sock");
    let mut child = Command::new(bin)
        .arg("firecracker")
        .arg("--no-api")
        .arg("--api-sock")
        .arg(&socket)
        .arg("--config-file")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the VM stopped early"
    );
    assert!(!socket.exists(), "--no-api serves no socket");
    let _ = child.kill();
    let _ = child.wait();

    // With the API: the VM is Running as soon as the socket answers.
    let fc = Fc::spawn(&["--config-file", config.to_str().expect("utf-8 path")]);
    assert_eq!(fc.state(), "Running");
    assert_eq!(fc.get("/vm/config")["machine-config"]["mem_size_mib"], 32);
    drop(fc);

    write_config(r#", "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"}"#);
    let out = run(&[
        "--no-api",
        "--config-file",
        config.to_str().expect("utf-8 path"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vsock"));
}

#[test]
fn hostile_clients_get_fault_messages_and_do_no_harm() {
    let fc = Fc::spawn(&[
        "--http-api-max-payload-size",
        "1024",
        "--api-request-timeout",
        "1",
    ]);
    // Oversized: declared, and streamed without a length.
    let big = format!(r#"{{"kernel_image_path": "{}"}}"#, "a".repeat(4096));
    let a = fc.call("PUT", "/boot-source", Some(&big));
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.fault().contains("1024"));
    let chunked = format!(
        "PUT /boot-source HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let a = fc.raw(chunked.as_bytes());
    assert_eq!(a.status, 413, "{a:?}");
    // Malformed and unexpected bodies.
    for (body, word) in [
        ("{", "EOF"),
        ("not json", "expected"),
        ("[]", "object"),
        ("", "body"),
        (
            r#"{"kernel_image_path": "/k", "extra": true}"#,
            "unknown field `extra`",
        ),
        (r#"{"kernel_image_path": 7}"#, "invalid type"),
        ("\u{0}\u{1}", "body"),
    ] {
        fc.refused("PUT", "/boot-source", Some(body), word);
    }
    // An answer hyper gives by itself (bad Content-Length) has a fault message too.
    let a = fc.raw(b"PUT /boot-source HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.fault().contains("Content-Length") && a.json().get("code").is_none());
    fc.refused(
        "PUT",
        "/drives/a%2Fb",
        Some(r#"{"drive_id": "a/b", "path_on_host": "/x", "is_root_device": false}"#),
        "",
    );

    // A client that hangs up mid-body, and one that sends headers too slowly.
    {
        let mut s = fc.connect();
        s.write_all(
            b"PUT /boot-source HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{\"kernel",
        )
        .expect("partial");
    }
    let mut slow = fc.connect();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("partial headers");
    let a = read_answer(&mut slow);
    assert_eq!(a.status, 408, "{a:?}");
    assert!(a.fault().contains("did not arrive"));
    // Slow body: headers complete, body never finishes.
    let mut slow_body = fc.connect();
    slow_body
        .write_all(b"PUT /boot-source HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"kern")
        .expect("partial body");
    let a = read_answer(&mut slow_body);
    assert_eq!(a.status, 408, "{a:?}");
    assert!(!a.fault().is_empty());

    // Many hang-ups in a row; the process still serves.
    for _ in 0..50 {
        let mut s = fc.connect();
        let _ = s.write_all(b"PATCH /vm HTTP/1.1\r\nContent-Length: 10\r\n\r\n{");
    }
    assert_eq!(fc.state(), "Not started");
}

#[test]
fn a_client_that_never_reads_is_cut_off_after_the_write_timeout() {
    let fc = Fc::spawn(&[]);
    let pid = fc.child.id();
    let open_fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_fds();
    // Requests, never reading an answer: the process's writes fill the
    // socket and stall, then it stops reading requests.
    let mut s = fc.connect();
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < 100_000
            && s.write_all(b"GET /vm/config HTTP/1.1\r\nHost: x\r\n\r\n")
                .is_ok()
        {
            sent += 1;
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(open_fds() > baseline, "the connection was never open");
    assert_eq!(fc.state(), "Not started", "others are served meanwhile");
    // Cut off after the write timeout (10 s), which ends the writer too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_fds() > baseline {
        assert!(
            Instant::now() < deadline,
            "the process still holds the connection of a client that never reads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = writer.join().expect("writer");
    assert!(
        sent < 100_000,
        "the process kept reading requests it could not answer"
    );
    assert_eq!(fc.state(), "Not started");
}

#[test]
fn sigterm_stops_the_vm_and_removes_the_socket() {
    let mut fc = Fc::spawn(&[]);
    let kernel = fc.kernel();
    fc.ok("PUT", "/boot-source", &json!({"kernel_image_path": kernel}));
    fc.ok("PUT", "/actions", &json!({"action_type": "InstanceStart"}));
    assert_eq!(fc.state(), "Running");
    let killed = Command::new("kill")
        .args(["-TERM", &fc.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(fc.exit_code(), Some(0));
    assert!(!fc.socket.exists(), "the socket is removed on SIGTERM");
}

/// The riscv64 Debian guest `cargo xtask guest` builds, if it is there.
fn debian_guest() -> Option<(PathBuf, PathBuf)> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("guest/riscv64");
    let (kernel, initrd) = (dir.join("kernel"), dir.join("initrd.cpio.gz"));
    (kernel.is_file() && initrd.is_file()).then_some((kernel, initrd))
}

#[test]
fn config_file_boots_a_debian_guest_without_api_and_exits_with_it() {
    let Some((kernel, initrd)) = debian_guest() else {
        test_prerequisites::prerequisite_missing(
            "no riscv64 Debian guest: run `cargo xtask guest --arch riscv64`",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vm.json");
    let metrics = dir.path().join("metrics.json");
    std::fs::write(
        &config,
        json!({
            "boot-source": {
                "kernel_image_path": kernel,
                "initrd_path": initrd,
                "boot_args": "console=ttyS0 reboot=k panic=-1 cryptomgr.notests=1 -- echo config-file-guest-says-hi"
            },
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
            "metrics": {"metrics_path": metrics}
        })
        .to_string(),
    )
    .expect("config");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vm-service"))
        .args(["firecracker", "--no-api", "--config-file"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > Duration::from_mins(10) {
            let _ = child.kill();
            panic!("the guest did not power off within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = reader.join().expect("stdout reader");
    println!(
        "guest powered off after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(status.success(), "exit {status}\n{console}");
    assert!(console.contains("config-file-guest-says-hi"), "{console}");
    assert!(console.contains("VM-GUEST-EXIT status=0"), "{console}");
    // The final metrics line counts the guest's work.
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&metrics)
            .expect("metrics")
            .lines()
            .last()
            .expect("a line"),
    )
    .expect("JSON");
    assert!(last["vcpu"]["exit_count"].as_u64() > Some(0), "{last}");
    assert!(last["uart"]["write_bytes"].as_u64() > Some(1000), "{last}");
}
