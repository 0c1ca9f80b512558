//! Firecracker-style metrics: once `PUT /metrics` (or `--metrics-path`) names
//! a file, each flush appends one JSON object on its own line. Flushes happen
//! on `PUT /actions {"action_type": "FlushMetrics"}`, every
//! [`FLUSH_INTERVAL`], and when the process ends.
//!
//! As in Firecracker, counters are **deltas**: each line counts what happened
//! since the previous line. What is counted, all real values:
//!
//! | group | keys |
//! |---|---|
//! | `get_api_requests`, `put_api_requests`, `patch_api_requests` | `<resource>_count`, `<resource>_fails` (e.g. `boot_source_count`, `machine_cfg_fails`) |
//! | `api_server` | `requests`, `client_errors`, `server_errors` |
//! | `vcpu` | `exit_count` (all vCPUs), `exit_count_per_vcpu` |
//! | `uart` | `write_bytes`: serial console bytes the guest wrote |
//!
//! Block and net device counters are not reported yet (the VMM does not
//! expose its devices' counters to this layer).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::executor::ExecutorControl;

/// How often metrics are flushed without being asked (Firecracker's period).
pub const FLUSH_INTERVAL: Duration = Duration::from_mins(1);

/// Why metrics could not be set up or written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `PUT /metrics` came a second time.
    #[error("metrics are already written to {0}; they cannot be reconfigured")]
    AlreadyConfigured(PathBuf),
    /// A flush was asked for before any metrics file was configured.
    #[error("metrics were never configured: PUT /metrics (or --metrics-path) first")]
    NotConfigured,
    /// The metrics file could not be opened.
    #[error("metrics_path {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line could not be written.
    #[error("writing metrics to {path}: {source}")]
    Write {
        /// The metrics file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Default)]
struct Inner {
    sink: Option<(PathBuf, File)>,
    /// (group, key) -> count since the last flush.
    counters: BTreeMap<(&'static str, String), u64>,
    vcpus: Option<ExecutorControl>,
    /// vCPU exit counts at the last flush.
    last_exits: Vec<u64>,
}

/// The process's metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FcMetrics {
    inner: Arc<Mutex<Inner>>,
    serial_bytes: Arc<AtomicU64>,
}

/// The metrics key for an API path: Firecracker's resource names.
fn resource(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "" => "instance_info",
        "version" => "vmm_version",
        "machine-config" => "machine_cfg",
        "boot-source" => "boot_source",
        "drives" => "drive",
        "network-interfaces" => "network",
        "actions" => "actions",
        "vm" if path.trim_end_matches('/').ends_with("/config") => "vm_config",
        "vm" => "vm",
        "logger" => "logger",
        "metrics" => "metrics",
        "snapshot" => "snapshot",
        _ => "unsupported",
    }
}

impl FcMetrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts writing to `path` (created if missing, appended to).
    pub fn configure(&self, path: &Path) -> Result<(), MetricsError> {
        let mut inner = self.lock();
        if let Some((existing, _)) = &inner.sink {
            return Err(MetricsError::AlreadyConfigured(existing.clone()));
        }
        // Non-blocking, as for the log: a reader-less named pipe fails at once.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| MetricsError::Open {
                path: path.to_owned(),
                source,
            })?;
        inner.sink = Some((path.to_owned(), file));
        Ok(())
    }

    /// The configured file, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.lock().sink.as_ref().map(|(p, _)| p.clone())
    }

    /// Counts one API answer to `method path` with `status`.
    pub fn record_request(&self, method: &str, path: &str, status: u16) {
        let group = match method {
            "GET" => "get_api_requests",
            "PUT" => "put_api_requests",
            "PATCH" => "patch_api_requests",
            _ => "other_api_requests",
        };
        let name = resource(path);
        let mut inner = self.lock();
        *inner
            .counters
            .entry((group, format!("{name}_count")))
            .or_default() += 1;
        if status >= 400 {
            *inner
                .counters
                .entry((group, format!("{name}_fails")))
                .or_default() += 1;
        }
        let class = match status {
            500.. => "server_errors",
            400.. => "client_errors",
            _ => "ok",
        };
        *inner
            .counters
            .entry(("api_server", "requests".into()))
            .or_default() += 1;
        *inner
            .counters
            .entry(("api_server", class.into()))
            .or_default() += 1;
    }

    /// Counts vCPU exits of the VM `control` drives, from now on.
    pub fn watch_vcpus(&self, control: ExecutorControl) {
        let mut inner = self.lock();
        inner.last_exits = vec![0; control.vcpu_count()];
        inner.vcpus = Some(control);
    }

    /// The counter the serial console writer adds its bytes to.
    pub fn serial_bytes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.serial_bytes)
    }

    /// The line a flush would write now, resetting the deltas.
    fn take_line(inner: &mut Inner, serial_bytes: &AtomicU64) -> Value {
        let mut groups: Map<String, Value> = Map::new();
        for ((group, key), n) in std::mem::take(&mut inner.counters) {
            if let Value::Object(g) = groups
                .entry(group.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                g.insert(key, n.into());
            }
        }
        let exits = inner
            .vcpus
            .as_ref()
            .map(ExecutorControl::exit_counts)
            .unwrap_or_default();
        let per_vcpu: Vec<u64> = exits
            .iter()
            .enumerate()
            .map(|(i, now)| now.saturating_sub(inner.last_exits.get(i).copied().unwrap_or(0)))
            .collect();
        inner.last_exits = exits;
        groups.insert(
            "vcpu".into(),
            json!({"exit_count": per_vcpu.iter().sum::<u64>(), "exit_count_per_vcpu": per_vcpu}),
        );
        groups.insert(
            "uart".into(),
            json!({"write_bytes": serial_bytes.swap(0, Ordering::Relaxed)}),
        );
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        groups.insert("utc_timestamp_ms".into(), now_ms.into());
        Value::Object(groups)
    }

    /// Appends one line to the metrics file.
    pub fn flush(&self) -> Result<(), MetricsError> {
        let mut inner = self.lock();
        if inner.sink.is_none() {
            return Err(MetricsError::NotConfigured);
        }
        let line = Self::take_line(&mut inner, &self.serial_bytes);
        let Some((path, file)) = inner.sink.as_mut() else {
            return Err(MetricsError::NotConfigured);
        };
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|source| MetricsError::Write {
                path: path.clone(),
                source,
            })
    }
}

/// A writer that passes bytes through and counts them (the serial console).
#[derive(Debug)]
pub struct CountingWriter<W> {
    inner: W,
    count: Arc<AtomicU64>,
}

impl<W> CountingWriter<W> {
    /// Counts what goes to `inner` into `count`.
    pub fn new(inner: W, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_hold_deltas_since_the_last_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.json");
        let m = FcMetrics::default();
        assert!(matches!(m.flush(), Err(MetricsError::NotConfigured)));
        m.configure(&path).expect("configure");
        assert!(matches!(
            m.configure(&path),
            Err(MetricsError::AlreadyConfigured(_))
        ));
        m.record_request("PUT", "/boot-source", 204);
        m.record_request("PUT", "/machine-config", 400);
        m.record_request("GET", "/", 200);
        let mut serial = CountingWriter::new(Vec::new(), m.serial_bytes());
        serial.write_all(b"hello").expect("write");
        m.flush().expect("flush");
        m.flush().expect("second flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["put_api_requests"]["boot_source_count"], 1);
        assert_eq!(lines[0]["put_api_requests"]["machine_cfg_fails"], 1);
        assert_eq!(lines[0]["get_api_requests"]["instance_info_count"], 1);
        assert_eq!(lines[0]["api_server"]["requests"], 3);
        assert_eq!(lines[0]["uart"]["write_bytes"], 5);
        assert_eq!(lines[1]["uart"]["write_bytes"], 0);
        assert!(lines[1].get("put_api_requests").is_none());
        assert!(lines[1]["utc_timestamp_ms"].as_u64().is_some());
    }
}
