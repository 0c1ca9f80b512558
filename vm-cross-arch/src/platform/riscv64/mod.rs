//! The riscv64 platform: QEMU-`virt`-like layout, CLINT + PLIC, a 16550 UART,
//! virtio-mmio, syscon poweroff/reboot, `Image` loading and a device tree.
//! Harts enter the kernel in S-mode with `a0 = hartid`, `a1 = DTB`. An ELF
//! instead of an `Image` is a bare-metal test program (`program.rs`),
//! entered in M-mode.

pub mod fdt;
pub mod layout;
pub mod program;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{BootInfo, BootState, KernelFormat, LoadedKernel};
use super::error::{PlatformError, Result};
use super::layout::{MachineSize, MemoryMap, Range};
use super::{image, GuestArch, PlatformTraits};

/// riscv64 guests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Riscv64Platform;

impl PlatformTraits for Riscv64Platform {
    fn arch(&self) -> GuestArch {
        GuestArch::Riscv64
    }

    fn max_vcpus(&self) -> u32 {
        layout::MAX_VCPUS
    }

    fn max_cmdline_len(&self) -> usize {
        super::fdt::FDT_CMDLINE_MAX - 1
    }

    fn memory_map(&self, config: &MachineSize) -> Result<MemoryMap> {
        layout::memory_map(config)
    }

    fn load_kernel(
        &self,
        mem: &GuestMemoryMmap,
        map: &MemoryMap,
        image: &[u8],
    ) -> Result<LoadedKernel> {
        if program::is_elf(image) {
            return load_program(mem, image);
        }
        // The Image's text_offset (2 MiB for Debian's kernels) leaves the
        // first 2 MiB of RAM to SBI firmware when one is used.
        image::load(GuestArch::Riscv64, mem, map, layout::RAM_BASE, image)
    }

    fn write_boot_data(
        &self,
        mem: &GuestMemoryMmap,
        map: &MemoryMap,
        kernel: &LoadedKernel,
        initrd: Option<&[u8]>,
        cmdline: &str,
    ) -> Result<BootInfo> {
        super::fdt::write_boot_data::<Self>(mem, map, kernel, initrd, cmdline)
    }
}

impl super::fdt::FdtPlatform for Riscv64Platform {
    const ARCH: GuestArch = GuestArch::Riscv64;

    fn build_fdt(map: &MemoryMap, cmdline: &str, initrd: Option<Range>) -> Result<Vec<u8>> {
        fdt::build(map, cmdline, initrd)
    }

    fn boot_state(kernel: &LoadedKernel, dtb: GuestAddress) -> BootState {
        match kernel.format {
            KernelFormat::Riscv64Program => BootState::Riscv64Bare {
                entry: kernel.entry,
                tohost: kernel.tohost,
            },
            _ => BootState::Riscv64 {
                entry: kernel.entry,
                hart_id: 0,
                fdt: dtb,
            },
        }
    }
}

/// Loads a bare-metal test program: its segments at their physical addresses.
fn load_program(mem: &GuestMemoryMmap, bytes: &[u8]) -> Result<LoadedKernel> {
    let program = program::load(mem, bytes).map_err(|e| PlatformError::InvalidKernel {
        arch: GuestArch::Riscv64,
        reason: e.to_string(),
    })?;
    let segments = program.segments.iter();
    let load = segments
        .clone()
        .map(|s| s.paddr)
        .min()
        .unwrap_or(program.entry);
    let end = segments
        .map(|s| s.paddr.saturating_add(s.mem_size))
        .max()
        .unwrap_or(load);
    Ok(LoadedKernel {
        format: KernelFormat::Riscv64Program,
        load: GuestAddress(load),
        end,
        entry: GuestAddress(program.entry),
        pvh_entry: None,
        initrd_addr_max: None,
        cmdline_max: None,
        x86_setup_header: None,
        tohost: program.tohost.map(GuestAddress),
    })
}
