//! Projection: the registry of VMs and their current state, rebuilt by replaying events.

use std::collections::BTreeMap;

use crate::config::{DeviceConfig, VmConfig};
use crate::event::{EventKind, Timestamp, VmEvent};
use crate::id::VmId;
use crate::state::{TransitionError, VmState};
use crate::stop::StopReason;
use crate::store::{EventStore, StoreError};

/// What the journal says about one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    /// The VM's id.
    pub id: VmId,
    /// Its config as created (devices at boot).
    pub config: VmConfig,
    /// Devices currently attached (boot devices plus hot-plugged, minus detached).
    pub devices: Vec<DeviceConfig>,
    /// Current lifecycle state.
    pub state: VmState,
    /// Why it stopped, once stopped.
    pub stop_reason: Option<StopReason>,
    /// The error it failed with, once failed.
    pub error: Option<String>,
    /// Sequence of the last event applied.
    pub last_sequence: u64,
    /// Time of the last event applied.
    pub updated: Timestamp,
}

/// An event that does not fit the registry built so far.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The first event of a stream was not `created`, or `created` came twice.
    #[error("vm {vm_id} sequence {sequence}: {reason}")]
    Unexpected {
        /// The VM.
        vm_id: VmId,
        /// The event's sequence.
        sequence: u64,
        /// What is wrong.
        reason: String,
    },
    /// The event's sequence does not follow the stream's last one.
    #[error("vm {vm_id}: expected sequence {expected}, got {found}")]
    Gap {
        /// The VM.
        vm_id: VmId,
        /// Next expected sequence.
        expected: u64,
        /// Sequence found.
        found: u64,
    },
    /// The event records an illegal state transition.
    #[error("vm {vm_id} sequence {sequence}: {source}")]
    Transition {
        /// The VM.
        vm_id: VmId,
        /// The event's sequence.
        sequence: u64,
        /// The rejected transition.
        source: TransitionError,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every VM in the journal with its current state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmRegistry {
    vms: BTreeMap<VmId, VmRecord>,
    /// Last sequence of each deleted VM's stream, so it can be created again after it.
    deleted: BTreeMap<VmId, u64>,
}

impl VmRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replays every event of `store`.
    pub fn replay(store: &dyn EventStore) -> Result<Self, ProjectionError> {
        let mut reg = Self::new();
        for ev in store.read_all()? {
            reg.apply(&ev?)?;
        }
        Ok(reg)
    }

    /// The record of `id`.
    pub fn get(&self, id: &VmId) -> Option<&VmRecord> {
        self.vms.get(id)
    }

    /// All records, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &VmRecord> {
        self.vms.values()
    }

    /// Number of VMs.
    pub fn len(&self) -> usize {
        self.vms.len()
    }

    /// True if no VM was ever created.
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    /// Applies one event; the registry is unchanged on error.
    pub fn apply(&mut self, ev: &VmEvent) -> Result<(), ProjectionError> {
        let unexpected = |reason: &str| ProjectionError::Unexpected {
            vm_id: ev.vm_id.clone(),
            sequence: ev.sequence,
            reason: reason.to_owned(),
        };
        let Some(rec) = self.vms.get_mut(&ev.vm_id) else {
            let EventKind::Created { config } = &ev.kind else {
                return Err(unexpected("stream does not start with a created event"));
            };
            let expected = self.deleted.get(&ev.vm_id).map_or(1, |last| last + 1);
            if ev.sequence != expected {
                return Err(ProjectionError::Gap {
                    vm_id: ev.vm_id.clone(),
                    expected,
                    found: ev.sequence,
                });
            }
            self.deleted.remove(&ev.vm_id);
            self.vms.insert(
                ev.vm_id.clone(),
                VmRecord {
                    id: ev.vm_id.clone(),
                    config: (**config).clone(),
                    devices: config.devices.clone(),
                    state: VmState::Created,
                    stop_reason: None,
                    error: None,
                    last_sequence: ev.sequence,
                    updated: ev.timestamp,
                },
            );
            return Ok(());
        };
        if ev.sequence != rec.last_sequence + 1 {
            return Err(ProjectionError::Gap {
                vm_id: ev.vm_id.clone(),
                expected: rec.last_sequence + 1,
                found: ev.sequence,
            });
        }
        let transition_err = |source| ProjectionError::Transition {
            vm_id: ev.vm_id.clone(),
            sequence: ev.sequence,
            source,
        };
        match &ev.kind {
            EventKind::Created { .. } => return Err(unexpected("vm created twice")),
            EventKind::Deleted => {
                if matches!(rec.state, VmState::Running | VmState::Paused) {
                    return Err(unexpected("deleted a vm that is running or paused"));
                }
                self.vms.remove(&ev.vm_id);
                self.deleted.insert(ev.vm_id.clone(), ev.sequence);
                return Ok(());
            }
            EventKind::DeviceAttached { device } => {
                if rec.state.is_terminal() {
                    return Err(unexpected("device attached to a vm that has ended"));
                }
                if rec.devices.iter().any(|d| d.id() == device.id()) {
                    return Err(unexpected("device id attached twice"));
                }
                rec.devices.push((**device).clone());
            }
            EventKind::DeviceDetached { device_id } => {
                let Some(pos) = rec.devices.iter().position(|d| d.id() == device_id) else {
                    return Err(unexpected("detached a device that is not attached"));
                };
                rec.devices.remove(pos);
            }
            kind => {
                if let Some(t) = kind.transition() {
                    rec.state = rec.state.apply(t).map_err(transition_err)?;
                }
                match kind {
                    EventKind::Stopped { reason } => rec.stop_reason = Some(reason.clone()),
                    EventKind::Failed { error } => rec.error = Some(error.clone()),
                    _ => {}
                }
            }
        }
        rec.last_sequence = ev.sequence;
        rec.updated = ev.timestamp;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, kind: EventKind) -> VmEvent {
        VmEvent::new(VmId::new("a").unwrap(), seq, kind)
    }

    #[test]
    fn restart_delete_and_create_again() {
        let mut reg = VmRegistry::new();
        let created = || EventKind::created(VmConfig::default());
        let stopped = EventKind::Stopped {
            reason: StopReason::DaemonRestarted,
        };
        for (seq, kind) in [
            (1, created()),
            (2, EventKind::Started),
            (3, stopped),
            (4, EventKind::Started),
        ] {
            reg.apply(&ev(seq, kind)).unwrap();
        }
        let id = VmId::new("a").unwrap();
        assert_eq!(reg.get(&id).unwrap().state, VmState::Running);
        // A running VM cannot be deleted.
        assert!(reg.apply(&ev(5, EventKind::Deleted)).is_err());
        let stop = EventKind::Stopped {
            reason: StopReason::Requested,
        };
        reg.apply(&ev(5, stop)).unwrap();
        reg.apply(&ev(6, EventKind::Deleted)).unwrap();
        assert!(reg.get(&id).is_none());
        // Created again: the stream continues after the deletion.
        assert!(matches!(
            reg.apply(&ev(1, created())),
            Err(ProjectionError::Gap { expected: 7, .. })
        ));
        reg.apply(&ev(7, created())).unwrap();
        let rec = reg.get(&id).unwrap();
        assert_eq!((rec.state, rec.last_sequence), (VmState::Created, 7));
    }
}
