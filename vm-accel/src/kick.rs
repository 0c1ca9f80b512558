//! Kicking a vCPU out of `run()` from another thread (pause, shutdown).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Something that forces one vCPU's `run()` to return [`VcpuExit::Interrupted`]
/// promptly. Implemented by each engine (signal + `immediate_exit` on KVM, a
/// flag checked between instruction blocks in a software engine).
///
/// [`VcpuExit::Interrupted`]: crate::VcpuExit::Interrupted
pub trait Kick: Send + Sync + fmt::Debug {
    /// Requests the exit. If the vCPU is not inside `run()`, its next `run()`
    /// returns `Interrupted` at once. Never blocks for long.
    fn kick(&self);
}

/// A cloneable, thread-safe handle that kicks one vCPU (see [`Vcpu::kick_handle`]).
///
/// [`Vcpu::kick_handle`]: crate::Vcpu::kick_handle
#[derive(Clone, Debug)]
pub struct KickHandle(Arc<dyn Kick>);

impl KickHandle {
    /// Wraps an engine's kick implementation.
    pub fn new(kick: Arc<dyn Kick>) -> Self {
        Self(kick)
    }

    /// Forces the vCPU out of `run()` (see [`Kick::kick`]).
    pub fn kick(&self) {
        self.0.kick();
    }
}

/// A kick for engines that poll: `kick()` sets a flag the run loop takes.
#[derive(Debug, Default)]
pub struct KickFlag(AtomicBool);

impl KickFlag {
    /// Takes a pending kick: true once per `kick()` (or burst of kicks).
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    /// Whether a kick is pending, without consuming it.
    pub fn is_pending(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Kick for KickFlag {
    fn kick(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_flag_is_taken_once() {
        let flag = Arc::new(KickFlag::default());
        let handle = KickHandle::new(flag.clone());
        let other = handle.clone();
        std::thread::spawn(move || other.kick()).join().unwrap();
        assert!(flag.is_pending());
        assert!(flag.take());
        assert!(!flag.take());
    }
}
