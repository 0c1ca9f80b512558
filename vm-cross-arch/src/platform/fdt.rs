//! Device-tree pieces shared by arm64 and riscv64: placement of the DTB and
//! initrd at the top of RAM, and the memory, chosen, UART and virtio-mmio nodes.

use vm_fdt::FdtWriter;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{
    check_cmdline, place_top_down, write_blob, BootData, BootInfo, BootState, LoadedKernel,
};
use super::error::{PlatformError, Result};
use super::layout::{align_down, DeviceSlot, IrqLine, MemoryMap, Range};
use super::GuestArch;

/// Room reserved for the DTB at the top of RAM (arm64's limit is 2 MiB).
pub const FDT_MAX_SIZE: u64 = 0x20_0000;
/// Command lines longer than this are refused on FDT platforms (`COMMAND_LINE_SIZE`).
pub const FDT_CMDLINE_MAX: usize = 2048;

/// Where the DTB and initrd went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdtPlacement {
    /// Reserved window for the DTB.
    pub fdt: Range,
    /// The initrd, if any.
    pub initrd: Option<Range>,
}

/// Places the DTB window at the top of the RAM range holding the kernel and
/// the initrd just below it, above the kernel.
pub fn place(
    map: &MemoryMap,
    kernel: &LoadedKernel,
    initrd_len: Option<u64>,
) -> Result<FdtPlacement> {
    let ram =
        map.ram_range_of(kernel.load.0, 1)
            .copied()
            .ok_or(PlatformError::KernelDoesNotFit {
                addr: kernel.load.0,
                size: kernel.end.saturating_sub(kernel.load.0),
                ram_end: map.ram.last().map_or(0, Range::end),
            })?;
    let fdt_start = align_down(ram.end().saturating_sub(FDT_MAX_SIZE), 8);
    if fdt_start < kernel.end {
        return Err(PlatformError::MemoryTooSmall {
            arch: map.arch,
            size: map.ram_size(),
            min: map.ram_size() + (kernel.end - fdt_start),
        });
    }
    let initrd = match initrd_len {
        Some(size) => Some(Range {
            start: place_top_down(size, kernel.end, fdt_start)?,
            size,
        }),
        None => None,
    };
    Ok(FdtPlacement {
        fdt: Range::new(fdt_start, ram.end() - fdt_start),
        initrd,
    })
}

/// Root node properties every platform sets.
pub fn root_props(fdt: &mut FdtWriter, compatible: &str, model: &str) -> Result<()> {
    fdt.property_string("compatible", compatible)?;
    fdt.property_string("model", model)?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    Ok(())
}

/// One `memory@` node per RAM range.
pub fn memory_nodes(fdt: &mut FdtWriter, map: &MemoryMap) -> Result<()> {
    for r in &map.ram {
        let node = fdt.begin_node(&format!("memory@{:x}", r.start.0))?;
        fdt.property_string("device_type", "memory")?;
        fdt.property_array_u64("reg", &[r.start.0, r.size])?;
        fdt.end_node(node)?;
    }
    Ok(())
}

/// `/chosen`: bootargs, console and initrd.
pub fn chosen(
    fdt: &mut FdtWriter,
    cmdline: &str,
    stdout: &str,
    initrd: Option<Range>,
) -> Result<()> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cmdline)?;
    fdt.property_string("stdout-path", stdout)?;
    if let Some(rd) = initrd {
        fdt.property_u64("linux,initrd-start", rd.start.0)?;
        fdt.property_u64("linux,initrd-end", rd.end())?;
    }
    fdt.end_node(node)?;
    Ok(())
}

/// A memory-mapped 16550 (`ns16550a`) with the given interrupt cells.
pub fn uart_node(
    fdt: &mut FdtWriter,
    slot: &DeviceSlot,
    interrupts: &[u32],
    clock_hz: u32,
) -> Result<String> {
    let name = format!("serial@{:x}", slot.mmio.start.0);
    let node = fdt.begin_node(&name)?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[slot.mmio.start.0, slot.mmio.size])?;
    fdt.property_array_u32("interrupts", interrupts)?;
    fdt.property_u32("clock-frequency", clock_hz)?;
    fdt.end_node(node)?;
    Ok(name)
}

/// One `virtio,mmio` node per slot; `cells` turns an IRQ into interrupt cells.
pub fn virtio_nodes(
    fdt: &mut FdtWriter,
    map: &MemoryMap,
    cells: impl Fn(IrqLine) -> Vec<u32>,
) -> Result<()> {
    for slot in &map.virtio {
        let node = fdt.begin_node(&format!("virtio_mmio@{:x}", slot.mmio.start.0))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[slot.mmio.start.0, slot.mmio.size])?;
        fdt.property_array_u32("interrupts", &cells(slot.irq))?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }
    Ok(())
}

/// What an FDT platform adds to the shared boot flow.
pub trait FdtPlatform {
    /// Guest architecture.
    const ARCH: GuestArch;

    /// Builds the DTB for `map` with this command line and initrd.
    fn build_fdt(map: &MemoryMap, cmdline: &str, initrd: Option<Range>) -> Result<Vec<u8>>;

    /// The boot vCPU's state once kernel and DTB are in place.
    fn boot_state(kernel: &LoadedKernel, dtb: GuestAddress) -> BootState;
}

/// The FDT boot flow shared by arm64 and riscv64: check the command line,
/// place initrd and DTB, build the DTB, write everything.
pub fn write_boot_data<P: FdtPlatform>(
    mem: &GuestMemoryMmap,
    map: &MemoryMap,
    kernel: &LoadedKernel,
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<BootInfo> {
    let arch = P::ARCH;
    if map.arch != arch {
        return Err(PlatformError::MapMismatch {
            arch,
            reason: "memory map of another architecture",
        });
    }
    check_cmdline(arch, cmdline, FDT_CMDLINE_MAX)?;
    let placement = place(map, kernel, initrd.map(|rd| rd.len() as u64))?;
    let dtb = P::build_fdt(map, cmdline, placement.initrd)?;
    if dtb.len() as u64 > placement.fdt.size {
        return Err(PlatformError::BootDataTooLarge {
            what: "device tree",
            size: dtb.len() as u64,
            max: placement.fdt.size,
        });
    }
    if let (Some(rd), Some(data)) = (placement.initrd, initrd) {
        write_blob(mem, "initrd", rd.start, data)?;
    }
    write_blob(mem, "device tree", placement.fdt.start, &dtb)?;
    tracing::debug!(%arch, fdt = placement.fdt.start.0, fdt_len = dtb.len(), "device tree written");
    Ok(BootInfo {
        kernel: *kernel,
        initrd: placement.initrd,
        cmdline: None,
        data: BootData::Fdt(Range {
            start: placement.fdt.start,
            size: dtb.len() as u64,
        }),
        boot_vcpu: P::boot_state(kernel, placement.fdt.start),
    })
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;
    use crate::platform::image::tests::fake_image;
    use crate::platform::layout::MachineSize;
    use crate::platform::{for_arch, KernelFormat};

    const FDT_ARCHES: [GuestArch; 2] = [GuestArch::Arm64, GuestArch::Riscv64];

    fn machine(arch: GuestArch, mem: u64) -> (MemoryMap, GuestMemoryMmap) {
        let map = for_arch(arch)
            .memory_map(&MachineSize {
                vcpus: 3,
                mem_size: mem,
                virtio_devices: 2,
            })
            .unwrap();
        let gm = map.create_guest_memory().unwrap();
        (map, gm)
    }

    #[test]
    fn kernel_initrd_and_dtb_are_placed_without_overlap() {
        for arch in FDT_ARCHES {
            let p = for_arch(arch);
            let (map, gm) = machine(arch, 128 << 20);
            let base = map.ram[0].start.0;
            let image = fake_image(arch, 0x20_0000, 0x80_0000, 0x1000);
            let initrd = vec![0xa5u8; 0x1_2345];
            let boot = p
                .boot(&gm, &map, &image, Some(&initrd), "console=ttyS0")
                .unwrap();

            let k = boot.kernel;
            let format = if arch == GuestArch::Arm64 {
                KernelFormat::Arm64Image
            } else {
                KernelFormat::Riscv64Image
            };
            assert_eq!(k.format, format);
            assert_eq!(k.load.0, base + 0x20_0000, "{arch}");
            assert_eq!(k.entry, k.load);
            assert_eq!(k.end, k.load.0 + 0x80_0000);

            let BootData::Fdt(dtb) = boot.data else {
                panic!("{arch}: no FDT")
            };
            assert_eq!(dtb.start.0, map.ram[0].end() - FDT_MAX_SIZE);
            assert_eq!(
                gm.read_obj::<u32>(dtb.start).unwrap(),
                0xd00d_feedu32.to_be()
            );
            let rd = boot.initrd.unwrap();
            assert!(
                rd.start.0 >= k.end && rd.end() <= dtb.start.0,
                "{arch}: {rd:?}"
            );
            assert_eq!(rd.start.0 % 0x1000, 0);
            assert_eq!(gm.read_obj::<u8>(rd.start).unwrap(), 0xa5);

            let expected = if arch == GuestArch::Arm64 {
                BootState::Arm64Linux {
                    entry: k.entry,
                    fdt: dtb.start,
                }
            } else {
                BootState::Riscv64 {
                    entry: k.entry,
                    hart_id: 0,
                    fdt: dtb.start,
                }
            };
            assert_eq!(p.vcpu_start(&map, &boot, 0).unwrap(), expected);
            assert_eq!(
                p.vcpu_start(&map, &boot, 2).unwrap(),
                BootState::Secondary { arch }
            );
            assert!(p.vcpu_start(&map, &boot, 3).is_err());
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        for arch in FDT_ARCHES {
            let p = for_arch(arch);
            let (map, gm) = machine(arch, 32 << 20);
            let too_big = fake_image(arch, 0x20_0000, 64 << 20, 0x1000);
            assert!(
                matches!(
                    p.load_kernel(&gm, &map, &too_big),
                    Err(PlatformError::KernelDoesNotFit { .. })
                ),
                "{arch}"
            );
            // Fits in RAM but leaves no room for the DTB window.
            let crowding = fake_image(arch, 0, (32 << 20) - 0x1000, 0x1000);
            assert!(matches!(
                p.boot(&gm, &map, &crowding, None, ""),
                Err(PlatformError::MemoryTooSmall { .. })
            ));
            let image = fake_image(arch, 0x20_0000, 0x40_0000, 0x1000);
            let initrd = vec![0u8; 30 << 20];
            assert!(matches!(
                p.boot(&gm, &map, &image, Some(&initrd), ""),
                Err(PlatformError::InitrdDoesNotFit { .. })
            ));
            let long = "y".repeat(FDT_CMDLINE_MAX);
            assert!(matches!(
                p.boot(&gm, &map, &image, None, &long),
                Err(PlatformError::CmdlineTooLong { len, max, .. }) if len == FDT_CMDLINE_MAX + 1 && max == FDT_CMDLINE_MAX
            ));
            let other = if arch == GuestArch::Arm64 {
                GuestArch::Riscv64
            } else {
                GuestArch::Arm64
            };
            let (other_map, other_gm) = machine(other, 64 << 20);
            let k = p.load_kernel(&gm, &map, &image).unwrap();
            assert!(matches!(
                p.write_boot_data(&other_gm, &other_map, &k, None, ""),
                Err(PlatformError::MapMismatch { .. })
            ));
            assert!(matches!(
                p.load_kernel(&gm, &map, &fake_image(other, 0, 0x1000, 0x1000)),
                Err(PlatformError::InvalidKernel { .. })
            ));
        }
    }
}
