//! One test body run over every event-store adapter.

mod common;

use common::{id, lifecycle_events};
use vm_core::store::{EventStore, MemoryStore, StoreError, StoreFormat, V2Store};
use vm_core::{EventKind, VmEvent, VmRegistry, VmState};

#[test]
fn round_trip_over_every_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let events = lifecycle_events();
    for (name, store) in common::every_adapter(dir.path(), &events) {
        let all: Vec<VmEvent> = store.read_all().unwrap().map(Result::unwrap).collect();
        assert_eq!(all, events, "{name}: read_all");
        assert_eq!(store.head(), events.len() as u64, "{name}: head");

        let alpha = id("alpha");
        let want: Vec<_> = events
            .iter()
            .filter(|e| e.vm_id == alpha)
            .cloned()
            .collect();
        assert_eq!(
            store.read_stream(&alpha, 1).unwrap(),
            want,
            "{name}: stream from 1"
        );
        assert_eq!(
            store.read_stream(&alpha, 0).unwrap(),
            want,
            "{name}: stream from 0"
        );
        assert_eq!(
            store.read_stream(&alpha, 4).unwrap(),
            want[3..],
            "{name}: stream from 4"
        );
        assert!(
            store.read_stream(&alpha, 99).unwrap().is_empty(),
            "{name}: past end"
        );
        assert!(
            store.read_stream(&id("nobody"), 1).unwrap().is_empty(),
            "{name}: no stream"
        );
        assert_eq!(store.stream_head(&alpha), 5, "{name}: stream head");
        assert_eq!(
            store.stream_head(&id("nobody")),
            0,
            "{name}: empty stream head"
        );

        let reg = VmRegistry::replay(store.as_ref()).unwrap();
        assert_eq!(reg.len(), 2, "{name}");
        assert_eq!(reg.get(&alpha).unwrap().state, VmState::Stopped, "{name}");
        let beta = reg.get(&id("beta")).unwrap();
        assert_eq!(beta.state, VmState::Failed, "{name}");
        assert_eq!(
            beta.error.as_deref(),
            Some("triple fault at rip 0xfff0"),
            "{name}"
        );
        assert_eq!(beta.devices.len(), 1, "{name}");
        assert!(store.tail_recovery().is_none(), "{name}");
    }
}

#[test]
fn appends_over_every_writable_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let events = lifecycle_events();
    for (name, store) in common::every_adapter(dir.path(), &events) {
        let alpha = id("alpha");
        let next = VmEvent::new(alpha.clone(), 6, EventKind::Started);
        let res = store.append(&next);
        if store.format() == StoreFormat::V1 {
            let err = res.unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::ReadOnly {
                        format: StoreFormat::V1
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("migrat"), "{err}");
            assert_eq!(store.head(), events.len() as u64);
            continue;
        }
        // Stopped is terminal for the projection, but the store itself only checks sequences.
        assert_eq!(res.unwrap(), events.len() as u64 + 1, "{name}");

        // Wrong sequences are refused, and a refused batch leaves nothing behind.
        let dup = store.append(&next).unwrap_err();
        assert!(
            matches!(
                dup,
                StoreError::SequenceConflict {
                    expected: 7,
                    found: 6,
                    ..
                }
            ),
            "{name}: {dup}"
        );
        let gamma = id("gamma");
        let bad_batch = [
            VmEvent::new(gamma.clone(), 1, EventKind::Started),
            VmEvent::new(alpha.clone(), 9, EventKind::Started),
        ];
        assert!(store.append_batch(&bad_batch).is_err(), "{name}");
        assert_eq!(
            store.stream_head(&gamma),
            0,
            "{name}: partial batch applied"
        );
        assert_eq!(store.head(), events.len() as u64 + 1, "{name}");
        assert_eq!(
            store.append_batch(&[]).unwrap(),
            store.head(),
            "{name}: empty batch"
        );
        assert!(store
            .append(&VmEvent::new(gamma, 2, EventKind::Started))
            .is_err());
    }
}

#[test]
fn v2_reopen_keeps_everything_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.v2");
    let events = lifecycle_events();
    {
        let s = V2Store::open(&path).unwrap();
        s.append_batch(&events[..4]).unwrap();
        for ev in &events[4..] {
            s.append(ev).unwrap();
        }
    }
    let s = vm_core::store::open(&path).unwrap();
    assert_eq!(s.format(), StoreFormat::V2);
    assert_eq!(s.stream_head(&id("beta")), 5);
    let gamma = id("gamma");
    s.append(&VmEvent::new(gamma.clone(), 1, EventKind::Started))
        .unwrap();
    drop(s);
    let s = V2Store::open(&path).unwrap();
    let all: Vec<_> = s.read_all().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), events.len() + 1);
    assert_eq!(all[..events.len()], events[..]);
    assert_eq!(s.read_stream(&gamma, 1).unwrap().len(), 1);
}

#[test]
fn v2_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.v2");
    let first = V2Store::open(&path).unwrap();
    let err = V2Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(first);
    V2Store::open(&path).unwrap();
}

const THREADS: usize = 8;
const PER_THREAD: u64 = 60;

#[test]
fn v2_concurrent_appenders_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.v2");
    let store = V2Store::open(&path).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                let vm = id(&format!("vm{t}"));
                for seq in 1..=PER_THREAD {
                    store
                        .append(&VmEvent::new(vm.clone(), seq, EventKind::Started))
                        .unwrap();
                }
            });
        }
    });
    let stats = store.commit_stats();
    assert_eq!(stats.frames, THREADS as u64 * PER_THREAD);
    assert!(
        stats.flushes >= 1 && stats.flushes <= stats.frames,
        "{stats:?}"
    );
    drop(store);
    let store = V2Store::open(&path).unwrap();
    assert_eq!(store.head(), THREADS as u64 * PER_THREAD);
    for t in 0..THREADS {
        let stream = store.read_stream(&id(&format!("vm{t}")), 1).unwrap();
        let seqs: Vec<u64> = stream.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=PER_THREAD).collect::<Vec<_>>());
    }
}

#[test]
fn memory_store_is_empty_at_start() {
    let s = MemoryStore::new();
    assert_eq!(s.head(), 0);
    assert_eq!(s.read_all().unwrap().count(), 0);
    assert!(VmRegistry::replay(&s).unwrap().is_empty());
}
