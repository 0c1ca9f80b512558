//! Hosts without a hardware backend (neither Linux, macOS nor Windows):
//! detection reports that plainly instead of pretending.

use crate::accelerator::{Accelerator, AcceleratorKind, Probe, Unavailable};
use std::sync::Arc;

fn unavailable() -> Result<Arc<dyn Accelerator>, Unavailable> {
    let kind = if cfg!(target_os = "macos") {
        AcceleratorKind::Hvf
    } else if cfg!(target_os = "windows") {
        AcceleratorKind::Whpx
    } else {
        AcceleratorKind::Kvm
    };
    Err(Unavailable {
        kind,
        reason: format!(
            "no backend for this OS ({}) yet in vm-accel",
            std::env::consts::OS
        ),
    })
}

/// The probes for this host.
pub(crate) fn probes() -> &'static [Probe] {
    &[unavailable]
}
