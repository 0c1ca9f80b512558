//! x86_64 guest physical layout: low-memory boot structures, the 32-bit MMIO
//! hole below 4 GiB, and the e820 map the kernel sees.

use vm_accel::boot::x86_64::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};
use vm_memory::GuestAddress;

use crate::platform::error::{PlatformError, Result};
use crate::platform::layout::{
    check_counts, DeviceSlot, InterruptController, IrqLine, MachineSize, MemoryMap, Range,
    Reserved, SerialPort,
};
use crate::platform::GuestArch;

/// The boot GDT (4 entries, 32 bytes; see [`entry`](super::entry)).
pub const GDT_ADDR: u64 = 0x500;
/// The boot IDT (one empty 8-byte entry).
pub const IDT_ADDR: u64 = 0x520;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU (the stack grows down from here).
pub const BOOT_STACK: u64 = 0x8ff0;
/// The PML4 page of the boot page tables.
pub const PML4_ADDR: u64 = 0x9000;
/// The PDPT page.
pub const PDPT_ADDR: u64 = 0xa000;
/// The page directory (512 x 2 MiB = the first 1 GiB).
pub const PD_ADDR: u64 = 0xb000;
/// GDT, IDT, zero page, stack and identity page tables written at boot.
pub const BOOT_TABLES: Range = Range::new(GDT_ADDR, PD_ADDR + 0x1000 - GDT_ADDR);
/// KVM's EPT identity-map page and real-mode TSS (4 pages) inside the MMIO
/// hole, at the addresses the KVM backend gives them.
pub const KVM_PRIVATE: Range = Range::new(
    KVM_IDENTITY_MAP_ADDR,
    KVM_TSS_ADDR + 0x3000 - KVM_IDENTITY_MAP_ADDR,
);
/// The kernel command line.
pub const CMDLINE: Range = Range::new(0x2_0000, 0x1_0000);
/// Start of the extended BIOS data area: RAM below it is usable low memory.
pub const EBDA_START: u64 = 0x9_fc00;
/// ACPI tables (the kernel scans 0xe0000..0x100000 for the RSDP).
pub const ACPI: Range = Range::new(0xe_0000, 0x2_0000);
/// First byte above the legacy 1 MiB area; bzImage kernels load here.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole (RAM resumes at 4 GiB).
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// First virtio-mmio slot.
pub const VIRTIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio slot.
pub const VIRTIO_SLOT_SIZE: u64 = 0x1000;
/// IOAPIC registers.
pub const IOAPIC: Range = Range::new(0xfec0_0000, 0x1000);
/// Local APIC registers.
pub const LAPIC: Range = Range::new(0xfee0_0000, 0x1000);
/// IOAPIC input pins.
pub const IOAPIC_PINS: u32 = 24;
/// COM1 I/O base.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1 interrupt line.
pub const COM1_IRQ: IrqLine = IrqLine(4);
/// First IRQ handed to virtio devices; `5..IOAPIC_PINS` are free for them.
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// Most virtio-mmio devices the layout wires (one IOAPIC pin each).
pub const MAX_VIRTIO_DEVICES: u32 = IOAPIC_PINS - VIRTIO_FIRST_IRQ;
/// Most vCPUs: 8-bit xAPIC ids, 0xff is the broadcast id.
pub const MAX_VCPUS: u32 = 254;
/// Smallest RAM: low memory, the kernel area and some headroom.
pub const MIN_MEM: u64 = 0x100_0000;
/// Largest RAM this layout accepts (1 TiB).
pub const MAX_MEM: u64 = 1 << 40;

/// e820 entry types used in the map.
pub const E820_RAM: u32 = 1;
/// e820 reserved.
pub const E820_RESERVED: u32 = 2;

/// Lays out an x86_64 machine.
pub fn memory_map(config: &MachineSize) -> Result<MemoryMap> {
    let arch = GuestArch::X86_64;
    check_counts(arch, config, MAX_VCPUS, MAX_VIRTIO_DEVICES)?;
    if config.mem_size < MIN_MEM {
        return Err(PlatformError::MemoryTooSmall {
            arch,
            size: config.mem_size,
            min: MIN_MEM,
        });
    }
    if config.mem_size > MAX_MEM {
        return Err(PlatformError::MemoryTooLarge {
            arch,
            size: config.mem_size,
            max: MAX_MEM,
        });
    }
    let low = config.mem_size.min(MMIO_HOLE_START);
    let mut ram = vec![Range::new(0, low)];
    if config.mem_size > low {
        ram.push(Range::new(MMIO_HOLE_END, config.mem_size - low));
    }
    let virtio = (0..config.virtio_devices)
        .map(|i| DeviceSlot {
            mmio: Range::new(
                VIRTIO_BASE + u64::from(i) * VIRTIO_SLOT_SIZE,
                VIRTIO_SLOT_SIZE,
            ),
            irq: IrqLine(VIRTIO_FIRST_IRQ + i),
        })
        .collect();
    Ok(MemoryMap {
        arch,
        vcpus: config.vcpus,
        ram,
        mmio: Range::new(MMIO_HOLE_START, MMIO_HOLE_END - MMIO_HOLE_START),
        serial: SerialPort::Pio {
            base: COM1_PORT,
            len: 8,
            irq: COM1_IRQ,
        },
        virtio,
        irqchip: InterruptController::Apic {
            lapic: LAPIC,
            ioapic: IOAPIC,
            pins: IOAPIC_PINS,
        },
        power: None,
        reserved: vec![
            Reserved {
                range: BOOT_TABLES,
                purpose: "boot GDT, IDT, zero page, stack and identity page tables",
            },
            Reserved {
                range: CMDLINE,
                purpose: "kernel command line",
            },
            Reserved {
                range: Range::new(EBDA_START, HIGH_RAM_START - EBDA_START),
                purpose: "EBDA, ACPI tables and legacy ROM area",
            },
        ],
    })
}

/// The e820 map the kernel sees: `(addr, size, type)`, sorted.
pub fn e820_entries(map: &MemoryMap) -> Vec<(u64, u64, u32)> {
    let mut entries = Vec::with_capacity(map.ram.len() + 2);
    for r in &map.ram {
        if r.start.0 == 0 {
            // memory_map() guarantees MIN_MEM; a hand-built map may not.
            entries.push((0, EBDA_START.min(r.size), E820_RAM));
            if r.size > EBDA_START {
                entries.push((EBDA_START, HIGH_RAM_START - EBDA_START, E820_RESERVED));
            }
            if r.size > HIGH_RAM_START {
                entries.push((HIGH_RAM_START, r.size - HIGH_RAM_START, E820_RAM));
            }
        } else {
            entries.push((r.start.0, r.size, E820_RAM));
        }
    }
    entries
}

/// End of the RAM range below the MMIO hole.
pub fn low_ram_end(map: &MemoryMap) -> u64 {
    map.ram.first().map_or(0, Range::end)
}

/// Address of the zero page as a guest address.
pub const fn zero_page() -> GuestAddress {
    GuestAddress(ZERO_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mem: u64) -> MachineSize {
        MachineSize {
            vcpus: 2,
            mem_size: mem,
            virtio_devices: 4,
        }
    }

    #[test]
    fn small_machine_has_one_ram_range() {
        let map = memory_map(&config(256 << 20)).unwrap();
        assert_eq!(map.ram, vec![Range::new(0, 256 << 20)]);
        assert_eq!(map.ram_size(), 256 << 20);
        map.validate().unwrap();
        let devices = [IOAPIC, LAPIC, map.virtio[0].mmio, map.virtio[3].mmio];
        assert!(devices.iter().all(|d| !d.overlaps(&KVM_PRIVATE)));
        assert!(map.mmio.contains(KVM_PRIVATE.start.0, KVM_PRIVATE.size));
        assert!(BOOT_TABLES.contains(ZERO_PAGE, 0x1000));
        assert!(BOOT_TABLES.contains(BOOT_STACK - 0x100, 0x100));
        assert!(BOOT_TABLES.end() <= CMDLINE.start.0);
        assert_eq!(map.virtio[3].irq, IrqLine(8));
        assert_eq!(map.virtio[3].mmio.start.0, VIRTIO_BASE + 0x3000);
    }

    #[test]
    fn large_machine_splits_around_the_hole() {
        let map = memory_map(&config(5 << 30)).unwrap();
        assert_eq!(
            map.ram,
            vec![
                Range::new(0, MMIO_HOLE_START),
                Range::new(1 << 32, (5 << 30) - MMIO_HOLE_START)
            ]
        );
        assert_eq!(map.ram_size(), 5 << 30);
        map.validate().unwrap();
        let e820 = e820_entries(&map);
        assert_eq!(e820[0], (0, EBDA_START, E820_RAM));
        assert_eq!(e820[1].2, E820_RESERVED);
        assert_eq!(
            e820[2],
            (HIGH_RAM_START, MMIO_HOLE_START - HIGH_RAM_START, E820_RAM)
        );
        assert_eq!(e820[3], (1 << 32, 2 << 30, E820_RAM));
    }

    #[test]
    fn e820_of_a_hand_built_tiny_map_does_not_underflow() {
        let mut map = memory_map(&config(256 << 20)).unwrap();
        map.ram = vec![Range::new(0, 0x8_0000)];
        assert_eq!(e820_entries(&map), vec![(0, 0x8_0000, E820_RAM)]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(matches!(
            memory_map(&config(1 << 20)),
            Err(PlatformError::MemoryTooSmall { .. })
        ));
        assert!(matches!(
            memory_map(&config(MAX_MEM + 1)),
            Err(PlatformError::MemoryTooLarge { .. })
        ));
        let mut c = config(256 << 20);
        c.virtio_devices = MAX_VIRTIO_DEVICES + 1;
        assert!(matches!(
            memory_map(&c),
            Err(PlatformError::TooManyDevices { .. })
        ));
        c.virtio_devices = MAX_VIRTIO_DEVICES;
        let map = memory_map(&c).unwrap();
        assert_eq!(
            map.virtio.last().map(|d| d.irq),
            Some(IrqLine(IOAPIC_PINS - 1))
        );
        c.vcpus = 0;
        assert!(matches!(
            memory_map(&c),
            Err(PlatformError::VcpuCount { .. })
        ));
        c.vcpus = 255;
        assert!(matches!(
            memory_map(&c),
            Err(PlatformError::VcpuCount { .. })
        ));
    }
}
