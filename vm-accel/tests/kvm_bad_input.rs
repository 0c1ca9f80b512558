//! Bad input to the KVM backend ends in a clear, typed error naming the
//! value that was wrong — never a panic or a half-built VM.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use common::{kvm_or_skip, Guest};
use std::sync::Arc;
use vm_accel::boot::test_support::long_mode_entry;
use vm_accel::regs::Arm64CoreRegisters;
use vm_accel::{
    AccelError, Accelerator, BootState, GuestAddress, GuestMemoryMmap, GuestRegionMmap, Registers,
    VcpuId, VmOptions,
};

fn region(addr: u64, size: usize) -> Arc<GuestRegionMmap> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(addr), size)]).unwrap();
    let region = vm_memory::GuestMemoryBackend::iter(&mem).next().unwrap();
    Arc::new(GuestRegionMmap::with_arc(region.get_mmap(), GuestAddress(addr)).unwrap())
}

#[test]
fn overlapping_regions_are_refused_naming_both() {
    let Some(kvm) = kvm_or_skip("overlapping_regions_are_refused_naming_both") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    // RAM covers [0, 2 MiB); this one starts inside it.
    let err = g.vm.map_region(region(0x10_0000, 0x20_0000)).unwrap_err();
    assert!(
        matches!(
            err,
            AccelError::RegionOverlap {
                addr: 0x10_0000,
                other: 0,
                other_size: 0x20_0000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("overlaps"), "{err}");
    // Right after the RAM is fine, and can be unmapped and mapped again.
    g.vm.map_region(region(0x20_0000, 0x1000)).unwrap();
    g.vm.unmap_region(GuestAddress(0x20_0000)).unwrap();
    g.vm.map_region(region(0x20_0000, 0x1000)).unwrap();
}

#[test]
fn unaligned_regions_are_refused() {
    let Some(kvm) = kvm_or_skip("unaligned_regions_are_refused") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let err = g.vm.map_region(region(0x40_0800, 0x1000)).unwrap_err();
    assert!(
        matches!(
            err,
            AccelError::RegionUnaligned {
                addr: 0x40_0800,
                ..
            }
        ),
        "{err}"
    );
    let err = g.vm.map_region(region(0x40_0000, 0x800)).unwrap_err();
    assert!(
        matches!(err, AccelError::RegionUnaligned { size: 0x800, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not aligned"), "{err}");
}

#[test]
fn unmapping_an_unknown_region_is_an_error() {
    let Some(kvm) = kvm_or_skip("unmapping_an_unknown_region_is_an_error") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let err = g.vm.unmap_region(GuestAddress(0x1000)).unwrap_err();
    assert!(
        matches!(err, AccelError::RegionNotMapped { addr: 0x1000 }),
        "{err}"
    );
}

#[test]
fn vcpu_ids_out_of_range_or_reused_are_refused() {
    let Some(kvm) = kvm_or_skip("vcpu_ids_out_of_range_or_reused_are_refused") else {
        return;
    };
    let g = Guest::new(&kvm, 2);
    let err = g.vm.create_vcpu(VcpuId(2)).unwrap_err();
    assert!(
        matches!(err, AccelError::VcpuIdOutOfRange { id: 2, limit: 2 }),
        "{err}"
    );
    let err = g.vm.create_vcpu(VcpuId(u32::MAX)).unwrap_err();
    assert!(matches!(err, AccelError::VcpuIdOutOfRange { .. }), "{err}");
    let _first = g.vm.create_vcpu(VcpuId(1)).unwrap();
    let err = g.vm.create_vcpu(VcpuId(1)).unwrap_err();
    assert!(matches!(err, AccelError::VcpuExists { id: 1 }), "{err}");
}

#[test]
fn vcpu_counts_outside_the_kvm_limit_are_refused() {
    let Some(kvm) = kvm_or_skip("vcpu_counts_outside_the_kvm_limit_are_refused") else {
        return;
    };
    for vcpu_count in [0, kvm.max_vcpus() + 1] {
        let err = kvm
            .create_vm(&VmOptions {
                vcpu_count,
                ..VmOptions::default()
            })
            .unwrap_err();
        assert!(matches!(err, AccelError::InvalidConfig { .. }), "{err}");
        assert!(err.to_string().contains(&vcpu_count.to_string()), "{err}");
    }
}

#[test]
fn state_for_another_architecture_is_refused() {
    let Some(kvm) = kvm_or_skip("state_for_another_architecture_is_refused") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let mut vcpu = g.vm.create_vcpu(VcpuId(0)).unwrap();
    let err = vcpu
        .set_registers(&Registers::Arm64(Arm64CoreRegisters::default()))
        .unwrap_err();
    assert!(matches!(err, AccelError::ArchMismatch { .. }), "{err}");
    let err = vcpu
        .apply_boot_state(&BootState::Riscv64 {
            entry: GuestAddress(0x8000_0000),
            hart_id: 0,
            fdt: GuestAddress(0x8200_0000),
        })
        .unwrap_err();
    assert!(err.to_string().contains("riscv64"), "{err}");
}

#[test]
fn long_mode_tables_without_memory_say_what_is_missing() {
    let small = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
    let err = long_mode_entry(&small, 0x10_0000, 0x7000, 0x8ff0).unwrap_err();
    assert!(matches!(err, AccelError::GuestMemory { .. }), "{err}");
    assert!(err.to_string().contains("long-mode tables"), "{err}");
}

#[test]
fn secondary_x86_vcpus_need_the_irqchip() {
    let Some(kvm) = kvm_or_skip("secondary_x86_vcpus_need_the_irqchip") else {
        return;
    };
    let g = Guest::new(&kvm, 2);
    let mut vcpu = g.vm.create_vcpu(VcpuId(1)).unwrap();
    let err = vcpu
        .apply_boot_state(&BootState::Secondary {
            arch: vm_accel::GuestArch::X86_64,
        })
        .unwrap_err();
    assert!(matches!(err, AccelError::Unsupported { .. }), "{err}");
    let g = Guest::with_irqchip(&kvm, 2, true);
    let mut vcpu = g.vm.create_vcpu(VcpuId(1)).unwrap();
    vcpu.apply_boot_state(&BootState::Secondary {
        arch: vm_accel::GuestArch::X86_64,
    })
    .unwrap();
}
