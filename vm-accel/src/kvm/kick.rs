//! Kicking a KVM vCPU out of `KVM_RUN`: a pending flag, a signal to the thread
//! in `run()`, and `kvm_run.immediate_exit`.
//!
//! The signal handler runs on the vCPU thread itself and sets
//! `immediate_exit` of the vCPU that thread is running (a thread-local
//! pointer), so only the vCPU thread ever touches its `kvm_run` page. Races:
//! a kick before the pending check is seen by the check; a kick after it finds
//! the thread id published and signals, and the handler's `immediate_exit`
//! makes a `KVM_RUN` that has not started yet return `EINTR` at once.

use crate::kick::Kick;
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

thread_local! {
    /// `immediate_exit` of the vCPU currently inside `run()` on this thread, or null.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

/// The real-time signal vm-accel uses to kick KVM vCPU threads (`SIGRTMIN`).
/// A VMM embedding this crate must not install its own handler for it.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // `try_with` never allocates for a `const` thread-local without destructor.
    let _ = IMMEDIATE_EXIT.try_with(|cell| {
        let field = cell.get();
        if !field.is_null() {
            // SAFETY: the pointer is set by `KickState::enter` on this thread to the
            // `immediate_exit` byte of a vCPU whose `kvm_run` mapping stays alive until
            // `leave` clears it, also on this thread; the handler runs on this thread.
            unsafe { AtomicU8::from_ptr(field) }.store(1, Ordering::SeqCst);
        }
    });
}

/// Installs the kick signal handler once per process.
pub(super) fn install_handler() -> Result<(), std::io::Error> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), handle_kick)
            .map_err(vmm_sys_util::errno::Error::errno)
    });
    result.map_err(std::io::Error::from_raw_os_error)
}

/// Kick state shared by a vCPU and its handles.
#[derive(Debug, Default)]
pub(super) struct KickState {
    pending: AtomicBool,
    /// `pthread_t` of the thread inside `run()`, 0 when none.
    thread: AtomicU64,
    /// Kickers currently between reading `thread` and signalling it.
    kickers: AtomicUsize,
}

impl KickState {
    /// Publishes this thread as running the vCPU whose `immediate_exit` is at
    /// `field`; returns true if a kick is already pending (then do not enter KVM_RUN).
    pub(super) fn enter(&self, field: *mut u8) -> bool {
        IMMEDIATE_EXIT.with(|cell| cell.set(field));
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.thread.store(me as u64, Ordering::SeqCst);
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Unpublishes the thread; waits out kickers that may be signalling it so
    /// the thread cannot exit under a `pthread_kill`.
    pub(super) fn leave(&self) {
        IMMEDIATE_EXIT.with(|cell| cell.set(ptr::null_mut()));
        self.thread.store(0, Ordering::SeqCst);
        while self.kickers.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }

    /// Forgets a pending kick (after `run()` reported `Interrupted`).
    pub(super) fn clear(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl Kick for KickState {
    fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.kickers.fetch_add(1, Ordering::SeqCst);
        let thread = self.thread.load(Ordering::SeqCst);
        if thread != 0 {
            // SAFETY: `thread` was published by `enter` and is still inside `run()`:
            // `leave` clears it and then waits for `kickers` to drop to zero, so the
            // thread cannot have exited. The signal has a no-op-style handler installed.
            let rc = unsafe { libc::pthread_kill(thread as libc::pthread_t, kick_signal()) };
            if rc != 0 {
                tracing::warn!(rc, "pthread_kill of a vCPU thread failed");
            }
        }
        self.kickers.fetch_sub(1, Ordering::SeqCst);
    }
}
