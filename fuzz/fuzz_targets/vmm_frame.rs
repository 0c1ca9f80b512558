//! Frames of the daemon <-> VMM-process protocol: hostile bytes decode to a
//! message, "need more", or an error; never a panic or an oversized allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_service::daemon::protocol::{decode, encode, read_frame, FromVmm, ToVmm};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = decode::<FromVmm>(data) {
        assert!(used <= data.len());
        let frame = encode(&msg).expect("a decoded message encodes");
        assert_eq!(
            decode::<FromVmm>(&frame).ok().flatten().map(|(m, _)| m),
            Some(msg)
        );
    }
    let _ = decode::<ToVmm>(data);
    let mut r = data;
    while let Ok(Some(_)) = read_frame::<ToVmm>(&mut r) {}
});
