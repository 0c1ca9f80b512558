//! Property test: random event sequences round-trip through the codec and every writable
//! adapter (v2 also after reopening from disk).

use proptest::collection::vec;
use proptest::prelude::*;

use vm_core::store::codec::{encode_event, EventDecoder};
use vm_core::store::{EventStore, MemoryStore, V2Store};
use vm_core::{
    DeviceConfig, EventKind, GuestArch, MacAddr, NetBackendConfig, NetConfig, SerialMode,
    StopReason, Timestamp, VcpuId, VmConfig, VmEvent, VmId,
};

fn arch() -> impl Strategy<Value = GuestArch> {
    prop_oneof![
        Just(GuestArch::X86_64),
        Just(GuestArch::Arm64),
        Just(GuestArch::Riscv64)
    ]
}

fn device() -> impl Strategy<Value = DeviceConfig> {
    (
        "[a-z0-9]{1,8}",
        prop_oneof![
            "[a-z0-9]{1,15}".prop_map(|ifname| NetBackendConfig::Tap { ifname }),
            ".{0,20}".prop_map(|switch| NetBackendConfig::Virtual { switch }),
        ],
        proptest::option::of(any::<[u8; 6]>().prop_map(MacAddr)),
    )
        .prop_map(|(id, backend, mac)| DeviceConfig::Net(NetConfig { id, backend, mac }))
}

fn config() -> impl Strategy<Value = VmConfig> {
    (
        any::<u32>(),
        any::<u64>(),
        arch(),
        proptest::option::of("/[a-z/]{1,20}"),
        ".{0,40}",
        vec(device(), 0..3),
        prop_oneof![
            Just(SerialMode::Off),
            Just(SerialMode::Stdout),
            Just(SerialMode::Capture),
            "/[a-z]{1,10}".prop_map(|p| SerialMode::File { path: p.into() }),
        ],
    )
        .prop_map(
            |(vcpus, memory_mib, arch, kernel, cmdline, devices, serial)| VmConfig {
                vcpus,
                memory_mib,
                arch,
                initrd: kernel.as_ref().map(|k| format!("{k}.img").into()),
                kernel: kernel.map(Into::into),
                cmdline,
                devices,
                serial,
                restore: None,
                gdb: None,
            },
        )
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        config().prop_map(EventKind::created),
        Just(EventKind::Started),
        Just(EventKind::Paused),
        Just(EventKind::Resumed),
        prop_oneof![
            Just(StopReason::Requested),
            Just(StopReason::GuestShutdown),
            Just(StopReason::GuestReset),
            Just(StopReason::HostShutdown),
            Just(StopReason::Unknown),
            Just(StopReason::DaemonRestarted),
            Just(StopReason::CtrlAltDel),
            any::<u32>().prop_map(|v| StopReason::TripleFault { vcpu: VcpuId(v) }),
            (proptest::option::of(any::<u32>()), ".{0,32}").prop_map(|(v, message)| {
                StopReason::Failed {
                    vcpu: v.map(VcpuId),
                    message,
                }
            }),
        ]
        .prop_map(|reason| EventKind::Stopped { reason }),
        device().prop_map(EventKind::device_attached),
        ".{0,16}".prop_map(|device_id| EventKind::DeviceDetached { device_id }),
        ".{0,64}".prop_map(|error| EventKind::Failed { error }),
    ]
}

/// Events over up to four VMs, each stream numbered 1, 2, 3, ...
fn events() -> impl Strategy<Value = Vec<VmEvent>> {
    vec((0usize..4, any::<u64>(), kind()), 1..40).prop_map(|raw| {
        let ids: Vec<VmId> = ["a", "vm-b", "c.c", "_d"]
            .iter()
            .map(|s| VmId::new(s).unwrap())
            .collect();
        let mut next = [1u64; 4];
        raw.into_iter()
            .map(|(vm, ts, kind)| {
                let ev = VmEvent {
                    vm_id: ids[vm].clone(),
                    sequence: next[vm],
                    timestamp: Timestamp(ts),
                    kind,
                };
                next[vm] += 1;
                ev
            })
            .collect()
    })
}

fn read_all(s: &dyn EventStore) -> Vec<VmEvent> {
    s.read_all().unwrap().map(Result::unwrap).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn codec_round_trip(evs in events()) {
        let mut buf = Vec::new();
        for ev in &evs {
            encode_event(ev, &mut buf).unwrap();
        }
        let mut input = &buf[..];
        let mut dec = EventDecoder::new();
        for ev in &evs {
            prop_assert_eq!(&dec.decode_next(&mut input).unwrap(), ev);
        }
        prop_assert!(input.is_empty());
    }

    #[test]
    fn adapters_round_trip(evs in events(), cuts in vec(any::<prop::sample::Index>(), 0..4)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.v2");
        let mem = MemoryStore::new();
        let v2 = V2Store::create(&path).unwrap();
        // Split into batches at random points.
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(evs.len())).collect();
        points.push(evs.len());
        points.sort_unstable();
        let mut start = 0;
        for p in points {
            mem.append_batch(&evs[start..p]).unwrap();
            v2.append_batch(&evs[start..p]).unwrap();
            start = p;
        }
        prop_assert_eq!(&read_all(&mem), &evs);
        prop_assert_eq!(&read_all(&v2), &evs);
        drop(v2);
        let reopened = V2Store::open(&path).unwrap();
        prop_assert!(reopened.tail_recovery().is_none());
        prop_assert_eq!(&read_all(&reopened), &evs);
        for vm in ["a", "vm-b", "c.c", "_d"] {
            let id = VmId::new(vm).unwrap();
            let want: Vec<_> = evs.iter().filter(|e| e.vm_id == id && e.sequence >= 2).cloned().collect();
            prop_assert_eq!(&reopened.read_stream(&id, 2).unwrap(), &want);
            prop_assert_eq!(&mem.read_stream(&id, 2).unwrap(), &want);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), flip in any::<prop::sample::Index>()) {
        let _ = EventDecoder::new().decode_one(&bytes);
        // Random garbage after a valid header, and a valid store with one flipped bit: open
        // either succeeds (maybe recovering a tail) or returns an error.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.v2");
        let mut data = vm_core::store::v2::format::encode_header().to_vec();
        data.extend_from_slice(&bytes);
        std::fs::write(&path, &data).unwrap();
        let _ = V2Store::open(&path).map(|s| s.read_all().map(Iterator::count));
        drop(std::fs::remove_file(&path));
        let s = V2Store::create(&path).unwrap();
        let id = VmId::new("a").unwrap();
        s.append_batch(&[
            VmEvent::new(id.clone(), 1, EventKind::created(VmConfig::default())),
            VmEvent::new(id, 2, EventKind::Failed { error: "x".into() }),
        ]).unwrap();
        drop(s);
        let mut data = std::fs::read(&path).unwrap();
        let i = flip.index(data.len());
        data[i] ^= 0x10;
        std::fs::write(&path, &data).unwrap();
        if let Ok(s) = V2Store::open(&path) {
            let n = s.read_all().unwrap().flatten().count();
            // A bit flip anywhere after the header is caught by a CRC: the frame is dropped.
            prop_assert!(n == 0, "flip at {} left {} events readable", i, n);
        }
    }
}
