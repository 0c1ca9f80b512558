//! End-to-end check of the riscv64 device tree against real consumers: QEMU's
//! `virt` machine (whose device addresses our layout follows) boots OpenSBI
//! and Debian's riscv64 kernel with *our* DTB; the kernel must find the
//! harts, memory, PLIC/CLINT, the UART console and the initramfs we placed
//! (loaded by QEMU at our address, announced by our `/chosen`).
//! Ignored by default: it needs `qemu-system-riscv64` + `opensbi` and takes
//! tens of seconds under TCG. Run with `cargo test -p vm-cross-arch --test
//! qemu_riscv64 -- --ignored --nocapture`.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{debian_kernel, machine, read_dtb, tool};
use vm_cross_arch::platform::{for_arch, GuestArch};

/// QEMU `virt` loads a riscv64 Image right after the 2 MiB firmware region.
const QEMU_KERNEL_ADDR: u64 = 0x8020_0000;
const CMDLINE: &str = "console=ttyS0 earlycon=sbi panic=-1 rdinit=/hello";

/// A newc cpio archive holding one executable file that is not a valid
/// program: the kernel finds it only if it unpacked our initrd, tries to run it
/// as `rdinit`, and panics, which ends the run.
fn initramfs() -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::new();
    entry(
        &mut out,
        1,
        0o100_755,
        "hello",
        b"placed by vm-cross-arch\n",
    );
    entry(&mut out, 0, 0, "TRAILER!!!", b"");
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

#[test]
#[ignore = "boots Linux under QEMU TCG (slow); needs qemu-system-misc and opensbi"]
fn qemu_boots_debian_riscv64_with_our_device_tree() {
    let Some(qemu) = tool("qemu-system-riscv64", "qemu-system-misc") else {
        return;
    };
    let Some(kernel) = debian_kernel("riscv64") else {
        return;
    };
    let (map, mem) = machine(GuestArch::Riscv64, 2, 512 << 20, 0);
    let initrd = initramfs();
    let boot = for_arch(GuestArch::Riscv64)
        .boot(&mem, &map, &kernel, Some(&initrd), CMDLINE)
        .expect("boot");
    let rd = boot.initrd.expect("initrd placed");
    assert_eq!(
        boot.kernel.load.0, QEMU_KERNEL_ADDR,
        "our placement must match what QEMU does"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let dtb = dir.path().join("guest.dtb");
    let image = dir.path().join("Image");
    let log = dir.path().join("serial.log");
    let initrd_path = dir.path().join("initrd.cpio");
    std::fs::write(&initrd_path, &initrd).expect("initrd");
    std::fs::write(&dtb, read_dtb(&mem, &boot)).expect("dtb");
    std::fs::write(&image, &kernel).expect("kernel");

    let mut child = Command::new(qemu)
        .args([
            "-M", "virt", "-m", "512M", "-smp", "2", "-display", "none", "-monitor", "none",
        ])
        .args(["-no-reboot", "-bios", "default"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&image)
        .arg("-dtb")
        .arg(&dtb)
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={:#x}",
            initrd_path.display(),
            rd.start.0
        ))
        .stdin(Stdio::null())
        .spawn()
        .expect("starting qemu");
    // Wait for the kernel to panic (no root fs) and reboot (SBI SRST or the
    // syscon node), which makes QEMU exit because of -no-reboot.
    let mut exited = false;
    for _ in 0..1200 {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{out}");
    for needle in [
        "Machine model: vm-workspace riscv64",
        "Kernel command line: console=ttyS0 earlycon=sbi panic=-1 rdinit=/hello",
        "smp: Brought up 1 node, 2 CPUs",
        "riscv-intc",
        "plic",
        "10000000.serial: ttyS0 at MMIO 0x10000000",
        "Trying to unpack rootfs image as initramfs...",
        "Run /hello as init process",
        "Failed to execute /hello (error -8)",
    ] {
        assert!(out.contains(needle), "serial log lacks {needle:?}");
    }
    assert!(
        !out.contains("Initramfs unpacking failed"),
        "initrd not found where /chosen says"
    );
    assert!(exited, "QEMU did not exit after the panic (reboot failed)");
}
