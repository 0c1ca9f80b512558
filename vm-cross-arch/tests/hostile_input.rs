//! Kernel images, initrds and command lines come from users and files: any
//! bytes must give `Ok` or a typed error, never a panic or a write outside RAM.

mod support;

use proptest::prelude::*;
use support::{fake_image, machine};
use vm_cross_arch::platform::{for_arch, GuestArch};

/// A bzImage-looking header with random protocol fields and a random body.
fn bzimage_like(fields: &[u8], body_len: usize) -> Vec<u8> {
    let mut v = vec![0u8; 0x300 + body_len];
    v[0x1f1..0x1f1 + fields.len()].copy_from_slice(fields);
    v[0x202..0x206].copy_from_slice(b"HdrS");
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for arch in GuestArch::ALL {
            let (map, mem) = machine(arch, 1, 64 << 20, 1);
            let _ = for_arch(arch).boot(&mem, &map, &bytes, Some(&bytes), "console=ttyS0");
        }
    }

    #[test]
    fn random_image_headers_never_panic(
        text_offset in any::<u64>(),
        image_size in any::<u64>(),
        flags in any::<u64>(),
        riscv in any::<bool>(),
        initrd_len in 0usize..(1 << 16),
    ) {
        let arch = if riscv { GuestArch::Riscv64 } else { GuestArch::Arm64 };
        let mut image = fake_image(arch, text_offset, image_size);
        image[24..32].copy_from_slice(&flags.to_le_bytes());
        let (map, mem) = machine(arch, 2, 64 << 20, 2);
        let initrd = vec![0u8; initrd_len];
        if let Ok(boot) = for_arch(arch).boot(&mem, &map, &image, Some(&initrd), "x") {
            let ram = map.ram[0];
            prop_assert!(ram.contains(boot.kernel.load.0, boot.kernel.end - boot.kernel.load.0));
            let rd = boot.initrd.expect("initrd given");
            prop_assert!(rd.start.0 >= boot.kernel.end);
        }
    }

    #[test]
    fn random_bzimage_headers_never_panic(
        fields in proptest::collection::vec(any::<u8>(), 0x7b),
        body_len in 0usize..0x2000,
    ) {
        let (map, mem) = machine(GuestArch::X86_64, 1, 64 << 20, 1);
        let image = bzimage_like(&fields, body_len);
        if let Ok(boot) = for_arch(GuestArch::X86_64).boot(&mem, &map, &image, Some(&[1, 2, 3]), "x") {
            prop_assert!(boot.kernel.end <= 64 << 20);
        }
    }

    #[test]
    fn random_elf_headers_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 64..2048),
        phoff in 0u64..256,
        phnum in 0u16..8,
    ) {
        bytes[0..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
        bytes[32..40].copy_from_slice(&phoff.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&phnum.to_le_bytes());
        let (map, mem) = machine(GuestArch::X86_64, 1, 64 << 20, 1);
        if let Ok(boot) = for_arch(GuestArch::X86_64).boot(&mem, &map, &bytes, None, "x") {
            prop_assert!(boot.kernel.end <= 64 << 20);
        }
    }
}
