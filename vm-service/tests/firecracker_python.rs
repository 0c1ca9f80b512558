//! An unmodified Firecracker client drives `vm-service`: the PyPI package
//! `firecracker-python` (its `Api` client, in the virtualenv `cargo xtask
//! setup` makes) configures, starts, pauses, resumes, inspects and stops a
//! riscv64 Debian guest through `tests/firecracker_python/drive.py`. The
//! binary runs under the name `firecracker` (a symlink), with the flags the
//! library itself passes (`--api-sock`, `--id`, `--log-path`).
//!
//! Skipped, with the reason, when the virtualenv or the guest is missing.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A hung run is killed after this long; a safety net, not a measurement.
const WATCHDOG: Duration = Duration::from_mins(10);

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// The virtualenv's python, the guest's kernel and initrd; or why not.
fn prerequisites() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let target = target_dir();
    let python = target.join("firecracker-python/venv/bin/python");
    let importable = Command::new(&python)
        .args(["-c", "import firecracker.api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        return Err(format!(
            "{} cannot import firecracker.api: run `cargo xtask setup`",
            python.display()
        ));
    }
    let guest = target.join("guest/riscv64");
    let (kernel, initrd) = (guest.join("kernel"), guest.join("initrd.cpio.gz"));
    if !kernel.is_file() || !initrd.is_file() {
        return Err(format!(
            "no riscv64 Debian guest in {}: run `cargo xtask guest --arch riscv64`",
            guest.display()
        ));
    }
    Ok((python, kernel, initrd))
}

/// A directory removed (with what is left in it) when the test ends, passed or not.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for `child` up to the watchdog, killing it past that.
fn wait(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if start.elapsed() < WATCHDOG => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                let _ = child.kill();
                panic!("{what} did not finish within {WATCHDOG:?}");
            }
        }
    }
}

#[test]
fn firecracker_python_client_drives_a_riscv64_guest() {
    let (python, kernel, initrd) = match prerequisites() {
        Ok(p) => p,
        Err(reason) => {
            test_prerequisites::prerequisite_missing(reason);
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("firecracker");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vm-service"), &binary).expect("symlink");
    // The client puts the socket path in the URL's host, which requests
    // lower-cases: the path must have no capitals (tempdir names do).
    let socket_dir =
        RemoveOnDrop(std::env::temp_dir().join(format!("fc-python-{}", std::process::id())));
    std::fs::create_dir_all(&socket_dir.0).expect("socket dir");
    let socket = socket_dir.0.join("api.sock");
    let console = dir.path().join("console.log");
    let log = dir.path().join("firecracker.log");
    let metrics = dir.path().join("metrics.json");
    let started = Instant::now();
    let mut vmm = Command::new(&binary)
        .arg("--api-sock")
        .arg(&socket)
        .args(["--id", "py-test", "--level", "Info"])
        .arg("--log-path")
        .arg(&log)
        .arg("--metrics-path")
        .arg(&metrics)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&console).expect("console file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the VMM as `firecracker`");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/firecracker_python/drive.py");
    let client = Command::new(&python)
        .arg(&script)
        .arg("--socket")
        .arg(&socket)
        .arg("--console")
        .arg(&console)
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    let output = client.wait_with_output().expect("Python client output");
    let script_out = String::from_utf8_lossy(&output.stdout).into_owned();
    let script_err = String::from_utf8_lossy(&output.stderr).into_owned();
    let console_text = || std::fs::read_to_string(&console).unwrap_or_default();
    if !output.status.success() {
        let _ = vmm.kill();
        let _ = vmm.wait();
        panic!(
            "the Python client failed ({}):\n{script_out}\n{script_err}\n--- console ---\n{}\n--- log ---\n{}",
            output.status,
            console_text(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // SendCtrlAltDel stops the VM, and the process ends, as Firecracker's does.
    let status = wait(&mut vmm, "the VMM after SendCtrlAltDel");
    println!(
        "{script_out}VMM exited {status} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "VMM exit status {status}");
    assert!(
        script_out.contains("\nOK\n") || script_out.ends_with("OK\n"),
        "{script_out}"
    );
    let console_text = console_text();
    assert!(console_text.contains("VM-GUEST-READY"), "{console_text}");
    assert!(console_text.lines().filter(|l| l.trim() == "tick").count() >= 3);
    assert!(!socket.exists(), "the API socket is removed on exit");

    // The log file got the API requests; the metrics lines hold real counts.
    let log_text = std::fs::read_to_string(&log).expect("log file");
    assert!(log_text.contains("path=/actions"), "{log_text}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .expect("metrics file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON metrics line"))
        .collect();
    let sum = |group: &str, key: &str| -> u64 {
        lines.iter().filter_map(|l| l[group][key].as_u64()).sum()
    };
    assert!(sum("vcpu", "exit_count") > 0, "{lines:?}");
    assert!(sum("uart", "write_bytes") > 0, "{lines:?}");
    assert_eq!(sum("put_api_requests", "boot_source_fails"), 1, "{lines:?}");
    assert!(sum("patch_api_requests", "vm_count") >= 2, "{lines:?}");
}
