//! Guest disk throughput: the riscv64 Debian guest writes `RISCV_BLK_MIB`
//! MiB (default 16) of zeros to its virtio-blk disk with `dd ... conv=fsync`,
//! drops its page cache and reads the disk back with `dd`, timed by its own
//! clock. Ours: `vm-service run --drive IMG` (the interpreter, our
//! virtio-blk on a raw image file). Peer: `qemu-system-riscv64 -M virt` with
//! a `virtio-blk-device` on the same kind of image, same kernel, initramfs
//! and command. Each run gets a fresh image; rounds alternate, medians. The
//! results go to `target/bench/extra/riscv_guest_block_{write,read}.json`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{alternate, median, qemu_virt, riscv_guest, write_extra, Alternated};

/// Seconds of guest time for the write and the read, from the guest's
/// `block-seconds t0 t1 t2` line.
fn seconds(out: std::io::Result<Output>) -> Option<(f64, f64)> {
    let out = out.ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("block-seconds"))?;
    let t: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match t[..] {
        [t0, t1, t2] if t1 > t0 && t2 > t1 => Some((t1 - t0, t2 - t1)),
        _ => None,
    }
}

/// A zero-filled raw image of `mib` MiB in `dir`.
fn scratch_image(dir: &Path, mib: u32) -> Option<std::path::PathBuf> {
    let path = dir.join("disk.img");
    let file = std::fs::File::create(&path).ok()?;
    file.set_len(u64::from(mib) << 20).ok()?;
    Some(path)
}

pub fn guest_block(_c: &mut criterion::Criterion) {
    let Some((kernel, initrd)) = riscv_guest("guest block") else {
        return;
    };
    let (kernel, initrd) = (kernel.as_path(), initrd.as_path());
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vm-service");
    if !ours.is_file() {
        test_prerequisites::prerequisite_missing(
            "guest block: build target/release/vm-service first",
        );
        return;
    }
    let mib: u32 = std::env::var("RISCV_BLK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let cmdline = format!(
        "console=ttyS0 panic=-1 -- sh -c \"t0=$(cut -d' ' -f1 /proc/uptime); \
         dd if=/dev/zero of=/dev/vda bs=1M count={mib} conv=fsync 2>/dev/null || exit 1; \
         t1=$(cut -d' ' -f1 /proc/uptime); echo 3 > /proc/sys/vm/drop_caches; \
         dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null || exit 1; \
         echo block-seconds $t0 $t1 $(cut -d' ' -f1 /proc/uptime)\""
    );
    let reads = std::cell::RefCell::new((Vec::new(), Vec::new()));
    let ours_run = |_round: usize| -> Option<Duration> {
        let dir = tempfile::tempdir().ok()?;
        let image = scratch_image(dir.path(), mib)?;
        let out = Command::new(&ours)
            .args([
                "run", "--arch", "riscv64", "--memory", "256", "--net", "none",
            ])
            .arg("--kernel")
            .arg(kernel)
            .arg("--initrd")
            .arg(initrd)
            .arg("--drive")
            .arg(&image)
            .args(["--cmdline", &cmdline])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let (write, read) = seconds(out)?;
        reads.borrow_mut().0.push(Duration::from_secs_f64(read));
        Some(Duration::from_secs_f64(write))
    };
    let qemu = super::find(&["qemu-system-riscv64"]);
    let qemu_run = |q: &Path, _round: usize| -> Option<Duration> {
        let dir = tempfile::tempdir().ok()?;
        let image = scratch_image(dir.path(), mib)?;
        let out = qemu_virt(q, kernel, initrd, &cmdline)
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=d0", image.display()))
            .args(["-device", "virtio-blk-device,drive=d0"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let (write, read) = seconds(out)?;
        reads.borrow_mut().1.push(Duration::from_secs_f64(read));
        Some(Duration::from_secs_f64(write))
    };
    let Some(Alternated {
        runs,
        ours: ours_write,
        peer: peer_write,
    }) = alternate(
        "guest block",
        ours_run,
        qemu.as_deref().map(|q| move |round| qemu_run(q, round)),
    )
    else {
        return;
    };
    let (ours_reads, peer_reads) = reads.into_inner();
    let ours_read = median(ours_reads);
    let peer_read = (!peer_reads.is_empty()).then(|| median(peer_reads));
    let rate = |d: Duration| f64::from(mib) / d.as_secs_f64().max(1e-3);
    for (what, ours, peer) in [
        ("write", ours_write, peer_write),
        ("read", ours_read, peer_read),
    ] {
        match peer {
            None => eprintln!(
                "guest block {what}: {mib} MiB in {ours:?} ({:.2} MiB/s); no qemu-system-riscv64 peer",
                rate(ours)
            ),
            Some(p) => eprintln!(
                "guest block {what}: {mib} MiB in {ours:?} ({:.2} MiB/s) vs QEMU {p:?} ({:.2} MiB/s): {:.2}x QEMU's time",
                rate(ours),
                rate(p),
                ours.as_secs_f64() / p.as_secs_f64()
            ),
        }
        write_extra(
            &format!("riscv_guest_block_{what}.json"),
            &serde_json::json!({
                "area": "riscv_mips",
                "name": format!("riscv64 guest sequential disk {what}, {mib} MiB with dd on /dev/vda (guest time)"),
                "ours_ns": ours.as_secs_f64() * 1e9,
                "peer_name": "qemu-system-riscv64 -M virt, virtio-blk-device on a raw image, same guest and command",
                "peer_ns": peer.map(|t| t.as_secs_f64() * 1e9),
                "runs": runs,
            }),
        );
    }
}
