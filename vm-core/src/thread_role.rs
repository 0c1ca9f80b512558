//! Threads that the library crates start announce what they are for, so the
//! process embedding them can confine each kind: `vm-service`'s sandbox
//! stacks a seccomp filter per role (its README's "Sandbox" section lists
//! them). Without a registered hook, announcing does nothing.
//!
//! A thread calls [`enter`] first thing; when it returns an error the thread
//! must not do its work (it would run less confined than the process meant).
//!
//! ```
//! use vm_core::thread_role::{enter, ThreadRole};
//!
//! std::thread::spawn(|| {
//!     if let Err(e) = enter(ThreadRole::IrqRelay) {
//!         eprintln!("not confined: {e}");
//!         return;
//!     }
//!     // ... the thread's work
//! })
//! .join()
//! .unwrap();
//! ```

use std::sync::OnceLock;

/// What a library-started thread is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRole {
    /// Waits on an irqfd notifier and raises an interrupt line (`irqfd-<n>`).
    IrqRelay,
    /// Bridges a virtual switch to its cross-process segment (`switch-<name>`).
    SwitchBridge,
    /// Forwards console input into the serial port (`serial-input`).
    SerialInput,
}

/// Confines the calling thread for a role; an error says why it could not.
pub type Hook = fn(ThreadRole) -> Result<(), String>;

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Registers the process's hook; only the first registration counts (a
/// confinement, once chosen, is not replaced). Returns whether this one did.
pub fn set_hook(hook: Hook) -> bool {
    HOOK.set(hook).is_ok()
}

/// Announces the calling thread's role to the hook, if one is registered.
pub fn enter(role: ThreadRole) -> Result<(), String> {
    HOOK.get().map_or(Ok(()), |hook| hook(role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_hook_entering_is_a_no_op() {
        // No test in this crate registers a hook.
        assert_eq!(enter(ThreadRole::SwitchBridge), Ok(()));
    }
}
