//! Per-architecture knowledge and the software execution engine.
//!
//! Where this crate sits among the others, and a guest boot followed through
//! all of them: `docs/ARCHITECTURE.md` in the repository.
//!
//! `platform/` describes each guest architecture (x86_64, arm64, riscv64)
//! behind [`platform::PlatformTraits`]: memory map, kernel placement, boot data
//! and initial register state. The guest architecture is a runtime value, so
//! all three platforms compile on every host.
//!
//! `interp/` holds the software engines: [`interp::riscv64`] is an RV64GC
//! interpreter behind `vm_accel::Vcpu` (M/S/U, Sv39, a built-in SBI), with
//! [`interp::riscv64::SoftwareAccelerator`] as its `vm_accel::Accelerator`
//! and an ELF runner for bare-metal test programs
//! ([`interp::riscv64::elf::run`]).
//!
//! ```
//! use vm_accel::{Accelerator, AcceleratorKind, GuestArch, VmOptions};
//! use vm_cross_arch::interp::riscv64::SoftwareAccelerator;
//!
//! let engine = SoftwareAccelerator;
//! assert_eq!(engine.kind(), AcceleratorKind::Software);
//! let vm = engine.create_vm(&VmOptions { vcpu_count: 2, ..VmOptions::default() }).unwrap();
//! assert_eq!(vm.arch(), GuestArch::Riscv64);
//! ```
//!
//! ```
//! use vm_cross_arch::platform::{for_arch, BootData, BootState, GuestArch, MachineSize};
//!
//! let platform = for_arch(GuestArch::Riscv64);
//! let config = MachineSize { vcpus: 2, mem_size: 64 << 20, virtio_devices: 2 };
//! let map = platform.memory_map(&config).unwrap();
//! let mem = map.create_guest_memory().unwrap();
//!
//! // A minimal riscv64 Image header: text_offset 2 MiB, image_size 1 MiB.
//! let mut image = vec![0u8; 4096];
//! image[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes());
//! image[16..24].copy_from_slice(&0x10_0000u64.to_le_bytes());
//! image[0x38..0x3c].copy_from_slice(b"RSC\x05");
//!
//! let boot = platform.boot(&mem, &map, &image, None, "console=ttyS0").unwrap();
//! assert_eq!(boot.kernel.entry.0, 0x8020_0000);
//! assert!(matches!(boot.data, BootData::Fdt(_)));
//! assert!(matches!(platform.vcpu_start(&map, &boot, 1).unwrap(), BootState::Secondary { .. }));
//! ```

#![deny(missing_docs)]

pub mod interp;
pub mod platform;
