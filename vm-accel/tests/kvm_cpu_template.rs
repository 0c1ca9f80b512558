//! CPU templates reach the guest: a tiny guest runs `cpuid` and reports the
//! feature bits, under the default and the conservative template.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use common::{asm, kvm_or_skip, out_u32, run, Exit, CODE, RAM_SIZE};
use iced_x86::code_asm::{eax, ecx};
use vm_accel::boot::test_support::{long_mode_entry, BOOT_STACK_POINTER, ZERO_PAGE_ADDR};
use vm_accel::kvm::KvmAccelerator;
use vm_accel::{Accelerator, CpuTemplate, GuestAddress, GuestMemoryMmap, VcpuId, VmOptions};
use vm_memory::Bytes;

const CX16: u32 = 1 << 13;
const HYPERVISOR: u32 = 1 << 31;

/// CPUID.1:ECX as the guest sees it under `template`.
fn guest_leaf1_ecx(kvm: &KvmAccelerator, template: CpuTemplate) -> u32 {
    let vm = kvm
        .create_vm(&VmOptions {
            cpu_template: template,
            in_kernel_irqchip: false,
            ..VmOptions::default()
        })
        .unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap();
    let code = asm(64, CODE, |a| {
        a.mov(eax, 1)?;
        a.xor(ecx, ecx)?;
        a.cpuid()?;
        a.mov(eax, ecx)?;
        a.out(0x80, eax)?;
        a.hlt()
    });
    mem.write_slice(&code, GuestAddress(CODE)).unwrap();
    vm.map_memory(&mem).unwrap();
    let mut vcpu = vm.create_vcpu(VcpuId(0)).unwrap();
    let boot = long_mode_entry(&mem, CODE, ZERO_PAGE_ADDR, BOOT_STACK_POINTER).unwrap();
    vcpu.apply_boot_state(&boot).unwrap();
    let exit = run(vcpu.as_mut(), 0);
    let (port, value) = out_u32(&exit).unwrap_or_else(|| panic!("{exit:?}"));
    assert_eq!(port, 0x80);
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
    value
}

#[test]
fn conservative_template_hides_cx16_from_the_guest() {
    let Some(kvm) = kvm_or_skip("conservative_template_hides_cx16_from_the_guest") else {
        return;
    };
    let default = guest_leaf1_ecx(&kvm, CpuTemplate::host_default());
    let conservative = guest_leaf1_ecx(&kvm, CpuTemplate::conservative());
    assert_ne!(
        default & HYPERVISOR,
        0,
        "default template sets the hypervisor bit"
    );
    assert_ne!(conservative & HYPERVISOR, 0);
    assert_eq!(conservative & CX16, 0, "CX16 hidden: {conservative:#x}");
    // The conservative template only clears bits.
    assert_eq!(
        conservative & !default,
        0,
        "default {default:#x} conservative {conservative:#x}"
    );
    eprintln!("guest CPUID.1:ECX default {default:#010x}, conservative {conservative:#010x}");
}
