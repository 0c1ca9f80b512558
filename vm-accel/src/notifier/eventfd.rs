//! `EventNotifier` over a Linux eventfd.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A notification counter backed by an eventfd (usable as KVM irqfd/ioeventfd).
#[derive(Debug)]
pub struct EventNotifier(EventFd);

impl EventNotifier {
    /// A new notifier with a zero count.
    pub fn new() -> io::Result<Self> {
        EventFd::new(0).map(Self)
    }

    /// A new notifier whose `wait` fails with `WouldBlock` instead of blocking.
    pub fn new_nonblocking() -> io::Result<Self> {
        EventFd::new(EFD_NONBLOCK).map(Self)
    }

    /// Adds one to the count, waking a waiter.
    pub fn notify(&self) -> io::Result<()> {
        self.0.write(1)
    }

    /// Blocks until the count is non-zero, then returns it and resets it to zero.
    pub fn wait(&self) -> io::Result<u64> {
        self.0.read()
    }

    /// Another handle to the same counter.
    pub fn try_clone(&self) -> io::Result<Self> {
        self.0.try_clone().map(Self)
    }

    /// The eventfd, for backends that pass it to the kernel.
    pub fn as_event_fd(&self) -> &EventFd {
        &self.0
    }
}

impl AsRawFd for EventNotifier {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
