//! The stub in a build without the `gdb` feature: it refuses.

use super::{GdbControl, GdbError, GdbListener};
use crate::{StopReason, Vmm};

/// Whether this build has a stub.
pub(super) const BUILT: bool = false;

pub(super) fn run(
    vmm: Vmm,
    listener: GdbListener,
    wait: bool,
    control: &GdbControl,
) -> Result<StopReason, GdbError> {
    let _ = (vmm, listener, wait, control);
    Err(GdbError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use vm_core::config::GuestArch;

    use super::super::{check_supported, GdbError};

    #[test]
    fn a_build_without_the_feature_refuses_every_arch() {
        for arch in GuestArch::ALL {
            assert!(
                matches!(check_supported(arch), Err(GdbError::NotBuilt)),
                "{arch:?}"
            );
        }
    }
}
