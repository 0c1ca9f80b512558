//! Shared by the Firecracker-mode tests: start `vm-service firecracker` on a
//! temp socket, send it HTTP/1.1 requests, read the answers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A riscv64 Image whose entry spins forever (`jal x0, 0`).
pub fn spinning_riscv_image() -> Vec<u8> {
    let mut image = vec![0u8; 4096];
    image[0..4].copy_from_slice(&0x0000_006f_u32.to_le_bytes());
    image[8..16].copy_from_slice(&0x20_0000_u64.to_le_bytes()); // text_offset
    image[16..24].copy_from_slice(&4096_u64.to_le_bytes()); // image_size
    image[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
    image[0x38..0x3c].copy_from_slice(b"RSC\x05");
    image
}

/// One Firecracker-mode process and its scratch directory.
pub struct Fc {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Drop for Fc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn fault(&self) -> String {
        self.json()["fault_message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fault_message in {:?}", self.body))
            .to_string()
    }
}

/// Reads one HTTP/1.1 answer (the server closes or sends Content-Length).
pub fn read_answer(stream: &mut UnixStream) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("read answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().expect("content-length"));
            if raw.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Answer { status, body }
}

impl Fc {
    pub fn spawn(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("api.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_vm-service"))
            .arg("firecracker")
            .arg("--api-sock")
            .arg(&socket)
            .args(["--id", "contract"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vm-service firecracker");
        let fc = Self { child, dir, socket };
        let start = Instant::now();
        while UnixStream::connect(&fc.socket).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "no API socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        fc
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn kernel(&self) -> PathBuf {
        let path = self.path("kernel");
        if !path.exists() {
            std::fs::write(&path, spinning_riscv_image()).expect("write kernel");
        }
        path
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s
    }

    pub fn raw(&self, request: &[u8]) -> Answer {
        let mut s = self.connect();
        s.write_all(request).expect("send");
        read_answer(&mut s)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.raw(request.as_bytes())
    }

    pub fn get(&self, path: &str) -> Value {
        let a = self.call("GET", path, None);
        assert_eq!(a.status, 200, "GET {path}: {a:?}");
        a.json()
    }

    /// A documented request: 204 with an empty body.
    pub fn ok(&self, method: &str, path: &str, body: &Value) {
        let a = self.call(method, path, Some(&body.to_string()));
        assert_eq!(
            (a.status, a.body.as_str()),
            (204, ""),
            "{method} {path} {body}"
        );
    }

    /// A refused request: 400 and a fault message containing `word`.
    pub fn refused(&self, method: &str, path: &str, body: Option<&str>, word: &str) {
        let a = self.call(method, path, body);
        assert_eq!(a.status, 400, "{method} {path} {body:?}: {a:?}");
        let fault = a.fault();
        assert!(
            fault.to_lowercase().contains(&word.to_lowercase()),
            "{method} {path}: {fault:?} lacks {word:?}"
        );
    }

    pub fn state(&self) -> String {
        self.get("/")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits for the process to end; its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "process did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
