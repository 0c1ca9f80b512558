//! The daemon's journal on disk: damage other than a torn tail stops the
//! daemon with the offset named (nothing truncated), an emptied journal is
//! refused, and the file is private and never reached through a symlink.

mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use daemon_support::Daemon;

/// Runs `vm-service daemon` on `dir` expecting it to refuse to start; returns its stderr.
fn refused(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vm-service"))
        .arg("daemon")
        .arg("--api-sock")
        .arg(dir.join("api.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the daemon started: {stderr}");
    stderr
}

/// A journal of three created VMs; returns its path.
async fn journal_of_three(dir: &Path) -> std::path::PathBuf {
    let mut d = Daemon::start(dir).await;
    for id in ["a", "b", "c"] {
        d.expect("PUT", &format!("/vms/{id}"), Some("{}"), 201)
            .await;
    }
    assert!(d.sigterm().success());
    dir.join("state").join("journal.v2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_length_mid_journal_is_refused_with_its_offset_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_of_three(dir.path()).await;
    let mut data = std::fs::read(&path).unwrap();
    let len = data.len();
    // Header (16 bytes), then frames: u32 length, u32 CRC, payload.
    let first = 16usize;
    let payload = u32::from_le_bytes(data[first..first + 4].try_into().unwrap()) as usize;
    let second = first + 8 + payload;
    data[second..second + 4].copy_from_slice(&(len as u32).to_le_bytes());
    std::fs::write(&path, &data).unwrap();
    let stderr = refused(dir.path());
    assert!(
        stderr.contains(&format!("byte offset {second}")),
        "{stderr}"
    );
    assert!(stderr.contains("intact record follows"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len as u64,
        "truncated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_of_three(dir.path()).await;
    std::fs::write(&path, b"").unwrap();
    let stderr = refused(dir.path());
    assert!(stderr.contains("empty (0 bytes)"), "{stderr}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_private_and_never_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    // A state directory made beforehand with a permissive mode.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = journal_of_three(dir.path()).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "journal mode {mode:o}");

    // A journal that is a symlink (to a file elsewhere) is refused.
    let elsewhere = dir.path().join("elsewhere.v2");
    std::fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let stderr = refused(dir.path());
    assert!(stderr.contains("symbolic link"), "{stderr}");
}
