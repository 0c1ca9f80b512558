//! Loading stock Debian kernels: `linux-image-cloud-amd64` (the bzImage and
//! the `vmlinux` ELF inside it), sid's riscv64 kernel and bookworm's arm64
//! kernel (EFI-stub `Image`s), as `cargo xtask guest --arch ...` publishes
//! them in `target/guest/<arch>/`. A guest that has not been built is a
//! missing prerequisite (`test_prerequisites`).

mod support;

use support::{decompile_dtb, guest_file, machine, read_dtb};
use vm_cross_arch::platform::{
    for_arch, BootData, BootState, GuestArch, KernelFormat, PlatformError,
};
use vm_memory::{Bytes, GuestAddress};

const CMDLINE: &str = "console=ttyS0 panic=-1";

#[test]
fn debian_riscv64_image_loads_at_its_text_offset() {
    let Some(kernel) = guest_file("riscv64", "kernel") else {
        return;
    };
    let text_offset = u64::from_le_bytes(kernel[8..16].try_into().expect("header"));
    let image_size = u64::from_le_bytes(kernel[16..24].try_into().expect("header"));
    assert_eq!(
        &kernel[0x38..0x3c],
        b"RSC\x05",
        "Debian's riscv64 kernel is an Image"
    );

    let (map, mem) = machine(GuestArch::Riscv64, 2, 512 << 20, 2);
    let initrd = vec![0x42u8; 1 << 20];
    let platform = for_arch(GuestArch::Riscv64);
    let boot = platform
        .boot(&mem, &map, &kernel, Some(&initrd), CMDLINE)
        .expect("boot");

    assert_eq!(boot.kernel.format, KernelFormat::Riscv64Image);
    assert_eq!(boot.kernel.load.0, 0x8000_0000 + text_offset);
    assert_eq!(
        boot.kernel.load.0 % 0x20_0000,
        0,
        "riscv64 kernels need 2 MiB alignment"
    );
    assert_eq!(boot.kernel.entry, boot.kernel.load);
    assert_eq!(
        boot.kernel.end,
        boot.kernel.load.0 + image_size.max(kernel.len() as u64)
    );
    let mut head = vec![0u8; 64];
    mem.read_slice(&mut head, boot.kernel.load)
        .expect("read back");
    assert_eq!(head, kernel[..64]);

    let BootData::Fdt(dtb) = boot.data else {
        panic!("no DTB")
    };
    let rd = boot.initrd.expect("initrd");
    assert!(rd.start.0 >= boot.kernel.end && rd.end() <= dtb.start.0);
    assert_eq!(
        boot.boot_vcpu,
        BootState::Riscv64 {
            entry: boot.kernel.entry,
            hart_id: 0,
            fdt: dtb.start
        }
    );
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(dts) = decompile_dtb(&read_dtb(&mem, &boot), dir.path()) {
        assert!(dts.contains(&format!("bootargs = \"{CMDLINE}\";")));
    }

    // The same kernel is refused by the other platforms, and does not fit a tiny machine.
    let (arm_map, arm_mem) = machine(GuestArch::Arm64, 1, 512 << 20, 0);
    assert!(matches!(
        for_arch(GuestArch::Arm64).load_kernel(&arm_mem, &arm_map, &kernel),
        Err(PlatformError::InvalidKernel { .. })
    ));
    let (small_map, small_mem) = machine(GuestArch::Riscv64, 1, 32 << 20, 0);
    assert!(matches!(
        platform.load_kernel(&small_mem, &small_map, &kernel),
        Err(PlatformError::KernelDoesNotFit { .. })
    ));
}

#[test]
fn debian_amd64_bzimage_loads_with_64bit_entry() {
    let Some(kernel) = guest_file("x86_64", "bzImage") else {
        return;
    };
    assert_eq!(&kernel[0x202..0x206], b"HdrS");
    let (map, mem) = machine(GuestArch::X86_64, 2, 512 << 20, 2);
    let platform = for_arch(GuestArch::X86_64);

    if cfg!(not(target_arch = "x86_64")) {
        assert!(matches!(
            platform.load_kernel(&mem, &map, &kernel),
            Err(PlatformError::UnsupportedOnHost { .. })
        ));
        test_prerequisites::prerequisite_missing(
            "x86_64 kernel loading needs an x86_64 host (linux-loader)",
        );
        return;
    }

    let initrd = vec![0x17u8; 4 << 20];
    let boot = platform
        .boot(&mem, &map, &kernel, Some(&initrd), CMDLINE)
        .expect("boot");
    assert_eq!(boot.kernel.format, KernelFormat::BzImage);
    assert_eq!(boot.kernel.load, GuestAddress(0x10_0000));
    assert_eq!(
        boot.kernel.entry,
        GuestAddress(0x10_0200),
        "startup_64 is 0x200 past code32_start"
    );
    // Protected-mode code is copied from just past the setup sectors.
    let setup_sects = u64::from(kernel[0x1f1]).max(4);
    let payload = kernel.len() as u64 - (setup_sects + 1) * 512;
    let mut head = vec![0u8; 256];
    mem.read_slice(&mut head, boot.kernel.load)
        .expect("read back");
    let off = ((setup_sects + 1) * 512) as usize;
    assert_eq!(head, kernel[off..off + 256]);
    assert!(boot.kernel.end >= boot.kernel.load.0 + payload);
    let init_size = u64::from(u32::from_le_bytes(
        kernel[0x260..0x264].try_into().expect("hdr"),
    ));
    let pref = u64::from_le_bytes(kernel[0x258..0x260].try_into().expect("hdr"));
    assert_eq!(boot.kernel.end, (0x10_0000 + payload).max(pref + init_size));

    let rd = boot.initrd.expect("initrd");
    let initrd_addr_max = u64::from(u32::from_le_bytes(
        kernel[0x22c..0x230].try_into().expect("hdr"),
    ));
    assert!(rd.start.0 >= boot.kernel.end && rd.end() - 1 <= initrd_addr_max);

    let BootData::X86 {
        zero_page, rsdp, ..
    } = boot.data
    else {
        panic!("no zero page")
    };
    assert_eq!(
        boot.boot_vcpu,
        vm_cross_arch::platform::x86_64::entry::linux_boot_state(
            boot.kernel.entry.0,
            zero_page.0,
            vm_cross_arch::platform::x86_64::layout::BOOT_STACK,
        )
    );
    // The zero page carries the kernel's own setup header plus our fields.
    let mut hdr = vec![0u8; 0x7b];
    mem.read_slice(&mut hdr, GuestAddress(zero_page.0 + 0x1f1))
        .expect("zero page");
    assert_eq!(&hdr[0x202 - 0x1f1..0x206 - 0x1f1], b"HdrS");
    assert_eq!(
        hdr[0x206 - 0x1f1..0x208 - 0x1f1],
        kernel[0x206..0x208],
        "protocol version"
    );
    assert_eq!(hdr[0x210 - 0x1f1], 0xff, "type_of_loader");
    let ramdisk = u32::from_le_bytes(hdr[0x218 - 0x1f1..0x21c - 0x1f1].try_into().expect("hdr"));
    assert_eq!(u64::from(ramdisk), rd.start.0);
    assert_eq!(
        mem.read_obj::<u64>(GuestAddress(zero_page.0 + 0x70))
            .expect("rsdp"),
        rsdp.0
    );
}

#[test]
fn debian_amd64_vmlinux_loads_as_elf() {
    let Some(kernel) = guest_file("x86_64", "kernel") else {
        return;
    };
    assert_eq!(
        &kernel[..4],
        b"\x7fELF",
        "xtask guest publishes the vmlinux ELF"
    );
    assert_eq!(
        u16::from_le_bytes([kernel[0x12], kernel[0x13]]),
        62,
        "EM_X86_64"
    );
    let (map, mem) = machine(GuestArch::X86_64, 1, 512 << 20, 2);
    let platform = for_arch(GuestArch::X86_64);
    if cfg!(not(target_arch = "x86_64")) {
        test_prerequisites::prerequisite_missing(
            "x86_64 kernel loading needs an x86_64 host (linux-loader)",
        );
        return;
    }
    let Some(initrd) = guest_file("x86_64", "initrd.cpio.gz") else {
        return;
    };
    let boot = platform
        .boot(&mem, &map, &kernel, Some(&initrd), CMDLINE)
        .expect("boot");
    assert_eq!(boot.kernel.format, KernelFormat::ElfVmlinux);
    let rd = boot.initrd.expect("initrd");
    assert_eq!(rd.end() - rd.start.0, initrd.len() as u64);
    let mut head = vec![0u8; 2];
    mem.read_slice(&mut head, rd.start)
        .expect("initrd in memory");
    assert_eq!(head, [0x1f, 0x8b], "the gzip'd initramfs is loaded as is");
}

#[test]
fn debian_arm64_image_loads_at_ram_base_plus_text_offset() {
    let Some(kernel) = guest_file("arm64", "kernel") else {
        return;
    };
    let text_offset = u64::from_le_bytes(kernel[8..16].try_into().expect("header"));
    let image_size = u64::from_le_bytes(kernel[16..24].try_into().expect("header"));
    let (map, mem) = machine(GuestArch::Arm64, 4, 512 << 20, 4);
    let boot = for_arch(GuestArch::Arm64)
        .boot(&mem, &map, &kernel, None, CMDLINE)
        .expect("boot");
    assert_eq!(boot.kernel.format, KernelFormat::Arm64Image);
    assert_eq!(boot.kernel.load.0, 0x4000_0000 + text_offset);
    assert_eq!(
        boot.kernel.end,
        boot.kernel.load.0 + image_size.max(kernel.len() as u64)
    );
    let BootData::Fdt(dtb) = boot.data else {
        panic!("no DTB")
    };
    assert!(dtb.start.0 >= boot.kernel.end && dtb.start.0 % 8 == 0 && dtb.size <= 0x20_0000);
    assert_eq!(
        boot.boot_vcpu,
        BootState::Arm64Linux {
            entry: boot.kernel.entry,
            fdt: dtb.start
        }
    );
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(dts) = decompile_dtb(&read_dtb(&mem, &boot), dir.path()) {
        assert_eq!(dts.matches("enable-method = \"psci\";").count(), 4);
    }
    let (rv_map, rv_mem) = machine(GuestArch::Riscv64, 1, 512 << 20, 0);
    match for_arch(GuestArch::Riscv64).load_kernel(&rv_mem, &rv_map, &kernel) {
        Err(PlatformError::InvalidKernel { reason, .. }) => {
            assert!(reason.contains("arm64 Image"), "{reason}");
        }
        other => panic!("riscv64 accepted an arm64 kernel: {other:?}"),
    }
}
