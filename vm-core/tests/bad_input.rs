//! Every kind of damaged store gives its documented outcome, never a panic.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{id, lifecycle_events, write_v1};
use vm_core::store::codec::{encode_raw, CURRENT_SCHEMA, LEGACY_JSON_SCHEMA};
use vm_core::store::v2::{HEADER_LEN, MAX_FRAME_LEN};
use vm_core::store::{self, EventStore, StoreError, StoreFormat, V1Store, V2Store};
use vm_core::{EventKind, StopReason, VmEvent};

/// Records the largest single allocation, to prove that hostile length prefixes are checked
/// before anything is allocated for them.
struct LargestAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only records sizes.
unsafe impl GlobalAlloc for LargestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: LargestAlloc = LargestAlloc;

/// A v2 store with three single-event frames; returns its path and the frame offsets.
fn three_frames(dir: &Path) -> (PathBuf, [u64; 3], u64) {
    let path = dir.join("s.v2");
    let s = V2Store::create(&path).unwrap();
    let mut offsets = [0u64; 3];
    for (i, ev) in lifecycle_events().iter().take(3).enumerate() {
        offsets[i] = std::fs::metadata(&path).unwrap().len();
        s.append(ev).unwrap();
    }
    drop(s);
    let len = std::fs::metadata(&path).unwrap().len();
    (path, offsets, len)
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn truncated_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    for len in [1usize, 6, 15] {
        std::fs::write(&path, &vm_core::store::v2::format::encode_header()[..len]).unwrap();
        let err = store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::TruncatedHeader { len: l, need: 16, .. } if l == len as u64),
            "{err}"
        );
    }
}

#[test]
fn unknown_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, b"SQLite format 3\0more").unwrap();
    let err = store::open(&path).unwrap_err();
    let StoreError::UnknownFormat { found, .. } = &err else {
        panic!("{err}")
    };
    assert!(found.starts_with("53 51 4c"), "{found}");
}

#[test]
fn unknown_version_and_bad_header_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut h = vm_core::store::v2::format::encode_header();
    h[8..12].copy_from_slice(&7u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, h).unwrap();
    let err = store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { version: 7, .. }),
        "{err}"
    );
    h[12] ^= 0xff;
    std::fs::write(&path, h).unwrap();
    let err = store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::CorruptHeader { .. }), "{err}");
}

#[test]
fn bad_crc_mid_file_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let mut data = std::fs::read(&path).unwrap();
    data[offs[1] as usize + 20] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    let err = store::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { offset, reason, .. } if *offset == offs[1] && reason.contains("CRC")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("byte offset {}", offs[1])),
        "{err}"
    );
    assert_eq!(file_len(&path), len, "a mid-file error must not truncate");
}

#[test]
fn bad_crc_in_last_record_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let mut data = std::fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    std::fs::write(&path, &data).unwrap();
    let s = store::open(&path).unwrap();
    let rec = s.tail_recovery().unwrap().clone();
    assert_eq!(rec.offset, offs[2]);
    assert_eq!(rec.dropped_bytes, len - offs[2]);
    assert!(rec.reason.contains("CRC"), "{}", rec.reason);
    assert_eq!(s.head(), 2);
    // The store is usable again and the dropped event can be re-appended.
    s.append(&lifecycle_events()[2]).unwrap();
    drop(s);
    let s = store::open(&path).unwrap();
    assert!(s.tail_recovery().is_none());
    assert_eq!(s.head(), 3);
}

#[test]
fn every_truncation_of_the_tail_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let pristine = std::fs::read(&path).unwrap();
    for cut in offs[2] + 1..len {
        std::fs::write(&path, &pristine[..cut as usize]).unwrap();
        let s = store::open(&path).unwrap();
        let rec = s
            .tail_recovery()
            .unwrap_or_else(|| panic!("cut {cut}: nothing reported"));
        assert_eq!(
            (rec.offset, rec.dropped_bytes),
            (offs[2], cut - offs[2]),
            "cut {cut}"
        );
        assert_eq!(s.head(), 2, "cut {cut}");
        drop(s);
        assert_eq!(file_len(&path), offs[2], "cut {cut}: not truncated");
    }
    // Cutting exactly at a frame boundary is a clean store.
    std::fs::write(&path, &pristine[..offs[2] as usize]).unwrap();
    assert!(store::open(&path).unwrap().tail_recovery().is_none());
}

#[test]
fn absurd_length_prefix_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let pristine = std::fs::read(&path).unwrap();
    for frame in [1usize, 2] {
        std::fs::write(&path, &pristine).unwrap();
        patch(&path, offs[frame], &0xFFFF_FFF0u32.to_le_bytes());
        LARGEST.store(0, Ordering::Relaxed);
        let err = store::open(&path).unwrap_err();
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest < 4 << 20,
            "opening allocated {largest} bytes at once"
        );
        assert!(
            matches!(&err, StoreError::Corrupt { offset, reason, .. }
                if *offset == offs[frame] && reason.contains("exceeds")),
            "{err}"
        );
        assert_eq!(file_len(&path), len);
    }
    // A plausible length that runs past the end of the file is a torn tail.
    std::fs::write(&path, &pristine).unwrap();
    patch(&path, offs[2], &((MAX_FRAME_LEN as u32) - 1).to_le_bytes());
    LARGEST.store(0, Ordering::Relaxed);
    let s = store::open(&path).unwrap();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 4 << 20,
        "opening allocated {largest} bytes at once"
    );
    assert_eq!(s.tail_recovery().unwrap().offset, offs[2]);
    assert_eq!(s.head(), 2);
}

#[test]
fn zero_filled_tail_is_truncated_but_short_lengths_mid_file_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let pristine = std::fs::read(&path).unwrap();
    let mut zeroed = pristine.clone();
    zeroed.extend_from_slice(&[0; 4096]);
    std::fs::write(&path, &zeroed).unwrap();
    let s = store::open(&path).unwrap();
    assert_eq!(s.tail_recovery().unwrap().offset, len);
    assert_eq!(s.head(), 3);
    drop(s);
    std::fs::write(&path, &pristine).unwrap();
    patch(&path, offs[1], &2u32.to_le_bytes());
    let err = store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, .. } if offset == offs[1]),
        "{err}"
    );
    // A last record whose first bytes never reached the disk (power lost, blocks written
    // back out of order) is a torn tail.
    std::fs::write(&path, &pristine).unwrap();
    patch(&path, offs[2], &[0; 12]);
    let s = store::open(&path).unwrap();
    assert_eq!(s.tail_recovery().unwrap().offset, offs[2]);
    assert_eq!(s.head(), 2);
}

fn frame(events: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = (events.len() as u32).to_le_bytes().to_vec();
    for e in events {
        payload.extend_from_slice(e);
    }
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    f.extend_from_slice(&payload);
    f
}

#[test]
fn unknown_schema_with_valid_crc_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, len) = three_frames(dir.path());
    let mut ev = Vec::new();
    encode_raw(CURRENT_SCHEMA + 40, b"from the future", &mut ev);
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&frame(&[ev]));
    std::fs::write(&path, &data).unwrap();
    let err = store::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { offset, reason, .. }
            if *offset == len && reason.contains("schema version 42")),
        "{err}"
    );
}

#[test]
fn legacy_schema_records_in_v2_are_upcast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.v2");
    drop(V2Store::create(&path).unwrap());
    let mut old = Vec::new();
    encode_raw(
        LEGACY_JSON_SCHEMA,
        br#"{"vm":"relic","seq":1,"ts_ms":5,"type":"created","config":{"vcpus":1,"memory_mb":64}}"#,
        &mut old,
    );
    let mut stopped = Vec::new();
    encode_raw(
        LEGACY_JSON_SCHEMA,
        br#"{"vm":"relic","seq":2,"ts_ms":6,"type":"stopped"}"#,
        &mut stopped,
    );
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&frame(&[old, stopped]));
    std::fs::write(&path, &data).unwrap();
    let s = V2Store::open(&path).unwrap();
    let evs: Vec<VmEvent> = s.read_all().unwrap().map(Result::unwrap).collect();
    assert_eq!(evs.len(), 2);
    assert!(matches!(&evs[0].kind, EventKind::Created { config } if config.memory_mib == 64));
    assert_eq!(
        evs[1].kind,
        EventKind::Stopped {
            reason: StopReason::Unknown
        }
    );
    // New events continue the upcast stream in the current schema.
    s.append(&VmEvent::new(id("relic"), 3, EventKind::Started))
        .unwrap();
    assert_eq!(s.read_stream(&id("relic"), 2).unwrap().len(), 2);
}

#[test]
fn empty_file_is_refused_not_reinitialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, b"").unwrap();
    for err in [
        store::open(&path).unwrap_err(),
        V2Store::open(&path).unwrap_err(),
    ] {
        assert!(matches!(&err, StoreError::Emptied { .. }), "{err}");
        assert!(err.to_string().contains("0 bytes"), "{err}");
    }
    assert_eq!(
        file_len(&path),
        0,
        "an emptied store must be left for inspection"
    );
    // A missing file is a new store.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(store::open(&path).unwrap().format(), StoreFormat::V2);
    assert_eq!(file_len(&path), HEADER_LEN as u64);
}

#[test]
fn length_past_eof_mid_file_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let pristine = std::fs::read(&path).unwrap();
    for frame in [0usize, 1] {
        for bad in [
            u32::try_from(len - offs[frame]).unwrap(),
            u32::try_from(len).unwrap() * 3,
            MAX_FRAME_LEN as u32 - 1,
        ] {
            std::fs::write(&path, &pristine).unwrap();
            patch(&path, offs[frame], &bad.to_le_bytes());
            let err = store::open(&path).unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { offset, reason, .. }
                    if *offset == offs[frame] && reason.contains("intact record follows")),
                "frame {frame}, length {bad}: {err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("byte offset {}", offs[frame])),
                "{err}"
            );
            assert_eq!(
                file_len(&path),
                len,
                "frame {frame}, length {bad}: truncated"
            );
        }
    }
}

/// A zeroed frame header (length and CRC) in front of intact records is not the shape of
/// a write lost in a power cut (zeros up to a sector boundary): it is refused, untouched.
#[test]
fn zeroed_frame_header_mid_file_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offs, len) = three_frames(dir.path());
    let pristine = std::fs::read(&path).unwrap();
    for frame in [0usize, 1] {
        for zeros in [4usize, 8] {
            std::fs::write(&path, &pristine).unwrap();
            patch(&path, offs[frame], &vec![0; zeros]);
            let err = store::open(&path).unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { offset, reason, .. }
                    if *offset == offs[frame] && reason.contains("intact record follows")),
                "frame {frame}, {zeros} zero bytes: {err}"
            );
            assert_eq!(file_len(&path), len, "frame {frame}: truncated");
        }
    }
}

#[test]
fn v1_bad_line_mid_file_names_line_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.v1");
    let events = lifecycle_events();
    write_v1(&path, &events[..3]);
    let good = std::fs::read_to_string(&path).unwrap();
    let first_len = good.find('\n').unwrap() + 1;
    let mut lines: Vec<&str> = good.lines().collect();
    lines[1] = r#"{"vm":"alpha","seq":2,"ts_ms":1,"type":"teleported"}"#;
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = V1Store::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::BadV1Line { line: 2, offset, .. } if *offset == first_len as u64),
        "{err}"
    );
    // A sequence gap is reported the same way.
    write_v1(&path, &[events[0].clone(), events[3].clone()]);
    let err = V1Store::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::BadV1Line { line: 2, reason, .. } if reason.contains("expected sequence 2")),
        "{err}"
    );
}

#[test]
fn v1_torn_last_line_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.v1");
    let events = lifecycle_events();
    write_v1(&path, &events[..3]);
    let mut data = std::fs::read(&path).unwrap();
    let full = data.len() as u64;
    data.extend_from_slice(br#"{"vm":"alpha","seq":3,"ts"#);
    std::fs::write(&path, &data).unwrap();
    let s = store::open(&path).unwrap();
    assert_eq!(s.format(), StoreFormat::V1);
    assert_eq!(s.head(), 3);
    let rec = s.tail_recovery().unwrap();
    assert_eq!(
        (rec.offset, rec.dropped_bytes),
        (full, data.len() as u64 - full)
    );
    assert_eq!(
        file_len(&path),
        data.len() as u64,
        "v1 is read-only: never truncated"
    );
}

#[test]
fn bad_payload_with_valid_crc_is_reported_with_its_offset_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, len) = three_frames(dir.path());
    let mut ev = Vec::new();
    vm_core::store::codec::encode_event(&VmEvent::new(id("alpha"), 3, EventKind::Started), &mut ev)
        .unwrap();
    let tag = ev.len() - 1;
    ev[tag] = 200;
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&frame(&[ev]));
    std::fs::write(&path, &data).unwrap();
    // Opening indexes stream positions only; the bad kind shows when the event is decoded.
    let s = store::open(&path).unwrap();
    let results: Vec<_> = s.read_all().unwrap().collect();
    assert_eq!(results.len(), 4);
    let err = results[3].as_ref().unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, reason, .. } if *offset == len && reason.contains("kind tag 200")),
        "{err}"
    );
    assert!(s.read_stream(&id("alpha"), 1).is_err());
}

#[test]
fn sequence_gap_with_valid_crc_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, len) = three_frames(dir.path());
    let mut ev = Vec::new();
    vm_core::store::codec::encode_event(&VmEvent::new(id("alpha"), 5, EventKind::Started), &mut ev)
        .unwrap();
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&frame(&[ev]));
    std::fs::write(&path, &data).unwrap();
    let err = store::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { offset, reason, .. } if *offset == len && reason.contains("expected sequence 3, got 5")),
        "{err}"
    );
}
