//! What loading a kernel produces: where everything was placed, and the
//! register state each vCPU starts with.

pub use vm_accel::BootState;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::error::{PlatformError, Result};
use super::layout::{align_down, Range, PAGE_SIZE};
use super::GuestArch;

/// The kernel image formats the platforms recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// x86 bzImage (Linux boot protocol setup header).
    BzImage,
    /// x86 ELF `vmlinux`.
    ElfVmlinux,
    /// arm64 `Image` (with or without an EFI stub).
    Arm64Image,
    /// riscv64 `Image` (with or without an EFI stub).
    Riscv64Image,
    /// A bare-metal riscv64 ELF test program (riscv-tests `tohost` convention).
    Riscv64Program,
}

/// Where a kernel was loaded and how to enter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    /// Image format.
    pub format: KernelFormat,
    /// First byte written.
    pub load: GuestAddress,
    /// One past the last byte the kernel owns (its in-memory size, which can
    /// exceed the file for arm64/riscv64 `image_size` and bzImage `init_size`).
    pub end: u64,
    /// Entry point for the boot vCPU.
    pub entry: GuestAddress,
    /// PVH entry (32-bit, `XEN_ELFNOTE_PHYS32_ENTRY`) of an ELF vmlinux, if it has one.
    pub pvh_entry: Option<GuestAddress>,
    /// Highest address (inclusive) an initrd may end at, from the kernel header.
    pub initrd_addr_max: Option<u64>,
    /// Longest command line the kernel accepts, without the NUL, from its header.
    pub cmdline_max: Option<usize>,
    /// The bzImage setup header as read from the image (copied into the zero page).
    pub x86_setup_header: Option<SetupHeaderBytes>,
    /// A riscv64 test program's `tohost` symbol, if it has one.
    pub tohost: Option<GuestAddress>,
}

/// Length of the x86 Linux boot protocol setup header (offsets 0x1f1..0x26c).
pub const SETUP_HEADER_LEN: usize = 0x7b;

/// Raw bytes of an x86 bzImage setup header, kept host-independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeaderBytes(pub [u8; SETUP_HEADER_LEN]);

/// Boot data the platform wrote for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootData {
    /// x86: the zero page and the ACPI tables (RSDP address).
    X86 {
        /// `struct boot_params`.
        zero_page: GuestAddress,
        /// ACPI RSDP.
        rsdp: GuestAddress,
        /// All ACPI tables, RSDP first.
        acpi: Range,
    },
    /// arm64 / riscv64: a flattened device tree.
    Fdt(Range),
}

/// Everything `PlatformTraits::boot` placed in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// The kernel.
    pub kernel: LoadedKernel,
    /// The initrd, if one was given.
    pub initrd: Option<Range>,
    /// The NUL-terminated command line (x86; on FDT platforms it lives in `/chosen`).
    pub cmdline: Option<Range>,
    /// Boot data structure.
    pub data: BootData,
    /// State of the boot vCPU (vCPU 0).
    pub boot_vcpu: BootState,
}

/// Validates a command line against a limit that includes the NUL terminator.
pub(crate) fn check_cmdline(arch: GuestArch, cmdline: &str, max_with_nul: usize) -> Result<()> {
    if let Some(offset) = cmdline.bytes().position(|b| b == 0) {
        return Err(PlatformError::CmdlineNul { offset });
    }
    let len = cmdline.len() + 1;
    if len > max_with_nul {
        return Err(PlatformError::CmdlineTooLong {
            arch,
            len,
            max: max_with_nul,
        });
    }
    Ok(())
}

/// Picks the highest page-aligned address in `[low, high)` that holds `size` bytes.
pub(crate) fn place_top_down(size: u64, low: u64, high: u64) -> Result<GuestAddress> {
    let available = high.saturating_sub(low);
    let fail = || PlatformError::InitrdDoesNotFit {
        size,
        available,
        low,
        high,
    };
    let start = align_down(high.checked_sub(size).ok_or_else(fail)?, PAGE_SIZE);
    if start < low {
        return Err(fail());
    }
    Ok(GuestAddress(start))
}

/// Writes `data` at `addr`, naming `what` in the error.
pub(crate) fn write_blob(
    mem: &GuestMemoryMmap,
    what: &'static str,
    addr: GuestAddress,
    data: &[u8],
) -> Result<()> {
    mem.write_slice(data, addr)
        .map_err(|source| PlatformError::GuestWrite {
            what,
            addr: addr.0,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_limits() {
        assert!(check_cmdline(GuestArch::Riscv64, "console=ttyS0", 14).is_ok());
        assert!(matches!(
            check_cmdline(GuestArch::Riscv64, "console=ttyS0", 13),
            Err(PlatformError::CmdlineTooLong {
                len: 14,
                max: 13,
                ..
            })
        ));
        assert!(matches!(
            check_cmdline(GuestArch::Arm64, "a\0b", 100),
            Err(PlatformError::CmdlineNul { offset: 1 })
        ));
    }

    #[test]
    fn top_down_placement() {
        assert_eq!(
            place_top_down(0x1800, 0x1000, 0x10000).ok(),
            Some(GuestAddress(0xe000))
        );
        assert!(matches!(
            place_top_down(0x10000, 0x1000, 0x10000),
            Err(PlatformError::InitrdDoesNotFit { .. })
        ));
        assert!(place_top_down(0x10, 0x2000, 0x1000).is_err());
    }
}
