//! The riscv64 translator: hot guest basic blocks become x86_64 host code;
//! the interpreter stays the first tier (cold code, everything a block does
//! not hold) and the reference the translated code is tested against.
//!
//! # Choice of code generator
//!
//! A direct emitter, iced-x86's `code_asm`, over Cranelift. The numbers:
//!
//! - Build cost: iced-x86 with `code_asm` is already a dependency of
//!   `vm-accel` (its x86 instruction-emulator fallback), so the `jit` feature
//!   adds no crate to the workspace and no time to a clean build (measured
//!   alone, iced-x86 with the workspace's features builds in 32 s wall,
//!   15 s CPU, on a 2-core development machine; the workspace pays that
//!   already). Cranelift (`cranelift-codegen`, `-frontend`, `-jit`,
//!   `-module`, `-native`, with `regalloc2`, `gimli`, `target-lexicon`, ...)
//!   would add a few dozen new crates on top, against a CI budget of
//!   25 minutes on 2 cores.
//! - Compile speed: a block is assembled once, position-independent, and
//!   copied into place; hot blocks are short (at most [`lower::MAX_OPS`]
//!   instructions), so Cranelift's optimiser would buy little for its cost
//!   per block. iced's own block encoder cost some 30 µs a block, a sixth
//!   of a Linux boot: [`asm`] encodes each instruction once instead.
//! - Portability is the price: one back end per host, x86_64 only today (the
//!   module is built on x86_64 hosts; elsewhere the interpreter runs
//!   everything).
//! - Speed (`cargo bench -p benches --bench riscv_mips`: the summary it
//!   prints, marginal MIPS of the large workload less the small one,
//!   medians of 5 alternated runs; bench binaries built from the code
//!   before and after keeping guest registers in host registers (see
//!   [`lower`]), run alternately 8 times each on a shared 2-core machine
//!   under a load average of 3 to 7, so single runs vary 2-3x):
//!   integer loop (one block looping to itself) jit 823-1650 MIPS, median
//!   1338, before, 1178-3349, median 2149, after; C program (sieve, CRC32,
//!   insertion sort) 381-952, median 922, before, 557-1268, median 921,
//!   after: no change measurable through the noise. The interpreter ran
//!   25-95 MIPS. Against `qemu-riscv64` in the same runs (1544-7353 and
//!   1497-4614 MIPS): loop median 0.30x before, 0.53x after; C program
//!   median 0.30x before, 0.37x after. Chaining blocks (see [`lower`])
//!   had taken the C program from 179-278 to 674-757 MIPS. Then the jump
//!   cache, CSR accesses inside blocks and 4096-instruction chunks, with the
//!   register cache (`cargo xtask bench --quick riscv_mips`, two runs on a
//!   quieter machine): integer loop 5.7 G instructions/s, 0.31-0.33x
//!   QEMU's time; C program 2.1 G/s, 1.89-1.95x (1396 M/s, 2.06x, the
//!   same morning before them). On by default for those numbers and the
//!   zero build cost.
//! - A whole Linux boot (Debian's riscv64 kernel to power-off, one hart,
//!   `riscv_linux_boot` in a test build, same machine): jit 8.4-12.2 s
//!   with chaining, 14.4-16.3 s before it, alternated (the interpreter
//!   alone took 17.1 s). To the userspace marker in the bench's release
//!   build: 8.2 s (2.38x `qemu-system-riscv64`) before the jump cache, 4.2 s
//!   (1.15-1.24x) with it and what came with it. Of the boot's 2.6 G
//!   instructions 99% run translated. Two things made the jit 2.8x *slower* than the
//!   interpreter there (46-50 s) at first, both invisible in the loop
//!   benches: iced-x86 unoptimised in dev/test builds (it is opt-level 3
//!   there now, like this crate), and hot heads evicted from the
//!   direct-mapped block table being translated again on every conflict
//!   (see [`cache`]). A boot translates some 32,000 blocks, about 550 bytes
//!   of host code each: an 8 MiB arena filled three times per boot and
//!   every block was translated again after each flush (48,000
//!   translations), hence [`ARENA`]. A block is assembled once (it used to
//!   be twice, for its size and then its address).
//! - Then, the same boot by hand (`vm-service run --arch riscv64 --net
//!   none`, time to the marker, old and new binaries alternated): 3.29 s
//!   -> 2.84 s assembling in one pass ([`asm`]); -> 2.74 s letting a block
//!   start after an interpreted branch and ending a chunk early rather than
//!   interpreting its last steps (24.7 M interpreted instructions a boot
//!   -> 7.1 M); -> 2.43 s comparing only the decoded lines of a page after a
//!   `fence.i` (the boot runs 139,000 of them, ftrace patching its text;
//!   see `icache.rs`); -> about 2.25 s sealing the blocks placed between
//!   two runs of code with one `mprotect` (60,000 calls -> 36,000). In
//!   `cargo xtask bench --quick riscv_mips` after them: 2.27 s against
//!   `qemu-system-riscv64`'s 2.72 s, 0.84x (0.91x, 2.34 s against 2.58 s,
//!   in a second run with side exits and, then, 1024-entry TLB sets, since
//!   back to 256: no gain measurable, and a clippy limit on their size).
//! - Side exits (conditional branches inside a block, see [`lower`]) took
//!   the C program from 2.4-2.5 to 2.8-2.9 G instructions/s (its insertion
//!   sort's inner loop, two thirds of its time, became one block looping
//!   in registers); the Linux boot did not change measurably.
//!
//! # Where a Linux boot's time goes
//!
//! `perf record` of that boot (one hart, 2.3 s, cpu-clock samples): 44%
//! in translated code; 10% in the run loop and the interpreter (3 M runs
//! of blocks started from the run loop, 7 M instructions interpreted: code
//! not hot yet and what a block does not hold: `sret`, `wfi`, `ecall`,
//! `fence.i`, `sfence.vma`, and the instruction crossing a page); 8% in the
//! decoded-page checks after `fence.i` (`ICache::slot_for`: 860,000 pages
//! compared; skipping them needs to know no other hart and no device wrote
//! the page, which takes tracking stores that the inline TLB path does not
//! do); 7% translating (30,000 blocks: iced's encoder 4%, lowering, maps);
//! 10% in the kernel (`mprotect` 4-6% with its TLB flushes, and faulting in
//! guest RAM and the arena); 3% decoding and fetching on page changes;
//! 2% in call-outs (`exec_op`: atomics, CSR accesses, FP, slow loads).
//!
//! # Shape
//!
//! Guest-independent: [`cache`] (blocks by guest address, hotness, dropping
//! by decoded-page generation) and [`code`] (W^X executable memory); the
//! exit protocol below. riscv64-specific: [`lower`] (which instructions a
//! block holds, and their x86_64 code) and the run-loop entry here.
//!
//! # Exactness
//!
//! - A block is looked up only where the interpreter's decoded page is
//!   current, and is keyed by the page's slot and generation: a store to
//!   the page, `fence.i` finding changed bytes, or the page leaving the
//!   decoded-page cache drops its blocks exactly when the interpreter drops
//!   its decoded instructions. Virtual pc and physical address are both in
//!   the key, so `satp` changes and aliases need nothing more.
//! - Memory instructions run through the interpreter's `execute` with `pc`
//!   set: a fault leaves `pc` at the faulting instruction, every earlier
//!   instruction's result in `x`, and `instret` counting exactly those.
//! - A CSR access runs through `execute` with `instret` made exact for it
//!   ([`lower::exec_counted`]), so the counters read and written inside a
//!   block are the interpreter's; one that changes translation, interrupt
//!   enables or the decoded code asks for a resync, which ends the block
//!   after it, as it ends the interpreter's chunk. Interrupts and kicks are
//!   taken when the run loop gets control back, at most one chunk of the
//!   run loop late as in the interpreter. A run of blocks (a block looping
//!   to itself, or chained to the next) never retires more instructions
//!   than the run loop's chunk has steps left: each block charges its
//!   length against that budget at its chain entry and returns to the run
//!   loop instead when it would exceed it, and the run loop then ends the
//!   chunk a few instructions early instead of interpreting them (a
//!   64-instruction loop body used to leave up to 63 instructions of every
//!   chunk to the interpreter).
//! - Chaining (see [`lower`]) joins only blocks of the same decoded page and
//!   generation: the first block of a run was found current, nothing a
//!   block runs changes the page without leaving the block ([`STOP`], a
//!   resync, or `fence.i`, which ends blocks), so every chained-to block is
//!   current too. A dropped generation's blocks are never entered again and
//!   their links never followed, so nothing needs unlinking; code memory is
//!   reused only after every block is dropped.
//! - `jalr` and jumps out of a block's page go on through the jump cache
//!   ([`Jump`]): an entry is made where the run loop starts a block (its
//!   page found current in the current fetch context) and is followed only
//!   while the block's page is current as the run loop would find it
//!   (checked since the last `fence.i`, same generation) and the TLB's
//!   version and the fetch context are the ones it was made under. Every
//!   event that could make the target stale changes one of them: the
//!   page's ops emptied or dropped, or a `fence.i` (until the run loop
//!   checks the page again), any TLB flush, `satp` write or `sfence.vma`
//!   of a page code was fetched through (translations), a privilege change
//!   (context); and none of them can happen inside a run of blocks without
//!   it leaving first.

mod asm;
mod cache;
mod code;
mod lower;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cache::{Block, BlockCache, Key, Lookup};
use code::CodeArena;

use super::decode::{Kind, Op};
use super::hart::{Hart, Translated};
use super::mmu::{EXEC, READ, WRITE};
use super::trap::Exc;

/// A call-out finished; the block goes on.
const CONTINUE: u64 = 0;
/// A call-out finished, but the block must end after it (decoded code was dropped).
const STOP: u64 = 1;
/// A call-out raised an exception (parked in [`Jit::exc`]).
const EXC: u64 = 2;

/// Size of a hart's code arena; when full, every block is dropped. Address
/// space only until used: a riscv64 Debian boot fills about 17 MiB.
const ARENA: usize = 64 << 20;

/// Entries of a hart's jump cache (a power of two).
const JUMPS: usize = 4096;
/// The jump cache's index mixes the pc's bits from 1 and from this bit up.
const JUMP_HASH_SHIFT: i32 = 13;

/// The jump cache's entry for `vpc` (translated code computes the same).
fn jump_index(vpc: u64) -> usize {
    ((vpc >> 1) ^ (vpc >> JUMP_HASH_SHIFT)) as usize & (JUMPS - 1)
}

/// A jump-cache entry: the chain entry of the block last entered at guest
/// `vpc` from the run loop, with what made it current then. Translated code
/// follows it for a `jalr` or a jump out of its page only while the block's
/// decoded page is current (its slot's [`Stamp`] checked in the current
/// epoch, and of the same generation) and the translations and fetch
/// context are the same (the TLB's version, the fetch context's number):
/// the run loop had just found the page current, and nothing that makes it
/// stale leaves those unchanged. `repr(C)`: translated code reads it (32
/// bytes).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Jump {
    vpc: u64,
    ctx: u64,
    entry: u64,
    slot: u32,
    generation: u32,
}

const NO_JUMP: Jump = Jump {
    vpc: u64::MAX,
    ctx: 0,
    entry: 0,
    slot: 0,
    generation: 0,
};

/// Signature of a translated block (see [`lower`]).
type BlockFn = unsafe extern "sysv64" fn(*mut u64, *mut Hart, *mut lower::BlockOut) -> u64;

/// What a block's code points at, kept as long as the block.
#[derive(Debug)]
struct Code {
    /// The decoded instructions (call-outs get their addresses).
    _ops: Box<[(u64, Op)]>,
    /// Host address of the chain entry.
    entry: u64,
    /// Link words of the chainable exits (see [`lower`]): each holds the
    /// exit's stub, or the chain entry of the block at its target.
    links: Box<[AtomicU64]>,
}

/// The translator state of one hart.
#[derive(Debug)]
pub struct Jit {
    on: bool,
    cache: BlockCache<Code>,
    /// Link words waiting for the block at a key: (block, link word).
    pending: HashMap<Key, Vec<(u32, usize)>>,
    /// Link words pointed at a block since the last flush.
    linked: usize,
    /// Runs of blocks started from the run loop (a run goes on through
    /// link words and the jump cache).
    entries: u64,
    /// Made on the first translation (a hart that never gets hot maps nothing).
    arena: Option<CodeArena>,
    /// Where `jalr` and jumps out of a page go on without the run loop.
    jumps: Box<[Jump]>,
    /// The exception a call-out raised, for the run loop.
    pub(super) exc: Option<Exc>,
}

impl Default for Jit {
    fn default() -> Self {
        Self {
            on: true,
            cache: BlockCache::default(),
            pending: HashMap::new(),
            linked: 0,
            entries: 0,
            arena: None,
            jumps: vec![NO_JUMP; JUMPS].into_boxed_slice(),
            exc: None,
        }
    }
}

impl Jit {
    /// Whether the run loop should look for translated blocks.
    #[inline(always)]
    pub fn on(&self) -> bool {
        self.on
    }

    /// Translates block heads after `hot` executions; `None`: never (the
    /// interpreter runs everything).
    pub fn set_threshold(&mut self, hot: Option<u32>) {
        self.on = hot.is_some();
        self.cache.set_threshold(hot.unwrap_or(u32::MAX));
        self.flush();
    }

    /// Drops every translated block.
    pub fn flush(&mut self) {
        self.cache.clear();
        self.pending.clear();
        self.linked = 0;
        self.jumps.fill(NO_JUMP);
        if let Some(a) = &mut self.arena {
            a.clear();
        }
    }

    /// Number of blocks translated since the last flush.
    pub fn blocks(&self) -> usize {
        self.cache.len()
    }
}

impl Hart {
    /// Runs the translated block at `pc` if there is one (translating it once
    /// it is hot). [`Translated::Ran`]: the number of instructions retired
    /// and counted in `instret`, and the exception that ended the block
    /// early, which leaves the hart exactly as the interpreter would before
    /// handling it (for [`Exc::Resync`], the instruction that asked is not
    /// counted yet, as in the interpreter).
    ///
    /// The blocks retire at most `steps` instructions (what the run loop's
    /// chunk has left): a block longer than that is not entered
    /// ([`Translated::NoSteps`]: the chunk ends early, rather than
    /// interpreting up to a block's length at the end of every chunk), and
    /// one looping to itself stops short of it.
    pub(super) fn run_translated(&mut self, steps: u32) -> Translated {
        if !self.jit.on || self.debug.armed {
            return Translated::No;
        }
        let pc = self.pc;
        let key = Key {
            vpc: pc,
            pa: self.cur_page_pa | (pc & 0xfff),
            slot: self.cur_slot,
            generation: self.icache.generation(self.cur_slot),
        };
        let index = match self.jit.cache.lookup(key) {
            Lookup::Block(i) => i,
            Lookup::Cold => return Translated::No,
            Lookup::Translate => match self.translate_block(key) {
                // Run from its next execution on (unless every block is
                // to run translated at once): code that gets hot together
                // is translated together and sealed with one `mprotect`.
                Some(i) if self.jit.cache.threshold() == 1 => i,
                _ => return Translated::No,
            },
        };
        let block = self.jit.cache.block(index);
        let (code, len, entry) = (block.code, block.len, block.keep().entry);
        // The page is current: blocks elsewhere may jump here directly until
        // it or the translations change.
        let ctx_version = self.tlb.version() << 2 | self.tlb_context(self.mode, EXEC) as u64;
        self.jit.jumps[jump_index(pc)] = Jump {
            vpc: pc,
            ctx: ctx_version,
            entry,
            slot: key.slot,
            generation: key.generation,
        };
        if len > steps {
            return Translated::NoSteps;
        }
        if let Some(arena) = self.jit.arena.as_mut().filter(|a| a.is_open()) {
            if let Err(e) = arena.seal() {
                self.translator_off(&e);
                return Translated::No;
            }
        }
        // SAFETY: `code` is the address of a function of type `BlockFn`
        // placed in the arena, which is not cleared while a block runs (only
        // the run loop clears it).
        let f: BlockFn = unsafe { std::mem::transmute::<usize, BlockFn>(code) };
        self.jit.entries += 1;
        let hart: *mut Hart = self;
        let mut out = lower::BlockOut {
            budget: u64::from(steps),
            tlb_read: self.tlb.set_base(self.dctx, READ) as u64,
            tlb_write: self.tlb.set_base(self.dctx, WRITE) as u64,
            jumps: self.jit.jumps.as_ptr() as u64,
            stamps: self.icache.stamps() as u64,
            epoch: self.icache.epoch(),
            ctx_version,
            ..lower::BlockOut::default()
        };
        // SAFETY: the block reads and writes `x` through the first pointer and
        // hands the second to call-outs, which make the only reference to the
        // hart while they run; `self` is not used until the block returns.
        let status = unsafe { f(std::ptr::addr_of_mut!((*hart).x).cast(), hart, &raw mut out) };
        // Bounded by `steps` (each block charges itself before it runs).
        let retired = out.retired.min(u64::from(steps)) as u32;
        if status == 0 {
            self.pc = out.next_pc;
            self.instret += u64::from(retired);
            return Translated::Ran(retired, Ok(()));
        }
        let done = retired + (status >> 2) as u32;
        if status & 3 == STOP {
            self.instret += u64::from(done) + 1;
            return Translated::Ran(done + 1, Ok(()));
        }
        self.instret += u64::from(done);
        let exc = self.jit.exc.take().unwrap_or(Exc::Resync);
        Translated::Ran(done, Err(exc))
    }

    /// Whether no block goes on past `op` (a branch or jump ends one, an
    /// instruction a block does not hold ends it before itself), so one
    /// may start right after it.
    #[inline(always)]
    pub(super) fn ends_block(op: &Op) -> bool {
        lower::class(op) != lower::Class::Body
    }

    /// Translates the block at `key`; the index of its block, `None` when no
    /// block starts there (or translation failed: the interpreter goes on).
    #[cold]
    fn translate_block(&mut self, key: Key) -> Option<u32> {
        if self.jit.cache.is_full() {
            // No block is running now.
            self.jit.flush();
        }
        let ops = self.block_ops(key.vpc);
        if ops.is_empty() {
            self.jit.cache.insert(key, None);
            return None;
        }
        let (last_pc, last) = ops[ops.len() - 1];
        let end_pc = last_pc.wrapping_add(u64::from(last.len));
        let ops: Box<[(u64, Op)]> = ops.into_boxed_slice();
        let targets = lower::chain_targets(&ops, end_pc);
        let links: Box<[AtomicU64]> = targets.iter().map(|_| AtomicU64::new(0)).collect();
        match self.place(&ops, end_pc, &links) {
            Ok(Some((code, lowered))) => {
                for (word, stub) in links.iter().zip(&lowered.links) {
                    word.store(*stub, Ordering::Relaxed);
                }
                let len = ops.len() as u32;
                let keep = Code {
                    _ops: ops,
                    entry: lowered.entry,
                    links,
                };
                let index = self
                    .jit
                    .cache
                    .insert(key, Some(Block::new(code, len, keep)))?;
                self.chain(index, key, &targets);
                Some(index)
            }
            Ok(None) => {
                // The arena is full: start over (no block is running now).
                self.jit.flush();
                None
            }
            Err(e) => {
                self.translator_off(&e);
                None
            }
        }
    }

    /// Turns translation off for good after `error` (the interpreter runs
    /// everything from here on).
    #[cold]
    fn translator_off(&mut self, error: &dyn std::fmt::Display) {
        tracing::warn!(hart = self.id, %error, "translator off: the interpreter runs everything");
        self.jit.on = false;
        self.jit.flush();
    }

    /// Links the new block `index` (at `key`) to the blocks at its chainable
    /// `targets` that exist, and the blocks waiting for `key` to it. Only
    /// blocks of one page generation are linked, so a chained jump never
    /// leaves the page version that was current when the first block was
    /// looked up: blocks of a dropped generation are never entered again,
    /// nor their links followed, and their code is reused only after
    /// [`Jit::flush`] drops every block.
    fn chain(&mut self, index: u32, key: Key, targets: &[u64]) {
        let jit = &mut self.jit;
        for (word, &target) in targets.iter().enumerate() {
            let to = Key {
                vpc: target,
                pa: (key.pa & !0xfff) | (target & 0xfff),
                ..key
            };
            match jit.cache.translated(to) {
                Some(j) => {
                    let entry = jit.cache.block(j).keep().entry;
                    jit.cache.block(index).keep().links[word].store(entry, Ordering::Relaxed);
                    jit.linked += 1;
                }
                None => jit.pending.entry(to).or_default().push((index, word)),
            }
        }
        if let Some(waiting) = jit.pending.remove(&key) {
            let entry = jit.cache.block(index).keep().entry;
            for (from, word) in waiting {
                jit.cache.block(from).keep().links[word].store(entry, Ordering::Relaxed);
                jit.linked += 1;
            }
        }
    }

    /// Assembles and places a block whose link words are `links`; `Ok(None)`
    /// when the arena is full. The returned addresses are final.
    fn place(
        &mut self,
        ops: &[(u64, Op)],
        end_pc: u64,
        links: &[AtomicU64],
    ) -> Result<Option<(usize, lower::Lowered)>, String> {
        if self.jit.arena.is_none() {
            self.jit.arena = Some(CodeArena::new(ARENA).map_err(|e| e.to_string())?);
        }
        let Some(arena) = self.jit.arena.as_mut() else {
            return Ok(None);
        };
        // Assembled once, at address 0: the code is position-independent
        // (jumps inside the block are relative; helpers, ops and link words
        // are absolute constants), so it runs wherever it is copied and only
        // its label addresses move with it.
        let mut lowered =
            lower::lower(ops, end_pc, links.as_ptr() as u64).map_err(|e| e.to_string())?;
        let Some(placed) = arena.place(&lowered.code).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let at = placed.as_ptr() as u64;
        lowered.entry += at;
        for stub in &mut lowered.links {
            *stub += at;
        }
        Ok(Some((at as usize, lowered)))
    }

    /// The instructions of the block at `pc`: decoded ops from the current
    /// page, up to a branch, an instruction a block does not hold, the page
    /// end or [`lower::MAX_OPS`].
    fn block_ops(&mut self, pc: u64) -> Vec<(u64, Op)> {
        let mut ops = Vec::new();
        let mut at = pc;
        while ops.len() < lower::MAX_OPS && at >> 12 == pc >> 12 && at & 0xfff < 0xffe {
            let mut op = self.icache.get(self.cur_slot, at & 0xfff);
            if op.kind == Kind::Undecoded {
                match self.decode_at(at, self.cur_page_pa | (at & 0xfff), Some(self.cur_slot)) {
                    Ok(o) => op = o,
                    Err(_) => break,
                }
            }
            match lower::class(&op) {
                lower::Class::Stop => break,
                lower::Class::Body | lower::Class::Branch => ops.push((at, op)),
                lower::Class::Last => {
                    ops.push((at, op));
                    break;
                }
            }
            at = at.wrapping_add(u64::from(op.len));
        }
        ops
    }
}
