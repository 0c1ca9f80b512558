//! The VM lifecycle: `Created → Running ⇄ Paused → Stopped`, and `Failed` from any live state.
//! A stopped or failed VM keeps its config and can be started again (a fresh boot).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a VM is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Configured, never started.
    Created,
    /// vCPUs are running.
    Running,
    /// vCPUs are parked; the VM can resume.
    Paused,
    /// Shut down (terminal).
    Stopped,
    /// Ended by an error (terminal).
    Failed,
}

/// A request to move a VM to another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Created, Stopped or Failed → Running (a fresh boot from the kept config).
    Start,
    /// Running → Paused.
    Pause,
    /// Paused → Running.
    Resume,
    /// Created, Running or Paused → Stopped.
    Stop,
    /// Created, Running or Paused → Failed.
    Fail,
}

/// A transition that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {transition} a VM that is {from}")]
pub struct TransitionError {
    /// State the VM was in.
    pub from: VmState,
    /// The rejected transition.
    pub transition: Transition,
}

impl VmState {
    /// The state after `t`, or an error if `t` is illegal from `self`.
    pub fn apply(self, t: Transition) -> Result<VmState, TransitionError> {
        use Transition as T;
        use VmState as S;
        let next = match (self, t) {
            (S::Created | S::Stopped | S::Failed, T::Start) | (S::Paused, T::Resume) => S::Running,
            (S::Running, T::Pause) => S::Paused,
            (S::Created | S::Running | S::Paused, T::Stop) => S::Stopped,
            (S::Created | S::Running | S::Paused, T::Fail) => S::Failed,
            (from, transition) => return Err(TransitionError { from, transition }),
        };
        Ok(next)
    }

    /// True for `Stopped` and `Failed`: the VM has ended, and only `Start` (a reboot) leaves them.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Stopped | Self::Failed)
    }

    /// Lower-case name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Stop => "stop",
            Self::Fail => "fail",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [VmState; 5] = [
        VmState::Created,
        VmState::Running,
        VmState::Paused,
        VmState::Stopped,
        VmState::Failed,
    ];
    const TRANSITIONS: [Transition; 5] = [
        Transition::Start,
        Transition::Pause,
        Transition::Resume,
        Transition::Stop,
        Transition::Fail,
    ];

    #[test]
    fn full_table() {
        use Transition as T;
        use VmState as S;
        let legal = [
            (S::Created, T::Start, S::Running),
            (S::Created, T::Stop, S::Stopped),
            (S::Created, T::Fail, S::Failed),
            (S::Running, T::Pause, S::Paused),
            (S::Running, T::Stop, S::Stopped),
            (S::Running, T::Fail, S::Failed),
            (S::Paused, T::Resume, S::Running),
            (S::Paused, T::Stop, S::Stopped),
            (S::Paused, T::Fail, S::Failed),
            (S::Stopped, T::Start, S::Running),
            (S::Failed, T::Start, S::Running),
        ];
        let mut n_legal = 0;
        for from in STATES {
            for t in TRANSITIONS {
                let expected = legal.iter().find(|(f, tr, _)| *f == from && *tr == t);
                match (from.apply(t), expected) {
                    (Ok(to), Some((_, _, want))) => {
                        assert_eq!(to, *want);
                        n_legal += 1;
                    }
                    (Err(e), None) => {
                        assert_eq!(
                            e,
                            TransitionError {
                                from,
                                transition: t
                            }
                        );
                    }
                    (got, want) => panic!("{from} --{t}--> {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(n_legal, legal.len());
    }

    #[test]
    fn terminal_states_and_message() {
        assert!(VmState::Stopped.is_terminal() && VmState::Failed.is_terminal());
        assert!(!VmState::Paused.is_terminal());
        let e = VmState::Stopped.apply(Transition::Resume).unwrap_err();
        assert_eq!(e.to_string(), "cannot resume a VM that is stopped");
    }
}
