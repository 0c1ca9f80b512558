//! Errors shared by the devices' snapshot state: each device has a plain
//! serialisable state struct (`ClintState`, `PlicState`, `SerialState`,
//! `RtcState`, `MmioTransportState`) with a `state()` to save it and a restore that checks
//! what it reads against the device it is restored into, so a hostile or
//! mismatched snapshot is refused instead of leaving a device that indexes
//! outside its tables or outside guest memory later.

/// Why a device state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A table in the state has a different length than the device's.
    #[error("{device}: the state has {found} {what}, the device has {expected}")]
    Size {
        /// The device.
        device: &'static str,
        /// What was counted (harts, sources, contexts, queues...).
        what: &'static str,
        /// The device's own count.
        expected: usize,
        /// The count in the state.
        found: usize,
    },
    /// A value in the state is out of range for the device.
    #[error("{device}: {reason}")]
    Invalid {
        /// The device.
        device: &'static str,
        /// What is wrong.
        reason: String,
    },
}
