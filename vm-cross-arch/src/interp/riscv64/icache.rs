//! The pre-decoded instruction cache: one array of [`Op`]s per 4 KiB guest
//! physical page of primary RAM, filled lazily as instructions are first
//! executed. Pages are dropped on `fence.i` and when a store hits them.

use super::decode::Op;

/// Ops per page (2-byte granularity for compressed instructions).
pub const OPS_PER_PAGE: usize = 2048;
const NONE: u32 = u32::MAX;

/// Decoded pages of one hart.
#[derive(Debug, Default)]
pub struct ICache {
    base: u64,
    slot_of: Vec<u32>,
    slots: Vec<Box<[Op]>>,
    free: Vec<u32>,
    live: Vec<u32>,
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

    /// The slot for the page at `page_pa`, creating it; `None` outside the
    /// cached RAM. The flag says whether the page is new.
    pub fn slot_for(&mut self, page_pa: u64) -> Option<(u32, bool)> {
        let idx = self.page_index(page_pa)?;
        if self.slot_of[idx] != NONE {
            return Some((self.slot_of[idx], false));
        }
        let slot = if let Some(s) = self.free.pop() {
            self.slots[s as usize].fill(Op::UNDECODED);
            s
        } else {
            self.slots
                .push(vec![Op::UNDECODED; OPS_PER_PAGE].into_boxed_slice());
            (self.slots.len() - 1) as u32
        };
        self.slot_of[idx] = slot;
        self.live.push(idx as u32);
        Some((slot, true))
    }

    /// The op at `offset` (byte offset in the page) of `slot`.
    #[inline(always)]
    pub fn get(&self, slot: u32, offset: u64) -> Op {
        self.slots[slot as usize][(offset as usize >> 1) & (OPS_PER_PAGE - 1)]
    }

    /// Stores a decoded op.
    #[inline]
    pub fn put(&mut self, slot: u32, offset: u64, op: Op) {
        self.slots[slot as usize][(offset as usize >> 1) & (OPS_PER_PAGE - 1)] = op;
    }

    /// Drops the page at `page_pa`; returns its slot if it had one.
    pub fn invalidate_page(&mut self, page_pa: u64) -> Option<u32> {
        let idx = self.page_index(page_pa)?;
        let slot = self.slot_of[idx];
        if slot == NONE {
            return None;
        }
        self.slot_of[idx] = NONE;
        self.free.push(slot);
        if let Some(pos) = self.live.iter().position(|&p| p as usize == idx) {
            self.live.swap_remove(pos);
        }
        Some(slot)
    }

    /// Drops every page (`fence.i`).
    pub fn flush(&mut self) {
        for idx in self.live.drain(..) {
            let slot = self.slot_of[idx as usize];
            self.slot_of[idx as usize] = NONE;
            self.free.push(slot);
        }
    }

    /// Number of decoded pages.
    pub fn pages(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::riscv64::decode::decode32;

    #[test]
    fn pages_fill_invalidate_and_reuse() {
        let mut c = ICache::new(0x8000_0000, 0x10_0000);
        assert!(c.slot_for(0x7000_0000).is_none());
        let (slot, new) = c.slot_for(0x8000_1000).unwrap();
        assert!(new && c.is_code_page(0x8000_1000));
        c.put(slot, 0x10, decode32(0x0000_0013));
        assert_ne!(c.get(slot, 0x10), Op::UNDECODED);
        assert_eq!(c.slot_for(0x8000_1000), Some((slot, false)));
        assert_eq!(c.invalidate_page(0x8000_1000), Some(slot));
        assert!(!c.is_code_page(0x8000_1000));
        let (again, new) = c.slot_for(0x8000_2000).unwrap();
        assert!(new);
        assert_eq!(again, slot, "slot reused");
        assert_eq!(c.get(again, 0x10), Op::UNDECODED, "reused slot is cleared");
        c.flush();
        assert_eq!(c.pages(), 0);
    }
}
