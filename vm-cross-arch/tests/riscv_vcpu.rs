//! The riscv64 software engine through `vm_accel`'s `Vm`/`Vcpu` traits, with
//! hand-assembled guests (no cross compiler needed): the run budget and
//! kicks, MMIO exits and their completion, the built-in SBI, interrupt lines
//! through the PLIC, and hostile code that must trap instead of panicking.
//! Every test runs in both tiers: interpreted, and with every block
//! translated (see `in_both_tiers!` at the end).

use std::sync::Arc;
use std::time::Duration;

use vm_accel::regs::X86_64Registers;
use vm_accel::{
    AccelError, BootState, GuestAddress, IrqLine, Registers, SystemEvent, Vcpu, VcpuExit, VcpuId,
    Vm,
};
use vm_cross_arch::interp::riscv64::{RiscvVcpu, RiscvVm, Tier};
use vm_memory::{Bytes, GuestMemoryMmap};

const RAM: u64 = 0x8000_0000;

fn i_type(op: u32, rd: u32, f3: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}
fn s_type(op: u32, f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    ((imm >> 5 & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | op
}
fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(0x13, rd, 0, rs1, imm)
}
fn lui(rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | 0x37
}
/// `rd = value` (zero-extended) for values whose low 12 bits are below 0x800.
fn li32(rd: u32, value: u32) -> Vec<u32> {
    assert!(value & 0x800 == 0);
    let mut v = vec![lui(rd, value >> 12), addi(rd, rd, (value & 0xfff) as i32)];
    if value & 0x8000_0000 != 0 {
        // lui sign-extends on RV64: clear the upper half.
        v.push(i_type(0x13, rd, 1, rd, 32));
        v.push(i_type(0x13, rd, 5, rd, 32));
    }
    v
}
fn csrw(csr: u32, rs1: u32) -> u32 {
    i_type(0x73, 0, 1, rs1, csr as i32)
}
const ECALL: u32 = 0x0000_0073;
const JUMP_SELF: u32 = 0x0000_006f;
const T0: u32 = 5;
const T1: u32 = 6;
const A0: u32 = 10;
const A1: u32 = 11;
const A6: u32 = 16;
const A7: u32 = 17;

/// A one-hart VM with 16 MiB of RAM running `code` from RAM start in S-mode
/// (built-in SBI), its hart in `tier`.
fn machine(tier: Tier, code: &[u32]) -> (Arc<RiscvVm>, RiscvVcpu) {
    let (vm, vcpu, _) = machine_with_memory(tier, code);
    (vm, vcpu)
}

/// [`machine`], also returning its guest memory.
fn machine_with_memory(tier: Tier, code: &[u32]) -> (Arc<RiscvVm>, RiscvVcpu, GuestMemoryMmap<()>) {
    let vm = Arc::new(RiscvVm::new(1).expect("vm"));
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM), 16 << 20)]).expect("mem");
    vm.map_memory(&mem).expect("map");
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(RAM)).expect("code");
    let mut vcpu = vm.create_riscv_vcpu(VcpuId(0)).expect("vcpu");
    vcpu.hart_mut().set_tier(tier);
    vcpu.apply_boot_state(&BootState::Riscv64 {
        entry: GuestAddress(RAM),
        hart_id: 0,
        fdt: GuestAddress(0),
    })
    .expect("boot state");
    (vm, vcpu, mem)
}

fn reg(vcpu: &RiscvVcpu, n: usize) -> u64 {
    match vcpu.registers().expect("regs") {
        Registers::Riscv64(r) => r.x[n],
        other => panic!("{other:?}"),
    }
}

fn run_returns_after_its_budget_and_when_kicked(tier: Tier) {
    let (_vm, mut vcpu) = machine(tier, &[JUMP_SELF]);
    vcpu.set_budget(10_000);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert!(vcpu.hart().instret() >= 10_000);

    // A kick before run() makes it return at once; one during run() stops it.
    vcpu.set_budget(u64::MAX);
    let kick = vcpu.kick_handle();
    kick.kick();
    let before = vcpu.hart().instret();
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(vcpu.hart().instret(), before);
    let kicker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        kick.kick();
    });
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    kicker.join().expect("kicker");
    assert!(vcpu.hart().instret() > before);
}

fn mmio_loads_exit_and_complete_on_the_next_run(tier: Tier) {
    // t0 = 0x10000000; a0 = lw 4(t0); a1 = lb 0(t0); j .
    let (_vm, mut vcpu) = machine(
        tier,
        &[
            lui(T0, 0x10000),
            i_type(0x03, A0, 2, T0, 4),
            i_type(0x03, A1, 0, T0, 0),
            JUMP_SELF,
        ],
    );
    match vcpu.run().expect("run") {
        VcpuExit::MmioRead { addr, data } => {
            assert_eq!((addr, data.len()), (0x1000_0004, 4));
            data.copy_from_slice(&0x8765_4321u32.to_le_bytes());
        }
        other => panic!("{other:?}"),
    }
    match vcpu.run().expect("run") {
        VcpuExit::MmioRead { addr, data } => {
            assert_eq!((addr, data.len()), (0x1000_0000, 1));
            data[0] = 0x80;
        }
        other => panic!("{other:?}"),
    }
    vcpu.set_budget(100);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(
        reg(&vcpu, A0 as usize),
        0xffff_ffff_8765_4321,
        "lw sign-extends"
    );
    assert_eq!(
        reg(&vcpu, A1 as usize),
        0xffff_ffff_ffff_ff80,
        "lb sign-extends"
    );
}

fn mmio_fp_loads_complete_nan_boxed(tier: Tier) {
    // sstatus.FS = Initial; flh f1, 0(t0); flw f2, 4(t0); a0 = fmv.x.d f1; a1 = fmv.x.d f2.
    let fmv_x_d = |rd: u32, fs: u32| (0x71 << 25) | (fs << 15) | (rd << 7) | 0x53;
    let (_vm, mut vcpu) = machine(
        tier,
        &[
            lui(T0, 0x10000),
            lui(T1, 0x2),
            i_type(0x73, 0, 2, T1, 0x100),
            i_type(0x07, 1, 1, T0, 0),
            i_type(0x07, 2, 2, T0, 4),
            fmv_x_d(A0, 1),
            fmv_x_d(A1, 2),
            JUMP_SELF,
        ],
    );
    for (want, value) in [
        ((0x1000_0000, 2), 0x3c00u32),
        ((0x1000_0004, 4), 0x3f80_0000),
    ] {
        match vcpu.run().expect("run") {
            VcpuExit::MmioRead { addr, data } => {
                assert_eq!((addr, data.len()), want);
                data.copy_from_slice(&value.to_le_bytes()[..want.1]);
            }
            other => panic!("{other:?}"),
        }
    }
    vcpu.set_budget(100);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(reg(&vcpu, A0 as usize), 0xffff_ffff_ffff_3c00, "flh boxes");
    assert_eq!(reg(&vcpu, A1 as usize), 0xffff_ffff_3f80_0000, "flw boxes");
}

fn mmio_stores_exit_with_their_data(tier: Tier) {
    let (_vm, mut vcpu) = machine(
        tier,
        &[
            lui(T0, 0x10000),
            addi(A1, 0, 0x41),
            s_type(0x23, 0, T0, A1, 3),
            JUMP_SELF,
        ],
    );
    match vcpu.run().expect("run") {
        VcpuExit::MmioWrite { addr, data } => {
            assert_eq!((addr, data), (0x1000_0003, &[0x41u8][..]));
        }
        other => panic!("{other:?}"),
    }
}

fn sbi_console_and_system_reset(tier: Tier) {
    let mut code = Vec::new();
    code.extend(li32(A7, 0x4442_434e)); // DBCN
    code.push(addi(A6, 0, 2)); // console_write_byte
    code.push(addi(A0, 0, i32::from(b'X')));
    code.push(ECALL);
    code.extend(li32(A7, 0x4442_434e));
    code.push(addi(A6, 0, 0)); // console_write from RAM
    code.push(addi(A0, 0, 2)); // 2 bytes
    code.extend(li32(A1, 0x8000_0400));
    code.push(addi(12, 0, 0)); // a2 = high half
    code.push(ECALL);
    code.extend(li32(A7, 0x5352_5354)); // SRST
    code.push(addi(A6, 0, 0));
    code.push(addi(A0, 0, 0)); // shutdown
    code.push(ECALL);
    code.push(JUMP_SELF);
    let (vm, mut vcpu) = machine(tier, &code);
    let _ = vm;
    let mut out = Vec::new();
    let event = loop {
        match vcpu.run().expect("run") {
            VcpuExit::MmioWrite { addr, data } => {
                assert_eq!(addr, 0x1000_0000, "console bytes go to the UART");
                out.extend_from_slice(data);
            }
            VcpuExit::SystemEvent(e) => break e,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(event, SystemEvent::Shutdown);
    // RAM at 0x80000400 is zero: two NUL bytes after the 'X'.
    assert_eq!(out, b"X\0\0");
}

fn an_irq_line_reaches_s_mode_through_the_plic(tier: Tier) {
    // PLIC: priority[10] = 1, S-context enable bit 10; sie.SEIE; stvec = handler; sstatus.SIE.
    let mut code = Vec::new();
    code.extend(li32(T0, 0x0c00_0000));
    code.push(addi(T1, 0, 1));
    code.push(s_type(0x23, 2, T0, T1, 40)); // priority[10]
    code.extend(li32(T0, 0x0c00_2080)); // enable, context 1
    code.push(addi(T1, 0, 1 << 10));
    code.push(s_type(0x23, 2, T0, T1, 0));
    code.push(addi(T1, 0, 1 << 9));
    code.push(i_type(0x73, 0, 2, T1, 0x104)); // csrs sie, t1
    code.extend(li32(T1, 0x8000_0100));
    code.push(csrw(0x105, T1)); // stvec
    code.push(i_type(0x73, 0, 6, 2, 0x100)); // csrsi sstatus, SIE
    code.push(JUMP_SELF);
    let (vm, mut vcpu) = machine(tier, &code);
    // Handler at +0x100: a0 = claim (context 1), j .
    let handler = [lui(T0, 0x0c201), i_type(0x03, A0, 2, T0, 4), JUMP_SELF];
    let bytes: Vec<u8> = handler.iter().flat_map(|w| w.to_le_bytes()).collect();
    vcpu.hart_mut();
    let mem_write = |vm: &RiscvVm| {
        let ram = vm.machine().ram.lock().expect("ram").clone();
        assert!(ram.write(0x8000_0100, &bytes));
    };
    mem_write(&vm);
    vcpu.set_budget(1000);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(vcpu.hart_mut().read_csr(0x142), Some(0), "no interrupt yet");
    vm.set_irq_line(IrqLine(10), true).expect("irq");
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(
        vcpu.hart_mut().read_csr(0x142),
        Some((1 << 63) | 9),
        "S external interrupt"
    );
    assert_eq!(reg(&vcpu, A0 as usize), 10, "claimed source 10");
}

fn hostile_code_becomes_guest_traps(tier: Tier) {
    // 1. A jump to memory that does not exist: fetch access fault, then the
    //    handler at stvec = 0 faults the same way, for ever, without a panic.
    let (_vm, mut vcpu) = machine(tier, &[lui(T0, 0x40000), i_type(0x67, 0, 0, T0, 0)]);
    vcpu.set_budget(10_000);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(
        vcpu.hart_mut().read_csr(0x142),
        Some(1),
        "instruction access fault"
    );
    assert_eq!(
        vcpu.hart_mut().read_csr(0x143),
        Some(0),
        "stval: the handler address 0"
    );

    // 2. An all-zero (illegal) instruction.
    let (_vm, mut vcpu) = machine(tier, &[0]);
    vcpu.set_budget(10);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    let cause = vcpu.hart_mut().read_csr(0x142);
    assert!(
        cause == Some(2) || cause == Some(1),
        "illegal instruction first: {cause:?}"
    );

    // 3. Translation on with a root page table outside RAM.
    let mut code = vec![addi(T0, 0, 1), i_type(0x13, T0, 1, T0, 63)]; // t0 = 1 << 63
    code.extend([lui(T1, 0x100), addi(T1, T1, -1)]); // t1 = 0xfffff
    code.push(0x0062_e2b3); // or t0, t0, t1
    code.push(csrw(0x180, T0)); // satp
    code.push(JUMP_SELF);
    let (_vm, mut vcpu) = machine(tier, &code);
    vcpu.set_budget(1000);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(
        vcpu.hart_mut().read_csr(0x142),
        Some(1),
        "fetch access fault on the PTE read"
    );
}

fn the_vm_rejects_bad_ids_and_foreign_state(tier: Tier) {
    assert!(RiscvVm::new(0).is_err());
    let (vm, mut vcpu) = machine(tier, &[JUMP_SELF]);
    assert!(matches!(
        vm.create_vcpu(VcpuId(0)),
        Err(AccelError::VcpuExists { id: 0 })
    ));
    assert!(matches!(
        vm.create_vcpu(VcpuId(1)),
        Err(AccelError::VcpuIdOutOfRange { id: 1, .. })
    ));
    assert!(matches!(
        vcpu.set_registers(&Registers::X86_64(X86_64Registers::default())),
        Err(AccelError::ArchMismatch { .. })
    ));
    assert!(matches!(
        vcpu.apply_boot_state(&BootState::Arm64Linux {
            entry: GuestAddress(0),
            fdt: GuestAddress(0)
        }),
        Err(AccelError::ArchMismatch { .. })
    ));
    // Registers round-trip; x0 stays zero.
    let Registers::Riscv64(mut regs) = vcpu.registers().expect("regs") else {
        panic!()
    };
    regs.x[0] = 5;
    regs.x[7] = 0x1234;
    vcpu.set_registers(&Registers::Riscv64(regs)).expect("set");
    assert_eq!(reg(&vcpu, 0), 0);
    assert_eq!(reg(&vcpu, 7), 0x1234);
}

fn b_type(f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let i = imm as u32;
    ((i >> 12 & 1) << 31)
        | ((i >> 5 & 0x3f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (f3 << 12)
        | ((i >> 1 & 0xf) << 8)
        | ((i >> 11 & 1) << 7)
        | 0x63
}

fn pc_of(vcpu: &RiscvVcpu) -> u64 {
    vcpu.registers().expect("regs").pc()
}

fn amos_and_lr_sc_are_atomic_across_harts_on_threads(tier: Tier) {
    const N: u32 = 100_000;
    const T2: u32 = 7;
    const T3: u32 = 28;
    let mut code = li32(T0, 0x8000_1000);
    code.push(addi(T3, T0, 8));
    code.push(addi(T1, 0, 1));
    code.extend(li32(T2, N));
    // loop1: amoadd.w zero, t1, (t0); addi t2, t2, -1; bnez t2, loop1
    code.push((6 << 20) | (T0 << 15) | (2 << 12) | 0x2f);
    code.push(addi(T2, T2, -1));
    code.push(b_type(1, T2, 0, -8));
    code.extend(li32(T2, N));
    // loop2: lr.w a0, (t3); addi a0, a0, 1; sc.w a1, a0, (t3); bnez a1, loop2; addi t2, t2, -1; bnez t2, loop2
    code.push((0x02 << 27) | (T3 << 15) | (2 << 12) | (A0 << 7) | 0x2f);
    code.push(addi(A0, A0, 1));
    code.push((0x03 << 27) | (A0 << 20) | (T3 << 15) | (2 << 12) | (A1 << 7) | 0x2f);
    code.push(b_type(1, A1, 0, -12));
    code.push(addi(T2, T2, -1));
    code.push(b_type(1, T2, 0, -20));
    let done = RAM + 4 * code.len() as u64;
    code.push(JUMP_SELF);

    let vm = Arc::new(RiscvVm::new(2).expect("vm"));
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM), 16 << 20)]).expect("mem");
    vm.map_memory(&mem).expect("map");
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(RAM)).expect("code");
    let threads: Vec<_> = (0..2)
        .map(|hart| {
            let mut vcpu = vm.create_riscv_vcpu(VcpuId(hart)).expect("vcpu");
            vcpu.hart_mut().set_tier(tier);
            vcpu.apply_boot_state(&BootState::Riscv64 {
                entry: GuestAddress(RAM),
                hart_id: u64::from(hart),
                fdt: GuestAddress(0),
            })
            .expect("boot");
            vcpu.set_budget(10_000);
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    if pc_of(&vcpu) == done {
                        return true;
                    }
                    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
                }
                false
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().expect("hart thread"), "hart did not finish");
    }
    let amo: u32 = mem.read_obj(GuestAddress(0x8000_1000)).expect("read");
    let lrsc: u32 = mem.read_obj(GuestAddress(0x8000_1008)).expect("read");
    assert_eq!(amo, 2 * N, "amoadd lost updates");
    assert_eq!(lrsc, 2 * N, "lr/sc lost updates");
}

fn j_type(rd: u32, imm: i32) -> u32 {
    let i = imm as u32;
    ((i >> 20 & 1) << 31)
        | ((i >> 1 & 0x3ff) << 21)
        | ((i >> 11 & 1) << 20)
        | ((i >> 12 & 0xff) << 12)
        | (rd << 7)
        | 0x6f
}

fn write_words(mem: &GuestMemoryMmap<()>, addr: u64, words: &[u32]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr)).expect("write");
}

fn set_pc(vcpu: &mut RiscvVcpu, pc: u64) {
    let Registers::Riscv64(mut regs) = vcpu.registers().expect("regs") else {
        panic!("not riscv64 registers");
    };
    regs.pc = pc;
    vcpu.set_registers(&Registers::Riscv64(regs)).expect("set");
}

const RA: u32 = 1;
const FENCE_I: u32 = 0x0000_100f;
const RET: u32 = 0x0000_8067;

fn code_written_by_another_agent_runs_after_fence_i(tier: Tier) {
    // Page 0: call the function on page 1, stop; then (from +8) fence.i,
    // call it again, stop. The test rewrites the function in between, as
    // another hart or a device would (not a store of this hart).
    let code = [
        j_type(RA, 0x1000),
        JUMP_SELF,
        FENCE_I,
        j_type(RA, 0x1000 - 12),
        JUMP_SELF,
    ];
    let (_vm, mut vcpu, mem) = machine_with_memory(tier, &code);
    write_words(&mem, RAM + 0x1000, &[addi(A0, 0, 1), RET]);
    vcpu.set_budget(2_000);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(reg(&vcpu, A0 as usize), 1);
    assert_eq!(pc_of(&vcpu), RAM + 4);

    write_words(&mem, RAM + 0x1000, &[addi(A0, 0, 2)]);
    set_pc(&mut vcpu, RAM + 8);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(pc_of(&vcpu), RAM + 16);
    assert_eq!(
        reg(&vcpu, A0 as usize),
        2,
        "fence.i made the new code visible"
    );
}

fn sfence_vma_of_one_page_makes_its_new_mapping_fetchable(tier: Tier) {
    const T2: u32 = 7;
    const S1: u32 = 9;
    const ROOT: u64 = RAM + 0x10_000;
    const L1: u64 = RAM + 0x11_000;
    const L0: u64 = RAM + 0x12_000;
    const CODE_VA: u32 = 0x4000_0000;
    let (page_a, page_b) = (RAM + 0x2000, RAM + 0x3000);
    // Leaf flags: V R X A (kernel code) and V R W X A D (RAM gigapage).
    let leaf = |pa: u64, flags: u64| (pa >> 12) << 10 | flags;
    let mut code = li32(T0, (ROOT >> 12) as u32);
    code.extend([
        addi(T1, 0, 1),
        i_type(0x13, T1, 1, T1, 63), // slli t1, t1, 63 (Sv39 mode 8)
        (T1 << 20) | (T0 << 15) | (6 << 12) | (T0 << 7) | 0x33, // or t0, t0, t1
        csrw(0x180, T0),
        0x1200_0073, // sfence.vma
    ]);
    code.extend(li32(T2, CODE_VA));
    code.extend([
        i_type(0x67, RA, 0, T2, 0), // jalr ra, 0(t2)
        addi(S1, A0, 0),
        JUMP_SELF,
    ]);
    let second = RAM + 4 * code.len() as u64;
    code.extend([
        (9 << 25) | (T2 << 15) | 0x73, // sfence.vma t2, zero
        i_type(0x67, RA, 0, T2, 0),
        JUMP_SELF,
    ]);
    let (_vm, mut vcpu, mem) = machine_with_memory(tier, &code);
    write_words(&mem, page_a, &[addi(A0, 0, 1), RET]);
    write_words(&mem, page_b, &[addi(A0, 0, 2), RET]);
    let pte = |addr: u64, value: u64| mem.write_obj(value, GuestAddress(addr)).expect("pte");
    pte(ROOT + 2 * 8, leaf(RAM, 0xcf)); // 0x8000_0000: identity gigapage
    pte(ROOT + 8, (L1 >> 12) << 10 | 1); // 0x4000_0000: 4 KiB pages
    pte(L1, (L0 >> 12) << 10 | 1);
    pte(L0, leaf(page_a, 0x4b));

    vcpu.set_budget(2_000);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(reg(&vcpu, S1 as usize), 1, "ran page a through the mapping");

    pte(L0, leaf(page_b, 0x4b));
    set_pc(&mut vcpu, second);
    assert!(matches!(vcpu.run().expect("run"), VcpuExit::Interrupted));
    assert_eq!(pc_of(&vcpu), second + 8);
    assert_eq!(reg(&vcpu, A0 as usize), 2, "the remapped page was fetched");
}

/// Each test above runs on the interpreter alone and with every block
/// translated the first time it runs (`TranslateAll`: these programs are
/// too short for blocks to get hot).
macro_rules! in_both_tiers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use vm_cross_arch::interp::riscv64::Tier;

            #[test]
            fn interpreted() {
                super::$name(Tier::Interpret);
            }

            #[test]
            fn translated() {
                super::$name(Tier::TranslateAll);
            }
        }
    )*};
}

in_both_tiers!(
    run_returns_after_its_budget_and_when_kicked,
    mmio_loads_exit_and_complete_on_the_next_run,
    mmio_fp_loads_complete_nan_boxed,
    mmio_stores_exit_with_their_data,
    sbi_console_and_system_reset,
    an_irq_line_reaches_s_mode_through_the_plic,
    hostile_code_becomes_guest_traps,
    the_vm_rejects_bad_ids_and_foreign_state,
    amos_and_lr_sc_are_atomic_across_harts_on_threads,
    code_written_by_another_agent_runs_after_fence_i,
    sfence_vma_of_one_page_makes_its_new_mapping_fetchable,
);
