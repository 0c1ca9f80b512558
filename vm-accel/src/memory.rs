//! Book-keeping of the guest memory regions a VM maps, with the checks every
//! backend needs before handing a region to the hypervisor: non-empty,
//! page-aligned (guest base, size and host address), no overlap, a free slot.

use crate::error::AccelError;

/// One guest memory region mapped into a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySlot {
    /// The backend's slot number.
    pub slot: u32,
    /// Guest physical base.
    pub guest_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host virtual address backing it.
    pub host_addr: u64,
}

impl MemorySlot {
    /// Whether `gpa` lies in this region.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.guest_addr && gpa - self.guest_addr < self.size
    }
}

/// The validated set of a VM's memory slots.
#[derive(Debug, Clone)]
pub struct MemorySlots {
    slots: Vec<MemorySlot>,
    max_slots: u32,
    page_size: u64,
}

impl MemorySlots {
    /// An empty table for a backend with `max_slots` slots and `page_size` alignment
    /// (`page_size` must be a power of two; anything else is treated as 4096).
    pub fn new(max_slots: u32, page_size: u64) -> Self {
        let page_size = if page_size.is_power_of_two() {
            page_size
        } else {
            4096
        };
        Self {
            slots: Vec::new(),
            max_slots,
            page_size,
        }
    }

    /// Checks a region against the rules and the regions already mapped.
    pub fn validate(&self, guest_addr: u64, size: u64, host_addr: u64) -> Result<(), AccelError> {
        if size == 0 || guest_addr.checked_add(size).is_none() {
            return Err(AccelError::RegionSize {
                addr: guest_addr,
                size,
            });
        }
        let mask = self.page_size - 1;
        if guest_addr & mask != 0 || size & mask != 0 || host_addr & mask != 0 {
            return Err(AccelError::RegionUnaligned {
                addr: guest_addr,
                size,
                host_addr,
                page_size: self.page_size,
            });
        }
        let end = guest_addr + size;
        if let Some(other) = self
            .slots
            .iter()
            .find(|s| guest_addr < s.guest_addr + s.size && s.guest_addr < end)
        {
            return Err(AccelError::RegionOverlap {
                addr: guest_addr,
                size,
                other: other.guest_addr,
                other_size: other.size,
            });
        }
        Ok(())
    }

    /// Validates a region and records it in the lowest free slot.
    pub fn insert(
        &mut self,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
    ) -> Result<MemorySlot, AccelError> {
        self.validate(guest_addr, size, host_addr)?;
        let slot = (0..self.max_slots)
            .find(|n| self.slots.iter().all(|s| s.slot != *n))
            .ok_or(AccelError::NoFreeSlot {
                addr: guest_addr,
                max: self.max_slots,
            })?;
        let entry = MemorySlot {
            slot,
            guest_addr,
            size,
            host_addr,
        };
        self.slots.push(entry);
        Ok(entry)
    }

    /// Forgets the region that starts at `guest_addr`.
    pub fn remove(&mut self, guest_addr: u64) -> Result<MemorySlot, AccelError> {
        let index = self
            .slots
            .iter()
            .position(|s| s.guest_addr == guest_addr)
            .ok_or(AccelError::RegionNotMapped { addr: guest_addr })?;
        Ok(self.slots.swap_remove(index))
    }

    /// The region holding `gpa`.
    pub fn find(&self, gpa: u64) -> Option<&MemorySlot> {
        self.slots.iter().find(|s| s.contains(gpa))
    }

    /// All mapped regions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &MemorySlot> {
        self.slots.iter()
    }

    /// The alignment regions must have.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_overlap_naming_both_regions() {
        let mut slots = MemorySlots::new(4, 4096);
        slots.insert(0x1000, 0x4000, 0x7000_0000).unwrap();
        let err = slots.insert(0x4000, 0x2000, 0x7100_0000).unwrap_err();
        assert!(
            matches!(
                err,
                AccelError::RegionOverlap {
                    addr: 0x4000,
                    other: 0x1000,
                    ..
                }
            ),
            "{err}"
        );
        // Adjacent is fine.
        slots.insert(0x5000, 0x1000, 0x7200_0000).unwrap();
    }

    #[test]
    fn rejects_unaligned_empty_and_overflowing_regions() {
        let mut slots = MemorySlots::new(4, 4096);
        assert!(matches!(
            slots.insert(0x1001, 0x1000, 0),
            Err(AccelError::RegionUnaligned { addr: 0x1001, .. })
        ));
        assert!(matches!(
            slots.insert(0x1000, 0x800, 0),
            Err(AccelError::RegionUnaligned { .. })
        ));
        assert!(matches!(
            slots.insert(0x1000, 0x1000, 0x10),
            Err(AccelError::RegionUnaligned {
                host_addr: 0x10,
                ..
            })
        ));
        assert!(matches!(
            slots.insert(0x1000, 0, 0),
            Err(AccelError::RegionSize { .. })
        ));
        assert!(matches!(
            slots.insert(u64::MAX - 0xfff, 0x2000, 0),
            Err(AccelError::RegionSize { .. })
        ));
    }

    #[test]
    fn reuses_freed_slots_and_runs_out() {
        let mut slots = MemorySlots::new(2, 4096);
        assert_eq!(slots.insert(0, 0x1000, 0).unwrap().slot, 0);
        assert_eq!(slots.insert(0x1000, 0x1000, 0).unwrap().slot, 1);
        assert!(matches!(
            slots.insert(0x2000, 0x1000, 0),
            Err(AccelError::NoFreeSlot { max: 2, .. })
        ));
        assert_eq!(slots.remove(0).unwrap().slot, 0);
        assert!(matches!(
            slots.remove(0),
            Err(AccelError::RegionNotMapped { addr: 0 })
        ));
        assert_eq!(slots.insert(0x2000, 0x1000, 0).unwrap().slot, 0);
        assert_eq!(slots.find(0x2fff).map(|s| s.slot), Some(0));
        assert!(slots.find(0x3000).is_none());
    }
}
