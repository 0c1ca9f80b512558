//! The PIO/MMIO bus: dispatches an access to the device whose address range
//! contains it.
//!
//! Ranges live in a `BTreeMap` keyed by their base address, so a lookup is one
//! `range(..=addr).next_back()` — O(log n) in the number of devices — and an
//! insertion that would overlap an existing range is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A device that answers reads and writes at offsets inside its bus range.
pub trait BusDevice: Send {
    /// Read `data.len()` bytes at `offset` from the start of the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Write `data` at `offset` from the start of the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else drives it (an event loop).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors from inserting into or dispatching on a [`Bus`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range would overlap a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps the device at {other_base:#x}+{other_len:#x}")]
    Overlap {
        /// Base of the refused range.
        base: u64,
        /// Length of the refused range.
        len: u64,
        /// Base of the range it collides with.
        other_base: u64,
        /// Length of the range it collides with.
        other_len: u64,
    },
    /// The range has length zero or its end does not fit in 64 bits.
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around the address space")]
    InvalidRange {
        /// Base of the refused range.
        base: u64,
        /// Length of the refused range.
        len: u64,
    },
    /// No device covers the accessed address.
    #[error("no device at address {0:#x}")]
    NoDevice(u64),
    /// The access starts inside a device but runs past its end.
    #[error("access of {size} bytes at {addr:#x} crosses the end of its device's range")]
    CrossesEnd {
        /// Accessed address.
        addr: u64,
        /// Access size in bytes.
        size: usize,
    },
    /// The device's lock was poisoned by a panic on another thread.
    #[error("device lock at {0:#x} is poisoned")]
    Poisoned(u64),
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// An address space (PIO or MMIO) with non-overlapping device ranges.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<_> = self.devices.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Put `device` at `[base, base + len)`; refuses empty, wrapping or overlapping ranges.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = match base.checked_add(len) {
            Some(end) if len > 0 => end,
            _ => return Err(BusError::InvalidRange { base, len }),
        };
        // The only candidates for overlap are the last range starting before `end`.
        if let Some((&other_base, other)) = self.devices.range(..end).next_back() {
            if other_base + other.len > base {
                return Err(BusError::Overlap {
                    base,
                    len,
                    other_base,
                    other_len: other.len,
                });
            }
        }
        self.devices.insert(base, Entry { len, device });
        Ok(())
    }

    /// Remove the device whose range starts at `base`; returns it if there was one.
    pub fn remove(&mut self, base: u64) -> Option<SharedDevice> {
        self.devices.remove(&base).map(|e| e.device)
    }

    /// Number of devices on the bus.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether the bus has no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device covering `addr`, with the range's base.
    pub fn resolve(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (&base, entry) = self.devices.range(..=addr).next_back()?;
        (addr - base < entry.len).then_some((base, &entry.device))
    }

    fn locate(&self, addr: u64, size: usize) -> Result<(u64, &SharedDevice), BusError> {
        let (base, entry) = self
            .devices
            .range(..=addr)
            .next_back()
            .map(|(b, e)| (*b, e))
            .ok_or(BusError::NoDevice(addr))?;
        let offset = addr - base;
        if offset >= entry.len {
            return Err(BusError::NoDevice(addr));
        }
        if (size as u64) > entry.len - offset {
            return Err(BusError::CrossesEnd { addr, size });
        }
        Ok((offset, &entry.device))
    }

    /// Dispatch a read of `data.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        let (offset, device) = self.locate(addr, data.len())?;
        device
            .lock()
            .map_err(|_| BusError::Poisoned(addr))?
            .read(offset, data);
        Ok(())
    }

    /// Dispatch a write of `data` at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        let (offset, device) = self.locate(addr, data.len())?;
        device
            .lock()
            .map_err(|_| BusError::Poisoned(addr))?
            .write(offset, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last access so tests can see the offset the bus computed.
    #[derive(Default)]
    struct Probe {
        last: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last = Some((offset, data.to_vec()));
        }
    }

    fn probe() -> (Arc<Mutex<Probe>>, SharedDevice) {
        let p = Arc::new(Mutex::new(Probe::default()));
        let shared: SharedDevice = p.clone();
        (p, shared)
    }

    #[test]
    fn bus_is_shareable_between_vcpu_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Bus>();
    }

    #[test]
    fn dispatches_by_range_with_relative_offset() {
        let mut bus = Bus::new();
        let (a, da) = probe();
        let (b, db) = probe();
        bus.insert(da, 0x3f8, 8).unwrap();
        bus.insert(db, 0x1000, 0x100).unwrap();
        bus.write(0x3fd, &[7]).unwrap();
        bus.write(0x10f0, &[1, 2, 3, 4]).unwrap();
        assert_eq!(a.lock().unwrap().last, Some((5, vec![7])));
        assert_eq!(b.lock().unwrap().last, Some((0xf0, vec![1, 2, 3, 4])));
        let mut buf = [0u8; 2];
        bus.read(0x1010, &mut buf).unwrap();
        assert_eq!(buf, [0x10, 0x10]);
    }

    #[test]
    fn refuses_overlaps_on_either_side() {
        let mut bus = Bus::new();
        bus.insert(probe().1, 0x100, 0x100).unwrap();
        for (base, len) in [(0x80, 0x81), (0x1ff, 1), (0x150, 4), (0x0, 0x1000)] {
            assert!(matches!(
                bus.insert(probe().1, base, len),
                Err(BusError::Overlap {
                    other_base: 0x100,
                    ..
                })
            ));
        }
        // Touching ranges are fine.
        bus.insert(probe().1, 0x80, 0x80).unwrap();
        bus.insert(probe().1, 0x200, 0x10).unwrap();
        assert_eq!(bus.len(), 3);
    }

    #[test]
    fn refuses_empty_and_wrapping_ranges() {
        let mut bus = Bus::new();
        assert!(matches!(
            bus.insert(probe().1, 0x10, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(probe().1, u64::MAX - 1, 4),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(probe().1, u64::MAX - 1, 1).unwrap();
    }

    #[test]
    fn reports_holes_and_accesses_crossing_the_end() {
        let mut bus = Bus::new();
        bus.insert(probe().1, 0x100, 0x10).unwrap();
        assert_eq!(bus.write(0xff, &[0]), Err(BusError::NoDevice(0xff)));
        assert_eq!(bus.write(0x110, &[0]), Err(BusError::NoDevice(0x110)));
        assert_eq!(
            bus.write(0x10e, &[0; 4]),
            Err(BusError::CrossesEnd {
                addr: 0x10e,
                size: 4
            })
        );
        let mut buf = [0u8; 8];
        assert_eq!(bus.read(0, &mut buf), Err(BusError::NoDevice(0)));
        assert!(bus.remove(0x100).is_some());
        assert!(bus.is_empty());
    }

    #[test]
    fn many_devices_resolve_to_the_right_one() {
        let mut bus = Bus::new();
        for i in 0..1000u64 {
            bus.insert(probe().1, i * 0x1000, 0x200).unwrap();
        }
        for i in 0..1000u64 {
            assert_eq!(
                bus.resolve(i * 0x1000 + 0x1ff).map(|(b, _)| b),
                Some(i * 0x1000)
            );
            assert!(bus.resolve(i * 0x1000 + 0x200).is_none());
        }
    }
}
