//! Debugger support for a hart: breakpoints, watchpoints and single-step
//! checked in the run loop, register access beyond the general set, and
//! memory access through the hart's current translation without side effects.
//!
//! The run loop pays for this only while a debugger has armed the hart: then
//! it runs one instruction per chunk and calls [`Hart::debug_stop`] before
//! each (a `run()` budget then covers fewer instructions); otherwise the cost
//! is one predictable branch per chunk of instructions. Breakpoints compare the PC, so the guest's
//! memory is never patched (software and hardware breakpoints are the same).
//! Watchpoints decode the instruction about to run (loads, stores, LR/SC,
//! AMOs; integer and FP) and compare its guest-virtual address range with
//! the watched ones; the hart stops before the access, as RISC-V debug
//! triggers do and as GDB expects on riscv64 (it steps over the instruction
//! itself, then compares the values). The stop is passed over once on resume.

use vm_accel::{DebugRegister, DebugStop, GuestDebug, Watchpoint};

use super::csr::CsrEffect;
use super::decode::{decode16, decode32, is_compressed, Kind};
use super::hart::{Hart, HartExit, MODE_M};

/// A hart's debugger state.
#[derive(Debug, Default)]
pub struct DebugState {
    /// Breakpoints or single-step are set: the run loop checks every instruction.
    pub(super) armed: bool,
    breakpoints: Vec<u64>,
    watchpoints: Vec<Watchpoint>,
    single_step: bool,
    /// One instruction has run since the last resume (single-step).
    stepped: bool,
    /// The PC of the last debug stop: not reported again at once on resume.
    stopped_at: Option<u64>,
    /// Breakpoint to pass over once, at the first instruction after a resume.
    skip: Option<u64>,
    /// What the last debug stop was.
    pub(super) last_stop: DebugStop,
}

impl DebugState {
    /// Applies a debugger's request; counts as a resume.
    pub(super) fn configure(&mut self, debug: &GuestDebug) {
        self.armed = !debug.is_off();
        self.breakpoints.clear();
        self.breakpoints.extend_from_slice(&debug.breakpoints);
        self.watchpoints.clear();
        self.watchpoints.extend_from_slice(&debug.watchpoints);
        self.single_step = debug.single_step;
        self.stepped = false;
        self.skip = self.stopped_at.take();
    }
}

/// Page-table entry fields (Sv39): the PPN mask, V, R|X, Svnapot's N.
const PTE_PPN: u64 = (1 << 44) - 1;
const PTE_V: u64 = 1;
const PTE_LEAF: u64 = 0b1010; // R | X
const PTE_NAPOT: u64 = 1 << 63;

impl Hart {
    /// Called by the run loop before each instruction while armed: the exit
    /// to return when the hart must stop for its debugger here.
    #[cold]
    #[inline(never)]
    pub(super) fn debug_stop(&mut self) -> Option<HartExit> {
        let pc = self.pc;
        let d = &mut self.debug;
        let skip = d.skip.take();
        let stop = if d.single_step {
            std::mem::replace(&mut d.stepped, true)
        } else {
            skip != Some(pc) && d.breakpoints.contains(&pc)
        };
        if stop {
            d.stopped_at = Some(pc);
            d.last_stop = DebugStop::Break;
            return Some(HartExit::Debug);
        }
        if self.debug.watchpoints.is_empty() || skip == Some(pc) {
            return None;
        }
        let (addr, len, read, write) = self.data_access(pc)?;
        let hit = *self
            .debug
            .watchpoints
            .iter()
            .find(|w| (read && w.hit(addr, len, false)) || (write && w.hit(addr, len, true)))?;
        let d = &mut self.debug;
        d.stopped_at = Some(pc);
        d.last_stop = DebugStop::Watch {
            addr: hit.addr,
            kind: hit.kind,
        };
        Some(HartExit::Debug)
    }

    /// The guest-virtual data access of the instruction at `pc` with the
    /// current registers: `(addr, len, reads, writes)`; `None` for an
    /// instruction without one (or code that cannot be read).
    fn data_access(&mut self, pc: u64) -> Option<(u64, u64, bool, bool)> {
        let mut raw = [0u8; 4];
        let got = self.debug_read_memory(pc, &mut raw);
        let low = u16::from_le_bytes([raw[0], raw[1]]);
        let op = match got {
            2.. if is_compressed(low) => decode16(low),
            4 => decode32(u32::from_le_bytes(raw)),
            _ => return None,
        };
        let base = self.x[usize::from(op.rs1) & 31];
        let at = base.wrapping_add(i64::from(op.imm) as u64);
        let bytes = |size: u8| 1u64 << size.min(3);
        Some(match op.kind {
            Kind::Load { size, .. } => (at, bytes(size), true, false),
            Kind::Store { size } => (at, bytes(size), false, true),
            Kind::FLoad { fmt } => (at, bytes(fmt.size()), true, false),
            Kind::FStore { fmt } => (at, bytes(fmt.size()), false, true),
            Kind::Lr { size } => (base, bytes(size), true, false),
            Kind::Sc { size } => (base, bytes(size), false, true),
            Kind::AmoOp { size, .. } => (base, bytes(size), true, true),
            _ => return None,
        })
    }

    /// Sets breakpoints, watchpoints and single-step (see [`GuestDebug`]).
    pub fn set_guest_debug(&mut self, debug: &GuestDebug) {
        self.debug.configure(debug);
    }

    /// Reads a floating-point register or a CSR with machine-mode rights.
    pub fn debug_register(&mut self, reg: DebugRegister) -> Option<u64> {
        match reg {
            DebugRegister::Riscv64Fpr(n) => self.f.get(usize::from(n)).copied(),
            // The FP CSRs read even when `mstatus.FS` is off (a debugger asks anyway).
            DebugRegister::Riscv64Csr(0x001) => Some(self.csr.fflags),
            DebugRegister::Riscv64Csr(0x002) => Some(self.csr.frm),
            DebugRegister::Riscv64Csr(0x003) => Some(self.csr.frm << 5 | self.csr.fflags),
            DebugRegister::Riscv64Csr(num) => self.read_csr(num),
            _ => None,
        }
    }

    /// Writes a floating-point register or a CSR with machine-mode rights;
    /// `false` when the register does not exist or refuses the write.
    pub fn set_debug_register(&mut self, reg: DebugRegister, value: u64) -> bool {
        match reg {
            DebugRegister::Riscv64Fpr(n) => match self.f.get_mut(usize::from(n)) {
                Some(f) => {
                    *f = value;
                    true
                }
                None => false,
            },
            DebugRegister::Riscv64Csr(num @ 0x001..=0x003) => {
                let (fflags, frm) = match num {
                    0x001 => (value, self.csr.frm),
                    0x002 => (self.csr.fflags, value),
                    _ => (value, value >> 5),
                };
                self.csr.fflags = fflags & 0x1f;
                self.csr.frm = frm & 7;
                true
            }
            DebugRegister::Riscv64Csr(num) => {
                let mode = self.mode;
                self.mode = MODE_M;
                let effect = self.csr_write(num, value);
                self.mode = mode;
                match effect {
                    Ok(CsrEffect::Translation) => {
                        self.tlb.flush();
                        self.fetch_invalidate();
                        true
                    }
                    Ok(_) => true,
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }

    /// The guest physical address of virtual `va` under the current `satp`
    /// (Sv39), ignoring permissions and leaving A/D bits alone; `va` itself
    /// when translation is off or the walk finds no mapping.
    fn debug_translate(&self, va: u64) -> u64 {
        if self.mode == MODE_M || self.csr.satp >> 60 == 0 {
            return va;
        }
        let mut table = (self.csr.satp & PTE_PPN) << 12;
        for level in (0..3u32).rev() {
            let vpn = (va >> (12 + 9 * level)) & 0x1ff;
            let mut raw = [0u8; 8];
            if !self.ram.read(table + vpn * 8, &mut raw) {
                return va;
            }
            let pte = u64::from_le_bytes(raw);
            if pte & PTE_V == 0 {
                return va;
            }
            let mut ppn = (pte >> 10) & PTE_PPN;
            if pte & PTE_LEAF == 0 {
                table = ppn << 12;
                continue;
            }
            if pte & PTE_NAPOT != 0 {
                // Svnapot 64 KiB: the low PPN bits come from the address.
                ppn = (ppn & !0xf) | ((va >> 12) & 0xf);
            }
            let low = (1u64 << (12 + 9 * level)) - 1;
            return ((ppn << 12) & !low) | (va & low);
        }
        va
    }

    /// Reads guest memory at virtual `addr` (see [`Hart::debug_translate`]),
    /// a page at a time; returns how many bytes were read from RAM.
    pub fn debug_read_memory(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        self.debug_access(addr, buf.len(), |hart, pa, range| {
            hart.ram.read(pa, &mut buf[range])
        })
    }

    /// Writes guest memory at virtual `addr`; decoded code in the pages
    /// written is dropped. Returns how many bytes were written to RAM.
    pub fn debug_write_memory(&mut self, addr: u64, data: &[u8]) -> usize {
        self.debug_access(addr, data.len(), |hart, pa, range| {
            let ok = hart.ram.write(pa, &data[range]);
            if ok {
                hart.code_written(pa);
            }
            ok
        })
    }

    /// Splits `[addr, addr + len)` at page boundaries and runs `access` on
    /// each piece's physical address and range in the caller's buffer.
    fn debug_access(
        &mut self,
        addr: u64,
        len: usize,
        mut access: impl FnMut(&mut Self, u64, std::ops::Range<usize>) -> bool,
    ) -> usize {
        let mut done = 0;
        while done < len {
            let va = addr.wrapping_add(done as u64);
            let piece = (0x1000 - (va & 0xfff) as usize).min(len - done);
            let pa = self.debug_translate(va);
            if !access(self, pa, done..done + piece) {
                break;
            }
            done += piece;
        }
        done
    }
}
