//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use vm_core::store::{EventStore, MemoryStore, V1Store, V2Store};
use vm_core::{
    DeviceConfig, EventKind, GuestArch, NetBackendConfig, NetConfig, SerialMode, StopReason,
    Timestamp, VmConfig, VmEvent, VmId,
};

pub fn id(s: &str) -> VmId {
    VmId::new(s).unwrap()
}

pub fn tap(dev: &str, ifname: &str, mac: Option<&str>) -> DeviceConfig {
    DeviceConfig::Net(NetConfig {
        id: dev.into(),
        backend: NetBackendConfig::Tap {
            ifname: ifname.into(),
        },
        mac: mac.map(|m| m.parse().unwrap()),
    })
}

/// A config that the v1 format can express (x86_64, tap devices, serial on stdout).
pub fn v1_expressible_config(vcpus: u32) -> VmConfig {
    VmConfig {
        vcpus,
        memory_mib: 256,
        arch: GuestArch::X86_64,
        kernel: Some("/boot/vmlinux".into()),
        initrd: None,
        cmdline: "console=ttyS0".into(),
        devices: vec![tap("eth0", "tap0", Some("52:54:00:00:00:01"))],
        serial: SerialMode::Stdout,
        restore: None,
        gdb: None,
    }
}

/// Two interleaved VM lifecycles, expressible in v1 (timestamps in whole milliseconds).
pub fn lifecycle_events() -> Vec<VmEvent> {
    let a = id("alpha");
    let b = id("beta");
    let ev = |vm: &VmId, seq: u64, ms: u64, kind: EventKind| VmEvent {
        vm_id: vm.clone(),
        sequence: seq,
        timestamp: Timestamp::from_millis(1_700_000_000_000 + ms),
        kind,
    };
    vec![
        ev(&a, 1, 0, EventKind::created(v1_expressible_config(2))),
        ev(&a, 2, 1, EventKind::Started),
        ev(&b, 1, 2, EventKind::created(v1_expressible_config(1))),
        ev(&a, 3, 3, EventKind::Paused),
        ev(&b, 2, 4, EventKind::Started),
        ev(&a, 4, 5, EventKind::Resumed),
        ev(
            &b,
            3,
            6,
            EventKind::device_attached(tap("eth1", "tap9", None)),
        ),
        ev(
            &b,
            4,
            7,
            EventKind::DeviceDetached {
                device_id: "eth1".into(),
            },
        ),
        ev(
            &a,
            5,
            8,
            EventKind::Stopped {
                reason: StopReason::Unknown,
            },
        ),
        ev(
            &b,
            5,
            9,
            EventKind::Failed {
                error: "triple fault at rip 0xfff0".into(),
            },
        ),
    ]
}

/// The schema-1 JSON line for an event that v1 can express.
pub fn v1_line(ev: &VmEvent) -> String {
    use serde_json::json;
    let net = |d: &DeviceConfig| {
        let DeviceConfig::Net(n) = d else {
            panic!("v1 only had net devices")
        };
        let NetBackendConfig::Tap { ifname } = &n.backend else {
            panic!("v1 only had tap devices")
        };
        let mut v = json!({"id": n.id, "tap": ifname});
        if let Some(mac) = n.mac {
            v["mac"] = json!(mac.to_string());
        }
        v
    };
    let mut v = json!({
        "vm": ev.vm_id.as_str(),
        "seq": ev.sequence,
        "ts_ms": ev.timestamp.0 / 1_000_000,
    });
    match &ev.kind {
        EventKind::Created { config } => {
            v["type"] = json!("created");
            v["config"] = json!({
                "vcpus": config.vcpus,
                "memory_mb": config.memory_mib,
                "kernel": config.kernel,
                "cmdline": config.cmdline,
                "net": config.devices.iter().map(net).collect::<Vec<_>>(),
            });
        }
        EventKind::Started => v["type"] = json!("started"),
        EventKind::Paused => v["type"] = json!("paused"),
        EventKind::Resumed => v["type"] = json!("resumed"),
        EventKind::Stopped { .. } => v["type"] = json!("stopped"),
        EventKind::Failed { error } => {
            v["type"] = json!("failed");
            v["error"] = json!(error);
        }
        EventKind::DeviceAttached { device } => {
            v["type"] = json!("net_attached");
            v["net"] = net(device);
        }
        EventKind::DeviceDetached { device_id } => {
            v["type"] = json!("net_detached");
            v["id"] = json!(device_id);
        }
        EventKind::Deleted => panic!("v1 had no deleted events"),
    }
    v.to_string()
}

/// Writes `events` as a v1 journal.
pub fn write_v1(path: &Path, events: &[VmEvent]) {
    let mut text = String::new();
    for ev in events {
        text.push_str(&v1_line(ev));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Every adapter, each holding `events`: the in-memory store, a v2 store (freshly written
/// and reopened from disk), and a v1 journal written line by line.
pub fn every_adapter(dir: &Path, events: &[VmEvent]) -> Vec<(String, Box<dyn EventStore>)> {
    let mut out: Vec<(String, Box<dyn EventStore>)> = Vec::new();

    let mem = MemoryStore::new();
    for ev in events {
        mem.append(ev).unwrap();
    }
    out.push(("memory".into(), Box::new(mem)));

    let v2_path = dir.join("store.v2");
    let v2 = V2Store::create(&v2_path).unwrap();
    let (single, batch) = events.split_at(events.len() / 2);
    for ev in single {
        v2.append(ev).unwrap();
    }
    v2.append_batch(batch).unwrap();
    out.push(("v2 (live)".into(), Box::new(v2)));
    let v2_copy = dir.join("store-copy.v2");
    std::fs::copy(&v2_path, &v2_copy).unwrap();
    out.push((
        "v2 (reopened)".into(),
        vm_core::store::open(&v2_copy).unwrap(),
    ));

    let v1_path = dir.join("store.v1");
    write_v1(&v1_path, events);
    out.push(("v1".into(), Box::new(V1Store::open(&v1_path).unwrap())));
    out
}
