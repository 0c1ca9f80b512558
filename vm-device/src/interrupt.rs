//! Interrupt lines and VM-level requests raised by devices.
//!
//! A device only knows it must "pull a line": the VMM decides what that means
//! (an irqfd on KVM, a callback into the software engine's interrupt
//! controller, a flag a test inspects). The i8042's CPU-reset request uses the
//! same trait, so a VMM observes it the way it wants (eventfd, callback, flag).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Something a device can fire: an interrupt line or a request to the VMM.
pub trait Interrupt: Send + Sync + fmt::Debug {
    /// Fire the line once. An error means the event could not be delivered.
    fn trigger(&self) -> io::Result<()>;
}

/// Counts how often it was fired; the VMM (or a test) polls [`CountingInterrupt::count`].
#[derive(Debug, Default)]
pub struct CountingInterrupt {
    count: AtomicU64,
}

impl CountingInterrupt {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times the line was fired so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Return the count and reset it to zero.
    pub fn take(&self) -> u64 {
        self.count.swap(0, Ordering::AcqRel)
    }
}

impl Interrupt for CountingInterrupt {
    fn trigger(&self) -> io::Result<()> {
        self.count.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// Calls a closure when fired (the software engine's interrupt controller hook).
pub struct CallbackInterrupt<F> {
    callback: F,
}

impl<F: Fn() -> io::Result<()> + Send + Sync> CallbackInterrupt<F> {
    /// Wrap `callback`.
    pub fn new(callback: F) -> Self {
        Self { callback }
    }
}

impl<F> fmt::Debug for CallbackInterrupt<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackInterrupt")
    }
}

impl<F: Fn() -> io::Result<()> + Send + Sync> Interrupt for CallbackInterrupt<F> {
    fn trigger(&self) -> io::Result<()> {
        (self.callback)()
    }
}

/// Writes to an eventfd: registered as a KVM irqfd, or polled by an event loop.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct EventFdInterrupt {
    fd: vmm_sys_util::eventfd::EventFd,
}

#[cfg(target_os = "linux")]
impl EventFdInterrupt {
    /// Wrap an eventfd (typically one the VMM registered with `KVM_IRQFD`).
    pub fn new(fd: vmm_sys_util::eventfd::EventFd) -> Self {
        Self { fd }
    }

    /// The eventfd, to register with KVM or an epoll loop.
    pub fn eventfd(&self) -> &vmm_sys_util::eventfd::EventFd {
        &self.fd
    }
}

#[cfg(target_os = "linux")]
impl Interrupt for EventFdInterrupt {
    fn trigger(&self) -> io::Result<()> {
        self.fd.write(1)
    }
}

/// Adapts our trait to `vm_superio::Trigger` for the devices built on that crate.
#[derive(Debug, Clone)]
pub(crate) struct SuperioTrigger(pub(crate) std::sync::Arc<dyn Interrupt>);

impl vm_superio::Trigger for SuperioTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.trigger()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counting_interrupt_counts_and_takes() {
        let irq = CountingInterrupt::new();
        irq.trigger().unwrap();
        irq.trigger().unwrap();
        assert_eq!(irq.count(), 2);
        assert_eq!(irq.take(), 2);
        assert_eq!(irq.count(), 0);
    }

    #[test]
    fn callback_interrupt_calls_and_propagates_errors() {
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let ok = CallbackInterrupt::new(move || {
            h.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        ok.trigger().unwrap();
        assert_eq!(hits.load(Ordering::Relaxed), 1);
        let failing = CallbackInterrupt::new(|| Err(io::Error::other("controller gone")));
        assert!(failing.trigger().is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn eventfd_interrupt_is_readable_after_trigger() {
        let fd = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = EventFdInterrupt::new(fd);
        irq.trigger().unwrap();
        irq.trigger().unwrap();
        assert_eq!(irq.eventfd().read().unwrap(), 2);
    }
}
