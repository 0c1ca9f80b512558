//! `EventNotifier` from a mutex and a condition variable, for hosts without eventfd.

use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct Shared {
    count: Mutex<u64>,
    ready: Condvar,
}

/// A notification counter shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct EventNotifier {
    shared: Arc<Shared>,
    nonblocking: bool,
}

impl EventNotifier {
    /// A new notifier with a zero count.
    pub fn new() -> io::Result<Self> {
        Ok(Self::default())
    }

    /// A new notifier whose `wait` fails with `WouldBlock` instead of blocking.
    pub fn new_nonblocking() -> io::Result<Self> {
        Ok(Self {
            nonblocking: true,
            ..Self::default()
        })
    }

    /// Adds one to the count, waking a waiter.
    pub fn notify(&self) -> io::Result<()> {
        let mut count = self
            .shared
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_add(1);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Blocks until the count is non-zero, then returns it and resets it to zero.
    pub fn wait(&self) -> io::Result<u64> {
        let mut count = self
            .shared
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *count == 0 {
            if self.nonblocking {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            count = self
                .shared
                .ready
                .wait(count)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Ok(std::mem::take(&mut *count))
    }

    /// Another handle to the same counter.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(self.clone())
    }
}
