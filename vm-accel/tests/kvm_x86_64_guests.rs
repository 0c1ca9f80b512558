//! Tiny x86_64 guests run through the KVM backend: port and MMIO exits,
//! `hlt`, memory results, SMP, kicks, triple faults and software interrupts.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

const ROUNDS: u32 = 200;
/// A second RAM region, above a hole.
const HIGH: u64 = 0x40_0000;
const IDT: u64 = 0x2_0000;
const BP_HANDLER: u64 = 0x2_1000;
const SYSCALL_HANDLER: u64 = 0x2_1100;

use common::{asm, idt_gate, kvm_or_skip, out_u32, run, Exit, Guest, CODE, DATA, UNMAPPED};
use iced_x86::code_asm::{
    al, byte_ptr, dword_ptr, dx, eax, ebx, ecx, edx, qword_ptr, rax, rbx, rcx, rdx, rsi, rsp,
    xmmword_ptr, CodeAssembler,
};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};
use vm_accel::boot::test_support::{
    long_mode_entry, BOOT_STACK_POINTER, CODE_SELECTOR, ZERO_PAGE_ADDR,
};
use vm_accel::boot::x86_64::EFER_LMA;
use vm_accel::regs::X86DescriptorTable;
use vm_accel::{detect, AcceleratorKind, Registers, Vcpu, VcpuId};

#[test]
fn detect_selects_kvm() {
    if kvm_or_skip("detect_selects_kvm").is_none() {
        return;
    }
    let found = detect().expect("KVM opens, so detection must find it");
    assert_eq!(found.accelerator.kind(), AcceleratorKind::Kvm);
    assert!(found.accelerator.max_vcpus() >= 1);
}

#[test]
fn real_mode_out_and_in() {
    let Some(kvm) = kvm_or_skip("real_mode_out_and_in") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let code = asm(16, 0x1000, |a| {
        a.mov(dx, 0x3f8)?;
        a.mov(al, i32::from(b'A'))?;
        a.out(dx, al)?;
        a.in_(al, dx)?;
        a.add(al, 1)?;
        a.out(dx, al)?;
        a.hlt()
    });
    g.load(0x1000, &code);
    let mut vcpu = g.vm.create_vcpu(VcpuId(0)).unwrap();
    let mut sregs = vcpu.x86_64_special_registers().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_x86_64_special_registers(&sregs).unwrap();
    let Registers::X86_64(mut regs) = vcpu.registers().unwrap() else {
        panic!("x86 vCPU returned non-x86 registers")
    };
    regs.rip = 0x1000;
    regs.rflags = 2;
    vcpu.set_registers(&Registers::X86_64(regs)).unwrap();

    assert_eq!(run(vcpu.as_mut(), 0), Exit::Out(0x3f8, vec![b'A']));
    assert_eq!(run(vcpu.as_mut(), 0x41), Exit::In(0x3f8, 1));
    assert_eq!(
        run(vcpu.as_mut(), 0),
        Exit::Out(0x3f8, vec![0x42]),
        "IN data completed on the next run"
    );
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
}

#[test]
fn long_mode_out_sees_the_linux_boot_registers() {
    let Some(kvm) = kvm_or_skip("long_mode_out_sees_the_linux_boot_registers") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.mov(dx, 0x80)?;
            a.mov(rax, rsi)?;
            a.out(dx, eax)?;
            a.mov(rax, rsp)?;
            a.out(dx, eax)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    let sregs = vcpu.x86_64_special_registers().unwrap();
    assert_ne!(sregs.efer & EFER_LMA, 0, "long mode active");
    assert!(sregs.cs.l);
    assert_eq!(sregs.cs.selector, CODE_SELECTOR);

    let exit = run(vcpu.as_mut(), 0);
    assert_eq!(
        out_u32(&exit),
        Some((0x80, ZERO_PAGE_ADDR as u32)),
        "{exit:?}"
    );
    let exit = run(vcpu.as_mut(), 0);
    assert_eq!(
        out_u32(&exit),
        Some((0x80, BOOT_STACK_POINTER as u32)),
        "{exit:?}"
    );
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
}

#[test]
fn hlt_exits_after_the_instruction() {
    let Some(kvm) = kvm_or_skip("hlt_exits_after_the_instruction") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    g.load(CODE, &asm(64, CODE, CodeAssembler::hlt));
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
    assert_eq!(vcpu.registers().unwrap().pc(), CODE + 1);
}

#[test]
fn hlt_with_the_in_kernel_irqchip_waits_until_kicked() {
    let Some(kvm) = kvm_or_skip("hlt_with_the_in_kernel_irqchip_waits_until_kicked") else {
        return;
    };
    let g = Guest::with_irqchip(&kvm, 1, true);
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.cli()?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    let kick = vcpu.kick_handle();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        // A kick may land before the guest ran: run again until it has halted.
        loop {
            let exit = run(vcpu.as_mut(), 0);
            if exit != Exit::Interrupted || vcpu.registers().unwrap().pc() == CODE + 2 {
                tx.send(exit).unwrap();
                return vcpu;
            }
        }
    });
    // The LAPIC is in the kernel: the halted vCPU waits there, so only a kick returns.
    assert_eq!(kick_until(&kick, &rx), Exit::Interrupted);
    t.join().unwrap();
}

#[test]
fn mmio_write_and_read_at_an_unmapped_address() {
    let Some(kvm) = kvm_or_skip("mmio_write_and_read_at_an_unmapped_address") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.mov(rbx, UNMAPPED)?;
            a.mov(dword_ptr(rbx), 0x1234_5678)?;
            a.mov(eax, dword_ptr(rbx + 8))?;
            a.out(0x80, eax)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert_eq!(
        run(vcpu.as_mut(), 0),
        Exit::MmioWrite(UNMAPPED, 0x1234_5678u32.to_le_bytes().to_vec())
    );
    assert_eq!(
        run(vcpu.as_mut(), 0xdead_beef),
        Exit::MmioRead(UNMAPPED + 8, 4)
    );
    let exit = run(vcpu.as_mut(), 0);
    assert_eq!(
        out_u32(&exit),
        Some((0x80, 0xdead_beef)),
        "MMIO read data reached eax: {exit:?}"
    );
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
}

#[test]
fn guest_computes_into_memory() {
    let Some(kvm) = kvm_or_skip("guest_computes_into_memory") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    // Sum of i*i for i in 1..=50, kept in rbx, stored at DATA.
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            let mut top = a.create_label();
            a.xor(ebx, ebx)?;
            a.mov(ecx, 50)?;
            a.set_label(&mut top)?;
            a.mov(rax, rcx)?;
            a.imul_2(rax, rcx)?;
            a.add(rbx, rax)?;
            a.dec(rcx)?;
            a.jnz(top)?;
            a.mov(rdx, DATA)?;
            a.mov(qword_ptr(rdx), rbx)?;
            a.mov(byte_ptr(rdx + 8), 0x5a)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
    let expected: u64 = (1..=50u64).map(|i| i * i).sum();
    assert_eq!(g.read_u64(DATA), expected);
    assert_eq!(g.read_u64(DATA + 8) & 0xff, 0x5a);
    let Registers::X86_64(regs) = vcpu.registers().unwrap() else {
        panic!("arch")
    };
    assert_eq!(regs.rbx, expected);
    assert_eq!(regs.rcx, 0);
}

#[test]
fn two_vcpus_run_at_once() {
    let Some(kvm) = kvm_or_skip("two_vcpus_run_at_once") else {
        return;
    };
    let g = Guest::new(&kvm, 2);
    let entries = [CODE, CODE + 0x1000];
    for (id, entry) in entries.iter().enumerate() {
        g.load(
            *entry,
            &asm(64, *entry, |a| {
                let mut top = a.create_label();
                a.mov(ecx, ROUNDS)?;
                a.set_label(&mut top)?;
                a.mov(eax, ecx)?;
                a.out(0x80 + id as i32, eax)?;
                a.dec(ecx)?;
                a.jnz(top)?;
                a.hlt()
            }),
        );
    }
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(id, entry)| {
            let mut vcpu = g.long_mode_vcpu(id as u32, *entry);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut seen = Vec::new();
                loop {
                    match run(vcpu.as_mut(), 0) {
                        Exit::Halt => break seen,
                        exit => seen
                            .push(out_u32(&exit).unwrap_or_else(|| panic!("vcpu{id}: {exit:?}"))),
                    }
                }
            })
        })
        .collect();
    for (id, t) in threads.into_iter().enumerate() {
        let seen = t.join().unwrap();
        let expected: Vec<_> = (1..=ROUNDS).rev().map(|v| (0x80 + id as u16, v)).collect();
        assert_eq!(seen, expected, "vcpu{id}");
    }
}

/// Kicks until `done` delivers; a hang guard, not a speed assertion.
fn kick_until<T>(kick: &vm_accel::KickHandle, done: &mpsc::Receiver<T>) -> T {
    let start = Instant::now();
    loop {
        kick.kick();
        match done.recv_timeout(Duration::from_millis(20)) {
            Ok(v) => return v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    start.elapsed() < Duration::from_mins(2),
                    "kick never stopped the vCPU"
                );
            }
            Err(e) => panic!("vCPU thread died: {e}"),
        }
    }
}

#[test]
fn kick_stops_a_spinning_vcpu() {
    let Some(kvm) = kvm_or_skip("kick_stops_a_spinning_vcpu") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            let mut spin = a.create_label();
            a.mov(rbx, DATA)?;
            a.set_label(&mut spin)?;
            a.inc(qword_ptr(rbx))?;
            a.jmp(spin)
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    let kick = vcpu.kick_handle();
    let mem = g.mem.clone();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        // A kick may land before the guest ran: run again until it has spun.
        loop {
            let exit = run(vcpu.as_mut(), 0);
            let spins: u64 =
                vm_memory::Bytes::read_obj(&mem, vm_accel::GuestAddress(DATA)).unwrap();
            if exit != Exit::Interrupted || spins > 0 {
                tx.send((exit, spins)).unwrap();
                return vcpu;
            }
        }
    });
    let (exit, spins) = kick_until(&kick, &rx);
    assert_eq!(exit, Exit::Interrupted);
    assert!(spins > 0);
    let vcpu = t.join().unwrap();
    let pc = vcpu.registers().unwrap().pc();
    assert!(
        (CODE..CODE + 16).contains(&pc),
        "stopped inside the loop, pc {pc:#x}"
    );
}

#[test]
fn kick_before_run_interrupts_once() {
    let Some(kvm) = kvm_or_skip("kick_before_run_interrupts_once") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.out(0x80, al)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    let kick = vcpu.kick_handle();
    std::thread::spawn(move || kick.kick()).join().unwrap();
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Interrupted);
    assert!(matches!(run(vcpu.as_mut(), 0), Exit::Out(0x80, _)));
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
}

#[test]
fn triple_fault_is_a_shutdown() {
    let Some(kvm) = kvm_or_skip("triple_fault_is_a_shutdown") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    // The boot IDT is empty: #UD cannot be delivered -> #GP -> #DF -> triple fault.
    g.load(CODE, &asm(64, CODE, CodeAssembler::ud2));
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Shutdown);
    // The report names the faulting instruction, or says that the hypervisor
    // reset the vCPU (KVM on AMD SVM does at a shutdown).
    let state = vm_accel::state_summary(vcpu.as_ref());
    assert!(
        state.contains(&format!("rip={CODE:#x} ")) || state.contains("reset state"),
        "{state}"
    );
    assert!(
        state.contains(" cr0=") && state.contains(" cr3="),
        "{state}"
    );
}

#[test]
fn int3_and_int_n_reach_the_guest_handlers() {
    let Some(kvm) = kvm_or_skip("int3_and_int_n_reach_the_guest_handlers") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    g.load(
        BP_HANDLER,
        &asm(64, BP_HANDLER, |a| {
            a.mov(eax, 3)?;
            a.out(0x81, eax)?;
            a.iretq()
        }),
    );
    g.load(
        SYSCALL_HANDLER,
        &asm(64, SYSCALL_HANDLER, |a| {
            a.mov(eax, 0x80)?;
            a.out(0x81, eax)?;
            a.iretq()
        }),
    );
    g.load(IDT + 3 * 16, &idt_gate(BP_HANDLER));
    g.load(IDT + 0x80 * 16, &idt_gate(SYSCALL_HANDLER));
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.int3()?;
            a.mov(eax, 1)?;
            a.out(0x80, eax)?;
            a.int(0x80)?;
            a.mov(eax, 2)?;
            a.out(0x80, eax)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    let mut sregs = vcpu.x86_64_special_registers().unwrap();
    sregs.idt = X86DescriptorTable {
        base: IDT,
        limit: 256 * 16 - 1,
    };
    vcpu.set_x86_64_special_registers(&sregs).unwrap();
    let outs: Vec<_> = (0..4).map(|_| run(vcpu.as_mut(), 0)).collect();
    let outs: Vec<_> = outs
        .iter()
        .map(|e| out_u32(e).unwrap_or_else(|| panic!("{e:?} in {outs:?}")))
        .collect();
    assert_eq!(outs, [(0x81, 3), (0x80, 1), (0x81, 0x80), (0x80, 2)]);
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
}

#[test]
fn emulation_failures_name_the_instruction() {
    let Some(kvm) = kvm_or_skip("emulation_failures_name_the_instruction") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    // `lock cmpxchg16b [rbx]`: hardware runs it; a nested paravirtual KVM
    // (kvm_pvm) traps it and its emulator fails. Either way the
    // outcome must be right: the `out`, or an error naming these bytes.
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.mov(rbx, DATA)?;
            a.xor(eax, eax)?;
            a.xor(edx, edx)?;
            a.lock().cmpxchg16b(xmmword_ptr(rbx))?;
            a.out(0x80, eax)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    match run(vcpu.as_mut(), 0) {
        Exit::Out(0x80, _) => {
            eprintln!("cmpxchg16b ran in the guest");
            assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
        }
        Exit::Internal(text) => {
            eprintln!("cmpxchg16b was not run by the host's KVM: {text}");
            assert!(text.contains("emulation failed"), "{text}");
            assert!(text.contains("f0 48 0f c7"), "{text}");
            assert!(text.contains(&format!("{:#x}", CODE + 14)), "{text}");
        }
        other => panic!("unexpected exit {other:?}"),
    }
}

#[test]
fn ioeventfd_takes_matching_writes_without_an_exit() {
    let Some(kvm) = kvm_or_skip("ioeventfd_takes_matching_writes_without_an_exit") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let notifier = vm_accel::EventNotifier::new_nonblocking().unwrap();
    g.vm.register_ioeventfd(
        &notifier,
        vm_accel::IoEventAddress::Pio(0x90),
        vm_accel::IoEventMatch::Any,
    )
    .unwrap();
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.mov(al, 7)?;
            a.out(0x90, al)?;
            a.out(0x91, al)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert_eq!(
        run(vcpu.as_mut(), 0),
        Exit::Out(0x91, vec![7]),
        "port 0x90 went to the eventfd"
    );
    assert_eq!(notifier.wait().unwrap(), 1);
    g.vm.unregister_ioeventfd(
        &notifier,
        vm_accel::IoEventAddress::Pio(0x90),
        vm_accel::IoEventMatch::Any,
    )
    .unwrap();
    assert!(g
        .vm
        .unregister_ioeventfd(
            &notifier,
            vm_accel::IoEventAddress::Pio(0x90),
            vm_accel::IoEventMatch::Any
        )
        .is_err());
}

#[test]
fn irq_lines_and_irqfd_register_with_the_irqchip() {
    let Some(kvm) = kvm_or_skip("irq_lines_and_irqfd_register_with_the_irqchip") else {
        return;
    };
    let g = Guest::with_irqchip(&kvm, 1, true);
    let notifier = vm_accel::EventNotifier::new().unwrap();
    g.vm.register_irqfd(&notifier, vm_accel::IrqLine(5))
        .unwrap();
    notifier.notify().unwrap();
    g.vm.unregister_irqfd(&notifier, vm_accel::IrqLine(5))
        .unwrap();
    g.vm.set_irq_line(vm_accel::IrqLine(4), true).unwrap();
    g.vm.set_irq_line(vm_accel::IrqLine(4), false).unwrap();
}

#[test]
fn registers_round_trip() {
    let Some(kvm) = kvm_or_skip("registers_round_trip") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let mut vcpu: Box<dyn Vcpu> = g.long_mode_vcpu(0, CODE);
    let Registers::X86_64(mut regs) = vcpu.registers().unwrap() else {
        panic!("arch")
    };
    regs.rax = 0x1111;
    regs.r15 = 0xffff_0000_1234;
    regs.rip = CODE + 0x40;
    vcpu.set_registers(&Registers::X86_64(regs)).unwrap();
    assert_eq!(vcpu.registers().unwrap(), Registers::X86_64(regs));
}

#[test]
fn memory_with_a_hole_maps_every_region_and_the_hole_is_mmio() {
    let Some(kvm) = kvm_or_skip("memory_with_a_hole_maps_every_region_and_the_hole_is_mmio") else {
        return;
    };
    let vm = vm_accel::Accelerator::create_vm(
        &kvm,
        &vm_accel::VmOptions {
            in_kernel_irqchip: false,
            ..vm_accel::VmOptions::default()
        },
    )
    .unwrap();
    let mem = vm_accel::GuestMemoryMmap::from_ranges(&[
        (vm_accel::GuestAddress(0), 0x20_0000),
        (vm_accel::GuestAddress(HIGH), 0x1000),
    ])
    .unwrap();
    vm.map_memory(&mem).unwrap();
    vm_memory::Bytes::write_slice(
        &mem,
        &asm(64, CODE, |a| {
            a.mov(rbx, HIGH)?;
            a.mov(qword_ptr(rbx), 0x77)?;
            a.mov(rbx, 0x30_0000u64)?;
            a.mov(eax, dword_ptr(rbx))?;
            a.hlt()
        }),
        vm_accel::GuestAddress(CODE),
    )
    .unwrap();
    let mut vcpu = vm.create_vcpu(VcpuId(0)).unwrap();
    let boot = long_mode_entry(&mem, CODE, ZERO_PAGE_ADDR, BOOT_STACK_POINTER).unwrap();
    vcpu.apply_boot_state(&boot).unwrap();
    assert_eq!(
        run(vcpu.as_mut(), 0),
        Exit::MmioRead(0x30_0000, 4),
        "the hole is not RAM"
    );
    assert_eq!(run(vcpu.as_mut(), 0), Exit::Halt);
    let high: u64 = vm_memory::Bytes::read_obj(&mem, vm_accel::GuestAddress(HIGH)).unwrap();
    assert_eq!(high, 0x77, "the second region is guest RAM");
}

#[test]
fn kicking_a_dropped_vcpu_is_harmless() {
    let Some(kvm) = kvm_or_skip("kicking_a_dropped_vcpu_is_harmless") else {
        return;
    };
    let g = Guest::new(&kvm, 1);
    let vcpu = g.vm.create_vcpu(VcpuId(0)).unwrap();
    let kick = vcpu.kick_handle();
    drop(vcpu);
    kick.kick();
    kick.clone().kick();
}
