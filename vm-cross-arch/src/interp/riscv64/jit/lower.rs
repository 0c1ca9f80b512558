//! The riscv64 front end: which decoded instructions a block holds, and
//! their lowering to x86_64 with iced-x86's assembler.
//!
//! Within a block, the guest registers it uses most live in host registers
//! (see [`regs`]): the hart's `x` array may be stale between instructions,
//! but the dirty registers are stored before every call-out and every exit,
//! so whatever reads `x` outside the block's code (a call-out, the run
//! loop, the next block) sees exactly the state the interpreter would, and
//! every cached register is loaded again after a call-out, which may have
//! changed `x`. Integer ALU work (RV64I, M) is emitted inline;
//! division, remainder and the bit-manipulation ops call [`pure_op`];
//! memory, atomic, FP, cache-block and fence instructions call [`exec_op`], which runs
//! the interpreter's own `execute` on the hart (same MMU/TLB path, same
//! traps, MMIO exits and code-page invalidation); loads and stores first
//! try the TLB inline and call out only when it misses. A jump ends a
//! block; a conditional branch before its last instruction is a side exit
//! (taken: out of line, the rest of the block uncharged, on like any exit;
//! not taken: the block goes on), so a loop body with an early exit or an
//! inner `if` is one block, and a back edge to the block's own start stays
//! in host registers wherever it is. Any other instruction ends a block
//! before itself.
//!
//! # Chaining
//!
//! Every block has two entries: the function entry (the prologue) and the
//! chain entry right after it, which charges the block's length against
//! [`BlockOut::budget`] and leaves for the run loop (next pc = the block's
//! start) when the budget would be exceeded, then loads the block's cached
//! registers. A branch or jump back to the block's own start makes the
//! same budget check and jumps past those loads, its registers as they are
//! (storing the dirty ones only when it leaves instead); an exit whose
//! target lies in the same guest page jumps through a link word (one per
//! such exit, kept with the block) that first points at the exit's own
//! stub (which leaves with the target as next pc) and later at the target
//! block's chain entry (see [`Lowered::links`]). Every block shares the
//! prologue's stack frame, so whichever block leaves pops it. Targets in
//! other pages and `jalr` go through the hart's jump cache (see
//! [`super::Jump`]): on a hit, to the chain entry of the block the run
//! loop last started there; on a miss, back to the run loop.
//!
//! The generated function is `extern "sysv64" fn(x, hart, out) -> u64`:
//! 0 when the last block ran to its end or its successor had no budget left
//! (the next pc written to `out.next_pc`), or `index << 2 | code` when
//! call-out `index` of the last block asked to leave (see [`super::STOP`],
//! [`super::EXC`]); `out.retired` counts the instructions of every block
//! that ran to its end, either way.

mod alu;
mod exits;
mod regs;
mod tlb;

use iced_x86::code_asm::{
    byte_ptr, cl, cx, dword_ptr, eax, ecx, qword_ptr, r12, r13, r14, r14d, rax, rbx, rcx, rdi, rdx,
    rsi, rsp, word_ptr, AsmRegister64, CodeAssembler, CodeLabel,
};
use std::mem::offset_of;

use iced_x86::IcedError;

use super::super::decode::{Cond, Kind, Op};
use super::super::exec::{bitmanip, int};
use super::super::hart::Hart;
use super::asm;
use super::{CONTINUE, EXC, STOP};
use alu::{alu32, alu64, alu_in_place};
use exits::{dispatch, Exits};
use regs::{x, RegCache, SAVED};
use tlb::tlb_lookup;

/// Most guest instructions in one block.
pub const MAX_OPS: usize = 64;
/// What a block reports besides its status, and how far it may loop.
#[derive(Debug, Default)]
#[repr(C)]
pub struct BlockOut {
    /// Where the guest goes on (when the block ran to its end).
    pub next_pc: u64,
    /// Instructions retired by the blocks that ran to their end (when the
    /// status is not 0: before the block that left).
    pub retired: u64,
    /// Input: the most instructions to retire (the run loop's step budget,
    /// so both tiers retire the same instructions per budget and interrupts
    /// are taken as late as in the interpreter).
    pub budget: u64,
    /// Input: the hart's TLB set for loads in its data context.
    pub tlb_read: u64,
    /// Input: the same for stores.
    pub tlb_write: u64,
    /// Input: the hart's jump cache (see [`super::Jump`]).
    pub jumps: u64,
    /// Input: the hart's decoded-page stamps, by slot.
    pub stamps: u64,
    /// Input: the decoded-page epoch (a page is current if its stamp was
    /// checked in it).
    pub epoch: u64,
    /// Input: the translations' version and fetch context a jump-cache
    /// entry must carry to be followed (see [`super::Jump`]).
    pub ctx_version: u64,
}

/// How an instruction enters a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Straight-line work; the block goes on after it.
    Body,
    /// A conditional branch: a side exit when taken, the block goes on
    /// after it (or its last instruction, with both ways exits).
    Branch,
    /// A jump: the block's last instruction.
    Last,
    /// Not translated: the block ends before it.
    Stop,
}

/// How instruction `op` takes part in a block.
pub fn class(op: &Op) -> Class {
    match op.kind {
        Kind::AluImm(_)
        | Kind::AluReg(_)
        | Kind::AluImmW(_)
        | Kind::AluRegW(_)
        | Kind::BitReg(_)
        | Kind::BitImm(_)
        | Kind::Lui
        | Kind::Auipc
        | Kind::Load { .. }
        | Kind::Store { .. }
        | Kind::Lr { .. }
        | Kind::Sc { .. }
        | Kind::AmoOp { .. }
        | Kind::FLoad { .. }
        | Kind::FStore { .. }
        | Kind::FOp { .. }
        | Kind::CacheBlock(_)
        | Kind::Csr(_)
        | Kind::Fence => Class::Body,
        Kind::Branch(_) => Class::Branch,
        Kind::Jal | Kind::Jalr => Class::Last,
        _ => Class::Stop,
    }
}

/// Runs a side-effect-free register op the block does not emit inline.
pub extern "sysv64" fn pure_op(a: u64, b: u64, op: *const Op) -> u64 {
    // SAFETY: `op` points into the ops the calling block keeps alive.
    let op = unsafe { &*op };
    match op.kind {
        Kind::AluImm(f) | Kind::AluReg(f) => int::alu(f, a, b),
        Kind::AluImmW(f) | Kind::AluRegW(f) => int::alu_w(f, a, b),
        Kind::BitReg(f) | Kind::BitImm(f) => bitmanip::bit(f, a, b),
        // `lower` sends nothing else here.
        _ => 0,
    }
}

/// Runs one instruction through the interpreter on behalf of a block, with
/// `pc` set as it would be; returns [`CONTINUE`], [`STOP`] (done, but
/// decoded code was dropped: leave) or [`EXC`] (the exception is parked in
/// the hart's translator state).
pub extern "sysv64" fn exec_op(hart: *mut Hart, op: *const Op, pc: u64) -> u64 {
    // SAFETY: the block was entered with a pointer to the running hart, which
    // no other reference uses until the block returns; `op` points into the
    // ops the block keeps alive.
    let (hart, op) = unsafe { (&mut *hart, *op) };
    hart.pc = pc;
    match hart.execute(op) {
        Ok(()) if hart.cur_vpage == u64::MAX => STOP,
        Ok(()) => CONTINUE,
        Err(e) => {
            hart.jit.exc = Some(e);
            EXC
        }
    }
}

/// [`exec_op`] for an instruction that may read or write the counters
/// (a CSR access): `instret` is exact for it, `retired` being the
/// instructions this run of blocks retired before it.
pub extern "sysv64" fn exec_counted(hart: *mut Hart, op: *const Op, pc: u64, retired: u64) -> u64 {
    // SAFETY: as in `exec_op`; the reference ends before `exec_op` makes its own.
    unsafe { (*hart).instret += retired };
    let status = exec_op(hart, op, pc);
    // The run loop adds what the run retired when it ends; a counter
    // written here keeps its offset from `instret`.
    // SAFETY: as above.
    unsafe { (*hart).instret -= retired };
    status
}

/// A `BlockOut` field's offset as a displacement (a few bytes).
fn field(offset: usize) -> i32 {
    offset as i32
}

/// A constant into `reg`.
fn imm(a: &mut CodeAssembler, reg: AsmRegister64, v: u64) -> Result<(), IcedError> {
    a.mov(reg, v)
}

/// A block's code and where its chainable exits are.
#[derive(Debug)]
pub struct Lowered {
    /// Machine code.
    pub code: Vec<u8>,
    /// Offset of the chain entry.
    pub entry: u64,
    /// Per link word (in the order of [`chain_targets`]): the offset of the
    /// exit's own stub (its address is the word's first value).
    pub links: Vec<u64>,
}

/// The guest targets of a block's exits that may be chained, one link word
/// each, in the order the lowering emits them: the static targets of its
/// last instruction (taken, then not taken) or of its end, then the taken
/// targets of its side exits (conditional branches before its last
/// instruction); those in the block's page other than its own start.
pub fn chain_targets(ops: &[(u64, Op)], end_pc: u64) -> Vec<u64> {
    let start = ops.first().map_or(end_pc, |(pc, _)| *pc);
    let sides = ops
        .iter()
        .take(ops.len().saturating_sub(1))
        .filter(|(_, op)| matches!(op.kind, Kind::Branch(_)))
        .map(|(pc, op)| pc.wrapping_add(i64::from(op.imm) as u64));
    let targets = match ops.last() {
        Some((pc, op)) => {
            let next = pc.wrapping_add(u64::from(op.len));
            let to = pc.wrapping_add(i64::from(op.imm) as u64);
            match op.kind {
                Kind::Jal => vec![to],
                Kind::Branch(_) => vec![to, next],
                Kind::Jalr => Vec::new(),
                _ => vec![end_pc],
            }
        }
        None => Vec::new(),
    };
    targets
        .into_iter()
        .chain(sides)
        .filter(|&t| t != start && t >> 12 == start >> 12)
        .collect()
}

/// A memory instruction's slow path, emitted after the block's exits.
struct SlowPath {
    label: CodeLabel,
    /// Where the fast path goes on.
    done: CodeLabel,
    op_ptr: u64,
    pc: u64,
    index: usize,
    /// The dirty registers before the instruction.
    dirty: u32,
}

impl SlowPath {
    /// The slow path of instruction `index` (at guest `pc`), taken with the
    /// registers `regs` has dirty now.
    fn new(a: &mut CodeAssembler, regs: &RegCache, op_ptr: u64, pc: u64, index: usize) -> Self {
        Self {
            label: a.create_label(),
            done: a.create_label(),
            op_ptr,
            pc,
            index,
            dirty: regs.dirty,
        }
    }
}

/// Assembles the block of `ops` (each with its guest pc; `ops[i]` must stay
/// where it is while the code lives). The code is position-independent:
/// label addresses in [`Lowered`] are offsets from its first byte.
/// `end_pc` is where a block without a final branch goes on; `links` is the
/// host address of the block's link words (one `u64` per entry of
/// [`chain_targets`], kept as long as the code).
pub fn lower(ops: &[(u64, Op)], end_pc: u64, links: u64) -> Result<Lowered, asm::AsmError> {
    let mut a = asm::new()?;
    let start = ops.first().map_or(end_pc, |(pc, _)| *pc);
    let len = ops.len() as i32;
    let mut exits = Exits {
        start,
        top: a.create_label(),
        epilogue: a.create_label(),
        dispatch: a.create_label(),
        link: links,
        stubs: Vec::new(),
    };
    let mut epilogue = exits.epilogue;
    // Call-outs that leave: uncharge this block first.
    let mut leave_early = a.create_label();
    let mut no_budget = a.create_label();
    let mut regs = RegCache::for_block(ops);
    a.push(rbx)?;
    a.push(r12)?;
    a.push(r13)?;
    a.push(r14)?;
    for r in SAVED {
        a.push(r)?;
    }
    // Keeps the stack 16-byte aligned at call-outs; `[rsp]` is scratch.
    a.sub(rsp, 8)?;
    a.mov(rbx, rdi)?;
    a.mov(r12, rsi)?;
    a.mov(r13, rdx)?;
    a.xor(r14d, r14d)?;
    // The chain entry: charge the block, or leave when the budget is spent.
    let top = asm::mark(&mut a, &mut exits.top)?;
    a.lea(rax, qword_ptr(r14 + len))?;
    a.cmp(rax, qword_ptr(r13 + field(offset_of!(BlockOut, budget))))?;
    a.ja(no_budget)?;
    a.mov(r14, rax)?;
    regs.reload(&mut a)?;
    // Where the block loops to itself, with every cached register loaded;
    // the jump back stores none of them, so any the block writes may be
    // dirty here (storing a clean one again is harmless).
    let mut body = a.create_label();
    a.set_label(&mut body)?;
    a.zero_bytes()?;
    let mut again = Again {
        start,
        body,
        len,
        spills: Vec::new(),
    };
    if loops_to_itself(ops, end_pc) {
        regs.dirty = regs.written();
    }
    let mut slow_paths = Vec::new();
    let mut side_exits: Vec<SideExit> = Vec::new();
    let mut ended = false;
    for (i, (pc, op)) in ops.iter().enumerate() {
        let op_ptr = std::ptr::from_ref::<Op>(op) as u64;
        let next = pc.wrapping_add(u64::from(op.len));
        let imm64 = i64::from(op.imm) as u64;
        match op.kind {
            Kind::Lui | Kind::Auipc => {
                let v = if op.kind == Kind::Lui {
                    imm64
                } else {
                    pc.wrapping_add(imm64)
                };
                regs.write_imm(&mut a, op.rd, v, rax)?;
            }
            Kind::AluImm(f) | Kind::AluReg(f) | Kind::AluImmW(f) | Kind::AluRegW(f) => {
                if op.rd == 0 || alu_in_place(&mut a, &mut regs, op)? {
                    continue;
                }
                regs.read(&mut a, rax, op.rs1)?;
                match op.kind {
                    Kind::AluImm(_) | Kind::AluImmW(_) => imm(&mut a, rcx, imm64)?,
                    _ => regs.read(&mut a, rcx, op.rs2)?,
                }
                let wide = matches!(op.kind, Kind::AluImm(_) | Kind::AluReg(_));
                let inline = if wide {
                    alu64(&mut a, f)?
                } else {
                    alu32(&mut a, f)?
                };
                if !inline {
                    call_pure(&mut a, &mut regs, op_ptr)?;
                }
                regs.write(&mut a, op.rd, rax)?;
            }
            Kind::BitReg(_) | Kind::BitImm(_) => {
                if op.rd == 0 {
                    continue;
                }
                regs.read(&mut a, rax, op.rs1)?;
                match op.kind {
                    Kind::BitImm(_) => imm(&mut a, rcx, imm64)?,
                    _ => regs.read(&mut a, rcx, op.rs2)?,
                }
                call_pure(&mut a, &mut regs, op_ptr)?;
                regs.write(&mut a, op.rd, rax)?;
            }
            Kind::Jal => {
                regs.write_imm(&mut a, op.rd, next, rax)?;
                again.or_exit(&mut a, &mut exits, &regs, pc.wrapping_add(imm64))?;
                ended = true;
                break;
            }
            Kind::Jalr => {
                regs.read(&mut a, rax, op.rs1)?;
                a.add(rax, op.imm)?;
                a.and(rax, -2)?;
                regs.write_imm(&mut a, op.rd, next, rcx)?;
                regs.flush(&mut a)?;
                a.jmp(exits.dispatch)?;
                ended = true;
                break;
            }
            Kind::Branch(c) if i + 1 < ops.len() => {
                // A side exit: out of the way when taken, the block goes on.
                let side = SideExit {
                    label: a.create_label(),
                    target: pc.wrapping_add(imm64),
                    rest: len - i as i32 - 1,
                    dirty: regs.dirty,
                };
                branch_if(&mut a, &regs, op, c, false, side.label)?;
                side_exits.push(side);
            }
            Kind::Branch(c) => {
                let mut fall = a.create_label();
                branch_if(&mut a, &regs, op, c, true, fall)?;
                again.or_exit(&mut a, &mut exits, &regs, pc.wrapping_add(imm64))?;
                a.set_label(&mut fall)?;
                again.or_exit(&mut a, &mut exits, &regs, next)?;
                ended = true;
                break;
            }
            Kind::Load { size, unsigned } => {
                let slow = SlowPath::new(&mut a, &regs, op_ptr, *pc, i);
                tlb_lookup(
                    &mut a,
                    &regs,
                    op,
                    size,
                    field(offset_of!(BlockOut, tlb_read)),
                    slow.label,
                )?;
                match (size, unsigned) {
                    (0, false) => a.movsx(rax, byte_ptr(rax))?,
                    (0, true) => a.movzx(eax, byte_ptr(rax))?,
                    (1, false) => a.movsx(rax, word_ptr(rax))?,
                    (1, true) => a.movzx(eax, word_ptr(rax))?,
                    (2, false) => a.movsxd(rax, dword_ptr(rax))?,
                    (2, true) => a.mov(eax, dword_ptr(rax))?,
                    _ => a.mov(rax, qword_ptr(rax))?,
                }
                // The slow path leaves the same registers cached, clean:
                // as good as this path's dirty ones.
                regs.write(&mut a, op.rd, rax)?;
                let mut done = slow.done;
                slow_paths.push(slow);
                a.set_label(&mut done)?;
                a.zero_bytes()?;
            }
            Kind::Store { size } => {
                let slow = SlowPath::new(&mut a, &regs, op_ptr, *pc, i);
                tlb_lookup(
                    &mut a,
                    &regs,
                    op,
                    size,
                    field(offset_of!(BlockOut, tlb_write)),
                    slow.label,
                )?;
                regs.read(&mut a, rcx, op.rs2)?;
                match size {
                    0 => a.mov(byte_ptr(rax), cl)?,
                    1 => a.mov(word_ptr(rax), cx)?,
                    2 => a.mov(dword_ptr(rax), ecx)?,
                    _ => a.mov(qword_ptr(rax), rcx)?,
                }
                let mut done = slow.done;
                slow_paths.push(slow);
                a.set_label(&mut done)?;
                a.zero_bytes()?;
            }
            Kind::Csr(_) => {
                // Instructions of this run before this one: every block
                // charged so far less the rest of this one.
                let before = Some(i as i32 - len);
                call_exec(&mut a, &mut regs, op_ptr, *pc, i, &mut leave_early, before)?;
            }
            _ => call_exec(&mut a, &mut regs, op_ptr, *pc, i, &mut leave_early, None)?,
        }
    }
    if !ended {
        again.or_exit(&mut a, &mut exits, &regs, end_pc)?;
    }
    // Taken side exits, in the order of `chain_targets`: the instructions
    // after the branch uncharged, on as a final exit would go with the
    // registers dirty at the branch (back to the start without storing
    // them: a loop whose back edge is a side exit stays in registers).
    for mut side in side_exits {
        a.set_label(&mut side.label)?;
        let mut at_exit = regs.clone();
        at_exit.dirty = side.dirty;
        a.sub(r14, side.rest)?;
        again.or_exit(&mut a, &mut exits, &at_exit, side.target)?;
    }
    // The loop's way out when the budget is spent.
    for (mut label, dirty) in again.spills {
        a.set_label(&mut label)?;
        let mut at_exit = regs.clone();
        at_exit.dirty = dirty;
        at_exit.flush(&mut a)?;
        a.jmp(no_budget)?;
    }
    // Out of the fast path's way: each memory instruction's call-out with
    // the registers dirty before it, back to the fast path's end.
    for mut slow in slow_paths {
        a.set_label(&mut slow.label)?;
        let mut at_call = regs.clone();
        at_call.dirty = slow.dirty;
        call_exec(
            &mut a,
            &mut at_call,
            slow.op_ptr,
            slow.pc,
            slow.index,
            &mut leave_early,
            None,
        )?;
        a.jmp(slow.done)?;
    }
    dispatch(&mut a, &mut exits)?;
    a.set_label(&mut no_budget)?;
    imm(&mut a, rax, start)?;
    a.mov(qword_ptr(r13), rax)?;
    a.xor(eax, eax)?;
    a.jmp(epilogue)?;
    a.set_label(&mut leave_early)?;
    a.sub(r14, len)?;
    a.set_label(&mut epilogue)?;
    a.mov(qword_ptr(r13 + field(offset_of!(BlockOut, retired))), r14)?;
    a.add(rsp, 8)?;
    for r in SAVED.iter().rev() {
        a.pop(*r)?;
    }
    a.pop(r14)?;
    a.pop(r13)?;
    a.pop(r12)?;
    a.pop(rbx)?;
    a.ret()?;
    let done = asm::assemble(&a)?;
    let links = exits
        .stubs
        .iter()
        .map(|&s| done.offset(s))
        .collect::<Result<_, _>>()?;
    Ok(Lowered {
        entry: done.offset(top)?,
        links,
        code: done.code,
    })
}

/// The way back to a block's own start without leaving its registers.
struct Again {
    start: u64,
    /// Right after the chain entry's loads of the cached registers.
    body: CodeLabel,
    len: i32,
    /// Where a jump back with no budget left goes, and the dirty registers
    /// it stores before leaving.
    spills: Vec<(CodeLabel, u32)>,
}

impl Again {
    /// Goes on at guest `target`: for the block's own start, the chain
    /// entry's budget check and on to the body with the registers as they
    /// are; otherwise through `exits` once the dirty registers are stored.
    fn or_exit(
        &mut self,
        a: &mut CodeAssembler,
        exits: &mut Exits,
        regs: &RegCache,
        target: u64,
    ) -> Result<(), IcedError> {
        if target != self.start {
            regs.flush(a)?;
            return exits.to(a, target);
        }
        let spill = a.create_label();
        self.spills.push((spill, regs.dirty));
        a.lea(rax, qword_ptr(r14 + self.len))?;
        a.cmp(rax, qword_ptr(r13 + field(offset_of!(BlockOut, budget))))?;
        a.ja(spill)?;
        a.mov(r14, rax)?;
        a.jmp(self.body)
    }
}

/// A conditional branch's taken way out of the middle of a block, emitted
/// after the block's end.
struct SideExit {
    label: CodeLabel,
    target: u64,
    /// Instructions of the block after the branch (charged, not run).
    rest: i32,
    /// The dirty registers at the branch.
    dirty: u32,
}

/// Compares for branch `op` (condition `c`) and jumps to `to` when it is
/// taken, or when it is not if `negate`.
fn branch_if(
    a: &mut CodeAssembler,
    regs: &RegCache,
    op: &Op,
    c: Cond,
    negate: bool,
    to: CodeLabel,
) -> Result<(), IcedError> {
    let lhs = if let Some(h) = regs.get(op.rs1) {
        h
    } else {
        regs.read(a, rax, op.rs1)?;
        rax
    };
    match regs.get(op.rs2) {
        _ if op.rs2 == 0 => a.cmp(lhs, 0)?,
        Some(h) => a.cmp(lhs, h)?,
        None => a.cmp(lhs, x(op.rs2))?,
    }
    match (c, negate) {
        (Cond::Eq, false) | (Cond::Ne, true) => a.je(to),
        (Cond::Ne, false) | (Cond::Eq, true) => a.jne(to),
        (Cond::Lt, false) | (Cond::Ge, true) => a.jl(to),
        (Cond::Ge, false) | (Cond::Lt, true) => a.jge(to),
        (Cond::Ltu, false) | (Cond::Geu, true) => a.jb(to),
        (Cond::Geu, false) | (Cond::Ltu, true) => a.jae(to),
    }
}

/// Whether an exit of the block of `ops` goes back to its start (a side
/// exit too).
fn loops_to_itself(ops: &[(u64, Op)], end_pc: u64) -> bool {
    let Some(&(start, _)) = ops.first() else {
        return false;
    };
    let side_to_start = ops.iter().take(ops.len() - 1).any(|(pc, op)| {
        matches!(op.kind, Kind::Branch(_)) && pc.wrapping_add(i64::from(op.imm) as u64) == start
    });
    if side_to_start {
        return true;
    }
    let Some((pc, op)) = ops.last() else {
        return false;
    };
    let to = pc.wrapping_add(i64::from(op.imm) as u64);
    match op.kind {
        Kind::Jal => to == start,
        Kind::Branch(_) => to == start || pc.wrapping_add(u64::from(op.len)) == start,
        Kind::Jalr => false,
        _ => end_pc == start,
    }
}

/// `rax = pure_op(rax, rcx, op)`; the cached registers are stored before
/// and loaded after (the callee clobbers the caller-saved ones).
fn call_pure(a: &mut CodeAssembler, regs: &mut RegCache, op_ptr: u64) -> Result<(), IcedError> {
    regs.flush(a)?;
    a.mov(rdi, rax)?;
    a.mov(rsi, rcx)?;
    imm(a, rdx, op_ptr)?;
    imm(
        a,
        rax,
        pure_op as extern "sysv64" fn(u64, u64, *const Op) -> u64 as usize as u64,
    )?;
    a.call(rax)?;
    regs.reload(a)
}

/// `exec_op(hart, op, pc)`, or `exec_counted(hart, op, pc, r14 + before)`
/// when `counted` is `Some(before)`, leaving the block with
/// `index << 2 | code` unless it continues. The dirty registers are stored
/// before (the interpreter reads `x`), and every cached register is loaded
/// after (the instruction may have changed `x`).
fn call_exec(
    a: &mut CodeAssembler,
    regs: &mut RegCache,
    op_ptr: u64,
    pc: u64,
    index: usize,
    leave: &mut CodeLabel,
    counted: Option<i32>,
) -> Result<(), IcedError> {
    regs.flush(a)?;
    a.mov(rdi, r12)?;
    imm(a, rsi, op_ptr)?;
    imm(a, rdx, pc)?;
    let f = if let Some(before) = counted {
        a.lea(rcx, qword_ptr(r14 + before))?;
        exec_counted as extern "sysv64" fn(*mut Hart, *const Op, u64, u64) -> u64 as usize
    } else {
        exec_op as extern "sysv64" fn(*mut Hart, *const Op, u64) -> u64 as usize
    };
    imm(a, rax, f as u64)?;
    a.call(rax)?;
    let mut go_on = a.create_label();
    a.test(eax, eax)?;
    a.je(go_on)?;
    a.or(eax, (index as i32) << 2)?;
    a.jmp(*leave)?;
    a.set_label(&mut go_on)?;
    // An instruction with no effect on x86 state; a label needs one to bind to.
    a.zero_bytes()?;
    regs.reload(a)
}
