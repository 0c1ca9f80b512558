//! `vm-service ctl` against a real daemon: readable output, errors that say
//! what the daemon answered.

mod daemon_support;

use std::process::Output;

use daemon_support::Daemon;
use test_prerequisites::kvm_available;

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vm-service"))
        .arg("ctl")
        .arg("--api-sock")
        .arg(&d.sock)
        .args(args)
        .output()
        .expect("run ctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drives_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path()).await;
    let d = tokio::task::spawn_blocking(move || {
        let o = ctl(&d, &["create", "box", "--vcpus", "1", "--memory", "32"]);
        assert!(o.status.success(), "{o:?}");
        assert!(
            stdout(&o).contains("box") && stdout(&o).contains("created"),
            "{}",
            stdout(&o)
        );
        let o = ctl(&d, &["list"]);
        assert!(stdout(&o).starts_with("ID "), "{}", stdout(&o));
        assert!(stdout(&o).contains("box"));
        let o = ctl(&d, &["get", "nobody"]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("404 vm_not_found"), "{err}");
        let o = ctl(&d, &["raw", "PUT", "/vms/box", "{\"bogus\": 1}"]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("unknown field `bogus`"));
        let o = ctl(&d, &["metrics"]);
        assert!(stdout(&o).contains("vm_service_vms{state=\"created\"} 1"));
        if kvm_available() {
            assert!(ctl(&d, &["start", "box"]).status.success());
            // Follows the console until the built-in guest resets.
            let o = ctl(&d, &["serial", "box"]);
            assert!(o.status.success());
            assert!(
                stdout(&o).contains(vm_service::guest::BANNER),
                "{}",
                stdout(&o)
            );
            let o = ctl(&d, &["stop", "box"]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("409 invalid_state_transition"), "{err}");
        } else {
            assert!(ctl(&d, &["stop", "box"]).status.success());
        }
        let o = ctl(&d, &["delete", "box"]);
        assert!(o.status.success(), "{o:?}");
        assert!(stdout(&o).contains("deleted"));
        d
    })
    .await
    .unwrap();
    drop(d);
}
