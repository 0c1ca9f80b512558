//! Firecracker's resources as JSON bodies: what `PUT`/`PATCH` take, what
//! `GET` returns and what a `--config-file` holds. Field names follow the
//! published Firecracker API; which values this VMM can honour is checked
//! here too ([`MachineConfig::check`], [`Drive::check`], ...), so a refusal
//! names the field and the value.
//!
//! Unknown fields are refused (as Firecracker does), so a misspelt option
//! never goes unnoticed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vm_core::config::MacAddr;

/// A value a client sent that this VMM cannot honour; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

fn unsupported(message: impl Into<String>) -> Unsupported {
    Unsupported(message.into())
}

/// `PUT /boot-source`, and `boot-source` in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    /// Host path of the kernel image (ELF vmlinux, bzImage, or an arm64/riscv64 `Image`).
    pub kernel_image_path: PathBuf,
    /// Host path of an initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
}

/// The only CPU template and huge-page setting this VMM has.
const NONE: &str = "None";

/// `PUT`/`GET /machine-config`, and `machine-config` in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Number of vCPUs.
    pub vcpu_count: u32,
    /// Guest memory in MiB.
    pub mem_size_mib: u64,
    /// Simultaneous multithreading; only `false` is supported.
    #[serde(default)]
    pub smt: bool,
    /// Dirty page tracking (for diff snapshots); only `false` is supported.
    #[serde(default)]
    pub track_dirty_pages: bool,
    /// A static CPU template; only `"None"` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<String>,
    /// Huge pages backing guest memory; only `"None"` is supported.
    #[serde(default = "none_string")]
    pub huge_pages: Option<String>,
}

// An Option so that `null` is accepted as "the default" on input.
#[allow(clippy::unnecessary_wraps)]
fn none_string() -> Option<String> {
    Some(NONE.to_string())
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            vcpu_count: 1,
            mem_size_mib: 128,
            smt: false,
            track_dirty_pages: false,
            cpu_template: None,
            huge_pages: none_string(),
        }
    }
}

impl MachineConfig {
    /// Refuses settings this VMM does not implement, naming the value.
    pub fn check(&self) -> Result<(), Unsupported> {
        if self.smt {
            return Err(unsupported(
                "machine-config.smt: true is not supported: vCPUs are exposed without SMT siblings",
            ));
        }
        if self.track_dirty_pages {
            return Err(unsupported(
                "machine-config.track_dirty_pages: true is not supported: there are no (diff) snapshots",
            ));
        }
        if let Some(t) = self.cpu_template.as_deref().filter(|t| *t != NONE) {
            return Err(unsupported(format!(
                "machine-config.cpu_template: {t:?} is not supported: only \"None\" (no static CPU template)"
            )));
        }
        if let Some(h) = self.huge_pages.as_deref().filter(|h| *h != NONE) {
            return Err(unsupported(format!(
                "machine-config.huge_pages: {h:?} is not supported: only \"None\" (guest memory on 4 KiB pages)"
            )));
        }
        Ok(())
    }

    /// This config with the fields `patch` sets replaced.
    #[must_use]
    pub fn patched(&self, patch: &MachineConfigPatch) -> Self {
        Self {
            vcpu_count: patch.vcpu_count.unwrap_or(self.vcpu_count),
            mem_size_mib: patch.mem_size_mib.unwrap_or(self.mem_size_mib),
            smt: patch.smt.unwrap_or(self.smt),
            track_dirty_pages: patch.track_dirty_pages.unwrap_or(self.track_dirty_pages),
            cpu_template: patch
                .cpu_template
                .clone()
                .or_else(|| self.cpu_template.clone()),
            huge_pages: patch.huge_pages.clone().or_else(|| self.huge_pages.clone()),
        }
    }
}

/// `PATCH /machine-config`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigPatch {
    /// Number of vCPUs.
    #[serde(default)]
    pub vcpu_count: Option<u32>,
    /// Guest memory in MiB.
    #[serde(default)]
    pub mem_size_mib: Option<u64>,
    /// SMT.
    #[serde(default)]
    pub smt: Option<bool>,
    /// Dirty page tracking.
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    /// CPU template.
    #[serde(default)]
    pub cpu_template: Option<String>,
    /// Huge pages.
    #[serde(default)]
    pub huge_pages: Option<String>,
}

/// A rate limiter as Firecracker describes it (token buckets). Kept as raw
/// JSON: the only limiter accepted is an absent or empty one.
pub type RateLimiter = serde_json::Value;

/// True when `limiter` limits nothing (`null`, `{}`, or only null buckets).
fn limits_nothing(limiter: Option<&RateLimiter>) -> bool {
    match limiter {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Object(map)) => map.values().all(serde_json::Value::is_null),
        Some(_) => false,
    }
}

/// `PUT /drives/{drive_id}`, and `drives[]` in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    /// Drive id, also the path parameter.
    pub drive_id: String,
    /// Raw image file on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_on_host: Option<PathBuf>,
    /// The guest boots from this drive (`root=/dev/vda`).
    pub is_root_device: bool,
    /// The guest sees a read-only disk.
    #[serde(default)]
    pub is_read_only: bool,
    /// Root partition by UUID; not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    /// `Unsafe` (the default) or `Writeback`; only `Unsafe` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<String>,
    /// Rate limiter; only an empty one is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
    /// `Sync` (the default) or `Async`; only `Sync` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_engine: Option<String>,
    /// A vhost-user-blk socket; not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

impl Drive {
    /// Refuses settings this VMM does not implement, naming the value.
    pub fn check(&self) -> Result<(), Unsupported> {
        let id = &self.drive_id;
        if self.socket.is_some() {
            return Err(unsupported(format!(
                "drives[{id}].socket: vhost-user block devices are not supported"
            )));
        }
        if self.path_on_host.is_none() {
            return Err(unsupported(format!(
                "drives[{id}].path_on_host is required"
            )));
        }
        if let Some(p) = &self.partuuid {
            return Err(unsupported(format!(
                "drives[{id}].partuuid {p:?}: booting from a partition UUID is not supported; \
                 use is_root_device (root=/dev/vda)"
            )));
        }
        if let Some(c) = self.cache_type.as_deref().filter(|c| *c != "Unsafe") {
            return Err(unsupported(format!(
                "drives[{id}].cache_type {c:?} is not supported: only \"Unsafe\""
            )));
        }
        if let Some(e) = self.io_engine.as_deref().filter(|e| *e != "Sync") {
            return Err(unsupported(format!(
                "drives[{id}].io_engine {e:?} is not supported: only \"Sync\""
            )));
        }
        if !limits_nothing(self.rate_limiter.as_ref()) {
            return Err(unsupported(format!(
                "drives[{id}].rate_limiter: rate limiters are not supported"
            )));
        }
        Ok(())
    }
}

/// `PATCH /drives/{drive_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrivePatch {
    /// Drive id, also the path parameter.
    pub drive_id: String,
    /// A new backing file.
    #[serde(default)]
    pub path_on_host: Option<PathBuf>,
    /// A new rate limiter.
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
}

/// `PUT /network-interfaces/{iface_id}`, and `network-interfaces[]` in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// Interface id, also the path parameter.
    pub iface_id: String,
    /// Host TAP device.
    pub host_dev_name: String,
    /// Guest MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<MacAddr>,
    /// Receive rate limiter; only an empty one is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Transmit rate limiter; only an empty one is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_rate_limiter: Option<RateLimiter>,
}

impl NetworkInterface {
    /// Refuses settings this VMM does not implement, naming the value.
    pub fn check(&self) -> Result<(), Unsupported> {
        for (name, limiter) in [
            ("rx_rate_limiter", &self.rx_rate_limiter),
            ("tx_rate_limiter", &self.tx_rate_limiter),
        ] {
            if !limits_nothing(limiter.as_ref()) {
                return Err(unsupported(format!(
                    "network-interfaces[{}].{name}: rate limiters are not supported",
                    self.iface_id
                )));
            }
        }
        Ok(())
    }
}

/// `PATCH /network-interfaces/{iface_id}`: new rate limiters for a running VM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterfacePatch {
    /// Interface id, also the path parameter.
    pub iface_id: String,
    /// Receive rate limiter.
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Transmit rate limiter.
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiter>,
}

impl NetworkInterfacePatch {
    /// True when the patch changes nothing (no limiter, or empty ones).
    pub fn is_noop(&self) -> bool {
        limits_nothing(self.rx_rate_limiter.as_ref())
            && limits_nothing(self.tx_rate_limiter.as_ref())
    }
}

/// `PUT /logger`, and `logger` in a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logger {
    /// File (or named pipe) the log goes to; absent: stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<PathBuf>,
    /// `Error`, `Warning`, `Info`, `Debug`, `Trace` or `Off` (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Print each line's level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_level: Option<bool>,
    /// Print each line's source file and line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_log_origin: Option<bool>,
    /// Only log this module (accepted and ignored: every module logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// `PUT /metrics`, and `metrics` in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// File (or named pipe) the metrics lines go to.
    pub metrics_path: PathBuf,
}

/// The actions of `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    /// Write a metrics line now.
    FlushMetrics,
    /// Build and boot the VM.
    InstanceStart,
    /// Ctrl-Alt-Del: this VMM stops the VM (see the daemon's notes).
    SendCtrlAltDel,
}

/// `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// What to do.
    pub action_type: ActionType,
}

/// The states `PATCH /vm` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VmStateRequest {
    /// Stop running vCPUs.
    Paused,
    /// Run them again.
    Resumed,
}

/// `PATCH /vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmState {
    /// The state asked for.
    pub state: VmStateRequest,
}

/// `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The process's `--id`.
    pub id: String,
    /// `Not started`, `Running` or `Paused`.
    pub state: String,
    /// The Firecracker API version this VMM follows.
    pub vmm_version: String,
    /// Application name.
    pub app_name: String,
}

/// `GET /vm/config`: every resource as configured. Devices this VMM does
/// not have are always `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullVmConfig {
    /// The kernel.
    #[serde(rename = "boot-source")]
    pub boot_source: Option<BootSource>,
    /// vCPUs and memory.
    #[serde(rename = "machine-config")]
    pub machine_config: MachineConfig,
    /// Block devices.
    pub drives: Vec<Drive>,
    /// Network interfaces.
    #[serde(rename = "network-interfaces")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// The logger, if configured.
    pub logger: Option<Logger>,
    /// The metrics file, if configured.
    pub metrics: Option<Metrics>,
    /// Always `null`: no balloon device.
    pub balloon: Option<serde_json::Value>,
    /// Always `null`: no vsock device.
    pub vsock: Option<serde_json::Value>,
    /// Always `null`: no MMDS.
    #[serde(rename = "mmds-config")]
    pub mmds_config: Option<serde_json::Value>,
    /// Always `null`: no entropy device.
    pub entropy: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_config_defaults_and_refusals() {
        let m: MachineConfig = serde_json::from_str(r#"{"vcpu_count": 2, "mem_size_mib": 256}"#)
            .expect("minimal machine-config");
        assert!(!m.smt && !m.track_dirty_pages);
        assert_eq!(m.huge_pages.as_deref(), Some("None"));
        m.check().expect("defaults are supported");
        for (body, word) in [
            (r#"{"vcpu_count":1,"mem_size_mib":1,"smt":true}"#, "smt"),
            (
                r#"{"vcpu_count":1,"mem_size_mib":1,"track_dirty_pages":true}"#,
                "track_dirty_pages",
            ),
            (
                r#"{"vcpu_count":1,"mem_size_mib":1,"cpu_template":"T2"}"#,
                "\"T2\"",
            ),
            (
                r#"{"vcpu_count":1,"mem_size_mib":1,"huge_pages":"2M"}"#,
                "\"2M\"",
            ),
        ] {
            let m: MachineConfig = serde_json::from_str(body).expect(body);
            let e = m.check().expect_err(body);
            assert!(e.0.contains(word), "{e}");
        }
        let ok: MachineConfig = serde_json::from_str(
            r#"{"vcpu_count":1,"mem_size_mib":1,"smt":false,"cpu_template":"None","huge_pages":"None"}"#,
        )
        .expect("explicit defaults");
        ok.check().expect("explicit defaults are supported");
        assert!(serde_json::from_str::<MachineConfig>(r#"{"vcpu_count":1}"#).is_err());
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let base = MachineConfig::default();
        let patch: MachineConfigPatch =
            serde_json::from_str(r#"{"mem_size_mib": 512}"#).expect("patch");
        let m = base.patched(&patch);
        assert_eq!((m.vcpu_count, m.mem_size_mib), (1, 512));
    }

    #[test]
    fn drive_and_net_refusals_name_the_value() {
        let drive = |extra: &str| -> Drive {
            serde_json::from_str(&format!(
                r#"{{"drive_id":"rootfs","path_on_host":"/r","is_root_device":true{extra}}}"#
            ))
            .expect("drive")
        };
        drive("").check().expect("plain drive");
        drive(r#","rate_limiter":null,"cache_type":"Unsafe","io_engine":"Sync""#)
            .check()
            .expect("explicit defaults");
        for (extra, word) in [
            (r#","io_engine":"Async""#, "Async"),
            (r#","cache_type":"Writeback""#, "Writeback"),
            (r#","partuuid":"abc""#, "abc"),
            (
                r#","rate_limiter":{"ops":{"size":1,"refill_time":1}}"#,
                "rate_limiter",
            ),
        ] {
            let e = drive(extra).check().expect_err(extra);
            assert!(e.0.contains(word), "{e}");
        }
        let nic: NetworkInterface = serde_json::from_str(
            r#"{"iface_id":"eth0","host_dev_name":"tap0","tx_rate_limiter":{"bandwidth":{"size":1,"refill_time":1}}}"#,
        )
        .expect("nic");
        assert!(nic
            .check()
            .expect_err("limiter")
            .0
            .contains("tx_rate_limiter"));
    }
}
