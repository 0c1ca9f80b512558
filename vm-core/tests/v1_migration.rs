//! Hand-written v1 journals are read, upcast and migrated to v2 with identical replay.

mod common;

use std::path::Path;

use common::id;
use vm_core::store::{self, migrate_v1_to_v2, EventStore, MigrationReport, StoreFormat, V1Store};
use vm_core::{
    DeviceConfig, EventKind, GuestArch, NetBackendConfig, SerialMode, StopReason, VmEvent,
    VmRegistry, VmState,
};

const FIXTURE: &str = r#"{"vm":"web-1","seq":1,"ts_ms":1600000000000,"type":"created","config":{"vcpus":2,"memory_mb":512,"kernel":"/var/lib/vms/vmlinux","cmdline":"console=ttyS0 root=/dev/vda","net":[{"id":"eth0","tap":"tap-web1","mac":"52:54:00:12:34:56"}]}}
{"vm":"web-1","seq":2,"ts_ms":1600000001000,"type":"started"}
{"vm":"db","seq":1,"ts_ms":1600000002000,"type":"created","config":{"vcpus":4,"memory_mb":4096}}

{"vm":"web-1","seq":3,"ts_ms":1600000003000,"type":"net_attached","net":{"id":"eth1","tap":"tap-web1b"}}
{"vm":"db","seq":2,"ts_ms":1600000004000,"type":"started"}
{"vm":"web-1","seq":4,"ts_ms":1600000005000,"type":"paused"}
{"vm":"db","seq":3,"ts_ms":1600000006000,"type":"failed","error":"KVM_EXIT_INTERNAL_ERROR"}
{"vm":"web-1","seq":5,"ts_ms":1600000007000,"type":"resumed"}
{"vm":"web-1","seq":6,"ts_ms":1600000008000,"type":"net_detached","id":"eth0"}
{"vm":"web-1","seq":7,"ts_ms":1600000009000,"type":"stopped"}
"#;

fn all(s: &dyn EventStore) -> Vec<VmEvent> {
    s.read_all().unwrap().map(Result::unwrap).collect()
}

fn check_fixture_replay(reg: &VmRegistry) {
    let web = reg.get(&id("web-1")).unwrap();
    assert_eq!(web.state, VmState::Stopped);
    assert_eq!(web.stop_reason, Some(StopReason::Unknown));
    assert_eq!(web.config.arch, GuestArch::X86_64);
    assert_eq!(web.config.memory_mib, 512);
    assert_eq!(web.config.serial, SerialMode::Stdout);
    assert_eq!(web.devices.len(), 1);
    let DeviceConfig::Net(eth1) = &web.devices[0] else {
        panic!("v1 devices are NICs: {:?}", web.devices[0]);
    };
    assert_eq!(eth1.id, "eth1");
    assert_eq!(
        eth1.backend,
        NetBackendConfig::Tap {
            ifname: "tap-web1b".into()
        }
    );
    let db = reg.get(&id("db")).unwrap();
    assert_eq!(db.state, VmState::Failed);
    assert_eq!(db.error.as_deref(), Some("KVM_EXIT_INTERNAL_ERROR"));
    assert_eq!(db.config.cmdline, "");
    assert!(db.config.kernel.is_none());
}

fn write_fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("journal");
    std::fs::write(&path, FIXTURE).unwrap();
    path
}

#[test]
fn fixture_reads_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path());
    let s = store::open(&path).unwrap();
    assert_eq!(s.format(), StoreFormat::V1);
    assert_eq!(s.head(), 10);
    let evs = all(s.as_ref());
    assert_eq!(evs[1].kind, EventKind::Started);
    assert_eq!(evs[1].timestamp.0, 1_600_000_001_000_000_000);
    assert_eq!(s.stream_head(&id("db")), 3);
    assert_eq!(s.read_stream(&id("web-1"), 6).unwrap().len(), 2);
    check_fixture_replay(&VmRegistry::replay(s.as_ref()).unwrap());
}

#[test]
fn migration_preserves_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path());
    let before = all(&V1Store::open(&path).unwrap());
    let reg_before = VmRegistry::replay(&V1Store::open(&path).unwrap()).unwrap();

    // A leftover of an interrupted migration is replaced.
    std::fs::write(
        dir.path().join("journal.v2-migrating"),
        b"half-written junk",
    )
    .unwrap();
    let report = migrate_v1_to_v2(&path).unwrap();
    let MigrationReport::Migrated {
        events,
        backup,
        dropped_tail_bytes,
    } = report
    else {
        panic!("{report:?}")
    };
    assert_eq!((events, dropped_tail_bytes), (10, 0));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), FIXTURE);
    assert!(!dir.path().join("journal.v2-migrating").exists());

    let s = store::open(&path).unwrap();
    assert_eq!(s.format(), StoreFormat::V2);
    assert_eq!(all(s.as_ref()), before);
    let reg_after = VmRegistry::replay(s.as_ref()).unwrap();
    assert_eq!(reg_after, reg_before);
    check_fixture_replay(&reg_after);

    // The migrated store takes appends.
    let ev = VmEvent::new(
        id("web-2"),
        1,
        EventKind::created(vm_core::VmConfig::default()),
    );
    s.append(&ev).unwrap();
    drop(s);
    assert_eq!(migrate_v1_to_v2(&path).unwrap(), MigrationReport::AlreadyV2);
}

#[test]
fn migration_drops_and_reports_a_torn_v1_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let torn = r#"{"vm":"db","seq":4,"ts_ms":16000"#;
    std::fs::write(&path, format!("{FIXTURE}{torn}")).unwrap();
    let report = migrate_v1_to_v2(&path).unwrap();
    assert!(
        matches!(report, MigrationReport::Migrated { events: 10, dropped_tail_bytes, .. }
            if dropped_tail_bytes == torn.len() as u64),
        "{report:?}"
    );
}

#[test]
fn migration_refuses_missing_or_broken_sources() {
    let dir = tempfile::tempdir().unwrap();
    assert!(migrate_v1_to_v2(&dir.path().join("none")).is_err());
    let path = dir.path().join("journal");
    std::fs::write(&path, FIXTURE.replace(r#""seq":5"#, r#""seq":9"#)).unwrap();
    assert!(migrate_v1_to_v2(&path).is_err());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        FIXTURE.replace(r#""seq":5"#, r#""seq":9"#)
    );
}
