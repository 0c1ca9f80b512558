//! The pre-decoded instruction cache: one array of [`Op`]s per 4 KiB guest
//! physical page of primary RAM, filled lazily as instructions are first
//! executed, decoded from a snapshot of the page's bytes taken when the page
//! entered the cache.
//!
//! A store by this hart to a cached page drops that page at once (see
//! [`super::mmu`]). `fence.i` must also make stores by other harts and by
//! devices visible; it does not drop anything but starts a new epoch: the
//! first time a page is entered in a new epoch the lines of its snapshot
//! that instructions were decoded from are compared with RAM, and only a
//! page where one of them changed is decoded again. Linux patches kernel
//! text (ftrace, jump labels, module loading) with one `fence.i` per
//! patched site, over 100,000 in a Debian boot, so dropping every page
//! there would re-decode the whole hot kernel over and over, and comparing
//! whole pages cost more than the few lines of each that run.
//!
//! The snapshot is taken a 64-byte line at a time, when an instruction is
//! first decoded from the line: lines nothing was decoded from are not
//! compared, and are taken afresh from RAM after a fence before they are
//! decoded from.

use super::decode::Op;
use super::memory::HostPtr;

/// Ops per page (2-byte granularity for compressed instructions).
pub const OPS_PER_PAGE: usize = 2048;
/// Bytes per page.
const PAGE: usize = 0x1000;
/// Bytes per line of a page's snapshot (64 lines: one bit each in a `u64`).
const LINE: usize = PAGE / 64;
/// Decoded pages kept before everything is dropped (bounds host memory:
/// 36 KiB per page).
const MAX_PAGES: usize = 4096;
const NONE: u32 = u32::MAX;

/// One decoded page.
#[derive(Debug)]
struct Page {
    ops: Box<[Op]>,
    /// The bytes the ops were decoded from, as 64-bit words.
    bytes: Box<[u64]>,
    /// Host address of the page in RAM.
    host: u64,
    /// Lines of `bytes` (64 bytes each, one bit per line) ops were decoded
    /// from: compared with RAM after a fence.
    used: u64,
    /// Lines of `bytes` that may differ from RAM (taken from RAM before
    /// anything is decoded from them).
    stale: u64,
    /// Index of the guest page it holds, or `NONE` when free.
    owner: u32,
}

/// Whether a slot's decoded ops are current, kept apart from the pages so
/// translated code can read it (`repr(C)`, 16 bytes per slot).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Stamp {
    /// Epoch in which the page's bytes were last known to equal RAM: the
    /// ops are current in this epoch only if it is the cache's epoch.
    pub checked: u64,
    /// Bumped whenever the ops are emptied or the slot changes hands, so
    /// code derived from them (the translator's blocks) can tell it is stale.
    pub generation: u32,
}

/// Decoded pages of one hart.
#[derive(Debug, Default)]
pub struct ICache {
    base: u64,
    slot_of: Vec<u32>,
    slots: Vec<Page>,
    /// One per slot.
    stamps: Vec<Stamp>,
    free: Vec<u32>,
    epoch: u64,
}

impl ICache {
    /// A cache covering `size` bytes of RAM from guest physical `base`.
    pub fn new(base: u64, size: u64) -> Self {
        Self {
            base,
            slot_of: vec![NONE; (size / 0x1000) as usize],
            ..Self::default()
        }
    }

    fn page_index(&self, page_pa: u64) -> Option<usize> {
        let idx = page_pa.wrapping_sub(self.base) >> 12;
        usize::try_from(idx)
            .ok()
            .filter(|i| *i < self.slot_of.len())
    }

    /// Whether the page at `page_pa` holds decoded instructions.
    #[inline]
    pub fn is_code_page(&self, page_pa: u64) -> bool {
        self.page_index(page_pa)
            .is_some_and(|i| self.slot_of[i] != NONE)
    }

    /// The slot for the page at `page_pa`, whose bytes are at `host`,
    /// creating it; `None` outside the cached RAM. The flag says whether the
    /// page is new. A page entered for the first time since a
    /// [`fence`](Self::fence) is checked against RAM and emptied if its
    /// bytes changed.
    pub fn slot_for(&mut self, page_pa: u64, host: HostPtr) -> Option<(u32, bool)> {
        let idx = self.page_index(page_pa)?;
        let slot = self.slot_of[idx];
        if slot != NONE {
            let stamp = &mut self.stamps[slot as usize];
            if stamp.checked != self.epoch {
                let page = &mut self.slots[slot as usize];
                if !same_lines(&page.bytes, host, page.used) {
                    page.ops.fill(Op::UNDECODED);
                    stamp.generation = stamp.generation.wrapping_add(1);
                    page.used = 0;
                }
                // Lines nothing was decoded from may have changed unseen.
                page.stale = !page.used;
                stamp.checked = self.epoch;
            }
            return Some((slot, false));
        }
        if self.pages() >= MAX_PAGES {
            self.flush();
        }
        let slot = if let Some(s) = self.free.pop() {
            self.slots[s as usize].ops.fill(Op::UNDECODED);
            s
        } else {
            self.slots.push(Page {
                ops: vec![Op::UNDECODED; OPS_PER_PAGE].into_boxed_slice(),
                bytes: vec![0; PAGE / 8].into_boxed_slice(),
                host: 0,
                used: 0,
                stale: 0,
                owner: NONE,
            });
            self.stamps.push(Stamp::default());
            (self.slots.len() - 1) as u32
        };
        let page = &mut self.slots[slot as usize];
        page.host = host.addr();
        page.used = 0;
        page.stale = !0;
        page.owner = idx as u32;
        self.stamps[slot as usize].checked = self.epoch;
        self.slot_of[idx] = slot;
        Some((slot, true))
    }

    /// The op at `offset` (byte offset in the page) of `slot`.
    #[inline(always)]
    pub fn get(&self, slot: u32, offset: u64) -> Op {
        self.slots[slot as usize].ops[(offset as usize >> 1) & (OPS_PER_PAGE - 1)]
    }

    /// The generation of `slot`: it changes whenever the slot's ops are
    /// emptied or it is given to another page.
    #[inline]
    #[allow(dead_code, reason = "read by the translator only (feature `jit`)")]
    pub fn generation(&self, slot: u32) -> u32 {
        self.stamps[slot as usize].generation
    }

    /// Every slot's [`Stamp`], by slot; valid until the next
    /// [`slot_for`](Self::slot_for) (which may add slots).
    #[inline]
    #[allow(dead_code, reason = "read by the translator only (feature `jit`)")]
    pub fn stamps(&self) -> *const Stamp {
        self.stamps.as_ptr()
    }

    /// The current epoch: a slot's ops are current if its stamp was
    /// checked in it and its generation is the one they were taken from.
    #[inline]
    #[allow(dead_code, reason = "read by the translator only (feature `jit`)")]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Stores a decoded op.
    #[inline]
    pub fn put(&mut self, slot: u32, offset: u64, op: Op) {
        self.slots[slot as usize].ops[(offset as usize >> 1) & (OPS_PER_PAGE - 1)] = op;
    }

    /// The 16-bit parcel at even `offset` of the snapshot of `slot`, for
    /// decoding (its line is compared with RAM after the next fence).
    #[inline]
    pub fn parcel(&mut self, slot: u32, offset: u64) -> u16 {
        let off = (offset as usize) & (PAGE - 2);
        let page = &mut self.slots[slot as usize];
        let line = off / LINE;
        let bit = 1u64 << line;
        if page.stale & bit != 0 {
            let host = HostPtr::from_addr(page.host);
            let words = line * LINE / 8..(line + 1) * LINE / 8;
            for (i, w) in page.bytes[words.clone()].iter_mut().zip(words) {
                *i = host.word(w);
            }
            page.stale &= !bit;
        }
        page.used |= bit;
        (page.bytes[off / 8] >> (8 * (off % 8))) as u16
    }

    /// Drops the page at `page_pa`; returns its slot if it had one.
    pub fn invalidate_page(&mut self, page_pa: u64) -> Option<u32> {
        let idx = self.page_index(page_pa)?;
        let slot = self.slot_of[idx];
        if slot == NONE {
            return None;
        }
        self.slot_of[idx] = NONE;
        self.slots[slot as usize].owner = NONE;
        let stamp = &mut self.stamps[slot as usize];
        stamp.generation = stamp.generation.wrapping_add(1);
        self.free.push(slot);
        Some(slot)
    }

    /// `fence.i`: pages are checked against RAM before their next use.
    pub fn fence(&mut self) {
        self.epoch += 1;
    }

    /// Drops every page.
    pub fn flush(&mut self) {
        for (slot, page) in self.slots.iter_mut().enumerate() {
            if page.owner != NONE {
                self.slot_of[page.owner as usize] = NONE;
                page.owner = NONE;
                let stamp = &mut self.stamps[slot];
                stamp.generation = stamp.generation.wrapping_add(1);
                self.free.push(slot as u32);
            }
        }
    }

    /// Number of decoded pages.
    pub fn pages(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Whether the page at `host` still holds `bytes` in the `lines` (one bit
/// per 64-byte line). Compares a line's eight words with one branch.
fn same_lines(bytes: &[u64], host: HostPtr, mut lines: u64) -> bool {
    while lines != 0 {
        let line = lines.trailing_zeros() as usize;
        lines &= lines - 1;
        let words = &bytes[line * 8..line * 8 + 8];
        let diff = words
            .iter()
            .enumerate()
            .fold(0, |d, (i, w)| d | (host.word(line * 8 + i) ^ w));
        if diff != 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::riscv64::decode::decode32;
    use crate::interp::riscv64::memory::{Ram, RamRegion};
    use std::sync::Arc;
    use vm_memory::{GuestAddress, GuestRegionMmap};

    const BASE: u64 = 0x8000_0000;

    fn ram(size: u64) -> Ram {
        let region = GuestRegionMmap::from_range(GuestAddress(BASE), size as usize, None).unwrap();
        Ram::new(vec![RamRegion::new(Arc::new(region))])
    }

    fn page(ram: &Ram, pa: u64) -> HostPtr {
        ram.host(pa, 0x1000).unwrap()
    }

    #[test]
    fn pages_fill_invalidate_and_reuse() {
        let ram = ram(0x10_0000);
        let mut c = ICache::new(BASE, 0x10_0000);
        assert!(c.slot_for(0x7000_0000, page(&ram, BASE)).is_none());
        let (slot, new) = c
            .slot_for(BASE + 0x1000, page(&ram, BASE + 0x1000))
            .unwrap();
        assert!(new && c.is_code_page(BASE + 0x1000));
        c.put(slot, 0x10, decode32(0x0000_0013));
        assert_ne!(c.get(slot, 0x10), Op::UNDECODED);
        assert_eq!(
            c.slot_for(BASE + 0x1000, page(&ram, BASE + 0x1000)),
            Some((slot, false))
        );
        assert_eq!(c.invalidate_page(BASE + 0x1000), Some(slot));
        assert_eq!(c.invalidate_page(BASE + 0x1000), None);
        assert!(!c.is_code_page(BASE + 0x1000));
        let (again, new) = c
            .slot_for(BASE + 0x2000, page(&ram, BASE + 0x2000))
            .unwrap();
        assert!(new);
        assert_eq!(again, slot, "slot reused");
        assert_eq!(c.get(again, 0x10), Op::UNDECODED, "reused slot is cleared");
        c.flush();
        assert_eq!(c.pages(), 0);
        assert!(!c.is_code_page(BASE + 0x2000));
    }

    #[test]
    fn a_fence_keeps_unchanged_pages_and_empties_changed_ones() {
        let ram = ram(0x10_0000);
        let (a, b) = (BASE + 0x3000, BASE + 0x4000);
        page(&ram, a).store(2, 0x0010_0513); // li a0, 1
        page(&ram, b).store(2, 0x0010_0513);
        let mut c = ICache::new(BASE, 0x10_0000);
        let (sa, _) = c.slot_for(a, page(&ram, a)).unwrap();
        let (sb, _) = c.slot_for(b, page(&ram, b)).unwrap();
        assert_eq!(c.parcel(sa, 0), 0x0513);
        assert_eq!(c.parcel(sa, 2), 0x0010);
        assert_eq!(c.parcel(sb, 0), 0x0513);
        let li1 = decode32(0x0010_0513);
        c.put(sa, 0, li1);
        c.put(sb, 0, li1);

        // Another hart (or a device) rewrites page b: invisible until a fence.
        page(&ram, b).store(2, 0x0020_0513); // li a0, 2
        assert_eq!(c.slot_for(b, page(&ram, b)), Some((sb, false)));
        assert_eq!(
            c.get(sb, 0),
            li1,
            "no fence yet: the old decoding may still run"
        );
        assert_eq!(c.parcel(sb, 0), 0x0513);

        c.fence();
        assert_eq!(c.slot_for(a, page(&ram, a)), Some((sa, false)));
        assert_eq!(c.get(sa, 0), li1, "unchanged page keeps its decoded ops");
        assert_eq!(c.slot_for(b, page(&ram, b)), Some((sb, false)));
        assert_eq!(c.get(sb, 0), Op::UNDECODED, "changed page is decoded again");
        assert_eq!(c.parcel(sb, 2), 0x0020, "from a fresh snapshot");
        assert_eq!(c.pages(), 2);
    }

    #[test]
    fn a_fence_compares_only_lines_decoded_from() {
        let ram = ram(0x10_0000);
        let a = BASE + 0x5000;
        page(&ram, a).store(2, 0x0010_0513); // li a0, 1 at line 0
        page(&ram, a + 0x100).store(2, 0x0010_0513); // and at line 4
        let mut c = ICache::new(BASE, 0x10_0000);
        let (s, _) = c.slot_for(a, page(&ram, a)).unwrap();
        assert_eq!(c.parcel(s, 0), 0x0513);
        let li1 = decode32(0x0010_0513);
        c.put(s, 0, li1);

        // Line 4 changes before anything was decoded from it: the fence
        // keeps the page, and decoding there reads the new bytes.
        page(&ram, a + 0x100).store(2, 0x0020_0513);
        c.fence();
        assert_eq!(c.slot_for(a, page(&ram, a)), Some((s, false)));
        assert_eq!(c.get(s, 0), li1, "line 0 did not change");
        assert_eq!(c.parcel(s, 0x102), 0x0020);

        // Now line 4 is decoded from: changing it empties the page at the
        // next fence, and not before.
        c.put(s, 0x100, decode32(0x0020_0513));
        page(&ram, a + 0x100).store(2, 0x0030_0513);
        assert_eq!(c.parcel(s, 0x102), 0x0020, "no fence yet");
        c.fence();
        assert_eq!(c.slot_for(a, page(&ram, a)), Some((s, false)));
        assert_eq!(c.get(s, 0), Op::UNDECODED);
        assert_eq!(c.get(s, 0x100), Op::UNDECODED);
        assert_eq!(c.parcel(s, 0x102), 0x0030);
        // The emptied page takes its other lines from RAM again too.
        assert_eq!(c.parcel(s, 0), 0x0513);
    }

    #[test]
    fn the_number_of_pages_is_bounded() {
        let size = (MAX_PAGES as u64 + 1) * 0x1000;
        let ram = ram(size);
        let mut c = ICache::new(BASE, size);
        for i in 0..MAX_PAGES as u64 {
            let pa = BASE + i * 0x1000;
            c.slot_for(pa, page(&ram, pa)).unwrap();
        }
        assert_eq!(c.pages(), MAX_PAGES);
        let last = BASE + MAX_PAGES as u64 * 0x1000;
        let (_, new) = c.slot_for(last, page(&ram, last)).unwrap();
        assert!(new);
        assert_eq!(c.pages(), 1, "a full cache starts over");
        assert!(!c.is_code_page(BASE) && c.is_code_page(last));
    }
}
