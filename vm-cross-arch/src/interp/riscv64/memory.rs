//! Guest RAM as the interpreter sees it: regions with their host addresses,
//! accessed with atomic operations so harts on several threads (and device
//! threads using `vm-memory`) never race in the Rust sense.
//!
//! This is the raw-memory edge of the engine: every pointer it hands out lies
//! inside a mapping that the region's `Arc` keeps alive.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use vm_memory::{GuestMemoryRegion, GuestRegionMmap};

/// One RAM region mapped into the VM.
#[derive(Debug, Clone)]
pub struct RamRegion {
    /// Guest physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    host: *mut u8,
    _mapping: Arc<GuestRegionMmap>,
}

// SAFETY: `host` points into the mmap owned by `_mapping`, which lives as long
// as this value; all accesses through it are atomic (see `HostPtr`), so sharing
// between threads cannot cause data races.
unsafe impl Send for RamRegion {}
// SAFETY: as above; the region itself is immutable after creation.
unsafe impl Sync for RamRegion {}

impl RamRegion {
    /// Wraps a mapped region.
    pub fn new(region: Arc<GuestRegionMmap>) -> Self {
        let base = region.start_addr().0;
        let size = region.len();
        let host = region.as_ptr();
        Self {
            base,
            size,
            host,
            _mapping: region,
        }
    }

    /// The host address of guest physical `pa` for an access of `len` bytes, if inside.
    #[inline]
    pub fn host(&self, pa: u64, len: u64) -> Option<HostPtr> {
        let off = pa.wrapping_sub(self.base);
        if off < self.size && len <= self.size - off {
            // SAFETY: `off + len <= size`, so the pointer stays inside the mapping.
            Some(HostPtr(unsafe { self.host.add(off as usize) }))
        } else {
            None
        }
    }
}

/// A host address inside guest RAM (see [`RamRegion::host`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPtr(pub *mut u8);

impl HostPtr {
    /// The address as an integer (TLB addends).
    #[inline]
    pub fn addr(self) -> u64 {
        self.0 as u64
    }

    /// Rebuilds a pointer from a TLB addend plus a virtual address.
    #[inline]
    pub fn from_addr(addr: u64) -> Self {
        Self(addr as *mut u8)
    }

    /// Reads `1 << size` bytes (little-endian), zero-extended.
    #[inline]
    pub fn load(self, size: u8) -> u64 {
        let p = self.0;
        let aligned = (p as usize) & ((1 << size) - 1) == 0;
        // SAFETY: the pointer was produced by `RamRegion::host` (or a TLB entry
        // built from it) for an access of `1 << size` bytes inside a live
        // mapping, and is suitably aligned for the atomic type when `aligned`.
        unsafe {
            if aligned {
                match size {
                    0 => u64::from(AtomicU8::from_ptr(p).load(Ordering::Relaxed)),
                    1 => u64::from(u16::from_le(
                        AtomicU16::from_ptr(p.cast()).load(Ordering::Relaxed),
                    )),
                    2 => u64::from(u32::from_le(
                        AtomicU32::from_ptr(p.cast()).load(Ordering::Relaxed),
                    )),
                    _ => u64::from_le(AtomicU64::from_ptr(p.cast()).load(Ordering::Relaxed)),
                }
            } else {
                let mut v = 0u64;
                for i in 0..(1usize << size) {
                    v |= u64::from(AtomicU8::from_ptr(p.add(i)).load(Ordering::Relaxed)) << (8 * i);
                }
                v
            }
        }
    }

    /// Writes the low `1 << size` bytes of `value` (little-endian).
    #[inline]
    pub fn store(self, size: u8, value: u64) {
        let p = self.0;
        let aligned = (p as usize) & ((1 << size) - 1) == 0;
        // SAFETY: as in `load`.
        unsafe {
            if aligned {
                match size {
                    0 => AtomicU8::from_ptr(p).store(value as u8, Ordering::Relaxed),
                    1 => AtomicU16::from_ptr(p.cast())
                        .store((value as u16).to_le(), Ordering::Relaxed),
                    2 => AtomicU32::from_ptr(p.cast())
                        .store((value as u32).to_le(), Ordering::Relaxed),
                    _ => AtomicU64::from_ptr(p.cast()).store(value.to_le(), Ordering::Relaxed),
                }
            } else {
                for i in 0..(1usize << size) {
                    AtomicU8::from_ptr(p.add(i)).store((value >> (8 * i)) as u8, Ordering::Relaxed);
                }
            }
        }
    }

    /// The `i`-th 64-bit word (`i` taken modulo 512) of the page starting
    /// at this address; only for a pointer made for a whole page
    /// (`host(page_pa, 0x1000)` or a TLB entry's page).
    #[inline]
    pub fn word(self, i: usize) -> u64 {
        // Stays inside the 4 KiB page this pointer was made for.
        HostPtr(self.0.wrapping_add((i & 511) * 8)).load(3)
    }

    /// Runs `f` on the 32-bit atomic at this address (callers check 4-byte alignment).
    #[inline]
    pub fn with_atomic32<R>(self, f: impl FnOnce(&AtomicU32) -> R) -> R {
        debug_assert_eq!(self.0 as usize % 4, 0);
        // SAFETY: aligned (checked by the caller) and inside a live mapping;
        // the reference does not escape `f`.
        f(unsafe { AtomicU32::from_ptr(self.0.cast()) })
    }

    /// Runs `f` on the 64-bit atomic at this address (callers check 8-byte alignment).
    #[inline]
    pub fn with_atomic64<R>(self, f: impl FnOnce(&AtomicU64) -> R) -> R {
        debug_assert_eq!(self.0 as usize % 8, 0);
        // SAFETY: as in `with_atomic32`.
        f(unsafe { AtomicU64::from_ptr(self.0.cast()) })
    }
}

/// The RAM of one VM as a hart sees it.
#[derive(Debug, Clone, Default)]
pub struct Ram {
    regions: Vec<RamRegion>,
}

impl Ram {
    /// Guest RAM made of `regions`.
    pub fn new(regions: Vec<RamRegion>) -> Self {
        Self { regions }
    }

    /// The host address of `[pa, pa + len)` if it lies in one region.
    #[inline]
    pub fn host(&self, pa: u64, len: u64) -> Option<HostPtr> {
        self.regions.iter().find_map(|r| r.host(pa, len))
    }

    /// The guest physical address of host address `host`, if it lies in RAM
    /// (the inverse of [`Ram::host`]; snapshots store guest addresses).
    pub fn guest_addr(&self, host: u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = host.wrapping_sub(r.host as u64);
            (off < r.size).then(|| r.base + off)
        })
    }

    /// The first region (the one the instruction cache covers).
    pub fn primary(&self) -> Option<&RamRegion> {
        self.regions.first()
    }

    /// Reads guest physical bytes; `false` if any byte is outside RAM.
    pub fn read(&self, pa: u64, out: &mut [u8]) -> bool {
        for (i, b) in out.iter_mut().enumerate() {
            match self.host(pa.wrapping_add(i as u64), 1) {
                Some(h) => *b = h.load(0) as u8,
                None => return false,
            }
        }
        true
    }

    /// Writes guest physical bytes; `false` if any byte is outside RAM.
    pub fn write(&self, pa: u64, data: &[u8]) -> bool {
        if self.host(pa, data.len() as u64).is_none() {
            return false;
        }
        for (i, b) in data.iter().enumerate() {
            if let Some(h) = self.host(pa + i as u64, 1) {
                h.store(0, u64::from(*b));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    #[test]
    fn loads_and_stores_aligned_and_not() {
        let region =
            Arc::new(GuestRegionMmap::from_range(GuestAddress(0x8000_0000), 0x1000, None).unwrap());
        let ram = Ram::new(vec![RamRegion::new(region)]);
        let p = ram.host(0x8000_0001, 8).unwrap();
        p.store(3, 0x1122_3344_5566_7788);
        assert_eq!(p.load(3), 0x1122_3344_5566_7788);
        assert_eq!(ram.host(0x8000_0001, 1).unwrap().load(0), 0x88);
        assert!(ram.host(0x8000_0ffc, 8).is_none());
        assert!(ram.host(0x7fff_ffff, 1).is_none());
        let mut buf = [0u8; 2];
        assert!(ram.read(0x8000_0001, &mut buf));
        assert_eq!(buf, [0x88, 0x77]);
        assert!(!ram.write(0x8000_0fff, &[1, 2]));
    }
}
