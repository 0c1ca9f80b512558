//! Differential tests: random RV64IM programs (with loads and stores that
//! fault, MMIO, stores into the code page, forward branches and jumps,
//! reads and writes of `instret`/`cycle` and `mcountinhibit`) run by the interpreter alone and with the
//! translator must leave the same state: registers, `pc`, `instret`, the
//! trap CSRs, memory and the MMIO traffic.

use std::sync::Arc;

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use vm_accel::{GuestAddress, GuestRegionMmap, VcpuId, Vm};

use super::super::hart::{Hart, HartExit, CHUNK, MODE_S};
use super::super::tier::HOT;
use super::super::vm::{platform_devices, RiscvVm};
use super::super::{RiscvVcpu, Tier};
use crate::platform::riscv64::layout;

const RAM: u64 = layout::RAM_BASE;
const RAM_SIZE: u64 = 1 << 20;
const HANDLER: u64 = RAM + 0xc00;
/// Written by stores into the code page (never executed).
const CODE_DATA: u64 = RAM + 0x800;
const SCRATCH: u64 = RAM + 0x8_0000;
const TOHOST: u64 = RAM + 0xf_0000;
/// Loop iterations of each program's body: more than the hotness threshold.
const ITERATIONS: u64 = 3 * HOT as u64;

// Registers with a fixed job; the random instructions never write them.
const X_CODE_DATA: u32 = 23;
const X_MMIO: u32 = 24;
const X_TOHOST: u32 = 25;
const X_JUMP: u32 = 26;
const X_SCRATCH: u32 = 27;
const X_FAULT: u32 = 28;
const X_COUNT: u32 = 30;
const X_TEMP: u32 = 31;

fn r_type(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

fn i_type(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    ((imm as u32) & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

fn s_type(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | 0x23
}

fn b_type(off: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let o = off as u32;
    (o >> 12 & 1) << 31
        | (o >> 5 & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | f3 << 12
        | (o >> 1 & 0xf) << 8
        | (o >> 11 & 1) << 7
        | 0x63
}

fn jal(off: i32, rd: u32) -> u32 {
    let o = off as u32;
    (o >> 20 & 1) << 31
        | (o >> 1 & 0x3ff) << 21
        | (o >> 11 & 1) << 20
        | (o >> 12 & 0xff) << 12
        | rd << 7
        | 0x6f
}

struct Gen {
    rng: TestRng,
    /// Draws registers mostly from [`FEW`], so blocks reuse them (and the
    /// translator keeps them in host registers).
    few: bool,
}

/// The registers of [`Gen::few`] programs, `x0` among them as a destination.
const FEW: [u32; 6] = [0, 5, 6, 7, 8, 9];

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn rd(&mut self) -> u32 {
        if self.few {
            return FEW[self.below(FEW.len() as u64) as usize];
        }
        loop {
            let r = self.below(32) as u32;
            if !(X_CODE_DATA..=X_TEMP).contains(&r) || r == 29 {
                return r;
            }
        }
    }

    fn rs(&mut self) -> u32 {
        if self.few && self.below(4) != 0 {
            return FEW[self.below(FEW.len() as u64) as usize];
        }
        self.below(32) as u32
    }

    /// One instruction (or a few) at body position `pos` of `len`.
    fn instruction(&mut self, out: &mut Vec<u32>, pos: usize, len: usize) {
        let (rd, rs1, rs2) = (self.rd(), self.rs(), self.rs());
        // Forward distance to a later body instruction or the loop tail.
        let fwd = 4 * (1 + self.below((len - pos) as u64) as i32);
        match self.below(16) {
            0..=3 => {
                let (f3, f7) = [
                    (0, 0),
                    (0, 0x20),
                    (1, 0),
                    (2, 0),
                    (3, 0),
                    (4, 0),
                    (5, 0),
                    (5, 0x20),
                    (6, 0),
                    (7, 0),
                ][self.below(10) as usize];
                let (f3, f7) = if self.below(3) == 0 {
                    (self.below(8) as u32, 1)
                } else {
                    (f3, f7)
                };
                out.push(r_type(f7, rs2, rs1, f3, rd, 0x33));
            }
            4 => {
                let (f3, f7) = [
                    (0, 0),
                    (0, 0x20),
                    (1, 0),
                    (5, 0),
                    (5, 0x20),
                    (0, 1),
                    (4, 1),
                    (5, 1),
                    (6, 1),
                    (7, 1),
                ][self.below(10) as usize];
                out.push(r_type(f7, rs2, rs1, f3, rd, 0x3b));
            }
            5..=6 => {
                let imm = self.below(4096) as i32 - 2048;
                let (f3, imm) = match self.below(9) {
                    0 => (1, imm & 63),
                    1 => (5, imm & 63),
                    2 => (5, 0x400 | (imm & 63)),
                    n => ([0, 2, 3, 4, 6, 7][n as usize - 3], imm),
                };
                out.push(i_type(imm, rs1, f3, rd, 0x13));
            }
            7 => {
                let imm = self.below(4096) as i32 - 2048;
                let (f3, imm) = match self.below(4) {
                    0 => (1, imm & 31),
                    1 => (5, imm & 31),
                    2 => (5, 0x400 | (imm & 31)),
                    _ => (0, imm),
                };
                out.push(i_type(imm, rs1, f3, rd, 0x1b));
            }
            8 => {
                let op = if self.below(2) == 0 { 0x37 } else { 0x17 };
                out.push((self.rng.next_u32() & 0xffff_f000) | rd << 7 | op);
            }
            9..=10 => {
                let (base, off) = self.address();
                out.push(i_type(off, base, self.below(7) as u32, rd, 0x03));
            }
            11..=12 => {
                let (base, off) = self.address();
                out.push(s_type(off, rs2, base, self.below(4) as u32));
            }
            13 => {
                let f3 = [0, 1, 4, 5, 6, 7][self.below(6) as usize];
                out.push(b_type(fwd, rs2, rs1, f3));
            }
            14 => match self.below(3) {
                0 => out.push(jal(fwd, rd)),
                1 => {
                    // jalr over the next instruction (`X_JUMP` holds the
                    // code base, where the body starts).
                    let at = 4 * out.len() as i32;
                    out.push(i_type(at + 8, X_JUMP, 0, rd, 0x67));
                    out.push(i_type(1, 0, 0, rd, 0x13));
                }
                _ => out.push(i_type(0x13, 0, 0, rd, 0x13)),
            },
            _ => match self.below(4) {
                0 => {
                    // csrrw rd, minstret / mcycle, rs1: a counter written
                    // mid-block goes on from the written value.
                    let csr = [0xb02, 0xb00][self.below(2) as usize];
                    out.push(i_type(csr, rs1, 1, rd, 0x73));
                }
                1 => {
                    // csrrwi rd, mcountinhibit, uimm: counters stopped and
                    // restarted mid-block.
                    out.push(i_type(0x320, self.below(8) as u32, 5, rd, 0x73));
                }
                2 => {
                    // csrrw rd, mscratch, rs1
                    out.push(i_type(0x340, rs1, 1, rd, 0x73));
                }
                _ => {
                    // csrr rd, instret / cycle / minstret
                    let csr = [0xc02, 0xc00, 0xb02][self.below(3) as usize];
                    out.push(i_type(csr, 0, 2, rd, 0x73));
                }
            },
        }
    }

    /// A load/store base register and offset: mostly scratch RAM, sometimes
    /// an access fault, MMIO or the code page.
    fn address(&mut self) -> (u32, i32) {
        match self.below(20) {
            0 => (X_FAULT, self.below(64) as i32),
            1 => (X_MMIO, self.below(8) as i32),
            2 => (X_CODE_DATA, self.below(256) as i32),
            _ => (X_SCRATCH, self.below(4096) as i32 - 2048),
        }
    }

    /// A program: set-up is done by the harness; the body runs
    /// [`ITERATIONS`] times, then `tohost` is written.
    fn program(&mut self) -> Vec<u32> {
        let len = 1 + self.below(40) as usize;
        let mut body = Vec::new();
        let mut pos = 0;
        // Branch distances are computed on body positions, so every entry
        // of `body` must be one instruction: generate, then count.
        while pos < len {
            let before = body.len();
            self.instruction(&mut body, pos, len);
            pos += body.len() - before;
        }
        // Forward targets past the end land on the loop tail.
        let mut code = body;
        code.push(i_type(-1, X_COUNT, 0, X_COUNT, 0x13));
        let back = -(4 * (code.len() as i32));
        code.push(b_type(back, 0, X_COUNT, 1));
        code.push(i_type(1, 0, 0, X_TEMP, 0x13));
        code.push(s_type(0, X_TEMP, X_TOHOST, 3));
        code.push(jal(0, 0));
        code
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Final {
    x: [u64; 32],
    pc: u64,
    instret: u64,
    trap: [u64; 3],
    memory: Vec<u8>,
    mmio: Vec<(u64, u64, bool)>,
    exit: String,
}

fn machine() -> (RiscvVm, RiscvVcpu) {
    let vm = RiscvVm::with_devices(1, platform_devices()).unwrap();
    let region = GuestRegionMmap::from_range(GuestAddress(RAM), RAM_SIZE as usize, None).unwrap();
    vm.map_region(Arc::new(region)).unwrap();
    let vcpu = vm.create_riscv_vcpu(VcpuId(0)).unwrap();
    (vm, vcpu)
}

fn write_words(hart: &mut Hart, at: u64, words: &[u32]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(hart.ram.write(at, &bytes));
}

fn run(code: &[u32], regs: &[u64; 32], scratch: &[u8], tier: Tier) -> (Final, usize) {
    // csrr x31, mepc; addi x31, x31, 4; csrw mepc, x31; mret
    let handler = [
        i_type(0x341, 0, 2, X_TEMP, 0x73),
        i_type(4, X_TEMP, 0, X_TEMP, 0x13),
        i_type(0x341, X_TEMP, 1, 0, 0x73),
        0x3020_0073,
    ];
    let (state, counts) = run_with(code, &handler, regs, scratch, tier, |_| {});
    (state, counts.blocks)
}

/// What the translator did in a run.
struct Counts {
    /// Blocks translated.
    blocks: usize,
    /// Link words pointed at a block.
    linked: usize,
    /// Runs of blocks the run loop started.
    entries: u64,
}

/// Runs `code` at `RAM` with `handler` at `HANDLER` as the trap handler and
/// `setup` applied last; the final state and what the translator did.
fn run_with(
    code: &[u32],
    handler: &[u32],
    regs: &[u64; 32],
    scratch: &[u8],
    tier: Tier,
    setup: impl FnOnce(&mut Hart),
) -> (Final, Counts) {
    let (_vm, mut vcpu) = machine();
    let hart = vcpu.hart_mut();
    assert!(hart.ram.write(SCRATCH - 0x800, scratch));
    assert_eq!(hart.set_tier(tier), tier != Tier::Interpret);
    write_words(hart, RAM, code);
    write_words(hart, HANDLER, handler);
    hart.x = *regs;
    hart.x[0] = 0;
    hart.x[X_CODE_DATA as usize] = CODE_DATA;
    hart.x[X_MMIO as usize] = layout::UART.start.0;
    hart.x[X_JUMP as usize] = RAM;
    hart.x[X_TOHOST as usize] = TOHOST;
    hart.x[X_SCRATCH as usize] = SCRATCH;
    hart.x[X_FAULT as usize] = 0xff00_0000_0000_0000;
    hart.x[X_COUNT as usize] = ITERATIONS;
    hart.pc = RAM;
    hart.csr.mtvec = HANDLER;
    hart.tohost = Some(TOHOST);
    setup(hart);
    let mut mmio = Vec::new();
    let mut exit = String::from("budget");
    for _ in 0..10_000 {
        match hart.run(10_000) {
            HartExit::Interrupted => {}
            HartExit::MmioRead { addr, len } => {
                mmio.push((addr, len as u64, false));
                let data = hart.mmio_data();
                data.fill(0);
                data[0] = addr as u8;
            }
            HartExit::MmioWrite { addr, len } => {
                let v = u64::from_le_bytes(*hart.mmio_data());
                mmio.push((addr, v, true));
                let _ = len;
            }
            other => {
                exit = format!("{other:?}");
                break;
            }
        }
    }
    let mut memory = vec![0; 0x1000];
    assert!(hart.ram.read(SCRATCH - 0x800, &mut memory));
    let mut code_page = vec![0; 0x1000];
    assert!(hart.ram.read(RAM, &mut code_page));
    memory.extend(code_page);
    assert!(
        tier == Tier::Interpret || hart.jit.on(),
        "the translator turned itself off"
    );
    let counts = Counts {
        blocks: hart.translated_blocks(),
        linked: hart.jit.linked,
        entries: hart.jit.entries,
    };
    let state = Final {
        x: hart.x,
        pc: hart.pc,
        instret: hart.instret,
        trap: [hart.csr.mepc, hart.csr.mcause, hart.csr.mtval],
        memory,
        mmio,
        exit,
    };
    (state, counts)
}

#[test]
fn random_programs_leave_the_same_state_in_both_tiers() {
    same_state_in_both_tiers(false);
}

#[test]
fn random_programs_reusing_few_registers_leave_the_same_state_in_both_tiers() {
    same_state_in_both_tiers(true);
}

/// Runs 300 random programs (registers drawn from [`FEW`] if `few`) in
/// both tiers; the final states must match.
fn same_state_in_both_tiers(few: bool) {
    let mut g = Gen {
        rng: TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        few,
    };
    let mut translated = 0;
    for n in 0..300 {
        let code = g.program();
        let mut regs = [0u64; 32];
        for r in &mut regs {
            *r = match g.below(4) {
                0 => g.below(64),
                1 => (g.rng.next_u64() as i32) as u64,
                _ => g.rng.next_u64(),
            };
        }
        let scratch: Vec<u8> = (0..0x1000).map(|_| g.rng.next_u32() as u8).collect();
        let (interp, none) = run(&code, &regs, &scratch, Tier::Interpret);
        assert_eq!(none, 0);
        // Hot blocks translated after a few passes, and every block at once.
        let (jit, blocks) = run(&code, &regs, &scratch, Tier::Translate);
        translated += blocks;
        assert_eq!(interp, jit, "program {n}: {code:08x?}");
        let (jit, _) = run(&code, &regs, &scratch, Tier::TranslateAll);
        assert!(
            interp.exit.contains("ToHost"),
            "program {n}: {} at pc {:#x} after {} instructions, mcause {:#x}: {code:08x?}",
            interp.exit,
            interp.pc,
            interp.instret,
            interp.trap[1]
        );
        assert_eq!(interp, jit, "program {n}: {code:08x?}");
    }
    assert!(translated > 300, "only {translated} blocks were translated");
}

/// Inputs of the chaining tests below (x5..x7 count passes).
const X_ARG: u32 = 8;
const X_WORD: u32 = 9;
const X_ADDR: u32 = 11;
/// Where the chaining tests' handler leaves `minstret`.
const X_INSTRET: u32 = 12;

fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(imm, rs1, 0, rd, 0x13)
}

/// The chaining tests' trap handler: reads `minstret` into `X_INSTRET` and
/// ends the program (`csrr x12, minstret; addi x31, x0, 1; sd x31, 0(x25); j .`).
fn stop_handler() -> [u32; 4] {
    [
        i_type(0xb02, 0, 2, X_INSTRET, 0x73),
        addi(X_TEMP, 0, 1),
        s_type(0, X_TEMP, X_TOHOST, 3),
        jal(0, 0),
    ]
}

/// Runs `code` in every tier with the trap handler stopping the program
/// (reading `minstret` first); every tier must leave the same state, and
/// the translating tiers must have chained blocks. The interpreter's state.
fn chained(code: &[u32], inputs: &[(u32, u64)], setup: impl Fn(&mut Hart)) -> Final {
    let handler = stop_handler();
    let mut regs = [0u64; 32];
    for &(r, v) in inputs {
        regs[r as usize] = v;
    }
    let scratch = [0u8; 0x1000];
    let (interp, ..) = run_with(code, &handler, &regs, &scratch, Tier::Interpret, &setup);
    assert!(interp.exit.contains("ToHost"), "{interp:?}");
    for tier in [Tier::Translate, Tier::TranslateAll] {
        let (jit, counts) = run_with(code, &handler, &regs, &scratch, tier, &setup);
        assert!(counts.blocks >= 2, "{tier:?}: {} blocks", counts.blocks);
        assert!(counts.linked >= 2, "{tier:?}: {} links", counts.linked);
        assert_eq!(interp, jit, "{tier:?}");
    }
    interp
}

/// Tiers take an interrupt at different points (the translating ones end
/// a run-loop chunk early rather than interpret a block that does not fit
/// in it), so this test checks each tier's state against the program
/// rather than against the interpreter's.
#[test]
fn a_chained_loop_takes_an_interrupt_raised_in_it_within_a_chunk() {
    let code = [
        // A: jumps to B.
        addi(5, 5, 1),
        jal(8, 0),
        addi(0, 0, 0),
        // B: back to A until x7 is 0.
        addi(6, 6, 1),
        addi(7, 7, -1),
        b_type(-20, 0, 7, 1),
        // Sets the CLINT's msip (no exit: the interrupt is pending from
        // here on, taken at the run loop's next check) and goes on looping,
        // A and B chained to each other.
        s_type(0, X_ARG, X_ADDR, 2),
        jal(-28, 0),
    ];
    let handler = stop_handler();
    let mut regs = [0u64; 32];
    regs[7] = ITERATIONS;
    regs[X_ARG as usize] = 1;
    regs[X_ADDR as usize] = layout::CLINT.start.0;
    // A pass's instructions in the order it runs them.
    let pass = [RAM, RAM + 4, RAM + 12, RAM + 16, RAM + 20];
    for tier in [Tier::Interpret, Tier::Translate, Tier::TranslateAll] {
        let (end, counts) = run_with(&code, &handler, &regs, &[0; 0x1000], tier, |hart| {
            hart.csr.mstatus |= crate::interp::riscv64::csr::mstatus::MIE;
            hart.csr.mie = crate::interp::riscv64::csr::irq::MSI;
        });
        assert_eq!(
            end.trap[1],
            1 << 63 | 3,
            "{tier:?}: machine software interrupt"
        );
        if tier != Tier::Interpret {
            assert!(counts.linked >= 2, "{tier:?}: {} links", counts.linked);
        }
        // The loop went on after raising it, within one run-loop chunk of
        // 5-instruction passes.
        let (x5, mepc) = (end.x[5], end.trap[0]);
        let after = x5 - ITERATIONS;
        assert!(
            after <= u64::from(CHUNK / 5 + 1),
            "{tier:?}: {after} passes after raising it"
        );
        // `minstret` as the handler read it: exactly what retired before
        // the interrupted instruction (5 per pass, the store and its jump).
        let retired = if mepc == RAM + 28 {
            5 * ITERATIONS + 1
        } else {
            let i = pass
                .iter()
                .position(|&p| p == mepc)
                .unwrap_or_else(|| panic!("{tier:?}: interrupted at {mepc:#x}"));
            let done = if i == 0 { x5 } else { x5 - 1 };
            assert_eq!(end.x[6], done + u64::from(i >= 3), "{tier:?}: x6");
            5 * done + 2 + i as u64
        };
        assert_eq!(
            end.x[X_INSTRET as usize], retired,
            "{tier:?}: minstret at {mepc:#x}"
        );
        assert_eq!(end.x[7], ITERATIONS.wrapping_sub(end.x[6]), "{tier:?}: x7");
    }
}

#[test]
fn a_store_over_a_chained_to_block_runs_the_new_code() {
    // The word of `addi x6, x6, 100`, stored over B's first instruction.
    let new = addi(6, 6, 100);
    let patch_at = 2 * u64::from(HOT);
    let code = [
        // A: on to B, except once: patch B first.
        addi(5, 5, 1),
        b_type(12, X_ARG, 5, 1),
        s_type(16, X_WORD, X_JUMP, 2),
        0x0000_100f, // fence.i
        // B: back to A until x7 is 0.
        addi(6, 6, 1),
        addi(7, 7, -1),
        b_type(-24, 0, 7, 1),
        addi(X_TEMP, 0, 1),
        s_type(0, X_TEMP, X_TOHOST, 3),
        jal(0, 0),
    ];
    let end = chained(
        &code,
        &[(7, ITERATIONS), (X_ARG, patch_at), (X_WORD, u64::from(new))],
        |_| {},
    );
    assert!(end.exit.contains("ToHost"));
    let old_passes = patch_at - 1;
    assert_eq!(end.x[6], old_passes + (ITERATIONS - old_passes) * 100);
}

#[test]
fn a_fault_in_a_chained_block_leaves_exact_state_and_counters() {
    let code = [
        // A: jumps to B.
        addi(5, 5, 1),
        jal(8, 0),
        addi(0, 0, 0),
        // B: loads from scratch RAM for 64 passes, then from a faulting
        // address: x15 = (x6 >> 6 ? X_FAULT : 0) + X_SCRATCH.
        i_type(6, 6, 5, 15, 0x13),
        r_type(0x20, 15, 0, 0, 15, 0x33),
        r_type(0, X_FAULT, 15, 7, 15, 0x33),
        r_type(0, X_SCRATCH, 15, 0, 15, 0x33),
        i_type(0, 15, 3, 10, 0x03),
        addi(6, 6, 1),
        jal(-36, 0),
    ];
    let end = chained(&code, &[], |_| {});
    let fault = 0xff00_0000_0000_0000 + SCRATCH;
    // Load access fault at B's load, after 64 whole passes, A and 4 of B.
    assert_eq!(end.trap, [RAM + 28, 5, fault]);
    assert_eq!((end.x[5], end.x[6], end.x[15]), (65, 64, fault));
    assert_eq!(end.x[X_INSTRET as usize], 64 * 9 + 2 + 4);
}

#[test]
fn a_loop_ending_at_the_end_of_a_page_is_translated() {
    // The loop's branch is the page's last word: its fall-through exit
    // leaves the page (not chained), its taken exit loops.
    let mut code = vec![0; 0x1000 / 4 + 3];
    code[0] = jal(0xff0, 0);
    code[0x3fc..].copy_from_slice(&[
        addi(5, 5, 1),
        addi(7, 7, -1),
        addi(0, 0, 0),
        b_type(-12, 0, 7, 1),
        addi(X_TEMP, 0, 1),
        s_type(0, X_TEMP, X_TOHOST, 3),
        jal(0, 0),
    ]);
    let mut regs = [0u64; 32];
    regs[7] = ITERATIONS;
    let scratch = [0u8; 0x1000];
    let (interp, _) = run(&code, &regs, &scratch, Tier::Interpret);
    assert!(interp.exit.contains("ToHost"), "{interp:?}");
    assert_eq!(interp.x[5], ITERATIONS);
    for tier in [Tier::Translate, Tier::TranslateAll] {
        let (jit, blocks) = run(&code, &regs, &scratch, tier);
        assert!(blocks >= 1, "{tier:?}");
        assert_eq!(interp, jit, "{tier:?}");
    }
}

/// Passes of the loops of the jump-cache tests: enough for many runs of
/// blocks each budget.
const PASSES: u64 = 2000;

/// Runs a program whose loop (`x7` passes) calls code outside its page:
/// `main` at `RAM`, each `(address, words)` of `more` written after it and
/// `setup` applied last. Every tier must leave the interpreter's state, and
/// the translating tiers must go from block to block without the run loop
/// (through the jump cache): far fewer runs started than passes. The
/// interpreter's state.
fn across_pages(
    main: &[u32],
    more: &[(u64, Vec<u32>)],
    inputs: &[(u32, u64)],
    setup: impl Fn(&mut Hart),
) -> Final {
    let mut code = main.to_vec();
    for (at, words) in more {
        let index = ((at - RAM) / 4) as usize;
        if code.len() < index + words.len() {
            code.resize(index + words.len(), 0);
        }
        code[index..index + words.len()].copy_from_slice(words);
    }
    let mut regs = [0u64; 32];
    regs[7] = PASSES;
    for &(r, v) in inputs {
        regs[r as usize] = v;
    }
    let handler = [jal(0, 0)];
    let scratch = [0u8; 0x1000];
    let (interp, _) = run_with(&code, &handler, &regs, &scratch, Tier::Interpret, &setup);
    assert!(interp.exit.contains("ToHost"), "{interp:?}");
    for tier in [Tier::Translate, Tier::TranslateAll] {
        let (jit, counts) = run_with(&code, &handler, &regs, &scratch, tier, &setup);
        assert_eq!(interp, jit, "{tier:?}");
        assert!(
            counts.entries < PASSES / 8,
            "{tier:?}: the run loop started {} runs of blocks for {PASSES} passes",
            counts.entries
        );
    }
    interp
}

/// `jalr x0, 0(ra)`.
const RET: u32 = 0x0000_8067;

/// The end of the jump-cache tests' programs: `tohost = 1`, then spin.
fn finish() -> [u32; 3] {
    [
        addi(X_TEMP, 0, 1),
        s_type(0, X_TEMP, X_TOHOST, 3),
        jal(0, 0),
    ]
}

#[test]
fn calls_and_returns_across_pages_go_on_in_translated_code() {
    let mut main = vec![
        addi(5, 5, 1),
        // call f (the next page)
        jal(0x1000 - 4, 1),
        addi(7, 7, -1),
        b_type(-12, 0, 7, 1),
    ];
    main.extend(finish());
    let f = vec![addi(6, 6, 3), RET];
    let end = across_pages(&main, &[(RAM + 0x1000, f)], &[], |_| {});
    assert_eq!((end.x[5], end.x[6]), (PASSES, 3 * PASSES));
}

#[test]
fn a_call_after_its_target_was_rewritten_runs_the_new_code() {
    let patch_at = PASSES / 2;
    let mut main = vec![
        addi(5, 5, 1),
        // Once: store the new first word of f, then fence.i.
        b_type(12, X_ARG, 5, 1),
        s_type(0, X_WORD, X_ADDR, 2),
        0x0000_100f,
        jal(0x1000 - 16, 1),
        addi(7, 7, -1),
        b_type(-24, 0, 7, 1),
    ];
    main.extend(finish());
    let f = vec![addi(6, 6, 1), RET];
    let end = across_pages(
        &main,
        &[(RAM + 0x1000, f)],
        &[
            (X_ARG, patch_at),
            (X_WORD, u64::from(addi(6, 6, 100))),
            (X_ADDR, RAM + 0x1000),
        ],
        |_| {},
    );
    assert_eq!(end.x[6], (patch_at - 1) + (PASSES - patch_at + 1) * 100);
}

#[test]
fn a_call_after_its_target_page_was_remapped_runs_the_new_page() {
    // sfence.vma x0, x0: every translation.
    remapped_call(0x1200_0073);
    // sfence.vma x10, x0: the callee's page only.
    remapped_call(0x1205_0073);
}

/// Sv39 in S-mode: RAM identity-mapped by a gigapage; virtual page
/// 0x4000_0000 maps p1 (adds 1), then, after the program rewrites the leaf
/// and runs `sfence` (an `sfence.vma` covering that page), p2 (adds 100).
fn remapped_call(sfence: u32) {
    const ROOT: u64 = RAM + 0x9_0000;
    const L1: u64 = ROOT + 0x1000;
    const L0: u64 = ROOT + 0x2000;
    const V: u64 = 0x4000_0000;
    let (p1, p2) = (RAM + 0x2000, RAM + 0x3000);
    let pte = |pa: u64, flags: u64| (pa >> 12) << 10 | flags;
    // V, R, W, X, A, D / V, R, X, A / V (a pointer to the next level).
    let (rwx, rx, next) = (0xcf, 0x4b, 0x1);
    let patch_at = PASSES / 2;
    let mut main = vec![
        addi(5, 5, 1),
        // Once: point the leaf at p2, then sfence.vma.
        b_type(12, X_ARG, 5, 1),
        s_type(0, X_WORD, X_ADDR, 3),
        sfence,
        // jalr ra, 0(x10)
        i_type(0, 10, 0, 1, 0x67),
        addi(7, 7, -1),
        b_type(-24, 0, 7, 1),
    ];
    main.extend(finish());
    let end = across_pages(
        &main,
        &[
            (p1, vec![addi(6, 6, 1), RET]),
            (p2, vec![addi(6, 6, 100), RET]),
        ],
        &[
            (X_ARG, patch_at),
            (X_WORD, pte(p2, rx)),
            (X_ADDR, L0),
            (10, V),
        ],
        |hart| {
            let tables = [
                (ROOT + 2 * 8, pte(RAM, rwx)),
                (ROOT + 8, pte(L1, next)),
                (L1, pte(L0, next)),
                (L0, pte(p1, rx)),
            ];
            for (at, value) in tables {
                assert!(hart.ram.write(at, &value.to_le_bytes()));
            }
            hart.mode = MODE_S;
            hart.csr.satp = 8 << 60 | ROOT >> 12;
            hart.tlb.flush();
            hart.fetch_invalidate();
        },
    );
    assert_eq!(end.x[6], (patch_at - 1) + (PASSES - patch_at + 1) * 100);
}

#[test]
fn a_call_after_another_writer_changed_its_target_and_a_fence_runs_the_new_code() {
    // The loop fences every pass; between two runs the host rewrites f, as
    // a device or another hart would (not through this hart's stores), so
    // only the fence tells the hart that f's page changed.
    let passes = 20_000;
    let mut main = vec![
        addi(5, 5, 1),
        jal(0x1000 - 4, 1),
        0x0000_100f,
        addi(7, 7, -1),
        b_type(-16, 0, 7, 1),
    ];
    main.extend(finish());
    let mut code = main.clone();
    code.resize(0x400, 0);
    code.extend([addi(6, 6, 1), RET]);
    let run = |tier: Tier| {
        let (_vm, mut vcpu) = machine();
        let hart = vcpu.hart_mut();
        assert_eq!(hart.set_tier(tier), tier != Tier::Interpret);
        write_words(hart, RAM, &code);
        hart.x[7] = passes;
        hart.x[X_TOHOST as usize] = TOHOST;
        hart.pc = RAM;
        hart.csr.mtvec = HANDLER;
        hart.tohost = Some(TOHOST);
        for run in 0.. {
            if run == 3 {
                write_words(hart, RAM + 0x1000, &[addi(6, 6, 100)]);
            }
            match hart.run(1000) {
                HartExit::Interrupted => {}
                HartExit::ToHost(_) => break,
                other => panic!("{tier:?}: {other:?} at {:#x}", hart.pc),
            }
        }
        (hart.x, hart.instret, hart.jit.entries)
    };
    let (x, instret, _) = run(Tier::Interpret);
    assert!(
        x[5] == passes && x[6] > passes && x[6] < 100 * passes,
        "f changed mid-loop: {x:?}"
    );
    for tier in [Tier::Translate, Tier::TranslateAll] {
        let (jx, jinstret, entries) = run(tier);
        assert_eq!((jx, jinstret), (x, instret), "{tier:?}");
        assert!(entries > 0, "{tier:?}: nothing ran translated");
    }
}

#[test]
fn a_block_reads_what_its_call_outs_wrote_and_a_fault_leaves_every_earlier_result() {
    // The stop handler of `chained`: csrr x12, minstret; x31 = 1 to tohost.
    let handler = [
        i_type(0xb02, 0, 2, X_INSTRET, 0x73),
        addi(X_TEMP, 0, 1),
        s_type(0, X_TEMP, X_TOHOST, 3),
        jal(0, 0),
    ];
    // One block looping to itself. Pass n loads from page n after x9's
    // (a new page each pass: the loads and the store take their slow
    // paths, which write `x8` and `x14`, and the block goes on using
    // them); pass 64 adds `X_FAULT` to the address and faults at the
    // first load, after registers it wrote in that pass.
    let code = [
        addi(5, 5, 1),
        r_type(0, 5, 6, 0, 6, 0x33),         // add x6, x6, x5
        addi(8, 8, 3),                       // overwritten by the load
        i_type(12, 5, 1, 7, 0x13),           // slli x7, x5, 12
        r_type(0, 9, 7, 0, 7, 0x33),         // add x7, x7, x9
        i_type(6, 5, 5, 10, 0x13),           // srli x10, x5, 6
        r_type(0x20, 10, 0, 0, 10, 0x33),    // sub x10, x0, x10
        r_type(0, X_FAULT, 10, 7, 10, 0x33), // and x10, x10, x28
        r_type(0, 10, 7, 0, 7, 0x33),        // add x7, x7, x10
        i_type(0, 7, 3, 8, 0x03),            // ld x8, 0(x7)
        r_type(0, 8, 6, 0, 6, 0x33),         // add x6, x6, x8
        addi(0, 6, 5),                       // x0 as destination
        r_type(0, 6, 5, 0, 0, 0x33),         // add x0, x5, x6
        s_type(16, 6, 7, 3),                 // sd x6, 16(x7)
        i_type(16, 7, 3, 14, 0x03),          // ld x14, 16(x7)
        r_type(0, 14, 15, 0, 15, 0x33),      // add x15, x15, x14
        jal(-64, 0),
    ];
    let pages = RAM + 0x1_0000;
    let mut regs = [0u64; 32];
    regs[9] = pages;
    regs[14] = 0x5555;
    let setup = |hart: &mut Hart| {
        for n in 1..=64u64 {
            let v = n * 0x1_0001 + 7;
            assert!(hart.ram.write(pages + n * 0x1000, &v.to_le_bytes()));
        }
    };
    let scratch = [0u8; 0x1000];
    let (interp, ..) = run_with(&code, &handler, &regs, &scratch, Tier::Interpret, setup);
    let fault = 0xff00_0000_0000_0000 + pages + (64 << 12);
    assert_eq!(interp.trap, [RAM + 36, 5, fault]);
    // x6 sums x5 and the loaded words; x15 the words read back.
    let words: u64 = (1..64u64).map(|n| n * 0x1_0001 + 7).sum();
    let x6 = (1..=64u64).sum::<u64>() + words;
    let x15: u64 = (1..64u64)
        .map(|n| (1..=n).sum::<u64>() + (1..=n).map(|m| m * 0x1_0001 + 7).sum::<u64>())
        .sum();
    assert_eq!(
        (
            interp.x[5],
            interp.x[6],
            interp.x[7],
            interp.x[8],
            interp.x[15]
        ),
        (64, x6, fault, 63 * 0x1_0001 + 7 + 3, x15)
    );
    assert_eq!(interp.x[0], 0);
    assert_eq!(interp.x[X_INSTRET as usize], 63 * 17 + 9);
    for tier in [Tier::Translate, Tier::TranslateAll] {
        let (jit, counts) = run_with(&code, &handler, &regs, &scratch, tier, setup);
        assert!(counts.blocks >= 1, "{tier:?}");
        assert_eq!(interp, jit, "{tier:?}");
    }
}

#[test]
fn an_sfence_of_a_data_page_keeps_the_jump_cache() {
    // Each pass flushes the translation of a data page (sfence.vma x11,
    // x0), which ends the run of blocks, then calls f on the next page: the
    // call and the return still go through the jump cache, so the run loop
    // starts about one run per pass, not one per block.
    let mut main = vec![
        addi(5, 5, 1),
        0x1205_8073,
        jal(0x1000 - 8, 1),
        addi(7, 7, -1),
        b_type(-16, 0, 7, 1),
    ];
    main.extend(finish());
    let mut code = main.clone();
    code.resize(0x400, 0);
    code.extend([addi(6, 6, 3), RET]);
    let mut regs = [0u64; 32];
    regs[7] = PASSES;
    regs[11] = SCRATCH;
    let handler = [jal(0, 0)];
    let scratch = [0u8; 0x1000];
    let (interp, _) = run_with(&code, &handler, &regs, &scratch, Tier::Interpret, |_| {});
    assert_eq!((interp.x[5], interp.x[6]), (PASSES, 3 * PASSES));
    let (jit, counts) = run_with(&code, &handler, &regs, &scratch, Tier::TranslateAll, |_| {});
    assert_eq!(interp, jit);
    assert!(
        counts.entries < PASSES * 3 / 2,
        "the run loop started {} runs of blocks for {PASSES} passes",
        counts.entries
    );
}

#[test]
fn a_loop_whose_back_edge_is_a_side_exit_runs_as_the_interpreter_does() {
    // One block from the start to the `jal`: both conditional branches are
    // side exits, the second back to the block's own start.
    let code = [
        addi(5, 5, 1),
        addi(7, 7, -1),
        // Once, when x5 reaches X_ARG: a detour through another block.
        b_type(24, X_ARG, 5, 0),
        b_type(-12, 0, 7, 1),
        addi(6, 6, 1),
        addi(X_TEMP, 0, 1),
        s_type(0, X_TEMP, X_TOHOST, 3),
        jal(0, 0),
        // The detour, back to the loop's back edge.
        addi(6, 6, 1000),
        jal(-24, 0),
    ];
    let mut regs = [0u64; 32];
    regs[7] = ITERATIONS;
    // After the loop is translated in every tier.
    regs[X_ARG as usize] = ITERATIONS - 4;
    let handler = stop_handler();
    let scratch = [0u8; 0x1000];
    let (interp, _) = run_with(&code, &handler, &regs, &scratch, Tier::Interpret, |_| {});
    assert!(interp.exit.contains("ToHost"), "{interp:?}");
    assert_eq!(interp.x[5], ITERATIONS);
    assert_eq!(interp.x[6], 1001);
    assert_eq!(interp.x[7], 0);
    for tier in [Tier::Translate, Tier::TranslateAll] {
        let (jit, counts) = run_with(&code, &handler, &regs, &scratch, tier, |_| {});
        assert_eq!(interp, jit, "{tier:?}");
        // The loop went round inside its block, not through the run loop.
        assert!(
            counts.entries < ITERATIONS / 2,
            "{tier:?}: {} runs of blocks",
            counts.entries
        );
    }
}
