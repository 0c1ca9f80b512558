//! Snapshot and restore of a KVM x86_64 vCPU and VM: a tiny guest driven by
//! the in-kernel PIT and PIC is saved mid-run, restored into a fresh VM and
//! vCPU, and must finish with the result of an uninterrupted run; saved states
//! that do not fit are refused with clear errors.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use common::{asm, idt_gate, kvm_or_skip, out_u32, run, Exit, Guest, CODE, DATA, RAM_SIZE};
use iced_x86::code_asm::{
    al, dx, eax, qword_ptr, r12, r13, r14, rax, rbx, rcx, rdx, xmm2, CodeAssembler,
};
use std::sync::mpsc;
use std::time::Duration;
use vm_accel::kvm::KvmAccelerator;
use vm_accel::regs::X86DescriptorTable;
use vm_accel::state::{CpuidEntry, MsrEntry, X86_64KvmVcpuState};
use vm_accel::{AccelError, GuestAddress, Vcpu, VcpuId, VcpuState, VmState};
use vm_memory::Bytes;

const IDT: u64 = 0x2_0000;
const TIMER_HANDLER: u64 = 0x2_1000;
/// Where the timer handler counts its interrupts.
const TICKS: u64 = DATA + 0x100;
/// PIC vector base for IRQ 0-7.
const PIC_BASE: u8 = 0x20;
/// Rounds of work, each after a timer interrupt, each ending in an `out 0x80`.
const ROUNDS: u32 = 6;
/// Checksum iterations per round.
const WORK: i32 = 40;
/// The checksum's start value.
const SEED: i64 = 0x1234_5678;
/// What the test puts in xmm2 before the guest runs.
const XMM2: u64 = 0x0bad_cafe_f00d_5eed;
/// Where XMM2 and XSTATE_BV sit in the XSAVE area (legacy region and header).
const XSAVE_XMM2: usize = 160 + 2 * 16;
const XSAVE_XSTATE_BV: usize = 512;
/// XSTATE_BV bit of the SSE component.
const XSTATE_SSE: u8 = 1 << 1;
/// Rounds run before the snapshot.
const BEFORE_SNAPSHOT: u32 = 3;
/// PIT channel 0 reload value: 1.193182 MHz / 0x4a9 = ~1 kHz.
const PIT_COUNT: i32 = 0x4a9;
const PROGRESS_PORT: u16 = 0x80;
const DONE_PORT: u16 = 0x81;
/// CR4.OSFXSR | CR4.OSXMMEXCPT: SSE instructions are allowed.
const CR4_SSE: u64 = 0x600;
/// IA32_TSC: its value advances between a save and the next one.
const MSR_IA32_TSC: u32 = 0x10;
/// IA32_KERNEL_GS_BASE: a plain read/write MSR.
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// A hang guard, not a time limit on the work: with the timer running, every
/// round ends in an exit long before it; without one, the guest would halt forever.
const WATCHDOG: Duration = Duration::from_mins(10);

/// What the guest leaves in `DATA`.
#[derive(Debug, PartialEq, Eq)]
struct Results {
    /// The general-register checksum (rbx).
    checksum: u64,
    /// xmm2, [`XMM2`] from before the first round (XSAVE state).
    xmm2: u64,
    /// How often `rdtsc` went backwards (the TSC is an MSR in the snapshot).
    tsc_backwards: u64,
    /// Timer interrupts taken.
    ticks: u64,
}

/// Programs the PIC (IRQ 0 only, at `PIC_BASE`) and PIT channel 0 (rate
/// generator, ~1 kHz), then per round: `hlt` until a tick, `WORK` iterations of
/// a checksum in rbx with a TSC monotonicity check, `out 0x80`. At the end
/// xmm2, which the test sets before the first run, is stored with the results.
fn guest_code(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    for (port, value) in [
        (0x20, 0x11),
        (0x21, i32::from(PIC_BASE)),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0xfe),
        (0xa0, 0x11),
        (0xa1, i32::from(PIC_BASE) + 8),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0xa1, 0xff),
        (0x43, 0x34),
        (0x40, PIT_COUNT & 0xff),
        (0x40, PIT_COUNT >> 8),
    ] {
        a.mov(al, value)?;
        a.out(port, al)?;
    }
    a.mov(rbx, SEED)?;
    a.xor(r12, r12)?;
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(r13, rax)?;
    a.mov(r14, i64::from(ROUNDS))?;
    let mut round = a.create_label();
    let mut inner = a.create_label();
    let mut forward = a.create_label();
    a.set_label(&mut round)?;
    // Interrupts are taken only in `hlt` (the `sti` shadow covers the gap).
    a.sti()?;
    a.hlt()?;
    a.cli()?;
    a.mov(rcx, i64::from(WORK))?;
    a.set_label(&mut inner)?;
    a.imul_3(rbx, rbx, 0x5851_f42d)?;
    a.add(rbx, rcx)?;
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.cmp(rax, r13)?;
    a.jae(forward)?;
    a.inc(r12)?;
    a.set_label(&mut forward)?;
    a.mov(r13, rax)?;
    a.dec(rcx)?;
    a.jnz(inner)?;
    a.mov(rax, qword_ptr(TICKS))?;
    a.out(i32::from(PROGRESS_PORT), eax)?;
    a.dec(r14)?;
    a.jnz(round)?;
    a.mov(qword_ptr(DATA), rbx)?;
    a.movq(rax, xmm2)?;
    a.mov(qword_ptr(DATA + 8), rax)?;
    a.mov(qword_ptr(DATA + 16), r12)?;
    a.mov(rax, qword_ptr(TICKS))?;
    a.mov(qword_ptr(DATA + 24), rax)?;
    a.out(i32::from(DONE_PORT), eax)?;
    a.hlt()
}

/// A VM with the in-kernel irqchip and PIT, and its vCPU at the guest's entry.
fn timer_guest(kvm: &KvmAccelerator) -> (Guest, Box<dyn Vcpu>) {
    let g = Guest::with_irqchip(kvm, 1, true);
    g.load(
        TIMER_HANDLER,
        &asm(64, TIMER_HANDLER, |a| {
            a.push(rax)?;
            a.inc(qword_ptr(TICKS))?;
            a.mov(al, 0x20)?;
            a.out(0x20, al)?;
            a.pop(rax)?;
            a.iretq()
        }),
    );
    g.load(IDT + u64::from(PIC_BASE) * 16, &idt_gate(TIMER_HANDLER));
    g.load(CODE, &asm(64, CODE, guest_code));
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    let mut sregs = vcpu.x86_64_special_registers().unwrap();
    sregs.idt = X86DescriptorTable {
        base: IDT,
        limit: 256 * 16 - 1,
    };
    sregs.cr4 |= CR4_SSE;
    vcpu.set_x86_64_special_registers(&sregs).unwrap();
    set_xmm2(vcpu.as_mut(), XMM2);
    (g, vcpu)
}

/// Sets xmm2 through the XSAVE area, marking the SSE component in use. (Not
/// from guest code: where SSE instructions are emulated through
/// `KVM_SET_FPU`, a write to an SSE state still in its initial configuration
/// can be lost.)
fn set_xmm2(vcpu: &mut dyn Vcpu, value: u64) {
    let state = vcpu.save_state().unwrap();
    let mut s = x86(&state).clone();
    s.xsave[XSAVE_XMM2..XSAVE_XMM2 + 8].copy_from_slice(&value.to_le_bytes());
    s.xsave[XSAVE_XSTATE_BV] |= XSTATE_SSE;
    vcpu.restore_state(&VcpuState::X86_64Kvm(Box::new(s)))
        .unwrap();
}

/// Kicks the vCPU if no exit came for `WATCHDOG`; dropping it disarms it.
struct Watchdog(mpsc::Sender<()>);

impl Watchdog {
    fn arm(vcpu: &dyn Vcpu) -> Self {
        let kick = vcpu.kick_handle();
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            while let Ok(()) = rx.recv_timeout(WATCHDOG) {}
            if matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                kick.kick();
            }
        });
        Self(tx)
    }

    fn pet(&self) {
        let _ = self.0.send(());
    }
}

/// Runs to the next progress or done exit; `Some(ticks)` for progress.
fn next(vcpu: &mut dyn Vcpu, watchdog: &Watchdog) -> Option<u32> {
    let exit = run(vcpu, 0);
    watchdog.pet();
    match out_u32(&exit) {
        Some((PROGRESS_PORT, ticks)) => Some(ticks),
        Some((DONE_PORT, _)) => None,
        _ if exit == Exit::Interrupted => {
            panic!("no exit for {WATCHDOG:?}: the guest is not getting timer interrupts")
        }
        _ => panic!("unexpected exit {exit:?}"),
    }
}

fn results(g: &Guest) -> Results {
    Results {
        checksum: g.read_u64(DATA),
        xmm2: g.read_u64(DATA + 8),
        tsc_backwards: g.read_u64(DATA + 16),
        ticks: g.read_u64(DATA + 24),
    }
}

/// Runs `rounds` progress exits and checks each saw at least one more tick.
fn run_rounds(vcpu: &mut dyn Vcpu, watchdog: &Watchdog, rounds: u32, mut last_ticks: u32) -> u32 {
    for round in 0..rounds {
        let ticks = next(vcpu, watchdog)
            .unwrap_or_else(|| panic!("guest finished early, at round {round} of {rounds}"));
        assert!(
            ticks > last_ticks,
            "round {round}: ticks {ticks} after {last_ticks}"
        );
        last_ticks = ticks;
    }
    last_ticks
}

fn uninterrupted(kvm: &KvmAccelerator) -> Results {
    let (g, mut vcpu) = timer_guest(kvm);
    let watchdog = Watchdog::arm(vcpu.as_ref());
    run_rounds(vcpu.as_mut(), &watchdog, ROUNDS, 0);
    assert_eq!(
        next(vcpu.as_mut(), &watchdog),
        None,
        "done after {ROUNDS} rounds"
    );
    results(&g)
}

/// A saved state with the fields that change while a vCPU sits still removed.
fn comparable(state: &VcpuState) -> X86_64KvmVcpuState {
    let VcpuState::X86_64Kvm(s) = state else {
        panic!("not an x86_64 KVM state: {state:?}")
    };
    let mut s = (**s).clone();
    s.msrs.retain(|m| m.index != MSR_IA32_TSC);
    s
}

fn x86(state: &VcpuState) -> &X86_64KvmVcpuState {
    let VcpuState::X86_64Kvm(s) = state else {
        panic!("not an x86_64 KVM state: {state:?}")
    };
    s
}

#[test]
fn a_guest_restored_mid_run_finishes_like_an_uninterrupted_one() {
    let Some(kvm) = kvm_or_skip("a_guest_restored_mid_run_finishes_like_an_uninterrupted_one")
    else {
        return;
    };
    let expected = uninterrupted(&kvm);
    assert_eq!(expected.tsc_backwards, 0, "{expected:?}");
    assert!(expected.ticks >= u64::from(ROUNDS), "{expected:?}");

    // Run part way, then save the vCPU, the VM and guest memory.
    let (g, mut vcpu) = timer_guest(&kvm);
    let watchdog = Watchdog::arm(vcpu.as_ref());
    let ticks_at_save = run_rounds(vcpu.as_mut(), &watchdog, BEFORE_SNAPSHOT, 0);
    drop(watchdog);
    let vcpu_state = vcpu.save_state().expect("save vCPU state");
    let vm_state = g.vm.save_state().expect("save VM state");
    let mut memory = vec![0u8; RAM_SIZE];
    g.mem
        .read_slice(&mut memory, GuestAddress(0))
        .expect("read guest memory");
    let saved = x86(&vcpu_state);
    assert!(saved.lapic.is_some(), "the in-kernel LAPIC is saved");
    assert!(
        saved.msrs.iter().any(|m| m.index == MSR_IA32_TSC),
        "IA32_TSC is among the {} saved MSRs",
        saved.msrs.len()
    );
    drop(vcpu);
    drop(g);

    // Through serde, as a snapshot file would carry them.
    let vcpu_state: VcpuState =
        serde_json::from_str(&serde_json::to_string(&vcpu_state).unwrap()).unwrap();
    let vm_state: VmState =
        serde_json::from_str(&serde_json::to_string(&vm_state).unwrap()).unwrap();

    // A fresh VM and vCPU: VM state first, then the vCPU.
    let g = Guest::with_irqchip(&kvm, 1, true);
    g.load(0, &memory);
    g.vm.restore_state(&vm_state).expect("restore VM state");
    let mut vcpu = g.vm.create_vcpu(VcpuId(0)).expect("create vCPU");
    vcpu.restore_state(&vcpu_state).expect("restore vCPU state");
    // A restored vCPU saves the state it was given.
    assert_same(
        &comparable(&vcpu.save_state().expect("save the restored vCPU")),
        &comparable(&vcpu_state),
    );

    let watchdog = Watchdog::arm(vcpu.as_ref());
    run_rounds(
        vcpu.as_mut(),
        &watchdog,
        ROUNDS - BEFORE_SNAPSHOT,
        ticks_at_save,
    );
    assert_eq!(
        next(vcpu.as_mut(), &watchdog),
        None,
        "done after the remaining rounds"
    );
    let restored = results(&g);
    assert_eq!(restored.checksum, expected.checksum);
    assert_eq!(expected.xmm2, XMM2, "{expected:?}");
    assert_eq!(restored.xmm2, XMM2, "xmm2 survives the snapshot");
    assert_eq!(
        restored.tsc_backwards, 0,
        "the TSC went backwards: {restored:?}"
    );
    assert!(restored.ticks >= u64::from(ROUNDS), "{restored:?}");
}

/// A saved state of a vCPU that has run a little, and a fresh VM to restore into.
fn saved_and_fresh(kvm: &KvmAccelerator) -> (VcpuState, VmState, Guest) {
    let g = Guest::with_irqchip(kvm, 1, true);
    g.load(
        CODE,
        &asm(64, CODE, |a| a.out(i32::from(PROGRESS_PORT), al)),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert!(matches!(run(vcpu.as_mut(), 0), Exit::Out(PROGRESS_PORT, _)));
    let state = vcpu.save_state().unwrap();
    let vm_state = g.vm.save_state().unwrap();
    (state, vm_state, Guest::with_irqchip(kvm, 1, true))
}

fn refused(g: &Guest, state: X86_64KvmVcpuState) -> String {
    let mut vcpu = g.vm.create_vcpu(VcpuId(0)).unwrap();
    match vcpu.restore_state(&VcpuState::X86_64Kvm(Box::new(state))) {
        Err(e @ AccelError::InvalidState { .. }) => e.to_string(),
        other => panic!("expected InvalidState, got {other:?}"),
    }
}

#[test]
fn states_that_do_not_fit_are_refused() {
    let Some(kvm) = kvm_or_skip("states_that_do_not_fit_are_refused") else {
        return;
    };
    let (state, _, _) = saved_and_fresh(&kvm);
    let good = x86(&state).clone();
    // Each case in a fresh VM: a refused restore may leave a vCPU half-written.
    let case = |edit: &dyn Fn(&mut X86_64KvmVcpuState)| {
        let g = Guest::with_irqchip(&kvm, 1, true);
        let mut s = good.clone();
        edit(&mut s);
        refused(&g, s)
    };

    let e = case(&|s| s.version += 1);
    assert!(e.contains("layout version is 2"), "{e}");
    let e = case(&|s| s.xsave.extend_from_slice(&[0; 64]));
    assert!(e.contains("other XSAVE features"), "{e}");
    let e = case(&|s| s.xsave.truncate(512));
    assert!(e.contains("XSAVE"), "{e}");
    let e = case(&|s| {
        s.regs.pop();
    });
    assert!(
        e.contains("general registers") && e.contains("bytes"),
        "{e}"
    );
    let e = case(&|s| s.sregs.clear());
    assert!(e.contains("segment and control registers"), "{e}");
    let e = case(&|s| s.lapic = None);
    assert!(e.contains("LAPIC"), "{e}");
    let e = case(&|s| s.cpuid = vec![CpuidEntry::default(); 300]);
    assert!(e.contains("CPUID"), "{e}");
    let e = case(&|s| {
        s.msrs.push(MsrEntry {
            index: 0xdead_beef,
            data: 1,
        });
    });
    assert!(e.contains("MSR 0xdeadbeef"), "{e}");

    // The good state still restores.
    let g = Guest::with_irqchip(&kvm, 1, true);
    let mut vcpu = g.vm.create_vcpu(VcpuId(0)).unwrap();
    vcpu.restore_state(&state)
        .expect("the unedited state restores");
}

#[test]
fn vm_states_must_match_the_irqchip_configuration() {
    let Some(kvm) = kvm_or_skip("vm_states_must_match_the_irqchip_configuration") else {
        return;
    };
    let (vcpu_state, vm_state, fresh) = saved_and_fresh(&kvm);
    let plain = Guest::new(&kvm, 1);
    let e = plain.vm.restore_state(&vm_state).unwrap_err();
    assert!(
        matches!(e, AccelError::InvalidState { .. }) && e.to_string().contains("irqchip"),
        "{e}"
    );
    let mut vcpu = plain.vm.create_vcpu(VcpuId(0)).unwrap();
    let e = vcpu.restore_state(&vcpu_state).unwrap_err();
    assert!(e.to_string().contains("no in-kernel irqchip"), "{e}");

    let VmState::X86_64Kvm(mut bad) = vm_state.clone() else {
        panic!("not an x86_64 KVM VM state")
    };
    let chips = bad.irqchip.as_mut().expect("irqchip saved");
    std::mem::swap(&mut chips.pic_master, &mut chips.pic_slave);
    let e = fresh
        .vm
        .restore_state(&VmState::X86_64Kvm(bad))
        .unwrap_err();
    assert!(e.to_string().contains("master PIC"), "{e}");
    fresh
        .vm
        .restore_state(&vm_state)
        .expect("the unedited VM state restores");
}

#[test]
fn the_kvmclock_continues_from_the_saved_value() {
    let Some(kvm) = kvm_or_skip("the_kvmclock_continues_from_the_saved_value") else {
        return;
    };
    let (_, vm_state, fresh) = saved_and_fresh(&kvm);
    let VmState::X86_64Kvm(mut state) = vm_state else {
        panic!("not an x86_64 KVM VM state")
    };
    // Far beyond what a fresh VM's clock (which starts near zero) can reach.
    let far = 1u64 << 50;
    state.clock_ns = far;
    fresh.vm.restore_state(&VmState::X86_64Kvm(state)).unwrap();
    let VmState::X86_64Kvm(again) = fresh.vm.save_state().unwrap() else {
        panic!("not an x86_64 KVM VM state")
    };
    assert!(again.clock_ns >= far, "clock {} < {far}", again.clock_ns);
}

#[test]
fn saving_completes_a_port_read_first() {
    let Some(kvm) = kvm_or_skip("saving_completes_a_port_read_first") else {
        return;
    };
    let g = Guest::with_irqchip(&kvm, 1, true);
    g.load(
        CODE,
        &asm(64, CODE, |a| {
            a.mov(dx, 0x3f8)?;
            a.in_(al, dx)?;
            a.out(i32::from(PROGRESS_PORT), al)?;
            a.hlt()
        }),
    );
    let mut vcpu = g.long_mode_vcpu(0, CODE);
    assert_eq!(run(vcpu.as_mut(), 0x5a), Exit::In(0x3f8, 1));
    // The answer is in the kvm_run page; KVM moves it to `al` on the next KVM_RUN.
    let state = vcpu.save_state().unwrap();
    let mut memory = vec![0u8; RAM_SIZE];
    g.mem.read_slice(&mut memory, GuestAddress(0)).unwrap();

    let restored = Guest::with_irqchip(&kvm, 1, true);
    restored.load(0, &memory);
    let mut vcpu = restored.vm.create_vcpu(VcpuId(0)).unwrap();
    vcpu.restore_state(&state).unwrap();
    assert_eq!(
        run(vcpu.as_mut(), 0),
        Exit::Out(PROGRESS_PORT, vec![0x5a]),
        "the restored vCPU continues after the completed `in`"
    );
}

#[test]
fn every_part_of_a_state_is_written_on_restore() {
    use kvm_bindings::{
        kvm_debugregs, kvm_lapic_state, kvm_regs, kvm_sregs, kvm_vcpu_events, KVM_MP_STATE_HALTED,
    };
    use zerocopy::{FromBytes, IntoBytes};

    let Some(kvm) = kvm_or_skip("every_part_of_a_state_is_written_on_restore") else {
        return;
    };
    let (state, _, fresh) = saved_and_fresh(&kvm);
    let mut edited = x86(&state).clone();
    // Values a fresh vCPU does not have, one per part.
    let mut regs = kvm_regs::read_from_bytes(&edited.regs).unwrap();
    regs.rax = 0x1234_5678_9abc_def0;
    edited.regs = regs.as_bytes().to_vec();
    let mut sregs = kvm_sregs::read_from_bytes(&edited.sregs).unwrap();
    sregs.cr2 = 0xdead_b000;
    edited.sregs = sregs.as_bytes().to_vec();
    edited.xsave[XSAVE_XMM2..XSAVE_XMM2 + 8].copy_from_slice(&XMM2.to_le_bytes());
    // Without its XSTATE_BV bit, KVM loads the SSE state as initialised (zeros).
    edited.xsave[XSAVE_XSTATE_BV] |= XSTATE_SSE;
    let mut debug = kvm_debugregs::read_from_bytes(&edited.debug_regs).unwrap();
    debug.db[0] = 0x4_2000;
    edited.debug_regs = debug.as_bytes().to_vec();
    let mut lapic = kvm_lapic_state::read_from_bytes(edited.lapic.as_ref().unwrap()).unwrap();
    lapic.regs[0x3e0] = 0x3; // timer divide configuration: divide by 16
    edited.lapic = Some(lapic.as_bytes().to_vec());
    let mut events = kvm_vcpu_events::read_from_bytes(&edited.vcpu_events).unwrap();
    events.nmi.masked = 1;
    edited.vcpu_events = events.as_bytes().to_vec();
    let msr = edited
        .msrs
        .iter_mut()
        .find(|m| m.index == MSR_KERNEL_GS_BASE)
        .expect("KERNEL_GS_BASE is saved");
    msr.data = 0xffff_8000_0bad_c000;
    edited.mp_state = KVM_MP_STATE_HALTED;
    let edited = VcpuState::X86_64Kvm(Box::new(edited));

    let mut vcpu = fresh.vm.create_vcpu(VcpuId(0)).unwrap();
    let before = comparable(&vcpu.save_state().unwrap());
    assert_ne!(before, comparable(&edited));
    vcpu.restore_state(&edited).unwrap();
    assert_same(
        &comparable(&vcpu.save_state().unwrap()),
        &comparable(&edited),
    );
}

/// Asserts two states are equal, naming the parts (and first bytes) that differ.
fn assert_same(got: &X86_64KvmVcpuState, want: &X86_64KvmVcpuState) {
    fn first_difference(a: &[u8], b: &[u8]) -> Option<String> {
        if a == b {
            return None;
        }
        let at = a.iter().zip(b).position(|(x, y)| x != y);
        Some(format!(
            "{} vs {} bytes, first difference at {at:?}",
            a.len(),
            b.len()
        ))
    }
    let mut differences = Vec::new();
    let blobs: [(&str, &[u8], &[u8]); 5] = [
        ("regs", &got.regs, &want.regs),
        ("sregs", &got.sregs, &want.sregs),
        ("xsave", &got.xsave, &want.xsave),
        ("debug_regs", &got.debug_regs, &want.debug_regs),
        ("vcpu_events", &got.vcpu_events, &want.vcpu_events),
    ];
    for (name, a, b) in blobs {
        if let Some(d) = first_difference(a, b) {
            differences.push(format!("{name}: {d}"));
        }
    }
    for (name, a, b) in [
        ("xcrs", &got.xcrs, &want.xcrs),
        ("lapic", &got.lapic, &want.lapic),
    ] {
        match (a, b) {
            (Some(a), Some(b)) => {
                if let Some(d) = first_difference(a, b) {
                    differences.push(format!("{name}: {d}"));
                }
            }
            (None, None) => {}
            _ => differences.push(format!("{name}: present in one state only")),
        }
    }
    if got.msrs != want.msrs {
        let changed: Vec<_> = got
            .msrs
            .iter()
            .zip(&want.msrs)
            .filter(|(a, b)| a != b)
            .collect();
        differences.push(format!(
            "msrs: {changed:x?} ({} vs {})",
            got.msrs.len(),
            want.msrs.len()
        ));
    }
    if got.cpuid != want.cpuid {
        differences.push("cpuid".to_owned());
    }
    if (got.version, got.tsc_khz, got.mp_state) != (want.version, want.tsc_khz, want.mp_state) {
        differences.push("version, tsc_khz or mp_state".to_owned());
    }
    assert!(differences.is_empty(), "states differ: {differences:#?}");
}
