//! `VmEvent`: one lifecycle fact about one VM, as journaled by the event store.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{DeviceConfig, VmConfig};
use crate::id::VmId;
use crate::state::Transition;
use crate::stop::StopReason;

/// Wall-clock time of an event, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time (0 if the clock is before 1970).
    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        )
    }

    /// Builds a timestamp from milliseconds since the epoch (the v1 journal's unit).
    pub fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000_000))
    }
}

/// What happened to the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The VM was defined with this config: sequence 1 of its stream, or the event after `deleted`.
    Created {
        /// The VM's configuration (boxed: it is far larger than every other event).
        config: Box<VmConfig>,
    },
    /// The VM started running.
    Started,
    /// The VM was paused.
    Paused,
    /// The VM resumed after a pause.
    Resumed,
    /// The VM stopped.
    Stopped {
        /// Why it stopped.
        reason: StopReason,
    },
    /// A device was hot-plugged.
    DeviceAttached {
        /// The device (boxed, like the config, to keep events small).
        device: Box<DeviceConfig>,
    },
    /// A device was removed.
    DeviceDetached {
        /// Id of the removed device.
        device_id: String,
    },
    /// The VM failed.
    Failed {
        /// Description of the error.
        error: String,
    },
    /// The VM was deleted; its stream may begin again with a `created` event.
    Deleted,
}

impl EventKind {
    /// A `Created` event kind for `config`.
    pub fn created(config: VmConfig) -> Self {
        Self::Created {
            config: Box::new(config),
        }
    }

    /// A `DeviceAttached` event kind for `device`.
    pub fn device_attached(device: DeviceConfig) -> Self {
        Self::DeviceAttached {
            device: Box::new(device),
        }
    }

    /// The state transition this event records, if it records one.
    pub fn transition(&self) -> Option<Transition> {
        match self {
            Self::Started => Some(Transition::Start),
            Self::Paused => Some(Transition::Pause),
            Self::Resumed => Some(Transition::Resume),
            Self::Stopped { .. } => Some(Transition::Stop),
            Self::Failed { .. } => Some(Transition::Fail),
            Self::Created { .. }
            | Self::DeviceAttached { .. }
            | Self::DeviceDetached { .. }
            | Self::Deleted => None,
        }
    }

    /// Short lower-case name of the event kind, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Started => "started",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::Stopped { .. } => "stopped",
            Self::DeviceAttached { .. } => "device_attached",
            Self::DeviceDetached { .. } => "device_detached",
            Self::Failed { .. } => "failed",
            Self::Deleted => "deleted",
        }
    }
}

/// One event of a VM's stream. `sequence` starts at 1 (the `Created` event) and grows by one
/// per event of the same VM; stores reject appends that break this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEvent {
    /// The VM (and stream) this event belongs to.
    pub vm_id: VmId,
    /// Position in the VM's stream, from 1.
    pub sequence: u64,
    /// When it happened.
    pub timestamp: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

impl VmEvent {
    /// An event stamped with the current time.
    pub fn new(vm_id: VmId, sequence: u64, kind: EventKind) -> Self {
        Self {
            vm_id,
            sequence,
            timestamp: Timestamp::now(),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_of_kinds() {
        assert_eq!(EventKind::Started.transition(), Some(Transition::Start));
        assert_eq!(
            EventKind::Stopped {
                reason: StopReason::Requested
            }
            .transition(),
            Some(Transition::Stop)
        );
        assert_eq!(
            EventKind::DeviceDetached {
                device_id: "e".into()
            }
            .transition(),
            None
        );
    }

    #[test]
    fn json_shape() {
        let id = VmId::new("a").unwrap();
        let ev = VmEvent {
            vm_id: id,
            sequence: 2,
            timestamp: Timestamp::from_millis(5),
            kind: EventKind::Stopped {
                reason: StopReason::GuestShutdown,
            },
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"vm_id":"a","sequence":2,"timestamp":5000000,"kind":{"type":"stopped","reason":"guest_shutdown"}}"#
        );
        assert_eq!(serde_json::from_str::<VmEvent>(&json).unwrap(), ev);
    }
}
