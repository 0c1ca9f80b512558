//! The x86 instruction fallback driven on a real KVM vCPU: RIP points at an
//! instruction in a tiny long-mode guest, `emulate_at_rip` runs it in
//! userspace, and registers, SSE state and guest memory show the result.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use common::{asm, kvm_or_skip, Guest, CODE, DATA, RAM_SIZE, UNMAPPED};
use iced_x86::code_asm::{
    cr4, dword_ptr, qword_ptr, rax, rbx, rcx, rsi, xmm3, xmmword_ptr, CodeAssembler,
};
use iced_x86::IcedError;
use vm_accel::boot::test_support::{long_mode_entry, BOOT_STACK_POINTER, ZERO_PAGE_ADDR};
use vm_accel::kvm::{FallbackError, KvmVcpu};
use vm_accel::{GuestAddress, Registers, Vcpu, VcpuId, VmOptions};
use vm_memory::Bytes;

const ZF: u64 = 1 << 6;

/// A 1-vCPU VM with 2 MiB at 0 and a vCPU in long mode at `entry`.
fn setup(kvm: &vm_accel::kvm::KvmAccelerator, entry: u64) -> (Guest, KvmVcpu) {
    let vm = kvm
        .create_kvm_vm(&VmOptions {
            vcpu_count: 1,
            // Without the in-kernel irqchip, so `hlt` exits to the test.
            in_kernel_irqchip: false,
            ..VmOptions::default()
        })
        .expect("create VM");
    let mem =
        vm_accel::GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("guest RAM");
    vm_accel::Vm::map_memory(&vm, &mem).expect("map RAM");
    let mut vcpu = vm.create_kvm_vcpu(VcpuId(0)).expect("create vCPU");
    let boot =
        long_mode_entry(&mem, entry, ZERO_PAGE_ADDR, BOOT_STACK_POINTER).expect("long-mode tables");
    vcpu.apply_boot_state(&boot).expect("boot state");
    (
        Guest {
            vm: std::sync::Arc::new(vm),
            mem,
        },
        vcpu,
    )
}

fn regs(vcpu: &KvmVcpu) -> vm_accel::regs::X86_64Registers {
    match vcpu.registers().expect("registers") {
        Registers::X86_64(r) => r,
        other => panic!("not x86 registers: {other:?}"),
    }
}

fn set_regs(vcpu: &mut KvmVcpu, f: impl FnOnce(&mut vm_accel::regs::X86_64Registers)) {
    let mut r = regs(vcpu);
    f(&mut r);
    vcpu.set_registers(&Registers::X86_64(r))
        .expect("set registers");
}

fn program(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    asm(64, CODE, build)
}

#[test]
fn fallback_emulates_on_a_real_vcpu() {
    let Some(kvm) = kvm_or_skip("fallback_emulates_on_a_real_vcpu") else {
        return;
    };
    let (g, mut vcpu) = setup(&kvm, CODE);
    let code = program(|a| {
        a.popcnt(rax, rbx)?;
        a.movdqu(xmm3, xmmword_ptr(rsi))?;
        a.movq(rcx, xmm3)?;
        a.lock().cmpxchg16b(xmmword_ptr(rsi + 0x20))?;
        a.movd(dword_ptr(rsi + 0x40), xmm3)?;
        a.hlt()
    });
    g.load(CODE, &code);
    let v: u128 = 0x1111_2222_3333_4444_5555_6666_7777_8888;
    g.load(DATA, &v.to_le_bytes());
    g.load(DATA + 0x20, &[0; 16]);
    set_regs(&mut vcpu, |r| {
        r.rbx = 0xff00_ff00;
        r.rsi = DATA;
    });

    assert_eq!(vcpu.emulate_at_rip().as_deref(), Ok("popcnt"));
    let r = regs(&vcpu);
    assert_eq!(r.rax, 16);
    assert_eq!(r.rflags & ZF, 0);
    let after_popcnt = r.rip;
    assert!(after_popcnt > CODE);

    assert_eq!(vcpu.emulate_at_rip().as_deref(), Ok("movdqu"));
    assert_eq!(vcpu.emulate_at_rip().as_deref(), Ok("movq"));
    assert_eq!(
        regs(&vcpu).rcx,
        0x5555_6666_7777_8888,
        "xmm3 went through KVM_SET_FPU"
    );

    // RDX:RAX = 0:16 differs from the zeroes in memory: ZF clear, RDX:RAX loaded.
    assert_eq!(vcpu.emulate_at_rip().as_deref(), Ok("cmpxchg16b"));
    let r = regs(&vcpu);
    assert_eq!((r.rax, r.rdx, r.rflags & ZF), (0, 0, 0));
    assert_eq!(vcpu.emulate_at_rip().as_deref(), Ok("movd"));
    let stored: u32 = g.mem.read_obj(GuestAddress(DATA + 0x40)).unwrap();
    assert_eq!(stored, 0x7777_8888);

    // The guest resumes where the fallback left RIP: at the hlt.
    let exit = common::run(&mut vcpu, 0);
    assert_eq!(exit, common::Exit::Halt);
}

#[test]
fn fallback_refuses_hostile_state_without_panicking() {
    let Some(kvm) = kvm_or_skip("fallback_refuses_hostile_state_without_panicking") else {
        return;
    };
    // RIP where no memory is.
    let (_g, vcpu) = setup(&kvm, UNMAPPED);
    let err = vcpu.emulate_at_rip().unwrap_err();
    assert!(matches!(err, FallbackError::NotMapped { .. }), "{err}");

    // An instruction whose tail would lie past the end of RAM.
    let end = RAM_SIZE as u64;
    let (g, vcpu) = setup(&kvm, end - 3);
    g.load(end - 3, &[0xf3, 0x48, 0x0f]); // popcnt rax, ... cut short
    let err = vcpu.emulate_at_rip().unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // An operand outside guest RAM.
    let (g, mut vcpu) = setup(&kvm, CODE);
    g.load(CODE, &program(|a| a.popcnt(rax, qword_ptr(rbx))));
    set_regs(&mut vcpu, |r| r.rbx = UNMAPPED);
    let before = regs(&vcpu);
    let err = vcpu.emulate_at_rip().unwrap_err();
    assert!(matches!(err, FallbackError::OutsideRam { .. }), "{err}");
    assert_eq!(regs(&vcpu), before, "registers unchanged");

    // An instruction the fallback does not know names itself.
    g.load(CODE, &[0x0f, 0xae, 0x2c, 0x24]); // xrstor [rsp]
    let err = vcpu.emulate_at_rip().unwrap_err();
    assert!(err.to_string().contains("xrstor"), "{err}");
}

/// An XMM register the fallback writes is what the guest then reads natively,
/// on every fresh vCPU: with the SSE state still in its initial
/// configuration, a write through `KVM_SET_FPU` alone could be dropped by the
/// CPU's XRSTOR (seen on a paravirtual nested KVM).
#[test]
fn fallback_xmm_writes_reach_the_guest() {
    let Some(kvm) = kvm_or_skip("fallback_xmm_writes_reach_the_guest") else {
        return;
    };
    let v: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    for round in 0..40 {
        let (g, mut vcpu) = setup(&kvm, CODE);
        g.load(
            CODE,
            &program(|a| {
                // CR4.OSFXSR and OSXMMEXCPT: SSE instructions run natively.
                a.mov(rax, cr4)?;
                a.or(rax, 0x600)?;
                a.mov(cr4, rax)?;
                a.hlt()?;
                a.movdqu(xmm3, xmmword_ptr(rsi))?;
                a.movdqu(xmmword_ptr(rsi + 0x60), xmm3)?;
                a.hlt()
            }),
        );
        g.load(DATA, &v.to_le_bytes());
        g.load(DATA + 0x60, &[0; 16]);
        set_regs(&mut vcpu, |r| r.rsi = DATA);
        assert_eq!(common::run(&mut vcpu, 0), common::Exit::Halt);
        // The load goes through the fallback; the store runs in the guest.
        assert_eq!(vcpu.emulate_at_rip().as_deref(), Ok("movdqu"));
        assert_eq!(common::run(&mut vcpu, 0), common::Exit::Halt);
        let stored: u128 = g.mem.read_obj(GuestAddress(DATA + 0x60)).unwrap();
        assert_eq!(stored, v, "round {round}: the guest read back {stored:#x}");
    }
}
