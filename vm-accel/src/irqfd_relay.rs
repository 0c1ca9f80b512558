//! irqfd for hypervisors without it in the kernel (HVF): one thread per
//! registration waits on the notifier and pulses the interrupt line — raise,
//! then lower, as KVM does for an irqfd without a resample notifier.
//! Plain threads and [`EventNotifier`]s, so it is tested on any host.

use crate::error::AccelError;
use crate::notifier::EventNotifier;
use crate::vm::IrqLine;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use vm_core::thread_role::ThreadRole;

/// Sets an interrupt line's level (`true` = asserted).
pub type SetLine = Arc<dyn Fn(IrqLine, bool) -> Result<(), AccelError> + Send + Sync>;

#[derive(Debug)]
struct Relay {
    irq: IrqLine,
    wake: EventNotifier,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn shut_down(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(error) = self.wake.notify() {
            tracing::warn!(irq = self.irq.0, %error, "could not wake an irqfd relay");
            return;
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!(irq = self.irq.0, "irqfd relay thread panicked");
            }
        }
    }
}

/// The irqfd relays of one VM: at most one notifier per interrupt line.
#[derive(Debug, Default)]
pub struct IrqfdRelay {
    relays: Mutex<Vec<Relay>>,
}

impl IrqfdRelay {
    /// Starts relaying `notifier` to `irq` through `set_line`.
    pub fn register(
        &self,
        notifier: &EventNotifier,
        irq: IrqLine,
        set_line: SetLine,
    ) -> Result<(), AccelError> {
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        if relays.iter().any(|r| r.irq == irq) {
            return Err(AccelError::hypervisor(
                "registering an irqfd",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{irq} already has an irqfd"),
                ),
            ));
        }
        let clone = |n: &EventNotifier| {
            n.try_clone()
                .map_err(|e| AccelError::hypervisor("cloning an irqfd notifier", e))
        };
        let waiter = clone(notifier)?;
        let wake = clone(notifier)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("irqfd-{}", irq.0))
            .spawn(move || {
                if let Err(error) = vm_core::thread_role::enter(ThreadRole::IrqRelay) {
                    tracing::error!(irq = irq.0, %error, "irqfd relay not confined; relay stops");
                    return;
                }
                loop {
                    if let Err(error) = waiter.wait() {
                        tracing::warn!(irq = irq.0, %error, "irqfd wait failed; relay stops");
                        break;
                    }
                    if thread_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Err(error) = set_line(irq, true).and_then(|()| set_line(irq, false)) {
                        tracing::warn!(irq = irq.0, %error, "irqfd could not pulse the line");
                    }
                }
            })
            .map_err(|e| AccelError::hypervisor("spawning an irqfd relay thread", e))?;
        relays.push(Relay {
            irq,
            wake,
            stop,
            thread: Some(thread),
        });
        Ok(())
    }

    /// Stops the relay of `irq` and waits for its thread.
    pub fn unregister(&self, irq: IrqLine) -> Result<(), AccelError> {
        let relay = {
            let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
            let index = relays.iter().position(|r| r.irq == irq).ok_or_else(|| {
                AccelError::hypervisor(
                    "unregistering an irqfd",
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{irq} has no irqfd"),
                    ),
                )
            })?;
            relays.swap_remove(index)
        };
        relay.shut_down();
        Ok(())
    }
}

impl IrqfdRelay {
    /// Stops every relay and waits for their threads (e.g. before the VM goes away).
    pub fn clear(&self) {
        let relays =
            std::mem::take(&mut *self.relays.lock().unwrap_or_else(PoisonError::into_inner));
        for relay in relays {
            relay.shut_down();
        }
    }
}

impl Drop for IrqfdRelay {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn notifications_pulse_the_line_until_unregistered() {
        let relay = IrqfdRelay::default();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let set_line: SetLine = Arc::new(move |irq, level| {
            tx.lock().unwrap().send((irq, level)).unwrap();
            Ok(())
        });
        let notifier = EventNotifier::new().unwrap();
        relay
            .register(&notifier, IrqLine(5), set_line.clone())
            .unwrap();
        let dup = relay.register(&notifier, IrqLine(5), set_line).unwrap_err();
        assert!(dup.to_string().contains("already has an irqfd"), "{dup}");
        notifier.notify().unwrap();
        assert_eq!(rx.recv().unwrap(), (IrqLine(5), true));
        assert_eq!(rx.recv().unwrap(), (IrqLine(5), false));
        relay.unregister(IrqLine(5)).unwrap();
        // The relay thread is gone: the stop wake-up raised nothing, and a new
        // notification raises nothing either.
        notifier.notify().unwrap();
        assert!(rx.try_recv().is_err());
        let gone = relay.unregister(IrqLine(5)).unwrap_err();
        assert!(gone.to_string().contains("has no irqfd"), "{gone}");
    }

    #[test]
    fn line_errors_are_logged_not_fatal_and_drop_joins() {
        let relay = IrqfdRelay::default();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let set_line: SetLine = Arc::new(move |_, _| {
            tx.lock().unwrap().send(()).unwrap();
            Err(AccelError::Unsupported {
                what: "test line",
                backend: "test",
            })
        });
        let notifier = EventNotifier::new().unwrap();
        relay.register(&notifier, IrqLine(1), set_line).unwrap();
        notifier.notify().unwrap();
        rx.recv().unwrap();
        notifier.notify().unwrap();
        rx.recv().unwrap();
        drop(relay);
    }
}
