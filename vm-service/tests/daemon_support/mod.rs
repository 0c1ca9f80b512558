//! Shared by the daemon tests: start `vm-service daemon` on a temp socket,
//! talk to it with the crate's HTTP client, kill it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vm_service::api::client::{ApiClient, ApiResponse};

/// A daemon process under test.
pub struct Daemon {
    pub child: Child,
    pub sock: PathBuf,
    pub state_dir: PathBuf,
    pub client: ApiClient,
}

impl Daemon {
    /// Starts a daemon with its socket and journal under `dir`; returns once it answers.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[]).await
    }

    /// As [`Self::start`], with extra daemon arguments.
    pub async fn start_with(dir: &Path, extra: &[&str]) -> Self {
        Self::start_env(dir, extra, &[]).await
    }

    /// A daemon that jails its VMMs in `dir/jails` as uid/gid 65534 (`dir`
    /// is made world-readable so the jailed VMMs can reach their files).
    pub async fn start_jailed(dir: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let jails = dir.join("jails");
        let jails = jails.to_str().expect("utf-8 temp path");
        Self::start_with(
            dir,
            &["--uid", "65534", "--gid", "65534", "--jail-dir", jails],
        )
        .await
    }

    /// As [`Self::start_with`], with extra environment variables.
    pub async fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let sock = dir.join("api.sock");
        let state_dir = dir.join("state");
        let child = Command::new(env!("CARGO_BIN_EXE_vm-service"))
            .arg("daemon")
            .arg("--api-sock")
            .arg(&sock)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--request-timeout", "1"])
            .args(if extra.contains(&"--grace-period") {
                &[][..]
            } else {
                &["--grace-period", "5"][..]
            })
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the daemon");
        let mut child = child;
        let client = ApiClient::new(&sock);
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the daemon exited at start ({status}); its error is above");
            }
            if let Ok(r) = client.request("GET", "/vms", None).await {
                assert_eq!(r.status, 200);
                break;
            }
            assert!(Instant::now() < deadline, "the daemon never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child,
            sock,
            state_dir,
            client,
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: Option<&str>) -> ApiResponse {
        self.client
            .request(method, path, body.map(str::as_bytes))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends a request and checks the status; returns the JSON answer (Null if empty).
    pub async fn expect(&self, method: &str, path: &str, body: Option<&str>, status: u16) -> Value {
        let r = self.req(method, path, body).await;
        assert_eq!(r.status, status, "{method} {path} {body:?}: {}", r.text());
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json().unwrap()
        }
    }

    pub async fn action(&self, id: &str, action: &str, status: u16) -> Value {
        let body = format!(r#"{{"action_type":"{action}"}}"#);
        self.expect("PUT", &format!("/vms/{id}/actions"), Some(&body), status)
            .await
    }

    /// Polls `GET /vms/{id}` until `pred` holds (a liveness timeout, not a speed check).
    pub async fn wait_for(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            let vm = self.expect("GET", &format!("/vms/{id}"), None, 200).await;
            if pred(&vm) {
                return vm;
            }
            assert!(Instant::now() < deadline, "VM {id} never {what}: {vm:#}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends `method path` with `body` on a fresh connection and hangs up
    /// after `after`, before the answer (a client giving up).
    pub async fn hang_up(&self, method: &str, path: &str, body: &str, after: Duration) {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::UnixStream::connect(&self.sock).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(after).await;
        drop(s);
    }

    /// Polls `GET path` until it answers `status` (a liveness timeout).
    pub async fn wait_status(&self, path: &str, status: u16) -> ApiResponse {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.req("GET", path, None).await;
            if r.status == status {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never answered {status}: {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon");
    }

    pub fn sigterm(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        self.child.wait().expect("reap the daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ELF64 image with one loadable segment at 1 MiB holding `code`.
pub fn elf_image(code: &[u8]) -> Vec<u8> {
    const LOAD: u64 = 0x10_0000;
    const HEADERS: u64 = 64 + 56;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&LOAD.to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&7u32.to_le_bytes()); // RWX
    for v in [
        HEADERS,
        LOAD,
        LOAD,
        code.len() as u64,
        code.len() as u64,
        0x1000,
    ] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(code);
    elf
}

/// Writes a guest that spins on `out 0x80, al` (an exit per iteration) and
/// returns the body that creates a VM booting it.
pub fn spinning_guest(dir: &Path) -> String {
    let kernel = dir.join("spin.elf");
    std::fs::write(&kernel, elf_image(&[0xe6, 0x80, 0xeb, 0xfc])).unwrap();
    format!(
        r#"{{"boot-source": {{"kernel_image_path": {}}}, "machine-config": {{"vcpu_count": 1, "mem_size_mib": 32}}}}"#,
        serde_json::to_string(&kernel).unwrap()
    )
}

/// Writes a riscv64 Linux `Image` header over a `j .` loop to `kernel` (a
/// guest that spins on the interpreter, no KVM needed) and returns the body
/// that creates a VM booting it.
pub fn spinning_riscv_vm(kernel: &Path) -> String {
    let mut image = vec![0u8; 4096];
    image[0..4].copy_from_slice(&0x0000_006f_u32.to_le_bytes());
    image[8..16].copy_from_slice(&0x20_0000_u64.to_le_bytes());
    image[16..24].copy_from_slice(&4096_u64.to_le_bytes());
    image[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
    image[0x38..0x3c].copy_from_slice(b"RSC\x05");
    std::fs::write(kernel, image).expect("write kernel");
    serde_json::json!({
        "arch": "riscv64",
        "boot-source": {"kernel_image_path": kernel},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
    })
    .to_string()
}

pub fn exit_count(vm: &Value) -> u64 {
    vm["vcpu_exit_counts"][0].as_u64().unwrap_or(0)
}

/// Pids of the live (not zombie) processes whose parent is `parent`: the
/// VMM processes a daemon has running.
pub fn live_children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && !stat.contains(") Z ") {
            pids.push(pid);
        }
    }
    pids
}
