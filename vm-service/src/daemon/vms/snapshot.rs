//! What `GET /vms/{id}` reports about a VM.

use vm_core::config::VmConfig;
use vm_core::VmState;

use super::Slot;
use crate::daemon::process::ProcessExit;
use crate::daemon::protocol::{BootReport, VmmStatus};

/// A VM as the API reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmSnapshot {
    /// The id.
    pub id: String,
    /// Lifecycle state.
    pub state: VmState,
    /// The configuration.
    pub config: VmConfig,
    /// Seconds since it started, while it runs or is paused.
    pub uptime_secs: Option<f64>,
    /// VM exits per vCPU (live VMs only).
    pub vcpu_exit_counts: Option<Vec<u64>>,
    /// Why it last stopped.
    pub stop_reason: Option<String>,
    /// Why it last failed.
    pub error: Option<String>,
    /// Its VMM process (live VMs only).
    pub process: Option<ProcessInfo>,
    /// How its last VMM process ended.
    pub last_exit: Option<ProcessExit>,
    /// The last bytes of its serial console (lossy UTF-8).
    pub serial_tail: String,
    /// Events journaled for this VM.
    pub journal_sequence: u64,
}

/// The VMM process of a live VM.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// What it built.
    #[serde(flatten)]
    pub boot: BootReport,
}

/// Bytes of serial tail included in a snapshot.
const SNAPSHOT_SERIAL_BYTES: usize = 4096;

pub(super) fn snapshot(slot: &Slot, status: Option<VmmStatus>) -> VmSnapshot {
    let v = slot.view();
    let tail = slot.serial.tail();
    let from = tail.len().saturating_sub(SNAPSHOT_SERIAL_BYTES);
    VmSnapshot {
        id: slot.id.to_string(),
        state: v.state,
        config: v.config.clone(),
        uptime_secs: v.started.map(|t| t.elapsed().as_secs_f64()),
        vcpu_exit_counts: status.map(|s| s.exit_counts),
        stop_reason: v.stop_reason.clone(),
        error: v.error.clone(),
        process: v.process.as_ref().map(|p| ProcessInfo {
            pid: p.pid(),
            boot: p.report().clone(),
        }),
        last_exit: v.last_exit.clone(),
        serial_tail: String::from_utf8_lossy(&tail[from..]).into_owned(),
        journal_sequence: v.sequence,
    }
}
