//! Per-architecture platform knowledge behind one trait, [`PlatformTraits`]:
//! the guest memory map, kernel/initrd/command-line placement, the boot data
//! (x86 zero page + ACPI, or a device tree) and the initial vCPU state.
//!
//! The guest architecture is a runtime value ([`GuestArch`]); every platform
//! compiles on every host because the software engine can run any of them.

pub mod arm64;
pub mod boot;
pub mod error;
mod fdt;
pub mod image;
pub mod layout;
pub mod riscv64;
pub mod x86_64;

use std::fmt;

pub use vm_accel::GuestArch;
use vm_memory::GuestMemoryMmap;

pub use boot::{BootData, BootInfo, BootState, KernelFormat, LoadedKernel};
pub use error::{PlatformError, Result};
pub use layout::{
    DeviceSlot, InterruptController, IrqLine, MachineSize, MemoryMap, Range, SerialPort,
};

/// The platform implementation for `arch`.
pub fn for_arch(arch: GuestArch) -> &'static dyn PlatformTraits {
    match arch {
        GuestArch::X86_64 => &x86_64::X86_64Platform,
        GuestArch::Arm64 => &arm64::Arm64Platform,
        GuestArch::Riscv64 => &riscv64::Riscv64Platform,
    }
}

/// What one guest architecture knows about laying out and booting a machine.
pub trait PlatformTraits: fmt::Debug + Send + Sync {
    /// The architecture this platform describes.
    fn arch(&self) -> GuestArch;

    /// Most vCPUs the layout supports.
    fn max_vcpus(&self) -> u32;

    /// Longest command line the platform passes, in bytes without the NUL.
    fn max_cmdline_len(&self) -> usize;

    /// Lays out RAM, the MMIO window, device slots and interrupt lines.
    fn memory_map(&self, config: &MachineSize) -> Result<MemoryMap>;

    /// Validates `image` for this architecture and copies it into guest memory.
    fn load_kernel(
        &self,
        mem: &GuestMemoryMmap,
        map: &MemoryMap,
        image: &[u8],
    ) -> Result<LoadedKernel>;

    /// Places the initrd and command line and writes the boot data structure.
    fn write_boot_data(
        &self,
        mem: &GuestMemoryMmap,
        map: &MemoryMap,
        kernel: &LoadedKernel,
        initrd: Option<&[u8]>,
        cmdline: &str,
    ) -> Result<BootInfo>;

    /// Loads the kernel, then writes initrd, command line and boot data.
    fn boot(
        &self,
        mem: &GuestMemoryMmap,
        map: &MemoryMap,
        kernel: &[u8],
        initrd: Option<&[u8]>,
        cmdline: &str,
    ) -> Result<BootInfo> {
        boot::check_cmdline(self.arch(), cmdline, self.max_cmdline_len() + 1)?;
        let loaded = self.load_kernel(mem, map, kernel)?;
        self.write_boot_data(mem, map, &loaded, initrd, cmdline)
    }

    /// The state vCPU `index` starts in: vCPU 0 enters the kernel, the others
    /// wait for the guest to start them (INIT/SIPI, PSCI `CPU_ON`, SBI HSM).
    fn vcpu_start(&self, map: &MemoryMap, boot: &BootInfo, index: u32) -> Result<BootState> {
        if index >= map.vcpus {
            return Err(PlatformError::NoSuchVcpu {
                index,
                vcpus: map.vcpus,
            });
        }
        Ok(if index == 0 {
            boot.boot_vcpu
        } else {
            BootState::Secondary { arch: self.arch() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_round_trip() {
        for arch in GuestArch::ALL {
            assert_eq!(arch.to_string().parse::<GuestArch>().unwrap(), arch);
            assert_eq!(for_arch(arch).arch(), arch);
        }
    }
}
