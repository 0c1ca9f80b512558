//! End-to-end checks of our boot data against real consumers. arm64 and
//! riscv64: check of the device trees against real
//! consumers: QEMU's `virt` machines (whose device addresses our layouts
//! follow) boot Debian's kernels with *our* DTB and our initrd placement
//! (the initramfs is loaded by QEMU at our address and announced only by our
//! `/chosen`). The kernel must find harts, memory, interrupt controllers,
//! the timer and the initramfs. Ignored by default: needs `qemu-system-misc`
//! and `opensbi` (riscv64) and `qemu-system-arm` (arm64), and takes seconds
//! to a minute each under TCG on an idle machine (many minutes on a loaded
//! one). `cargo xtask ci` installs those and runs them; by hand:
//!
//! `cargo test -p vm-cross-arch --test qemu_boot -- --ignored --nocapture`

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{guest_file, machine, read_dtb, tool};
use vm_cross_arch::platform::x86_64::{acpi, layout::ACPI};
use vm_cross_arch::platform::{for_arch, BootInfo, GuestArch};
use vm_memory::GuestMemoryMmap;

/// A newc cpio archive of `(name, mode, data)` entries.
fn cpio(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
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
    for (ino, (name, mode, data)) in files.iter().enumerate() {
        entry(&mut out, ino as u32 + 1, *mode, name, data);
    }
    entry(&mut out, 0, 0, "TRAILER!!!", b"");
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

/// One executable file that is not a valid program: the kernel finds it only
/// if it unpacked our initrd, tries to run it as `rdinit`, fails with ENOEXEC
/// and panics, which ends the run.
fn initramfs() -> Vec<u8> {
    cpio(&[("hello", 0o100_755, b"placed by vm-cross-arch\n")])
}

/// Files for QEMU: kernel, our DTB, our initrd.
struct Artifacts {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    dtb: PathBuf,
    initrd: PathBuf,
    log: PathBuf,
}

fn artifacts(mem: &GuestMemoryMmap, boot: &BootInfo, kernel: &[u8], initrd: &[u8]) -> Artifacts {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let a = Artifacts {
        kernel: path("Image"),
        dtb: path("guest.dtb"),
        initrd: path("initrd.cpio"),
        log: path("serial.log"),
        _dir: dir,
    };
    std::fs::write(&a.kernel, kernel).expect("kernel");
    std::fs::write(&a.dtb, read_dtb(mem, boot)).expect("dtb");
    std::fs::write(&a.initrd, initrd).expect("initrd");
    a
}

/// Runs QEMU until it exits (guest reboot with -no-reboot) or `limit` passes;
/// returns whether it exited and the serial log.
fn run_qemu(qemu: &Path, args: &[String], log: &Path, limit: Duration) -> (bool, String) {
    let mut child = Command::new(qemu)
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting qemu");
    let step = Duration::from_millis(500);
    let mut waited = Duration::ZERO;
    let exited = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break true;
        }
        if waited >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(step);
        waited += step;
    };
    // Lossy: a UART driver probing the wrong device model can emit non-UTF-8 bytes.
    let out = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    eprintln!("{out}");
    (exited, out)
}

fn assert_log(out: &str, needles: &[&str]) {
    for needle in needles {
        assert!(out.contains(needle), "serial log lacks {needle:?}");
    }
}

/// QEMU `virt` loads a riscv64 Image right after the 2 MiB firmware region.
const RISCV_QEMU_KERNEL_ADDR: u64 = 0x8020_0000;
const RISCV_CMDLINE: &str = "console=ttyS0 earlycon=sbi panic=-1 rdinit=/hello";
/// The extensions of QEMU 7.2's default `rv64` CPU, which the riscv64 test's
/// CPU nodes list instead of ours.
const QEMU_RISCV_ISA: &str = "rv64imafdc_zicntr_zicsr_zifencei_zihintpause_sstc";
const QEMU_RISCV_EXTENSIONS: [&str; 11] = [
    "i",
    "m",
    "a",
    "f",
    "d",
    "c",
    "zicntr",
    "zicsr",
    "zifencei",
    "zihintpause",
    "sstc",
];

#[test]
#[ignore = "boots Linux under QEMU TCG (slow); cargo xtask ci runs it"]
fn qemu_boots_debian_riscv64_with_our_device_tree() {
    let Some(qemu) = tool("qemu-system-riscv64", "qemu-system-misc") else {
        return;
    };
    let Some(kernel) = guest_file("riscv64", "kernel") else {
        return;
    };
    let (map, mem) = machine(GuestArch::Riscv64, 2, 512 << 20, 0);
    let initrd = initramfs();
    let boot = for_arch(GuestArch::Riscv64)
        .boot(&mem, &map, &kernel, Some(&initrd), RISCV_CMDLINE)
        .expect("boot");
    let rd = boot.initrd.expect("initrd placed");
    assert_eq!(
        boot.kernel.load.0, RISCV_QEMU_KERNEL_ADDR,
        "our placement must match what QEMU does"
    );

    let a = artifacts(&mem, &boot, &kernel, &initrd);
    let Some(fdtput) = tool("fdtput", "device-tree-compiler") else {
        return;
    };
    // Our harts advertise what the interpreter implements; QEMU 7.2's `rv64`
    // CPU lacks some of it (Svpbmt is off by default, and it has no Zicboz or
    // Zicond), and Linux patches itself to use what the device tree lists.
    // So the CPU nodes QEMU runs with list QEMU's own extensions; everything
    // else in the tree is ours, unchanged.
    for hart in 0..2 {
        let node = format!("/cpus/cpu@{hart:x}");
        for (prop, values) in [
            ("riscv,isa", &[QEMU_RISCV_ISA][..]),
            ("riscv,isa-extensions", &QEMU_RISCV_EXTENSIONS[..]),
        ] {
            let status = Command::new(&fdtput)
                .args(["-t", "s"])
                .arg(&a.dtb)
                .args([node.as_str(), prop])
                .args(values)
                .status()
                .expect("running fdtput");
            assert!(status.success(), "fdtput {node} {prop} failed");
        }
    }

    let args: Vec<String> = vec![
        "-M".into(),
        "virt".into(),
        "-m".into(),
        "512M".into(),
        "-smp".into(),
        "2".into(),
        "-bios".into(),
        "default".into(),
        "-kernel".into(),
        a.kernel.display().to_string(),
        "-dtb".into(),
        a.dtb.display().to_string(),
        "-device".into(),
        format!("loader,file={},addr={:#x}", a.initrd.display(), rd.start.0),
    ];
    let (exited, out) = run_qemu(&qemu, &args, &a.log, Duration::from_mins(10));
    assert_log(
        &out,
        &[
            "Machine model: vm-workspace riscv64",
            &format!("Kernel command line: {RISCV_CMDLINE}"),
            "smp: Brought up 1 node, 2 CPUs",
            "riscv-intc",
            "plic",
            "10000000.serial: ttyS0 at MMIO 0x10000000",
            "Trying to unpack rootfs image as initramfs...",
            "Run /hello as init process",
            "Failed to execute /hello (error -8)",
        ],
    );
    assert!(
        !out.contains("Initramfs unpacking failed"),
        "initrd not found where /chosen says"
    );
    assert!(exited, "QEMU did not exit after the panic (reboot failed)");
}

/// QEMU `virt` (arm64) loads an Image at RAM base + text_offset, like us.
const ARM64_RAM_BASE: u64 = 0x4000_0000;
/// Our DT describes a 16550 where QEMU has a PL011, so the kernel prints
/// through a PL011 earlycon that is kept after the real console registers.
/// On a loaded machine TCG starves the vCPUs and RCU stall reports, printed
/// through that slow console, can keep the boot from ever finishing: they
/// are suppressed (they say nothing about our device tree).
const ARM64_CMDLINE: &str =
    "earlycon=pl011,0x9000000 keep_bootcon panic=-1 rdinit=/hello rcupdate.rcu_cpu_stall_suppress=1";

#[test]
#[ignore = "boots Linux under QEMU TCG (slow); cargo xtask ci runs it"]
fn qemu_boots_debian_arm64_with_our_device_tree() {
    let Some(qemu) = tool("qemu-system-aarch64", "qemu-system-arm") else {
        return;
    };
    let Some(kernel) = guest_file("arm64", "kernel") else {
        return;
    };
    let (map, mem) = machine(GuestArch::Arm64, 2, 512 << 20, 0);
    let initrd = initramfs();
    let boot = for_arch(GuestArch::Arm64)
        .boot(&mem, &map, &kernel, Some(&initrd), ARM64_CMDLINE)
        .expect("boot");
    let rd = boot.initrd.expect("initrd placed");
    let text_offset = u64::from_le_bytes(kernel[8..16].try_into().expect("header"));
    assert_eq!(boot.kernel.load.0, ARM64_RAM_BASE + text_offset);

    let a = artifacts(&mem, &boot, &kernel, &initrd);
    let args: Vec<String> = vec![
        "-M".into(),
        "virt,gic-version=3".into(),
        "-cpu".into(),
        "cortex-a57".into(),
        "-m".into(),
        "512M".into(),
        "-smp".into(),
        "2".into(),
        "-kernel".into(),
        a.kernel.display().to_string(),
        "-dtb".into(),
        a.dtb.display().to_string(),
        "-device".into(),
        format!("loader,file={},addr={:#x}", a.initrd.display(), rd.start.0),
    ];
    let (exited, out) = run_qemu(&qemu, &args, &a.log, Duration::from_mins(15));
    assert_log(
        &out,
        &[
            "Machine model: vm-workspace arm64",
            &format!("Kernel command line: {ARM64_CMDLINE}"),
            "psci: PSCIv",
            "GICv3: ",
            "arch_timer: cp15 timer",
            "smp: Brought up 1 node, 2 CPUs",
            "Trying to unpack rootfs image as initramfs...",
            "Run /hello as init process",
            "Failed to execute /hello (error -8)",
        ],
    );
    assert!(
        exited,
        "QEMU did not exit after the panic (PSCI reset failed)"
    );
}

/// Our DSDT, re-signed as an SSDT so QEMU's `-acpitable` can add it to its
/// own tables; without our `\_S5` (its last object), which QEMU's DSDT
/// defines too.
fn dsdt_as_ssdt(virtio_devices: u32) -> Vec<u8> {
    let (map, _mem) = machine(GuestArch::X86_64, 1, 512 << 20, virtio_devices);
    let tables = acpi::build(&map, ACPI.start.0, ACPI.size).expect("ACPI tables");
    let mut t = tables.get(b"DSDT").expect("DSDT").bytes.clone();
    let s5 = t
        .windows(5)
        .position(|w| w == b"\x08_S5_")
        .expect("the DSDT names _S5 (NameOp)");
    t.truncate(s5);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[0..4].copy_from_slice(b"SSDT");
    t[9] = 0;
    t[9] = 0u8.wrapping_sub(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
    t
}

#[test]
#[ignore = "boots Linux under QEMU TCG; cargo xtask ci runs it"]
fn qemu_x86_kernel_enumerates_our_virtio_mmio_devices_from_acpi() {
    let Some(qemu) = tool("qemu-system-x86_64", "qemu-system-x86") else {
        return;
    };
    let Some(busybox) = tool("busybox", "busybox-static") else {
        return;
    };
    let Some(kernel) = guest_file("x86_64", "bzImage") else {
        return;
    };
    let busybox = std::fs::read(busybox).expect("busybox");
    let init = b"#!/bin/busybox sh\n\
        /bin/busybox mount -t proc proc /proc\n\
        /bin/busybox mount -t sysfs sysfs /sys\n\
        /bin/busybox echo ACPI-DEVICES: $(/bin/busybox ls /sys/bus/acpi/devices)\n\
        /bin/busybox grep -i lnro /proc/iomem\n\
        /bin/busybox cat /sys/bus/acpi/devices/LNRO0005:01/path\n\
        /bin/busybox poweroff -f\n";
    let initrd = cpio(&[
        ("bin", 0o040_755, b""),
        ("proc", 0o040_755, b""),
        ("sys", 0o040_755, b""),
        ("bin/busybox", 0o100_755, &busybox),
        ("init", 0o100_755, init),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (kernel_path, initrd_path, ssdt_path, log) = (
        dir.path().join("bzImage"),
        dir.path().join("initrd.cpio"),
        dir.path().join("ssdt.aml"),
        dir.path().join("serial.log"),
    );
    std::fs::write(&kernel_path, &kernel).expect("kernel");
    std::fs::write(&initrd_path, &initrd).expect("initrd");
    std::fs::write(&ssdt_path, dsdt_as_ssdt(3)).expect("ssdt");
    let args: Vec<String> = vec![
        "-M".into(),
        "pc".into(),
        "-m".into(),
        "512M".into(),
        "-kernel".into(),
        kernel_path.display().to_string(),
        "-initrd".into(),
        initrd_path.display().to_string(),
        "-append".into(),
        "console=ttyS0 panic=-1".into(),
        "-acpitable".into(),
        format!("file={}", ssdt_path.display()),
    ];
    let (exited, out) = run_qemu(&qemu, &args, &log, Duration::from_mins(10));
    assert_log(
        &out,
        &[
            "ACPI: SSDT",
            "LNRO0005:00",
            "LNRO0005:02",
            "d0000000-d0000fff : LNRO0005:00",
            "d0002000-d0002fff : LNRO0005:02",
            "\\_SB_.V001",
        ],
    );
    assert!(
        !out.contains("ACPI Error"),
        "the kernel's AML interpreter complained"
    );
    assert!(exited, "QEMU did not power off");
}
