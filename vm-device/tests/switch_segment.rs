
#[test]
fn a_member_that_never_reads_loses_frames_without_stalling_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = member(dir.path());
    let mut b = member(dir.path());
    // A live socket in the segment that never reads: its queue fills up.
    let stuck = UnixDatagram::bind(dir.path().join("lan").join("999999.1")).unwrap();
    const FRAMES: u8 = 50;
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
    assert!(queued < u64::from(FRAMES), "the stuck socket's queue is bounded");
    assert!(
        s.congested >= u64::from(FRAMES) - queued,
        "every frame the stuck member lost is counted: {s:?}, {queued} queued"
    );
}
