//! Cross-process switch segments: several `VirtualSwitch`es, each bridged
//! into the same segment directory, behave as one L2 switch. Members in one
//! process stand for processes (each has its own socket and bridge thread);
//! `two_processes_exchange_frames` checks it with a real second process.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use vm_device::virtio::net::r#virtual::{VirtualPort, VirtualSwitch};
use vm_device::virtio::net::segment::{SegmentBridge, SegmentError};
use vm_device::virtio::net::{features, NetBackend, VNET_HDR_LEN};

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const BCAST: [u8; 6] = [0xff; 6];
/// How long a frame may take to arrive before the test fails (a hang guard, not a speed check).
const PATIENCE: Duration = Duration::from_secs(20);

fn frame(dst: [u8; 6], src: [u8; 6], payload: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5, payload]);
    f
}

/// One simulated process: a switch, its bridge into the segment, and a NIC port.
struct Member {
    _switch: VirtualSwitch,
    bridge: SegmentBridge,
    port: VirtualPort,
}

fn member(dir: &Path) -> Member {
    let switch = VirtualSwitch::new();
    let bridge = SegmentBridge::join(&switch, dir, "lan").unwrap();
    let port = switch.add_port();
    Member {
        _switch: switch,
        bridge,
        port,
    }
}

/// Waits for the next frame on `port`.
fn next_frame(port: &mut VirtualPort) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    loop {
        if let Some(n) = port.recv(&mut buf).unwrap() {
            return buf[..n].to_vec();
        }
        assert!(start.elapsed() < PATIENCE, "no frame arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn nothing_queued(port: &mut VirtualPort) -> bool {
    let mut buf = vec![0u8; 2048];
    port.recv(&mut buf).unwrap().is_none()
}

#[test]
fn broadcast_and_unicast_cross_members() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut b = member(dir.path());
    a.port.send(&frame(BCAST, A, 1)).unwrap();
    assert_eq!(next_frame(&mut b.port), frame(BCAST, A, 1));
    b.port.send(&frame(A, B, 2)).unwrap();
    assert_eq!(next_frame(&mut a.port), frame(A, B, 2));
    a.port.send(&frame(B, A, 3)).unwrap();
    assert_eq!(next_frame(&mut b.port), frame(B, A, 3));
    assert!(nothing_queued(&mut a.port), "no echo to the sender");
    let (sa, sb) = (a.bridge.stats(), b.bridge.stats());
    assert_eq!((sa.sent, sa.received), (2, 1));
    assert_eq!((sb.sent, sb.received), (1, 2));
    assert_eq!(sa.malformed + sb.malformed + sa.congested + sb.congested, 0);
}

#[test]
fn learned_unicast_reaches_only_its_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut b = member(dir.path());
    let mut c = member(dir.path());
    // B announces itself: everyone learns B's MAC is behind B's socket.
    b.port.send(&frame(BCAST, B, 1)).unwrap();
    assert_eq!(next_frame(&mut a.port), frame(BCAST, B, 1));
    assert_eq!(next_frame(&mut c.port), frame(BCAST, B, 1));
    let before = a.bridge.stats().sent;
    a.port.send(&frame(B, A, 2)).unwrap();
    assert_eq!(next_frame(&mut b.port), frame(B, A, 2));
    // Then a broadcast marker: C's socket receives in order, so if the unicast
    // had reached C it would come before the marker.
    a.port.send(&frame(BCAST, A, 3)).unwrap();
    assert_eq!(next_frame(&mut c.port), frame(BCAST, A, 3));
    assert_eq!(next_frame(&mut b.port), frame(BCAST, A, 3));
    assert!(nothing_queued(&mut c.port));
    assert_eq!(
        a.bridge.stats().sent - before,
        1 + 2,
        "one datagram for the unicast, two for the broadcast"
    );
    assert_eq!(a.bridge.stats().members, 2);
}

#[test]
fn dead_member_socket_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut b = member(dir.path());
    // A process that died: its socket file is left, nobody is bound to it.
    let dead = dir.path().join("lan").join("999999.0");
    drop(UnixDatagram::bind(&dead).unwrap());
    assert!(dead.exists());
    a.port.send(&frame(BCAST, A, 1)).unwrap();
    assert_eq!(next_frame(&mut b.port), frame(BCAST, A, 1));
    wait_until("the dead socket is removed", || {
        a.bridge.stats().stale_removed == 1
    });
    assert!(!dead.exists());
    assert_eq!(a.bridge.stats().members, 1);
    // The segment still works, and the dead member is not tried again.
    a.port.send(&frame(BCAST, A, 2)).unwrap();
    assert_eq!(next_frame(&mut b.port), frame(BCAST, A, 2));
    assert_eq!(a.bridge.stats().stale_removed, 1);
}

#[test]
fn offload_requests_cross_members_and_are_done_for_nics_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut b = member(dir.path());
    let mut c = member(dir.path());
    b.port.set_offloads(features::GUEST_CSUM).unwrap();
    // A partial TCP checksum: the header starts at 34, its checksum at 34 + 16.
    let mut partial = frame(BCAST, A, 0);
    partial.resize(VNET_HDR_LEN + 60, 0xab);
    partial[0] = 1; // NEEDS_CSUM
    partial[6..8].copy_from_slice(&34u16.to_le_bytes());
    partial[8..10].copy_from_slice(&16u16.to_le_bytes());
    a.port.send(&partial).unwrap();
    // b accepted the offload: the request arrives as sent.
    assert_eq!(next_frame(&mut b.port), partial);
    // c did not: its switch filled in the checksum and cleared the request.
    let done = next_frame(&mut c.port);
    assert_eq!(&done[..10], &[0; 10]);
    assert_eq!(
        &done[VNET_HDR_LEN..VNET_HDR_LEN + 50],
        &partial[VNET_HDR_LEN..VNET_HDR_LEN + 50]
    );
    // 13 words of 0xabab from 34 on (the field's included) fold to 0xb7b7.
    assert_eq!(&done[VNET_HDR_LEN + 50..VNET_HDR_LEN + 52], &[0x48, 0x48]);
}

#[test]
fn hostile_datagrams_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let attacker = UnixDatagram::unbound().unwrap();
    let to = a.bridge.socket_path().to_owned();
    attacker.send_to(&[], &to).unwrap();
    attacker.send_to(&[0xff; 10], &to).unwrap();
    attacker.send_to(&vec![0xff; 70 * 1024], &to).unwrap();
    // A checksum request pointing past its frame.
    let mut bad = frame(BCAST, C, 6);
    bad[0] = 1;
    bad[6..8].copy_from_slice(&100u16.to_le_bytes());
    attacker.send_to(&bad, &to).unwrap();
    // A well-formed frame after them still arrives, and is the only one.
    let good = frame(BCAST, C, 7);
    attacker.send_to(&good, &to).unwrap();
    assert_eq!(next_frame(&mut a.port), good);
    assert!(nothing_queued(&mut a.port));
    let s = a.bridge.stats();
    assert_eq!((s.malformed, s.received), (4, 1));
    // An unbound sender is not a member: nothing was learned about it.
    assert_eq!(s.members, 0);
}

#[test]
fn leaving_removes_the_socket_and_the_empty_switch_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = member(dir.path());
    let path = a.bridge.socket_path().to_owned();
    assert!(path.starts_with(dir.path().join("lan")));
    drop(a);
    assert!(!path.exists());
    assert!(!dir.path().join("lan").exists());
}

#[test]
fn bad_names_and_directories_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sw = VirtualSwitch::new();
    for name in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
        let err = SegmentBridge::join(&sw, dir.path(), name).unwrap_err();
        assert!(
            matches!(err, SegmentError::BadName { .. }),
            "{name:?}: {err}"
        );
    }
    let deep = dir.path().join("d".repeat(100));
    let err = SegmentBridge::join(&sw, &deep, "lan").unwrap_err();
    assert!(matches!(err, SegmentError::PathTooLong { .. }), "{err}");
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = SegmentBridge::join(&sw, &open, "lan").unwrap_err();
    assert!(matches!(err, SegmentError::UnsafeDir { .. }), "{err}");
    assert!(err.to_string().contains("777"), "{err}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = SegmentBridge::join(&sw, &file, "lan").unwrap_err();
    assert!(matches!(err, SegmentError::Io { .. }), "{err}");
    assert_eq!(sw.port_count(), 0, "failed joins leave no port behind");
}

/// Set in the child process of `two_processes_exchange_frames`.
const PEER_DIR_ENV: &str = "VM_DEVICE_SEGMENT_PEER_DIR";

#[test]
fn two_processes_exchange_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "segment_peer_process",
            "--ignored",
            "--nocapture",
        ])
        .env(PEER_DIR_ENV, dir.path())
        .spawn()
        .unwrap();
    // The child says hello (broadcast) until acknowledged.
    let hello = loop {
        let f = next_frame(&mut a.port);
        if f[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12] == B {
            break f;
        }
    };
    assert_eq!(hello, frame(BCAST, B, 1));
    a.port.send(&frame(B, A, 2)).unwrap();
    let bye = loop {
        let f = next_frame(&mut a.port);
        if f != hello {
            break f;
        }
    };
    assert_eq!(bye, frame(A, B, 3), "the child answers the ack by unicast");
    assert!(child.wait().unwrap().success());
}

/// The second process of `two_processes_exchange_frames` (a no-op when run by itself).
#[test]
#[ignore = "run by two_processes_exchange_frames in a child process"]
fn segment_peer_process() {
    let Some(dir) = std::env::var_os(PEER_DIR_ENV) else {
        eprintln!(
            "segment_peer_process: only meaningful as the child of two_processes_exchange_frames"
        );
        return;
    };
    let switch = VirtualSwitch::new();
    let bridge = SegmentBridge::join(&switch, Path::new(&dir), "lan").unwrap();
    let mut port = switch.add_port();
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let ack = frame(B, A, 2);
    loop {
        port.send(&frame(BCAST, B, 1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if let Some(n) = port.recv(&mut buf).unwrap() {
            assert_eq!(buf[..n], ack[..]);
            break;
        }
        assert!(start.elapsed() < PATIENCE, "no ack from the parent");
    }
    let sent = bridge.stats().sent;
    port.send(&frame(A, B, 3)).unwrap();
    // Leave only after the bridge has sent the frame on.
    wait_until("the bye is sent", || bridge.stats().sent > sent);
}

#[test]
fn a_member_that_never_reads_loses_frames_without_stalling_the_others() {
    const FRAMES: u8 = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut b = member(dir.path());
    // A live socket in the segment that never reads: its queue fills up.
    let stuck = UnixDatagram::bind(dir.path().join("lan").join("999999.1")).unwrap();
    for i in 0..FRAMES {
        a.port.send(&frame(BCAST, A, i)).unwrap();
    }
    // B gets the frames in order (the last one proves A got through all of them).
    let mut last = None;
    while last != Some(FRAMES - 1) {
        let f = next_frame(&mut b.port);
        let seq = f[VNET_HDR_LEN + 14];
        assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
        last = Some(seq);
    }
    stuck.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let mut queued = 0u64;
    while stuck.recv(&mut buf).is_ok() {
        queued += 1;
    }
    let s = a.bridge.stats();
    assert!(
        queued < u64::from(FRAMES),
        "the stuck socket's queue is bounded"
    );
    assert!(
        s.congested >= u64::from(FRAMES) - queued,
        "every frame the stuck member lost is counted: {s:?}, {queued} queued"
    );
}
