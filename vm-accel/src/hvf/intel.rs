//! Intel Macs: Hypervisor.framework there is the VMX-level API (`hv_vmx_*`,
//! VMCS fields, every exit decoded and emulated by the VMM, no in-kernel
//! APIC). This backend implements the Apple-silicon API only; detection
//! says so rather than offering a half-working accelerator.

use crate::accelerator::{Accelerator, AcceleratorKind, Unavailable};
use std::sync::Arc;

/// Reports HVF as unavailable on Intel Macs, with the reason.
pub(super) fn probe() -> Result<Arc<dyn Accelerator>, Unavailable> {
    Err(Unavailable {
        kind: AcceleratorKind::Hvf,
        reason: "this is an Intel Mac: vm-accel's HVF backend implements the Apple-silicon \
                 Hypervisor.framework API; the Intel (VMX/VMCS) variant is not implemented"
            .to_owned(),
    })
}
