//! The riscv64 interpreter's debugger support through `vm_accel::Vcpu`:
//! breakpoints (passed over once on resume), watchpoints, single-step,
//! registers beyond the general set, and memory reads and writes that reach
//! decoded code.

use std::sync::Arc;

use vm_accel::{
    BootState, DebugRegister, DebugStop, GuestAddress, GuestDebug, Registers, Vcpu, VcpuExit,
    VcpuId, Vm, WatchKind, Watchpoint,
};
use vm_cross_arch::interp::riscv64::{RiscvVcpu, RiscvVm};
use vm_memory::{Bytes, GuestMemoryMmap};

const RAM: u64 = 0x8000_0000;
const JUMP_SELF: u32 = 0x0000_006f;

/// `addi x5, x5, imm`.
const fn addi_t0(imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (5 << 15) | (5 << 7) | 0x13
}

fn machine(code: &[u32]) -> (Arc<RiscvVm>, RiscvVcpu) {
    let vm = Arc::new(RiscvVm::new(1).expect("vm"));
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM), 16 << 20)]).expect("mem");
    vm.map_memory(&mem).expect("map");
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(RAM)).expect("code");
    let mut vcpu = vm.create_riscv_vcpu(VcpuId(0)).expect("vcpu");
    vcpu.apply_boot_state(&BootState::Riscv64 {
        entry: GuestAddress(RAM),
        hart_id: 0,
        fdt: GuestAddress(0),
    })
    .expect("boot state");
    vcpu.set_budget(10_000);
    (vm, vcpu)
}

fn t0_and_pc(vcpu: &RiscvVcpu) -> (u64, u64) {
    match vcpu.registers().expect("regs") {
        Registers::Riscv64(r) => (r.x[5], r.pc),
        other => panic!("{other:?}"),
    }
}

fn stop_pc(vcpu: &mut RiscvVcpu) -> Option<u64> {
    match vcpu.run().expect("run") {
        VcpuExit::Debug { pc, .. } => Some(pc),
        VcpuExit::Interrupted => None,
        other => panic!("unexpected exit {other:?}"),
    }
}

const CODE: [u32; 5] = [addi_t0(1), addi_t0(1), addi_t0(1), addi_t0(1), JUMP_SELF];

#[test]
fn breakpoints_stop_before_the_instruction_and_are_passed_over_on_resume() {
    let (_vm, mut vcpu) = machine(&CODE);
    let debug = GuestDebug {
        breakpoints: vec![RAM + 8],
        watchpoints: vec![],
        single_step: false,
    };
    vcpu.set_guest_debug(&debug).expect("debug");
    assert_eq!(stop_pc(&mut vcpu), Some(RAM + 8));
    assert_eq!(t0_and_pc(&vcpu), (2, RAM + 8));
    // Resuming from the breakpoint executes it and runs on to the loop.
    vcpu.set_guest_debug(&debug).expect("debug");
    assert_eq!(stop_pc(&mut vcpu), None);
    assert_eq!(t0_and_pc(&vcpu), (4, RAM + 16));
}

#[test]
fn single_step_runs_one_instruction_per_resume() {
    let (_vm, mut vcpu) = machine(&CODE);
    let step = GuestDebug {
        breakpoints: vec![],
        watchpoints: vec![],
        single_step: true,
    };
    for expected in 1..=3u64 {
        vcpu.set_guest_debug(&step).expect("debug");
        assert_eq!(stop_pc(&mut vcpu), Some(RAM + 4 * expected));
        assert_eq!(t0_and_pc(&vcpu).0, expected);
    }
    // Debugging off: no more stops.
    vcpu.set_guest_debug(&GuestDebug::default()).expect("debug");
    assert_eq!(stop_pc(&mut vcpu), None);
    assert_eq!(t0_and_pc(&vcpu), (4, RAM + 16));
}

/// `addi t0, t0, 1; auipc t1, 1; sd t0, 0(t1); ld t2, 0(t1); j .`: a store
/// and a load of the doubleword at `RAM + 0x1004`.
const STORE_LOAD: [u32; 5] = [
    addi_t0(1),
    (1 << 12) | (6 << 7) | 0x17,
    (5 << 20) | (6 << 15) | (3 << 12) | 0x23,
    (6 << 15) | (3 << 12) | (7 << 7) | 0x03,
    JUMP_SELF,
];
const DATA: u64 = RAM + 0x1004;

fn watch(kind: WatchKind, addr: u64, len: u64) -> GuestDebug {
    GuestDebug {
        watchpoints: vec![Watchpoint { addr, len, kind }],
        ..GuestDebug::default()
    }
}

fn watch_stop(vcpu: &mut RiscvVcpu) -> Option<(u64, DebugStop)> {
    match vcpu.run().expect("run") {
        VcpuExit::Debug { pc, stop } => Some((pc, stop)),
        VcpuExit::Interrupted => None,
        other => panic!("unexpected exit {other:?}"),
    }
}

#[test]
fn watchpoints_stop_before_an_access_of_their_kind() {
    let (_vm, mut vcpu) = machine(&STORE_LOAD);
    vcpu.set_guest_debug(&watch(WatchKind::Write, DATA + 4, 1))
        .expect("debug");
    let write = DebugStop::Watch {
        addr: DATA + 4,
        kind: WatchKind::Write,
    };
    assert_eq!(watch_stop(&mut vcpu), Some((RAM + 8, write)));
    // Resumed, the store runs; the load stops for a read watchpoint.
    vcpu.set_guest_debug(&watch(WatchKind::Read, DATA, 8))
        .expect("debug");
    let read = DebugStop::Watch {
        addr: DATA,
        kind: WatchKind::Read,
    };
    assert_eq!(watch_stop(&mut vcpu), Some((RAM + 12, read)));
    vcpu.set_guest_debug(&GuestDebug::default()).expect("debug");
    assert_eq!(watch_stop(&mut vcpu), None);

    // An access watchpoint stops at the store, a read one lets it pass, one
    // beside the data never stops.
    let (_vm, mut vcpu) = machine(&STORE_LOAD);
    vcpu.set_guest_debug(&watch(WatchKind::Access, DATA, 8))
        .expect("debug");
    assert_eq!(watch_stop(&mut vcpu).map(|s| s.0), Some(RAM + 8));
    let (_vm, mut vcpu) = machine(&STORE_LOAD);
    vcpu.set_guest_debug(&watch(WatchKind::Read, DATA, 8))
        .expect("debug");
    assert_eq!(watch_stop(&mut vcpu).map(|s| s.0), Some(RAM + 12));
    let (_vm, mut vcpu) = machine(&STORE_LOAD);
    vcpu.set_guest_debug(&watch(WatchKind::Access, DATA + 8, 8))
        .expect("debug");
    assert_eq!(watch_stop(&mut vcpu), None);
    assert_eq!(t0_and_pc(&vcpu), (1, RAM + 16));
}

#[test]
fn debugger_memory_writes_reach_code_already_decoded() {
    let (_vm, mut vcpu) = machine(&CODE);
    let mut word = [0u8; 4];
    assert_eq!(vcpu.debug_read_memory(RAM + 4, &mut word).expect("read"), 4);
    assert_eq!(u32::from_le_bytes(word), addi_t0(1));
    // Decode the page by running to a breakpoint, then patch an instruction ahead.
    let debug = GuestDebug {
        breakpoints: vec![RAM + 8],
        watchpoints: vec![],
        single_step: false,
    };
    vcpu.set_guest_debug(&debug).expect("debug");
    assert_eq!(stop_pc(&mut vcpu), Some(RAM + 8));
    let patch = addi_t0(100).to_le_bytes();
    assert_eq!(vcpu.debug_write_memory(RAM + 12, &patch).expect("write"), 4);
    vcpu.set_guest_debug(&GuestDebug::default()).expect("debug");
    assert_eq!(stop_pc(&mut vcpu), None);
    assert_eq!(t0_and_pc(&vcpu).0, 103);
    // Outside RAM nothing is read (and nothing panics).
    let mut buf = [0u8; 16];
    assert_eq!(vcpu.debug_read_memory(0x10, &mut buf).expect("read"), 0);
    assert_eq!(
        vcpu.debug_read_memory(u64::MAX - 4, &mut buf)
            .expect("read"),
        0
    );
    // A read running off the end of RAM stops there.
    let end = RAM + (16 << 20) - 4;
    assert_eq!(vcpu.debug_read_memory(end, &mut buf).expect("read"), 4);
}

#[test]
fn fp_registers_and_csrs_are_readable_and_writable() {
    let (_vm, mut vcpu) = machine(&CODE);
    vcpu.set_debug_register(DebugRegister::Riscv64Fpr(3), 0x4000_0000_0000_0000)
        .expect("f3");
    assert_eq!(
        vcpu.debug_register(DebugRegister::Riscv64Fpr(3))
            .expect("f3"),
        0x4000_0000_0000_0000
    );
    vcpu.set_debug_register(DebugRegister::Riscv64Csr(0x003), 0b101_00011)
        .expect("fcsr");
    assert_eq!(
        vcpu.debug_register(DebugRegister::Riscv64Csr(0x002))
            .expect("frm"),
        0b101
    );
    assert_eq!(
        vcpu.debug_register(DebugRegister::Riscv64Csr(0x001))
            .expect("fflags"),
        0b00011
    );
    vcpu.set_debug_register(DebugRegister::Riscv64Csr(0x140), 0x1234)
        .expect("sscratch");
    assert_eq!(
        vcpu.debug_register(DebugRegister::Riscv64Csr(0x140))
            .expect("sscratch"),
        0x1234
    );
    assert_eq!(
        vcpu.debug_register(DebugRegister::Riscv64Csr(0xf14))
            .expect("mhartid"),
        0
    );
    assert!(vcpu.debug_register(DebugRegister::Riscv64Fpr(32)).is_err());
    assert!(vcpu
        .debug_register(DebugRegister::Riscv64Csr(0x7ff))
        .is_err());
}
