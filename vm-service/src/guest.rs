//! The built-in guests `vm-service run` boots when no kernel is given.
//!
//! Each is a tiny program assembled from `vm-service/guest/<arch>.S` by
//! `cargo xtask builtin-guest` and embedded here; CI checks the embedded bytes
//! match a rebuild. The x86_64 guest is entered like a Linux kernel, prints a
//! banner with the memory size and vCPU count it discovers (e820, ACPI MADT),
//! starts the secondary vCPUs with INIT/SIPI, reads the first virtio-mmio slot
//! and asks for a reset through the i8042.

use vm_core::config::GuestArch;

use crate::vmm::VmmError;

/// The x86_64 built-in guest, an ELF image loaded at 1 MiB.
pub const X86_64: &[u8] = include_bytes!("../guest/builtin-x86_64.elf");

/// The first line the x86_64 built-in guest prints.
pub const BANNER: &str = "vm-service built-in guest: booted in 64-bit mode";

/// The built-in guest for `arch`, or why there is none.
pub fn builtin(arch: GuestArch) -> Result<&'static [u8], VmmError> {
    match arch {
        GuestArch::X86_64 => Ok(X86_64),
        other => Err(VmmError::NoBuiltinGuest { arch: other }),
    }
}
