//! [`GdbControl`]: how another thread (the daemon's command thread) pauses,
//! resumes and stops a VM whose vCPUs the stub's thread runs.
//!
//! The stub looks at the control between vCPU runs (a ticker kicks the vCPUs
//! out of `run()` often), while it waits for a debugger, and while it waits
//! for a debugger's next packet (its connection reads with a timeout), so a
//! request is seen whether or not a debugger is attached or holds the vCPUs.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::executor::{ControlError, RunState};
use crate::StopReason;

#[derive(Debug)]
struct State {
    run: RunState,
    /// Why the VM stops, once a stop was requested.
    reason: Option<StopReason>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A handle on a VM running under the stub; clones share it.
#[derive(Debug, Clone)]
pub struct GdbControl(Arc<Shared>);

impl Default for GdbControl {
    fn default() -> Self {
        Self::new()
    }
}

impl GdbControl {
    /// A control for a VM that is about to run.
    pub fn new() -> Self {
        Self(Arc::new(Shared {
            state: Mutex::new(State {
                run: RunState::Running,
                reason: None,
            }),
            changed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the VM is in its lifecycle.
    pub fn state(&self) -> RunState {
        self.lock().run
    }

    /// Holds the vCPUs: returns once the stub has seen the request (no vCPU
    /// runs until [`resume`](Self::resume)).
    pub fn pause(&self) -> Result<(), ControlError> {
        let mut state = self.lock();
        match state.run {
            RunState::Running => state.run = RunState::Pausing,
            RunState::Pausing | RunState::Paused => {}
            RunState::Stopping | RunState::Stopped => return Err(stopped(&state)),
        }
        self.0.changed.notify_all();
        let state = self
            .0
            .changed
            .wait_while(state, |s| s.run == RunState::Pausing)
            .unwrap_or_else(PoisonError::into_inner);
        match state.run {
            RunState::Stopping | RunState::Stopped => Err(stopped(&state)),
            _ => Ok(()),
        }
    }

    /// Lets the vCPUs run again after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), ControlError> {
        let mut state = self.lock();
        match state.run {
            RunState::Pausing | RunState::Paused => state.run = RunState::Running,
            RunState::Running => {}
            RunState::Stopping | RunState::Stopped => return Err(stopped(&state)),
        }
        self.0.changed.notify_all();
        Ok(())
    }

    /// Ends the VM as a requested stop.
    pub fn stop(&self) {
        self.stop_with(StopReason::Requested);
    }

    /// Ends the VM with `reason` (the first reason given wins).
    pub fn stop_with(&self, reason: StopReason) {
        let mut state = self.lock();
        if matches!(state.run, RunState::Stopping | RunState::Stopped) {
            return;
        }
        state.run = RunState::Stopping;
        state.reason = Some(reason);
        self.0.changed.notify_all();
    }

    /// For the loop that runs the vCPUs: why the VM must end, once a stop
    /// was requested.
    pub fn stop_requested(&self) -> Option<StopReason> {
        self.lock().reason.clone()
    }

    /// For the loop that runs the vCPUs: whether they are held by a pause;
    /// acknowledges a pending pause (the caller runs no vCPU while this is
    /// true).
    pub fn held(&self) -> bool {
        let mut state = self.lock();
        match state.run {
            RunState::Pausing => {
                state.run = RunState::Paused;
                self.0.changed.notify_all();
                true
            }
            RunState::Paused => true,
            _ => false,
        }
    }

    /// For the loop that runs the vCPUs: waits up to `timeout` for a request
    /// to change the state (a resume or a stop ends the wait early).
    pub fn wait(&self, timeout: Duration) {
        let state = self.lock();
        let run = state.run;
        let _ = self
            .0
            .changed
            .wait_timeout_while(state, timeout, |s| s.run == run)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// For the loop that runs the vCPUs: the VM has ended with `reason`.
    pub fn finished(&self, reason: &StopReason) {
        let mut state = self.lock();
        state.run = RunState::Stopped;
        state.reason.get_or_insert_with(|| reason.clone());
        self.0.changed.notify_all();
    }
}

fn stopped(state: &State) -> ControlError {
    ControlError::Stopped(state.reason.clone().unwrap_or(StopReason::Requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_returns_once_the_stub_holds_and_stop_ends_it() {
        let control = GdbControl::new();
        let stub = control.clone();
        let pauser = std::thread::spawn(move || control.pause().map(|()| control));
        // The stub's loop: acknowledge the pause once it is requested.
        while !stub.held() {
            stub.wait(Duration::from_millis(1));
        }
        let control = pauser.join().unwrap().unwrap();
        assert_eq!(control.state(), RunState::Paused);
        control.resume().unwrap();
        assert!(!stub.held());
        control.stop();
        assert_eq!(stub.stop_requested(), Some(StopReason::Requested));
        control.stop_with(StopReason::CtrlAltDel);
        assert_eq!(stub.stop_requested(), Some(StopReason::Requested));
        stub.finished(&StopReason::Requested);
        assert_eq!(control.state(), RunState::Stopped);
        assert!(matches!(control.pause(), Err(ControlError::Stopped(_))));
    }
}
