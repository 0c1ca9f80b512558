//! The upcaster: maps schema-1 events (the JSON objects of the v1 journal) to the current
//! [`VmEvent`].
//!
//! A schema-1 event is one JSON object:
//! `{"vm":"web-1","seq":1,"ts_ms":1700000000000,"type":"created","config":{...}}`.
//! Differences from the current schema, and how they are upcast:
//! - timestamps were milliseconds (`ts_ms`) → nanoseconds;
//! - configs had `memory_mb` (MiB), no architecture (v1 ran x86_64 only), an optional
//!   `cmdline`, and `net: [{"id","tap","mac"}]` (tap was the only backend) → [`VmConfig`]
//!   with `arch: x86_64`, tap-backed net devices, serial to stdout (v1's only console);
//! - `stopped` carried no reason → [`StopReason::Unknown`];
//! - `net_attached {net}` / `net_detached {id}` → `device_attached` / `device_detached`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{DeviceConfig, NetBackendConfig, NetConfig, SerialMode, VmConfig};
use crate::event::{EventKind, Timestamp, VmEvent};
use crate::id::VmId;
use crate::stop::StopReason;

use super::codec::DecodeError;

#[derive(Deserialize)]
struct LegacyEvent {
    vm: String,
    seq: u64,
    ts_ms: u64,
    #[serde(flatten)]
    kind: LegacyKind,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LegacyKind {
    Created { config: LegacyConfig },
    Started,
    Paused,
    Resumed,
    Stopped,
    Failed { error: String },
    NetAttached { net: LegacyNet },
    NetDetached { id: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyConfig {
    vcpus: u32,
    memory_mb: u64,
    #[serde(default)]
    kernel: Option<PathBuf>,
    #[serde(default)]
    initrd: Option<PathBuf>,
    #[serde(default)]
    cmdline: Option<String>,
    #[serde(default)]
    net: Vec<LegacyNet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyNet {
    id: String,
    tap: String,
    #[serde(default)]
    mac: Option<String>,
}

fn upcast_net(n: LegacyNet) -> Result<DeviceConfig, DecodeError> {
    let mac = n
        .mac
        .map(|m| m.parse())
        .transpose()
        .map_err(|e: crate::ConfigError| DecodeError::Invalid {
            field: "net.mac",
            reason: e.reason,
        })?;
    Ok(DeviceConfig::Net(NetConfig {
        id: n.id,
        backend: NetBackendConfig::Tap { ifname: n.tap },
        mac,
    }))
}

/// Parses one schema-1 JSON event and upcasts it to the current [`VmEvent`].
pub fn upcast_json(json: &[u8]) -> Result<VmEvent, DecodeError> {
    let legacy: LegacyEvent = serde_json::from_slice(json).map_err(|e| DecodeError::Invalid {
        field: "v1 event",
        reason: e.to_string(),
    })?;
    let vm_id = VmId::new(&legacy.vm).map_err(|e| DecodeError::Invalid {
        field: "vm",
        reason: e.to_string(),
    })?;
    if legacy.seq == 0 {
        return Err(DecodeError::Invalid {
            field: "seq",
            reason: "0 (sequences start at 1)".into(),
        });
    }
    let kind = match legacy.kind {
        LegacyKind::Created { config } => EventKind::created(VmConfig {
            vcpus: config.vcpus,
            memory_mib: config.memory_mb,
            arch: crate::GuestArch::X86_64,
            kernel: config.kernel,
            initrd: config.initrd,
            cmdline: config.cmdline.unwrap_or_default(),
            devices: config
                .net
                .into_iter()
                .map(upcast_net)
                .collect::<Result<_, _>>()?,
            serial: SerialMode::Stdout,
            restore: None,
            gdb: None,
        }),
        LegacyKind::Started => EventKind::Started,
        LegacyKind::Paused => EventKind::Paused,
        LegacyKind::Resumed => EventKind::Resumed,
        LegacyKind::Stopped => EventKind::Stopped {
            reason: StopReason::Unknown,
        },
        LegacyKind::Failed { error } => EventKind::Failed { error },
        LegacyKind::NetAttached { net } => EventKind::device_attached(upcast_net(net)?),
        LegacyKind::NetDetached { id } => EventKind::DeviceDetached { device_id: id },
    };
    Ok(VmEvent {
        vm_id,
        sequence: legacy.seq,
        timestamp: Timestamp::from_millis(legacy.ts_ms),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upcasts_created_with_net() {
        let ev = upcast_json(
            br#"{"vm":"old-1","seq":1,"ts_ms":1600000000000,"type":"created",
                 "config":{"vcpus":2,"memory_mb":256,"kernel":"/boot/vmlinux",
                           "net":[{"id":"eth0","tap":"tap0","mac":"52:54:00:00:00:07"}]}}"#,
        )
        .unwrap();
        assert_eq!(ev.timestamp, Timestamp(1_600_000_000_000_000_000));
        let EventKind::Created { config } = ev.kind else {
            panic!("{:?}", ev.kind)
        };
        assert_eq!(config.arch, crate::GuestArch::X86_64);
        assert_eq!(config.memory_mib, 256);
        assert_eq!(config.cmdline, "");
        assert_eq!(
            config.devices,
            vec![DeviceConfig::Net(NetConfig {
                id: "eth0".into(),
                backend: NetBackendConfig::Tap {
                    ifname: "tap0".into()
                },
                mac: Some("52:54:00:00:00:07".parse().unwrap()),
            })]
        );
    }

    #[test]
    fn stopped_gets_unknown_reason() {
        let ev = upcast_json(br#"{"vm":"a","seq":3,"ts_ms":1,"type":"stopped"}"#).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Stopped {
                reason: StopReason::Unknown
            }
        );
    }

    #[test]
    fn rejects_bad_legacy_events() {
        for bad in [
            &br#"{"vm":"a","seq":1,"ts_ms":1,"type":"exploded"}"#[..],
            br#"{"vm":"a b","seq":1,"ts_ms":1,"type":"started"}"#,
            br#"{"vm":"a","seq":0,"ts_ms":1,"type":"started"}"#,
            br#"{"vm":"a","seq":1,"type":"started"}"#,
            br#"{"vm":"a","seq":1,"ts_ms":1,"type":"net_attached","net":{"id":"e","tap":"t","mac":"zz"}}"#,
            b"not json",
        ] {
            assert!(upcast_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
