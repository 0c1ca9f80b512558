//! Stand-in for `loader.rs` on hosts other than unix x86_64: linux-loader
//! builds its bzImage, ELF and `boot_params` support only for x86 hosts (and
//! not at all on Windows, through vm-memory's `rawfd`), and no software engine
//! runs x86 guests yet, so loading an x86 kernel there is a typed error.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::platform::boot::LoadedKernel;
use crate::platform::error::{PlatformError, Result};
use crate::platform::layout::{MemoryMap, Range};

fn unsupported(what: &'static str) -> PlatformError {
    PlatformError::UnsupportedOnHost {
        what,
        host: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

/// Always fails: see the module docs.
pub fn load_kernel(_: &GuestMemoryMmap, _: &MemoryMap, _: &[u8]) -> Result<LoadedKernel> {
    Err(unsupported("x86_64 kernel loading (linux-loader)"))
}

/// Always fails: see the module docs.
pub fn write_zero_page(
    _: &GuestMemoryMmap,
    _: &MemoryMap,
    _: &LoadedKernel,
    _: Range,
    _: Option<Range>,
    _: GuestAddress,
) -> Result<()> {
    Err(unsupported("the x86_64 zero page (linux-loader)"))
}
