//! Generated arm64 and riscv64 device trees decompile cleanly with the real
//! device tree compiler and contain the nodes a Linux kernel needs.

mod support;

use support::{decompile_dtb, fake_image, machine, read_dtb};
use vm_cross_arch::platform::{for_arch, GuestArch};

fn boot_dts(arch: GuestArch, vcpus: u32, devices: u32) -> Option<String> {
    let (map, mem) = machine(arch, vcpus, 256 << 20, devices);
    let image = fake_image(arch, 0x20_0000, 0x100_0000);
    let initrd = vec![1u8; 0x8000];
    let boot = for_arch(arch)
        .boot(
            &mem,
            &map,
            &image,
            Some(&initrd),
            "console=ttyS0 root=/dev/vda rw",
        )
        .expect("boot");
    let dir = tempfile::tempdir().expect("tempdir");
    let dts = decompile_dtb(&read_dtb(&mem, &boot), dir.path())?;
    let rd = boot.initrd.expect("initrd placed");
    assert!(
        dts.contains(&format!(
            "linux,initrd-start = <{:#04x} {:#x}>;",
            rd.start.0 >> 32,
            rd.start.0 & 0xffff_ffff
        )),
        "{dts}"
    );
    assert!(
        dts.contains(&format!(
            "linux,initrd-end = <{:#04x} {:#x}>;",
            rd.end() >> 32,
            rd.end() & 0xffff_ffff
        )),
        "{dts}"
    );
    Some(dts)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn arm64_device_tree_passes_dtc() {
    let Some(dts) = boot_dts(GuestArch::Arm64, 4, 3) else {
        return;
    };
    assert!(dts.contains("compatible = \"linux,dummy-virt\";"), "{dts}");
    assert_eq!(count(&dts, "enable-method = \"psci\";"), 4, "{dts}");
    assert!(dts.contains("compatible = \"arm,psci-1.0\\0arm,psci-0.2\";"));
    assert!(dts.contains("method = \"hvc\";"));
    assert!(dts.contains("compatible = \"arm,gic-v3\";"));
    assert!(dts.contains("interrupt-controller;"));
    assert!(dts.contains("compatible = \"arm,armv8-timer\";"));
    assert!(dts.contains("memory@40000000 {"));
    assert!(
        dts.contains("reg = <0x00 0x40000000 0x00 0x10000000>;"),
        "{dts}"
    );
    assert!(dts.contains("serial@9000000 {"));
    assert!(dts.contains("compatible = \"ns16550a\";"));
    assert_eq!(count(&dts, "compatible = \"virtio,mmio\";"), 3);
    assert!(dts.contains("virtio_mmio@a002000 {"));
    // Third virtio device: SPI 18, edge rising.
    assert!(dts.contains("interrupts = <0x00 0x12 0x01>;"), "{dts}");
    assert!(dts.contains("bootargs = \"console=ttyS0 root=/dev/vda rw\";"));
    assert!(dts.contains("stdout-path = \"/serial@9000000\";"));
}

#[test]
fn riscv64_device_tree_passes_dtc() {
    let Some(dts) = boot_dts(GuestArch::Riscv64, 2, 2) else {
        return;
    };
    assert_eq!(count(&dts, "riscv,isa = \"rv64imafdc_zicbom"), 2, "{dts}");
    assert_eq!(count(&dts, "riscv,cboz-block-size = <0x40>;"), 2, "{dts}");
    assert_eq!(count(&dts, "mmu-type = \"riscv,sv39\";"), 2);
    assert_eq!(count(&dts, "compatible = \"riscv,cpu-intc\";"), 2);
    assert!(dts.contains("timebase-frequency = <0x989680>;"));
    assert!(dts.contains("memory@80000000 {"));
    assert!(
        dts.contains("reg = <0x00 0x80000000 0x00 0x10000000>;"),
        "{dts}"
    );
    assert!(dts.contains("compatible = \"sifive,clint0\\0riscv,clint0\";"));
    assert!(dts.contains("compatible = \"sifive,plic-1.0.0\\0riscv,plic0\";"));
    assert!(dts.contains("riscv,ndev = <0x3f>;"));
    // PLIC contexts: hart 0 M/S external, hart 1 M/S external.
    assert!(
        dts.contains("interrupts-extended = <0x03 0x0b 0x03 0x09 0x04 0x0b 0x04 0x09>;"),
        "{dts}"
    );
    assert!(dts.contains("serial@10000000 {"));
    assert!(dts.contains("compatible = \"ns16550a\";"));
    assert_eq!(count(&dts, "compatible = \"virtio,mmio\";"), 2);
    assert!(dts.contains("virtio_mmio@10002000 {"));
    assert!(dts.contains("compatible = \"syscon-poweroff\";"));
    assert!(dts.contains("compatible = \"syscon-reboot\";"));
    assert!(dts.contains("value = <0x5555>;"));
    assert!(dts.contains("stdout-path = \"/serial@10000000\";"));
}

#[test]
fn device_trees_scale_with_vcpus_and_devices() {
    for (arch, vcpus, devices) in [
        (GuestArch::Arm64, 1, 0),
        (GuestArch::Arm64, 64, 32),
        (GuestArch::Riscv64, 64, 32),
    ] {
        let Some(dts) = boot_dts(arch, vcpus, devices) else {
            return;
        };
        assert_eq!(
            count(&dts, "device_type = \"cpu\";"),
            vcpus as usize,
            "{arch}"
        );
        assert_eq!(
            count(&dts, "compatible = \"virtio,mmio\";"),
            devices as usize,
            "{arch}"
        );
    }
}
