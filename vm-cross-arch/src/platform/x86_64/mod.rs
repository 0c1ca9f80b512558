//! The x86_64 platform: PC-like low memory, a 32-bit MMIO hole below 4 GiB,
//! COM1 on port 0x3f8, virtio-mmio devices on IOAPIC pins, Linux 64-bit boot
//! protocol with a zero page, and ACPI tables describing it all.

pub mod acpi;
pub mod entry;
pub mod layout;
#[cfg(all(unix, target_arch = "x86_64"))]
mod loader;
#[cfg(not(all(unix, target_arch = "x86_64")))]
#[path = "loader_unsupported.rs"]
mod loader;
#[cfg(all(test, unix, target_arch = "x86_64"))]
mod tests;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{check_cmdline, place_top_down, write_blob, BootData, BootInfo, LoadedKernel};
use super::error::{PlatformError, Result};
use super::layout::{MachineSize, MemoryMap, Range};
use super::{GuestArch, PlatformTraits};

/// x86_64 guests.
#[derive(Clone, Copy, Debug, Default)]
pub struct X86_64Platform;

impl PlatformTraits for X86_64Platform {
    fn arch(&self) -> GuestArch {
        GuestArch::X86_64
    }

    fn max_vcpus(&self) -> u32 {
        layout::MAX_VCPUS
    }

    fn max_cmdline_len(&self) -> usize {
        layout::CMDLINE.size as usize - 1
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
        let k = loader::load_kernel(mem, map, image)?;
        tracing::debug!(format = ?k.format, load = k.load.0, entry = k.entry.0, end = k.end, "x86_64 kernel loaded");
        Ok(k)
    }

    fn write_boot_data(
        &self,
        mem: &GuestMemoryMmap,
        map: &MemoryMap,
        kernel: &LoadedKernel,
        initrd: Option<&[u8]>,
        cmdline: &str,
    ) -> Result<BootInfo> {
        if map.arch != GuestArch::X86_64 {
            return Err(PlatformError::MapMismatch {
                arch: GuestArch::X86_64,
                reason: "memory map of another architecture",
            });
        }
        let max = kernel
            .cmdline_max
            .map_or(self.max_cmdline_len(), |m| m.min(self.max_cmdline_len()));
        check_cmdline(self.arch(), cmdline, max + 1)?;
        let cmdline_range = Range::new(layout::CMDLINE.start.0, cmdline.len() as u64 + 1);
        write_blob(
            mem,
            "command line",
            layout::CMDLINE.start,
            cmdline.as_bytes(),
        )?;
        write_blob(
            mem,
            "command line",
            GuestAddress(layout::CMDLINE.start.0 + cmdline.len() as u64),
            &[0],
        )?;

        let initrd_range = match initrd {
            Some(rd) => {
                // initrd_addr_max is the highest byte the initrd may occupy.
                let ceiling = kernel
                    .initrd_addr_max
                    .map_or(u64::MAX, |m| m.saturating_add(1))
                    .min(layout::low_ram_end(map));
                let size = rd.len() as u64;
                let addr = place_top_down(size, kernel.end, ceiling)?;
                write_blob(mem, "initrd", addr, rd)?;
                Some(Range { start: addr, size })
            }
            None => None,
        };

        let tables = acpi::build(map, layout::ACPI.start.0, layout::ACPI.size)?;
        for t in &tables.tables {
            write_blob(mem, "ACPI table", t.addr, &t.bytes)?;
        }
        loader::write_zero_page(mem, map, kernel, cmdline_range, initrd_range, tables.rsdp())?;
        entry::write_boot_tables(mem)?;

        Ok(BootInfo {
            kernel: *kernel,
            initrd: initrd_range,
            cmdline: Some(cmdline_range),
            data: BootData::X86 {
                zero_page: layout::zero_page(),
                rsdp: tables.rsdp(),
                acpi: tables.span(),
            },
            boot_vcpu: entry::linux_boot_state(
                kernel.entry.0,
                layout::ZERO_PAGE,
                layout::BOOT_STACK,
            ),
        })
    }
}
