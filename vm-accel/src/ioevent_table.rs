//! ioeventfd semantics for hypervisors without them in the kernel (HVF,
//! WHPX): a table of (address, value match, notifier), checked by the vCPU
//! run loop on every MMIO or port write; a match signals the notifier and
//! the guest resumes without the VMM seeing the exit.

use crate::error::AccelError;
use crate::notifier::EventNotifier;
use crate::vm::{IoEventAddress, IoEventMatch};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

#[derive(Debug)]
struct Entry {
    addr: IoEventAddress,
    matching: IoEventMatch,
    notifier: EventNotifier,
}

/// Registered ioevents of one VM.
#[derive(Debug, Default)]
pub struct IoEventTable {
    entries: RwLock<Vec<Entry>>,
    /// Number of entries, read without the lock on every write exit.
    len: AtomicUsize,
}

fn matches(matching: IoEventMatch, data: &[u8]) -> bool {
    let value = |n: usize| {
        (data.len() == n).then(|| {
            let mut bytes = [0u8; 8];
            bytes[..n].copy_from_slice(data);
            u64::from_le_bytes(bytes)
        })
    };
    match matching {
        IoEventMatch::Any => true,
        IoEventMatch::U8(v) => value(1) == Some(u64::from(v)),
        IoEventMatch::U16(v) => value(2) == Some(u64::from(v)),
        IoEventMatch::U32(v) => value(4) == Some(u64::from(v)),
        IoEventMatch::U64(v) => value(8) == Some(v),
    }
}

impl IoEventTable {
    /// Registers `notifier` for writes to `addr` matching `matching`; the
    /// same (address, match) pair may be registered once.
    pub fn register(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        let notifier = notifier
            .try_clone()
            .map_err(|e| AccelError::hypervisor("cloning an ioevent notifier", e))?;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries
            .iter()
            .any(|e| e.addr == addr && e.matching == matching)
        {
            return Err(AccelError::hypervisor(
                "registering an ioevent",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{addr:?} with {matching:?} is already registered"),
                ),
            ));
        }
        entries.push(Entry {
            addr,
            matching,
            notifier,
        });
        self.len.store(entries.len(), Ordering::Release);
        Ok(())
    }

    /// Removes the registration for (`addr`, `matching`).
    pub fn unregister(
        &self,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let index = entries
            .iter()
            .position(|e| e.addr == addr && e.matching == matching)
            .ok_or_else(|| {
                AccelError::hypervisor(
                    "unregistering an ioevent",
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{addr:?} with {matching:?} is not registered"),
                    ),
                )
            })?;
        entries.swap_remove(index);
        self.len.store(entries.len(), Ordering::Release);
        Ok(())
    }

    /// Signals every notifier whose registration matches a guest write of
    /// `data` to `addr`; true if any did (the write is then consumed).
    pub fn signal(&self, addr: IoEventAddress, data: &[u8]) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut hit = false;
        for entry in entries
            .iter()
            .filter(|e| e.addr == addr && matches(e.matching, data))
        {
            if let Err(error) = entry.notifier.notify() {
                tracing::warn!(?addr, %error, "ioevent notification failed");
            }
            hit = true;
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_writes_signal_and_others_do_not() {
        let table = IoEventTable::default();
        let any = EventNotifier::new_nonblocking().unwrap();
        let four = EventNotifier::new_nonblocking().unwrap();
        table
            .register(&any, IoEventAddress::Mmio(0x1000), IoEventMatch::Any)
            .unwrap();
        table
            .register(&four, IoEventAddress::Pio(0x60), IoEventMatch::U32(4))
            .unwrap();
        assert!(table.signal(IoEventAddress::Mmio(0x1000), &[1, 2]));
        assert_eq!(any.wait().unwrap(), 1);
        assert!(!table.signal(IoEventAddress::Mmio(0x1004), &[1]));
        assert!(
            !table.signal(IoEventAddress::Pio(0x60), &[4, 0]),
            "wrong width"
        );
        assert!(
            !table.signal(IoEventAddress::Pio(0x60), &[5, 0, 0, 0]),
            "wrong value"
        );
        assert!(four.wait().is_err(), "nothing was signalled");
        assert!(table.signal(IoEventAddress::Pio(0x60), &[4, 0, 0, 0]));
        assert_eq!(four.wait().unwrap(), 1);
    }

    #[test]
    fn duplicates_and_unknown_unregistrations_are_errors() {
        let table = IoEventTable::default();
        let n = EventNotifier::new_nonblocking().unwrap();
        let addr = IoEventAddress::Mmio(0x2000);
        table.register(&n, addr, IoEventMatch::U8(1)).unwrap();
        let dup = table.register(&n, addr, IoEventMatch::U8(1)).unwrap_err();
        assert!(dup.to_string().contains("already registered"), "{dup}");
        table.register(&n, addr, IoEventMatch::U8(2)).unwrap();
        table.unregister(addr, IoEventMatch::U8(1)).unwrap();
        let gone = table.unregister(addr, IoEventMatch::U8(1)).unwrap_err();
        assert!(gone.to_string().contains("not registered"), "{gone}");
        assert!(!table.signal(addr, &[1]));
        assert!(table.signal(addr, &[2]));
    }
}
