//! One RISC-V hart: architectural state and the run loop (fetch from the
//! pre-decoded instruction cache, execute, take traps and interrupts), with
//! the exits the VMM sees (MMIO, power events, instruction budget).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use vm_accel::SystemEvent;

use super::csr::{envcfg, irq, Csrs};
use super::decode::{decode16, decode32, is_compressed, Kind, Op};
use super::icache::ICache;
use super::machine::{hsm, request, HartSignal, Machine};
use super::memory::{HostPtr, Ram};
use super::mmu::{Tlb, EXEC};
use super::trap::{Exc, CAUSE_FETCH_ACCESS, CAUSE_MISALIGNED_FETCH};

/// User mode.
pub const MODE_U: u8 = 0;
/// Supervisor mode.
pub const MODE_S: u8 = 1;
/// Machine mode.
pub const MODE_M: u8 = 3;

/// Instructions between checks for interrupts, kicks and requests: at
/// most a few µs of translated code, about 40 µs interpreted. Each check
/// reads the clock, a run of translated blocks ends at a chunk's end, and
/// a block longer than what is left of a chunk is interpreted: at 512, a
/// riscv64 Debian boot (2.6 G instructions) started 9.4 M runs of blocks
/// and interpreted 75 M instructions; at 4096, 4.5 M and 27 M.
pub(super) const CHUNK: u32 = 4096;
/// Longest `wfi` sleep before `run()` returns to the executor.
const MAX_IDLE: Duration = Duration::from_millis(10);

/// Why [`Hart::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HartExit {
    /// The budget ran out or the hart was kicked: call `run` again.
    Interrupted,
    /// A load from MMIO at `addr` of `len` bytes: fill [`Hart::mmio_data`].
    MmioRead { addr: u64, len: usize },
    /// A store to MMIO of `len` bytes held in [`Hart::mmio_data`].
    MmioWrite { addr: u64, len: usize },
    /// The guest asked for a power event.
    System(SystemEvent),
    /// A test program wrote `tohost` (riscv-tests convention).
    ToHost(u64),
    /// The hart cannot go on (e.g. a trap to M-mode with no firmware there).
    Fatal(String),
    /// A breakpoint or single step stopped the hart for its debugger.
    Debug,
}

/// Where a pending MMIO load goes when it completes.
#[derive(Debug, Clone, Copy)]
pub(super) struct MmioDest {
    pub rd: u8,
    pub size: u8,
    pub unsigned: bool,
    pub fp: bool,
    pub len: u8,
}

/// A software RISC-V hart.
#[derive(Debug)]
pub struct Hart {
    pub(super) x: [u64; 32],
    pub(super) f: [u64; 32],
    pub(super) pc: u64,
    pub(super) mode: u8,
    pub(super) csr: Csrs,
    pub(super) id: u32,
    pub(super) instret: u64,
    pub(super) tlb: Tlb,
    pub(super) icache: ICache,
    pub(super) ram: Ram,
    pub(super) machine: Arc<Machine>,
    pub(super) signal: Arc<HartSignal>,
    /// TLB context of data accesses (recomputed on mode/mstatus changes).
    pub(super) dctx: usize,
    /// Virtual page and cache slot of the page being executed.
    pub(super) cur_vpage: u64,
    /// Guest physical address of that page.
    pub(super) cur_page_pa: u64,
    pub(super) cur_slot: u32,
    /// Raw bits of an illegal instruction being executed (for `mtval`).
    pub(super) cur_bits: u32,
    /// Length of the instruction being executed.
    pub(super) cur_len: u8,
    /// LR reservation: host address and the value loaded.
    pub(super) reservation: Option<(u64, u64)>,
    /// Built-in SBI in place of M-mode firmware.
    pub(super) sbi: bool,
    /// SBI timer compare value (drives STIP in SBI mode).
    pub(super) sbi_timecmp: u64,
    /// Exit recorded by an instruction that returned `Exc::Exit`.
    pub(super) exit: Option<HartExit>,
    pub(super) mmio_buf: [u8; 8],
    pub(super) mmio_dest: Option<MmioDest>,
    /// Console bytes (SBI DBCN / legacy putchar) still to send to the UART.
    pub(super) console: std::collections::VecDeque<u8>,
    /// Physical address of `tohost`, for test programs.
    pub(super) tohost: Option<u64>,
    /// Set by `wfi` when nothing is pending.
    pub(super) waiting: bool,
    /// Breakpoints and single-step of an attached debugger.
    pub(super) debug: super::debug::DebugState,
    /// Translated blocks (the second tier).
    pub(super) jit: super::jit::Jit,
}

/// What [`Hart::run_translated`] did at a block head.
#[allow(dead_code, reason = "only the translator (feature `jit`) runs blocks")]
pub(super) enum Translated {
    /// No translated block starts here (or none is hot yet): interpret.
    No,
    /// The block here is longer than the run loop's chunk has steps left:
    /// the chunk ends, and the next one runs the block.
    NoSteps,
    /// Blocks ran: the instructions retired (counted in `instret`
    /// already), and the exception that ended them early.
    Ran(u32, Result<(), Exc>),
}

impl Hart {
    /// A hart in M-mode at `pc = 0` with every TLB and cache empty.
    pub fn new(id: u32, machine: Arc<Machine>, signal: Arc<HartSignal>) -> Self {
        let ram = machine.ram.lock().map(|r| r.clone()).unwrap_or_default();
        let icache = ram
            .primary()
            .map_or_else(ICache::default, |r| ICache::new(r.base, r.size));
        let mut hart = Self {
            x: [0; 32],
            f: [0; 32],
            pc: 0,
            mode: MODE_M,
            csr: Csrs::default(),
            id,
            instret: 0,
            tlb: Tlb::default(),
            icache,
            ram,
            machine,
            signal,
            dctx: 3,
            cur_vpage: u64::MAX,
            cur_page_pa: 0,
            cur_slot: 0,
            cur_bits: 0,
            cur_len: 4,
            reservation: None,
            sbi: false,
            sbi_timecmp: u64::MAX,
            exit: None,
            mmio_buf: [0; 8],
            mmio_dest: None,
            console: std::collections::VecDeque::new(),
            tohost: None,
            waiting: false,
            debug: super::debug::DebugState::default(),
            jit: super::jit::Jit::default(),
        };
        hart.fetch_invalidate();
        hart
    }

    /// Re-reads guest RAM from the machine (after regions were mapped).
    pub fn refresh_ram(&mut self) {
        if let Ok(r) = self.machine.ram.lock() {
            self.ram = r.clone();
        }
        self.icache = self
            .ram
            .primary()
            .map_or_else(ICache::default, |r| ICache::new(r.base, r.size));
        self.tlb.flush();
        self.jit.flush();
        self.fetch_invalidate();
    }

    /// Chooses the execution tier; returns whether blocks are translated
    /// (never without a code generator for this host).
    pub fn set_tier(&mut self, tier: super::Tier) -> bool {
        self.jit.set_threshold(tier.threshold());
        self.jit.on()
    }

    /// Blocks translated to host code since translation was last reset.
    pub fn translated_blocks(&self) -> usize {
        self.jit.blocks()
    }

    /// Hart id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Instructions retired so far.
    pub fn instret(&self) -> u64 {
        self.instret
    }

    /// Reads CSR `num` with machine-mode rights (inspection by the VMM and tests);
    /// `None` for a CSR that does not exist.
    pub fn read_csr(&mut self, num: u16) -> Option<u64> {
        let mode = self.mode;
        self.mode = MODE_M;
        let value = self.csr_read(num).ok();
        self.mode = mode;
        value
    }

    /// The MMIO data buffer of the last `MmioRead`/`MmioWrite` exit.
    pub fn mmio_data(&mut self) -> &mut [u8; 8] {
        &mut self.mmio_buf
    }

    /// Forgets cached fetch and data-context state (mode or translation changed).
    pub(super) fn fetch_invalidate(&mut self) {
        self.cur_vpage = u64::MAX;
        self.dctx = self.tlb_context(self.data_mode(), super::mmu::READ);
    }

    /// Device interrupt lines as `mip` bits.
    pub(super) fn hw_pending(&mut self) -> u64 {
        let m = &self.machine;
        if self.signal.ipi.load(Ordering::Relaxed) != 0 {
            self.csr.mip |= self.signal.ipi.swap(0, Ordering::AcqRel);
        }
        let mut p = 0;
        if m.clint.msip(self.id) {
            p |= irq::MSI;
        }
        let now = m.clint.mtime();
        if now >= m.clint.mtimecmp(self.id) {
            p |= irq::MTI;
        }
        if self.sbi && now >= self.sbi_timecmp {
            p |= irq::STI;
        }
        if self.csr.menvcfg & envcfg::STCE != 0 && now >= self.csr.stimecmp {
            p |= irq::STI;
        }
        if m.plic.output(self.id * 2) {
            p |= irq::MEI;
        }
        if m.plic.output(self.id * 2 + 1) {
            p |= irq::SEI;
        }
        p
    }

    /// Called when a store hits a page of decoded code.
    pub(super) fn code_written(&mut self, pa: u64) {
        if self.icache.invalidate_page(pa & !0xfff).is_some() {
            self.cur_vpage = u64::MAX;
        }
    }

    /// Sets up the fetch page for `pc`; returns the op when the page cannot be cached.
    #[inline(never)]
    fn fetch_slow(&mut self) -> Result<Option<Op>, Exc> {
        let pc = self.pc;
        if pc & 1 != 0 {
            return Err(Exc::trap(CAUSE_MISALIGNED_FETCH, pc));
        }
        let vpn = pc >> 12;
        let ctx = self.tlb_context(self.mode, EXEC);
        let e = *self.tlb.entry(ctx, EXEC, vpn);
        let (page_pa, page_host) = if e.tag == vpn {
            (
                e.ppn << 12,
                HostPtr::from_addr(e.addend.wrapping_add(pc & !0xfff)),
            )
        } else {
            let (pa, host) = self.translate_fill(pc, EXEC, self.mode)?;
            if host.is_none() {
                return Err(Exc::trap(CAUSE_FETCH_ACCESS, pc));
            }
            let page_pa = pa & !0xfff;
            match self.ram.host(page_pa, 0x1000) {
                Some(h) => (page_pa, h),
                // Code in RAM smaller than a page: never cached.
                None => return self.decode_at(pc, pa, None).map(Some),
            }
        };
        match self.icache.slot_for(page_pa, page_host) {
            Some((slot, new)) => {
                if new {
                    self.tlb.flush_writes_to(page_pa >> 12);
                }
                self.cur_vpage = vpn;
                self.cur_page_pa = page_pa;
                self.cur_slot = slot;
                Ok(None)
            }
            None => self.decode_at(pc, page_pa | (pc & 0xfff), None).map(Some),
        }
    }

    /// Fetches and decodes the instruction at virtual `pc` (physical `pa`),
    /// caching it in `slot` (decoded from the slot's snapshot) unless it
    /// crosses a page boundary.
    pub(super) fn decode_at(&mut self, pc: u64, pa: u64, slot: Option<u32>) -> Result<Op, Exc> {
        let fetch_fault = |a| Exc::trap(CAUSE_FETCH_ACCESS, a);
        let low = match slot {
            Some(s) => self.icache.parcel(s, pc),
            None => self.ram.host(pa, 2).ok_or_else(|| fetch_fault(pc))?.load(1) as u16,
        };
        if is_compressed(low) {
            let op = decode16(low);
            if let Some(s) = slot {
                self.icache.put(s, pc & 0xfff, op);
            }
            return Ok(op);
        }
        let high = if pc & 0xfff == 0xffe {
            let next = pc.wrapping_add(2);
            let (pa2, _) = self.translate_fill(next, EXEC, self.mode)?;
            let h = self
                .ram
                .host(pa2, 2)
                .ok_or_else(|| fetch_fault(next))?
                .load(1);
            // Crosses a page: never cached.
            return Ok(decode32(u32::from(low) | (h as u32) << 16));
        } else if let Some(s) = slot {
            self.icache.parcel(s, pc + 2)
        } else {
            self.ram
                .host(pa + 2, 2)
                .ok_or_else(|| fetch_fault(pc))?
                .load(1) as u16
        };
        let op = decode32(u32::from(low) | u32::from(high) << 16);
        if let Some(s) = slot {
            self.icache.put(s, pc & 0xfff, op);
        }
        Ok(op)
    }

    /// The next op at `pc` when it is not in the current decoded page yet.
    #[inline(never)]
    fn fetch_miss(&mut self) -> Result<Op, Exc> {
        let pc = self.pc;
        if pc >> 12 != self.cur_vpage {
            if let Some(op) = self.fetch_slow()? {
                return Ok(op);
            }
        }
        let op = self.icache.get(self.cur_slot, pc & 0xfff);
        if op.kind != Kind::Undecoded {
            return Ok(op);
        }
        // First execution at this address: decode it into the page.
        self.decode_at(pc, self.cur_page_pa | (pc & 0xfff), Some(self.cur_slot))
    }

    /// Applies requests other harts left (remote fences, HSM start).
    fn service_requests(&mut self) {
        let req = self.signal.requests.swap(0, Ordering::AcqRel);
        if req & request::SFENCE != 0 {
            self.tlb.flush();
            self.fetch_invalidate();
        }
        if req & request::FENCE_I != 0 {
            self.icache.fence();
            self.fetch_invalidate();
        }
    }

    /// Completes a pending MMIO load with the data the VMM filled in.
    fn complete_mmio(&mut self) {
        if let Some(d) = self.mmio_dest.take() {
            let raw = super::exec::mem::le_value(self.mmio_buf, d.size);
            if d.fp {
                // NaN-box a half or single.
                self.f[usize::from(d.rd)] = if d.size < 3 {
                    raw | (!0u64 << (8u32 << d.size))
                } else {
                    raw
                };
                self.fs_dirty();
            } else {
                let v = super::exec::mem::extend(raw, d.size, d.unsigned);
                if d.rd != 0 {
                    self.x[usize::from(d.rd)] = v;
                }
            }
            self.pc = self.pc.wrapping_add(u64::from(d.len));
            self.instret += 1;
        }
    }

    /// Runs until an exit or until about `budget` instructions have retired.
    pub fn run(&mut self, budget: u64) -> HartExit {
        self.complete_mmio();
        if let Some(exit) = self.console_exit() {
            return exit;
        }
        if self.signal.hsm.load(Ordering::Acquire) != hsm::STARTED && !self.hsm_start() {
            self.signal.sleep(MAX_IDLE);
            return HartExit::Interrupted;
        }
        // Steps, not retired instructions: a hart that traps on every
        // instruction must still return.
        let mut steps = 0u64;
        loop {
            if self.signal.take_kick() || self.signal.hsm.load(Ordering::Relaxed) != hsm::STARTED {
                return HartExit::Interrupted;
            }
            if self.signal.requests.load(Ordering::Relaxed) != 0 {
                self.service_requests();
            }
            if let Some(cause) = self.pending_interrupt() {
                self.waiting = false;
                self.take_trap(cause, 0);
                if let Some(exit) = self.check_no_firmware(cause) {
                    return exit;
                }
            }
            if self.waiting {
                if self.wfi_should_wake() {
                    self.waiting = false;
                } else {
                    self.idle();
                    return HartExit::Interrupted;
                }
            }
            let mut n = 0;
            // Under a debugger: one instruction per chunk, checked first
            // (the loop bound stays a constant: cheaper when not debugging).
            if self.debug.armed {
                if let Some(exit) = self.debug_stop() {
                    return exit;
                }
                n = CHUNK - 1;
            }
            let first = n;
            // Whether `pc` may start a translated block (a jump target).
            let mut head = true;
            while n < CHUNK {
                n += 1;
                let pc = self.pc;
                let cached = if pc >> 12 == self.cur_vpage {
                    self.icache.get(self.cur_slot, pc & 0xfff)
                } else {
                    Op::UNDECODED
                };
                let mut op = cached;
                let mut fetched = Ok(());
                if op.kind == Kind::Undecoded {
                    // A new page or a first execution: a block may start
                    // here all the same once the page is current.
                    match self.fetch_miss() {
                        Ok(o) => op = o,
                        Err(e) => fetched = Err(e),
                    }
                    head &= fetched.is_ok() && pc >> 12 == self.cur_vpage;
                }
                let ran = if fetched.is_ok() && head {
                    self.run_translated(CHUNK + 1 - n)
                } else {
                    Translated::No
                };
                let result = match ran {
                    _ if fetched.is_err() => fetched,
                    // Retired instructions are in `instret` already; steps
                    // count as in the interpreter (one per instruction or trap).
                    Translated::Ran(done, Ok(())) => {
                        n += done.saturating_sub(1);
                        continue;
                    }
                    Translated::Ran(done, Err(e)) => {
                        n += done;
                        Err(e)
                    }
                    Translated::NoSteps => {
                        // Nothing ran in this step; the next chunk runs the block.
                        n -= 1;
                        break;
                    }
                    Translated::No => self.execute(op),
                };
                head = true;
                match result {
                    Ok(()) => {
                        self.instret += 1;
                        // After a jump, or where a block would have ended
                        // before this instruction.
                        head = self.pc.wrapping_sub(pc) != u64::from(self.cur_len)
                            || Self::ends_block(&op);
                    }
                    Err(Exc::Trap { cause, tval }) => {
                        self.take_trap(cause, tval);
                        if let Some(exit) = self.check_no_firmware(cause) {
                            return exit;
                        }
                    }
                    Err(Exc::Resync) => {
                        self.instret += 1;
                        self.fetch_invalidate();
                        break;
                    }
                    Err(Exc::Exit) => {
                        // MMIO loads retire on completion, stores already counted.
                        if let Some(exit) = self.exit.take() {
                            return exit;
                        }
                        return HartExit::Fatal("exit without a reason".into());
                    }
                }
            }
            steps += u64::from(n - first);
            if steps >= budget {
                return HartExit::Interrupted;
            }
        }
    }

    /// Exits with an error when a trap lands in M-mode of a hart that has no M-mode firmware.
    fn check_no_firmware(&mut self, cause: u64) -> Option<HartExit> {
        if self.sbi && self.mode == MODE_M {
            return Some(HartExit::Fatal(format!(
                "trap (mcause {cause:#x}, mepc {:#x}, mtval {:#x}) reached M-mode, where the built-in SBI has no handler",
                self.csr.mepc, self.csr.mtval
            )));
        }
        None
    }

    /// Sleeps in `wfi` until an interrupt may be pending, a kick, or a bound.
    fn idle(&mut self) {
        let clint = &self.machine.clint;
        let mut deadline = clint.mtimecmp(self.id);
        if self.sbi {
            deadline = deadline.min(self.sbi_timecmp);
        }
        if self.csr.menvcfg & envcfg::STCE != 0 {
            deadline = deadline.min(self.csr.stimecmp);
        }
        let wait = Duration::from_nanos(clint.nanos_until(deadline)).min(MAX_IDLE);
        if !wait.is_zero() {
            self.signal.sleep(wait);
        }
    }

    /// Emits the next queued console byte as a UART write.
    fn console_exit(&mut self) -> Option<HartExit> {
        let uart = self.machine.devices.uart?;
        let b = self.console.pop_front()?;
        self.mmio_buf = [b, 0, 0, 0, 0, 0, 0, 0];
        Some(HartExit::MmioWrite { addr: uart, len: 1 })
    }

    /// Starts a stopped hart if another hart asked (SBI HSM `hart_start`).
    fn hsm_start(&mut self) -> bool {
        if self
            .signal
            .hsm
            .compare_exchange(
                hsm::START_PENDING,
                hsm::STARTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        self.pc = self.signal.start_addr.load(Ordering::Acquire);
        self.x[10] = u64::from(self.id);
        self.x[11] = self.signal.start_arg.load(Ordering::Acquire);
        self.mode = MODE_S;
        self.csr.satp = 0;
        self.csr.mstatus &= !super::csr::mstatus::SIE;
        self.tlb.flush();
        self.fetch_invalidate();
        true
    }
}

/// How many steps a run of `slice` steps that ended with `exit` and retired
/// `retired` instructions costs against an instruction limit: the whole
/// slice, so a program that traps on every instruction (and so retires none)
/// still ends; but an MMIO exit ends a slice early and costs what it retired
/// (at least one step), so a program printing a lot is not charged whole
/// slices per byte.
pub(super) fn steps_charged(exit: &HartExit, retired: u64, slice: u64) -> u64 {
    match exit {
        HartExit::MmioWrite { .. } | HartExit::MmioRead { .. } => retired.clamp(1, slice),
        _ => slice,
    }
}
