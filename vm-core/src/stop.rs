//! `StopReason`: why a VM stopped. One type from the vCPU loop that decides
//! it, through the daemon's control protocol and the journal, to the exit
//! status of the process that ran the VM.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::VcpuId;

/// Exit status of a VMM process whose VM stopped cleanly.
pub const EXIT_CLEAN: u8 = 0;
/// Exit status of a VMM process whose VM failed, or could not be built.
pub const EXIT_FAILED: u8 = 1;
/// Exit status of a VMM process whose guest triple-faulted.
pub const EXIT_TRIPLE_FAULT: u8 = 2;

/// Why a VM stopped.
///
/// Serialised (JSON) as its snake-case name for the variants without data
/// (`"guest_shutdown"`), and as `{"triple_fault": {"vcpu": 0}}` or
/// `{"failed": {"vcpu": 1, "message": "..."}}` for the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An operator, API client or embedder asked for it.
    Requested,
    /// The Ctrl-Alt-Del key combination: the VMM stops the VM directly, as
    /// the guest's reset would have.
    CtrlAltDel,
    /// The guest powered itself off.
    GuestShutdown,
    /// The guest asked for a reset (i8042 pulse, ACPI/PSCI reset), which this
    /// VMM treats as a stop.
    GuestReset,
    /// A vCPU shut down (x86 triple fault).
    TripleFault {
        /// The vCPU that faulted.
        vcpu: VcpuId,
    },
    /// The hypervisor or a device failed; the message says what and where.
    Failed {
        /// The vCPU whose exit failed, if one did.
        vcpu: Option<VcpuId>,
        /// What went wrong.
        message: String,
    },
    /// The daemon was shutting down.
    HostShutdown,
    /// The daemon restarted and found the VM's process gone.
    DaemonRestarted,
    /// Not recorded (events from the v1 journal carried no reason).
    Unknown,
}

impl StopReason {
    /// True when the guest, an operator or the host asked for the stop; false
    /// when the VM failed or its end is not known.
    pub fn is_clean(&self) -> bool {
        self.exit_code() == EXIT_CLEAN
    }

    /// The exit status of a VMM process whose VM stopped for this reason:
    /// [`EXIT_CLEAN`] for a stop someone asked for, [`EXIT_TRIPLE_FAULT`] for
    /// a triple fault, [`EXIT_FAILED`] for a failure or an unknown end. These
    /// numbers are stable (the README documents them).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Requested
            | Self::CtrlAltDel
            | Self::GuestShutdown
            | Self::GuestReset
            | Self::HostShutdown => EXIT_CLEAN,
            Self::TripleFault { .. } => EXIT_TRIPLE_FAULT,
            Self::Failed { .. } | Self::DaemonRestarted | Self::Unknown => EXIT_FAILED,
        }
    }

    /// The variant's snake-case name, as serialised (`"triple_fault"`), for
    /// places that show the kind of stop without its data.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::CtrlAltDel => "ctrl_alt_del",
            Self::GuestShutdown => "guest_shutdown",
            Self::GuestReset => "guest_reset",
            Self::TripleFault { .. } => "triple_fault",
            Self::Failed { .. } => "failed",
            Self::HostShutdown => "host_shutdown",
            Self::DaemonRestarted => "daemon_restarted",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("stopped on request"),
            Self::CtrlAltDel => f.write_str("ctrl-alt-del"),
            Self::GuestShutdown => f.write_str("guest powered off"),
            Self::GuestReset => f.write_str("guest requested a reset"),
            Self::TripleFault { vcpu } => write!(f, "{vcpu} shut down (triple fault)"),
            Self::Failed {
                vcpu: Some(vcpu),
                message,
            } => write!(f, "{vcpu} failed: {message}"),
            Self::Failed {
                vcpu: None,
                message,
            } => write!(f, "failed: {message}"),
            Self::HostShutdown => f.write_str("daemon shut down"),
            Self::DaemonRestarted => f.write_str("daemon restarted"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_reason() -> Vec<StopReason> {
        vec![
            StopReason::Requested,
            StopReason::CtrlAltDel,
            StopReason::GuestShutdown,
            StopReason::GuestReset,
            StopReason::TripleFault { vcpu: VcpuId(1) },
            StopReason::Failed {
                vcpu: None,
                message: "boom".into(),
            },
            StopReason::HostShutdown,
            StopReason::DaemonRestarted,
            StopReason::Unknown,
        ]
    }

    #[test]
    fn exit_codes_are_stable() {
        let codes: Vec<u8> = every_reason().iter().map(StopReason::exit_code).collect();
        assert_eq!(codes, [0, 0, 0, 0, 2, 1, 0, 1, 1]);
        assert!(StopReason::CtrlAltDel.is_clean());
        assert!(!StopReason::TripleFault { vcpu: VcpuId(0) }.is_clean());
    }

    #[test]
    fn kind_is_the_serialised_name() {
        for reason in every_reason() {
            let json = serde_json::to_value(&reason).unwrap();
            let name = match &json {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => o.keys().next().unwrap().clone(),
                other => panic!("unexpected shape {other}"),
            };
            assert_eq!(name, reason.kind());
            assert_eq!(serde_json::from_value::<StopReason>(json).unwrap(), reason);
        }
    }

    #[test]
    fn display_names_the_vcpu() {
        let failed = StopReason::Failed {
            vcpu: Some(VcpuId(3)),
            message: "KVM_RUN: EFAULT".into(),
        };
        assert_eq!(failed.to_string(), "vcpu3 failed: KVM_RUN: EFAULT");
        assert_eq!(
            StopReason::TripleFault { vcpu: VcpuId(0) }.to_string(),
            "vcpu0 shut down (triple fault)"
        );
        assert_eq!(
            serde_json::to_string(&StopReason::TripleFault { vcpu: VcpuId(0) }).unwrap(),
            r#"{"triple_fault":{"vcpu":0}}"#
        );
    }
}
