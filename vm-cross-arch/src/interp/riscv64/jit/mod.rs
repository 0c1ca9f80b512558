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
//! - Compile speed: a block is assembled twice (size, then final address)
//!   in microseconds; hot blocks are short (at most [`lower::MAX_OPS`]
//!   instructions), so Cranelift's optimiser would buy little for its cost
//!   per block.
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
//!   had taken the C program from 179-278 to 674-757 MIPS. On by default
//!   for those numbers and the zero build cost.
//! - A whole Linux boot (Debian's riscv64 kernel to power-off, one hart,
//!   `riscv_linux_boot` in a test build, same machine): jit 8.4-12.2 s
//!   with chaining, 14.4-16.3 s before it, alternated (the interpreter
//!   alone took 17.1 s). Two things made the jit 2.8x *slower* than the
//!   interpreter there (46-50 s) at first, both invisible in the loop
//!   benches: iced-x86 unoptimised in dev/test builds (it is opt-level 3
//!   there now, like this crate), and hot heads evicted from the
//!   direct-mapped block table being translated again on every conflict
//!   (see [`cache`]). Translation itself is about 100 µs a block (two
//!   assembly passes); a boot translates some 30,000 blocks.
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
//! - A block ends at any CSR access, so `instret`/`cycle` are exact where a
//!   guest can read them; interrupts and kicks are taken when the run loop
//!   gets control back, at most one chunk of the run loop late as in the
//!   interpreter. A run of blocks (a block looping to itself, or chained
//!   to the next) never retires more instructions than the run loop has
//!   steps left: each block charges its length against that budget at its
//!   chain entry and returns to the run loop instead when it would exceed
//!   it, so both tiers retire the same instructions for the same budget.
//! - Chaining (see [`lower`]) joins only blocks of the same decoded page and
//!   generation: the first block of a run was found current, nothing a
//!   block runs changes the page without leaving the block ([`STOP`], or a
//!   CSR or `fence.i`, which end blocks), so every chained-to block is
//!   current too. A dropped generation's blocks are never entered again and
//!   their links never followed, so nothing needs unlinking; code memory is
//!   reused only after every block is dropped.

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
use super::hart::Hart;
use super::mmu::{READ, WRITE};
use super::trap::Exc;

/// A call-out finished; the block goes on.
const CONTINUE: u64 = 0;
/// A call-out finished, but the block must end after it (decoded code was dropped).
const STOP: u64 = 1;
/// A call-out raised an exception (parked in [`Jit::exc`]).
const EXC: u64 = 2;

/// Size of a hart's code arena; when full, every block is dropped.
const ARENA: usize = 8 << 20;

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
    /// Made on the first translation (a hart that never gets hot maps nothing).
    arena: Option<CodeArena>,
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
            arena: None,
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
    /// it is hot). `None`: interpret this instruction. Otherwise the number of
    /// instructions retired and counted in `instret`, and the exception that
    /// ended the block early, which leaves the hart exactly as the
    /// interpreter would before handling it (for [`Exc::Resync`], the
    /// instruction that asked is not counted yet, as in the interpreter).
    ///
    /// The block retires at most `steps` instructions (the run loop's
    /// budget): it is not entered when it is longer, and loops no further.
    pub(super) fn run_translated(&mut self, steps: u32) -> Option<(u32, Result<(), Exc>)> {
        if !self.jit.on || self.debug.armed {
            return None;
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
            Lookup::Cold => return None,
            Lookup::Translate => self.translate_block(key)?,
        };
        let block = self.jit.cache.block(index);
        if block.len > steps {
            return None;
        }
        // SAFETY: `code` is the address of a function of type `BlockFn`
        // placed in the arena, which is not cleared while a block runs (only
        // the run loop clears it).
        let f: BlockFn = unsafe { std::mem::transmute::<usize, BlockFn>(block.code) };
        let hart: *mut Hart = self;
        let mut out = lower::BlockOut {
            budget: u64::from(steps),
            tlb_read: self.tlb.set_base(self.dctx, READ) as u64,
            tlb_write: self.tlb.set_base(self.dctx, WRITE) as u64,
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
            return Some((retired, Ok(())));
        }
        let done = retired + (status >> 2) as u32;
        if status & 3 == STOP {
            self.instret += u64::from(done) + 1;
            return Some((done + 1, Ok(())));
        }
        self.instret += u64::from(done);
        let exc = self.jit.exc.take().unwrap_or(Exc::Resync);
        Some((done, Err(exc)))
    }

    /// Whether a block ends before `op` (so one may start right after it).
    #[inline(always)]
    pub(super) fn ends_block(op: &Op) -> bool {
        lower::class(op) == lower::Class::Stop
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
                tracing::warn!(hart = self.id, error = %e, "translator off: the interpreter runs everything");
                self.jit.on = false;
                self.jit.flush();
                None
            }
        }
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
    /// when the arena is full.
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
        let words = links.as_ptr() as u64;
        // Assemble once to learn the size, once more for the final address
        // (the code holds no absolute address of its own, only of helpers
        // and of its link words).
        let probe = lower::lower(ops, end_pc, 0, words).map_err(|e| e.to_string())?;
        let Some(at) = arena.next_addr(probe.code.len()) else {
            return Ok(None);
        };
        let lowered = lower::lower(ops, end_pc, at, words).map_err(|e| e.to_string())?;
        if lowered.code.len() != probe.code.len() {
            return Err("block size changed with its address".into());
        }
        let placed = arena.place(&lowered.code).map_err(|e| e.to_string())?;
        Ok(placed.map(|p| (p.as_ptr() as usize, lowered)))
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
                lower::Class::Body => ops.push((at, op)),
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
