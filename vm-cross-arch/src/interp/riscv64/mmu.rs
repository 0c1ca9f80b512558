//! Address translation: Sv39 page-table walks with A/D updates, permission
//! checks (U/S, SUM, MXR) and a software TLB of host addresses, split by
//! translation context (U, S, S with SUM, M/bare) and access type so a hit
//! needs no permission check.
//!
//! Only RAM pages enter the TLB; MMIO always takes the slow path. Write
//! entries are never made for pages holding decoded code, so every store to
//! such a page reaches [`Hart::store_slow`], which drops the decoded page.

use super::csr::mstatus;
use super::hart::{Hart, MODE_M, MODE_S, MODE_U};
use super::memory::HostPtr;
use super::trap::{
    Exc, CAUSE_FETCH_ACCESS, CAUSE_FETCH_PAGE, CAUSE_LOAD_ACCESS, CAUSE_LOAD_PAGE,
    CAUSE_STORE_ACCESS, CAUSE_STORE_PAGE,
};

/// Access types (TLB set index within a context).
pub const READ: usize = 0;
/// A store or AMO.
pub const WRITE: usize = 1;
/// An instruction fetch.
pub const EXEC: usize = 2;

/// Entries per TLB set (a power of two).
pub const TLB_SIZE: usize = 256;
const CONTEXTS: usize = 4;

/// One cached translation: `host = addend + va` for the page `tag`.
/// `repr(C)`: translated code reads `tag` at offset 0 and `addend` at 8.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct TlbEntry {
    /// Virtual page number, or `u64::MAX` when empty.
    pub tag: u64,
    /// Host address of the page minus its virtual address.
    pub addend: u64,
    /// Guest physical page number.
    pub ppn: u64,
}

const EMPTY: TlbEntry = TlbEntry {
    tag: u64::MAX,
    addend: 0,
    ppn: 0,
};

/// The software TLB of one hart.
#[derive(Debug, Clone)]
pub struct Tlb {
    sets: Box<[[TlbEntry; TLB_SIZE]]>,
    /// Bumped whenever translations that code may have been fetched
    /// through are dropped (so the translator's jump cache can tell an
    /// entry made under older translations).
    version: u64,
    /// Virtual pages (by their low 12 bits) given a fetch translation since
    /// the last full flush: a page-sized flush of any other page cannot
    /// affect code, and leaves `version` alone.
    fetched: [u64; FETCHED_WORDS],
}

/// Words of [`Tlb::fetched`]' bitmap (64 pages each).
const FETCHED_WORDS: usize = 64;

impl Default for Tlb {
    fn default() -> Self {
        Self {
            sets: vec![[EMPTY; TLB_SIZE]; CONTEXTS * 3].into_boxed_slice(),
            version: 0,
            fetched: [0; FETCHED_WORDS],
        }
    }
}

impl Tlb {
    /// The first entry of the set of (`ctx`, `acc`): translated code looks
    /// up entry `vpn % TLB_SIZE` there itself.
    #[allow(dead_code, reason = "read by the translator only (feature `jit`)")]
    pub fn set_base(&self, ctx: usize, acc: usize) -> *const TlbEntry {
        self.sets[ctx * 3 + acc].as_ptr()
    }

    /// The entry a lookup of `vpn` in (`ctx`, `acc`) would hit.
    #[inline(always)]
    pub fn entry(&self, ctx: usize, acc: usize, vpn: u64) -> &TlbEntry {
        &self.sets[ctx * 3 + acc][(vpn as usize) & (TLB_SIZE - 1)]
    }

    fn set(&mut self, ctx: usize, acc: usize, e: TlbEntry) {
        if acc == EXEC {
            let (word, bit) = Self::fetched_bit(e.tag);
            self.fetched[word] |= bit;
        }
        self.sets[ctx * 3 + acc][(e.tag as usize) & (TLB_SIZE - 1)] = e;
    }

    /// Where virtual page `vpn` is in [`Tlb::fetched`].
    fn fetched_bit(vpn: u64) -> (usize, u64) {
        let i = vpn as usize % (FETCHED_WORDS * 64);
        (i / 64, 1 << (i % 64))
    }

    /// Changes whenever translations code may have been fetched through
    /// are dropped.
    #[inline]
    #[allow(dead_code, reason = "read by the translator only (feature `jit`)")]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Drops every translation.
    pub fn flush(&mut self) {
        self.version += 1;
        self.fetched = [0; FETCHED_WORDS];
        for set in &mut self.sets {
            set.fill(EMPTY);
        }
    }

    /// Drops the translations of virtual page `vpn`.
    pub fn flush_page(&mut self, vpn: u64) {
        let (word, bit) = Self::fetched_bit(vpn);
        if self.fetched[word] & bit != 0 {
            self.version += 1;
        }
        for set in &mut self.sets {
            let e = &mut set[(vpn as usize) & (TLB_SIZE - 1)];
            if e.tag == vpn {
                *e = EMPTY;
            }
        }
    }

    /// Drops the write translations of guest physical page `ppn` (it now holds code).
    pub fn flush_writes_to(&mut self, ppn: u64) {
        for ctx in 0..CONTEXTS {
            for e in &mut self.sets[ctx * 3 + WRITE] {
                if e.ppn == ppn {
                    *e = EMPTY;
                }
            }
        }
    }
}

fn access_fault(acc: usize) -> u64 {
    match acc {
        READ => CAUSE_LOAD_ACCESS,
        WRITE => CAUSE_STORE_ACCESS,
        _ => CAUSE_FETCH_ACCESS,
    }
}

fn page_fault(acc: usize) -> u64 {
    match acc {
        READ => CAUSE_LOAD_PAGE,
        WRITE => CAUSE_STORE_PAGE,
        _ => CAUSE_FETCH_PAGE,
    }
}

const PTE_V: u64 = 1;
const PTE_R: u64 = 2;
const PTE_W: u64 = 4;
const PTE_X: u64 = 8;
const PTE_U: u64 = 16;
const PTE_A: u64 = 64;
const PTE_D: u64 = 128;
/// Svpbmt memory type (bits 62:61): the emulated memory is coherent, so the
/// type changes nothing but must be legal.
const PTE_PBMT: u64 = 3 << 61;
/// Bits 60:54 (reserved).
const PTE_RESERVED: u64 = 0x7f << 54;
/// Svnapot: a level-0 leaf of a naturally aligned 64 KiB range.
const PTE_N: u64 = 1 << 63;

impl Hart {
    /// The TLB context of an access in `mode` (data accesses add `SUM`).
    pub(super) fn tlb_context(&self, mode: u8, acc: usize) -> usize {
        match mode {
            MODE_M => 3,
            MODE_S if acc != EXEC && self.csr.mstatus & mstatus::SUM != 0 => 2,
            MODE_S => 1,
            _ => 0,
        }
    }

    /// Whether a PTE's non-zero PBMT field is legal: Svpbmt enabled by
    /// `menvcfg.PBMTE` and not the reserved value 3.
    fn pbmt_ok(&self, pte: u64) -> bool {
        self.csr.menvcfg & super::csr::envcfg::PBMTE != 0 && pte & PTE_PBMT != PTE_PBMT
    }

    /// Translates `va` for an access of type `acc` in `mode` to a guest physical address.
    pub(super) fn translate(&mut self, va: u64, acc: usize, mode: u8) -> Result<u64, Exc> {
        if mode == MODE_M || self.csr.satp >> 60 == 0 {
            return Ok(va);
        }
        // Sv39: bits 63..39 must equal bit 38.
        if ((va as i64) << 25 >> 25) as u64 != va {
            return Err(Exc::trap(page_fault(acc), va));
        }
        let mut table = (self.csr.satp & ((1 << 44) - 1)) << 12;
        for level in (0..3u32).rev() {
            let vpn = (va >> (12 + 9 * level)) & 0x1ff;
            let pte_addr = table + vpn * 8;
            let Some(host) = self.ram.host(pte_addr, 8) else {
                return Err(Exc::trap(access_fault(acc), va));
            };
            let pte = host.load(3);
            if pte & PTE_V == 0
                || (pte & PTE_R == 0 && pte & PTE_W != 0)
                || pte & PTE_RESERVED != 0
                || (pte & PTE_PBMT != 0 && !self.pbmt_ok(pte))
            {
                return Err(Exc::trap(page_fault(acc), va));
            }
            let mut ppn = (pte >> 10) & ((1 << 44) - 1);
            if pte & (PTE_R | PTE_X) == 0 {
                // Svpbmt/Svnapot: PBMT and N are reserved in non-leaf PTEs.
                if level == 0 || pte & (PTE_PBMT | PTE_N) != 0 {
                    return Err(Exc::trap(page_fault(acc), va));
                }
                table = ppn << 12;
                continue;
            }
            if pte & PTE_N != 0 {
                // Only the 64 KiB size (ppn[3:0] = 1000) exists, at level 0.
                if level != 0 || ppn & 0xf != 0x8 {
                    return Err(Exc::trap(page_fault(acc), va));
                }
                ppn = (ppn & !0xf) | ((va >> 12) & 0xf);
            }
            // A leaf: permissions.
            let allowed = match acc {
                EXEC => pte & PTE_X != 0,
                WRITE => pte & PTE_W != 0,
                _ => pte & PTE_R != 0 || (self.csr.mstatus & mstatus::MXR != 0 && pte & PTE_X != 0),
            };
            let user_ok = match mode {
                MODE_U => pte & PTE_U != 0,
                _ => pte & PTE_U == 0 || (acc != EXEC && self.csr.mstatus & mstatus::SUM != 0),
            };
            if !allowed || !user_ok {
                return Err(Exc::trap(page_fault(acc), va));
            }
            let low_mask = (1u64 << (9 * level)) - 1;
            if ppn & low_mask != 0 {
                return Err(Exc::trap(page_fault(acc), va)); // misaligned superpage
            }
            let want = PTE_A | if acc == WRITE { PTE_D } else { 0 };
            if pte & want != want {
                // Hardware A/D update, atomically against other harts.
                if !pte_addr.is_multiple_of(8) {
                    return Err(Exc::trap(access_fault(acc), va));
                }
                let updated = host.with_atomic64(|a| {
                    a.compare_exchange(
                        pte,
                        pte | want,
                        std::sync::atomic::Ordering::AcqRel,
                        std::sync::atomic::Ordering::Acquire,
                    )
                    .is_ok()
                });
                if !updated {
                    // Another hart changed the PTE: walk again.
                    return self.translate(va, acc, mode);
                }
            }
            let page = (ppn | ((va >> 12) & low_mask)) << 12;
            return Ok(page | (va & 0xfff));
        }
        Err(Exc::trap(page_fault(acc), va))
    }

    /// Translates and, for RAM, caches the page; returns the physical address.
    pub(super) fn translate_fill(
        &mut self,
        va: u64,
        acc: usize,
        mode: u8,
    ) -> Result<(u64, Option<HostPtr>), Exc> {
        let pa = self.translate(va, acc, mode)?;
        let host = self.ram.host(pa, 1);
        if let Some(h) = host {
            let page_pa = pa & !0xfff;
            let fill = self.ram.host(page_pa, 0x1000).is_some()
                && !(acc == WRITE
                    && (self.icache.is_code_page(page_pa)
                        || self.tohost.is_some_and(|t| t & !0xfff == page_pa)));
            if fill {
                let ctx = self.tlb_context(mode, acc);
                let page_host = h.addr() - (pa & 0xfff);
                self.tlb.set(
                    ctx,
                    acc,
                    TlbEntry {
                        tag: va >> 12,
                        addend: page_host.wrapping_sub(va & !0xfff),
                        ppn: pa >> 12,
                    },
                );
            }
        }
        Ok((pa, host))
    }

    /// Loads `1 << size` bytes at virtual `va`, zero-extended.
    #[inline(always)]
    pub(super) fn load(&mut self, va: u64, size: u8) -> Result<u64, Exc> {
        let vpn = va >> 12;
        let e = self.tlb.entry(self.dctx, READ, vpn);
        if e.tag == vpn && (va & 0xfff) + (1 << size) <= 0x1000 {
            return Ok(HostPtr::from_addr(e.addend.wrapping_add(va)).load(size));
        }
        self.load_slow(va, size)
    }

    #[inline(never)]
    fn load_slow(&mut self, va: u64, size: u8) -> Result<u64, Exc> {
        let len = 1u64 << size;
        if (va & 0xfff) + len > 0x1000 {
            // Crosses a page: byte by byte, each translated.
            let mut v = 0;
            for i in 0..len {
                v |= self.load(va.wrapping_add(i), 0)? << (8 * i);
            }
            return Ok(v);
        }
        let mode = self.data_mode();
        let (pa, host) = self.translate_fill(va, READ, mode)?;
        match host {
            Some(h) if self.ram.host(pa, len).is_some() => Ok(h.load(size)),
            _ => self.mmio_load(pa, size, va),
        }
    }

    /// Stores the low `1 << size` bytes of `value` at virtual `va`.
    #[inline(always)]
    pub(super) fn store(&mut self, va: u64, size: u8, value: u64) -> Result<(), Exc> {
        let vpn = va >> 12;
        let e = self.tlb.entry(self.dctx, WRITE, vpn);
        if e.tag == vpn && (va & 0xfff) + (1 << size) <= 0x1000 {
            HostPtr::from_addr(e.addend.wrapping_add(va)).store(size, value);
            return Ok(());
        }
        self.store_slow(va, size, value)
    }

    #[inline(never)]
    pub(super) fn store_slow(&mut self, va: u64, size: u8, value: u64) -> Result<(), Exc> {
        let len = 1u64 << size;
        if (va & 0xfff) + len > 0x1000 {
            // Translate both pages first so a fault leaves memory untouched.
            let mode = self.data_mode();
            self.translate(va, WRITE, mode)?;
            self.translate((va | 0xfff) + 1, WRITE, mode)?;
            for i in 0..len {
                self.store(va.wrapping_add(i), 0, value >> (8 * i))?;
            }
            return Ok(());
        }
        let mode = self.data_mode();
        let (pa, host) = self.translate_fill(va, WRITE, mode)?;
        match host {
            Some(h) if self.ram.host(pa, len).is_some() => {
                if self.icache.is_code_page(pa & !0xfff) {
                    self.code_written(pa);
                }
                h.store(size, value);
                if self.tohost == Some(pa) && value != 0 {
                    self.exit = Some(super::hart::HartExit::ToHost(value));
                    self.pc = self.pc.wrapping_add(u64::from(self.cur_len));
                    self.instret += 1;
                    return Err(Exc::Exit);
                }
                Ok(())
            }
            _ => self.mmio_store(pa, size, value, va),
        }
    }

    /// Translates a data access for an AMO or SC: the RAM host address.
    pub(super) fn amo_address(&mut self, va: u64, size: u8) -> Result<HostPtr, Exc> {
        if va & ((1 << size) - 1) != 0 {
            return Err(Exc::trap(super::trap::CAUSE_MISALIGNED_STORE, va));
        }
        self.atomic_host(va, size, WRITE)
    }

    /// The RAM host address of a naturally aligned atomic access (`acc` is
    /// `READ` for LR, `WRITE` for SC and AMOs), through the TLB. A write to a
    /// page of decoded code drops that page.
    #[inline]
    pub(super) fn atomic_host(&mut self, va: u64, size: u8, acc: usize) -> Result<HostPtr, Exc> {
        let vpn = va >> 12;
        let e = self.tlb.entry(self.dctx, acc, vpn);
        if e.tag == vpn {
            // Write entries never map code pages (see the module docs).
            return Ok(HostPtr::from_addr(e.addend.wrapping_add(va)));
        }
        let mode = self.data_mode();
        let (pa, _) = self.translate_fill(va, acc, mode)?;
        match self.ram.host(pa, 1 << size) {
            Some(h) => {
                if acc == WRITE && self.icache.is_code_page(pa & !0xfff) {
                    self.code_written(pa);
                }
                Ok(h)
            }
            None => Err(Exc::trap(access_fault(acc), va)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlb_flushes() {
        let mut tlb = Tlb::default();
        tlb.set(
            1,
            READ,
            TlbEntry {
                tag: 5,
                addend: 1,
                ppn: 9,
            },
        );
        tlb.set(
            1,
            WRITE,
            TlbEntry {
                tag: 6,
                addend: 1,
                ppn: 9,
            },
        );
        assert_eq!(tlb.entry(1, READ, 5).tag, 5);
        tlb.flush_writes_to(9);
        assert_eq!(tlb.entry(1, WRITE, 6).tag, u64::MAX);
        tlb.flush_page(5);
        assert_eq!(tlb.entry(1, READ, 5).tag, u64::MAX);
        let _ = MODE_U;
    }

    #[test]
    fn the_version_changes_when_a_fetch_translation_may_go() {
        let mut tlb = Tlb::default();
        let entry = |tag| TlbEntry {
            tag,
            addend: 0,
            ppn: tag,
        };
        tlb.set(1, READ, entry(5));
        tlb.set(1, EXEC, entry(7));
        let v = tlb.version();
        tlb.flush_page(5);
        assert_eq!(tlb.version(), v, "no code was fetched through page 5");
        tlb.flush_page(7);
        assert_ne!(
            tlb.version(),
            v,
            "code may have been fetched through page 7"
        );
        let v = tlb.version();
        tlb.flush();
        assert_ne!(tlb.version(), v);
        let v = tlb.version();
        tlb.flush_page(7);
        assert_eq!(tlb.version(), v, "a full flush forgot page 7");
    }
}
