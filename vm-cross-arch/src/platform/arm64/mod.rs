//! The arm64 platform: QEMU-`virt`-like layout, GICv3, PSCI, a 16550 UART,
//! virtio-mmio, `Image` loading and a device tree.

pub mod fdt;
pub mod layout;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{BootInfo, BootState, LoadedKernel};
use super::error::Result;
use super::layout::{MachineSize, MemoryMap, Range};
use super::{image, GuestArch, PlatformTraits};

/// arm64 guests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arm64Platform;

impl PlatformTraits for Arm64Platform {
    fn arch(&self) -> GuestArch {
        GuestArch::Arm64
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
        image::load(GuestArch::Arm64, mem, map, layout::RAM_BASE, image)
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

impl super::fdt::FdtPlatform for Arm64Platform {
    const ARCH: GuestArch = GuestArch::Arm64;

    fn build_fdt(map: &MemoryMap, cmdline: &str, initrd: Option<Range>) -> Result<Vec<u8>> {
        fdt::build(map, cmdline, initrd)
    }

    fn boot_state(kernel: &LoadedKernel, dtb: GuestAddress) -> BootState {
        BootState::Arm64Linux {
            entry: kernel.entry,
            fdt: dtb,
        }
    }
}
