//! The stub in a build without the `gdb` feature: it refuses.

use super::{GdbError, GdbListener};
use crate::{StopReason, Vmm};

pub(super) fn run(vmm: Vmm, listener: GdbListener, wait: bool) -> Result<StopReason, GdbError> {
    let _ = (vmm, listener, wait);
    Err(GdbError::NotBuilt)
}
