//! The riscv64 platform: QEMU-`virt`-like layout, CLINT + PLIC, a 16550 UART,
//! virtio-mmio, syscon poweroff/reboot, `Image` loading and a device tree.
//! Harts enter the kernel in S-mode with `a0 = hartid`, `a1 = DTB`.

pub mod fdt;
pub mod layout;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{BootInfo, BootState, LoadedKernel};
use super::error::Result;
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
        BootState::Riscv64 {
            entry: kernel.entry,
            hart_id: 0,
            fdt: dtb,
        }
    }
}
