//! riscv64 guest physical layout (modelled on QEMU `virt`): SiFive test
//! syscon, CLINT, PLIC, a 16550 UART and virtio-mmio below 2 GiB; RAM at 2 GiB.

use crate::platform::error::{PlatformError, Result};
use crate::platform::layout::{
    check_counts, DeviceSlot, InterruptController, IrqLine, MachineSize, MemoryMap, Range,
    SerialPort,
};
use crate::platform::GuestArch;

/// SiFive test device used as syscon for poweroff and reboot.
pub const SYSCON: Range = Range::new(0x0010_0000, 0x1000);
/// Value written to `SYSCON` to power off.
pub const POWEROFF_VALUE: u32 = 0x5555;
/// Value written to `SYSCON` to reboot.
pub const REBOOT_VALUE: u32 = 0x7777;
/// Core-local interruptor (msip, mtimecmp, mtime).
pub const CLINT: Range = Range::new(0x0200_0000, 0x1_0000);
/// Platform-level interrupt controller.
pub const PLIC: Range = Range::new(0x0c00_0000, 0x400_0000);
/// PLIC interrupt sources (`riscv,ndev`).
pub const PLIC_SOURCES: u32 = 63;
/// The 16550 UART.
pub const UART: Range = Range::new(0x1000_0000, 0x100);
/// UART PLIC source.
pub const UART_IRQ: IrqLine = IrqLine(10);
/// First virtio-mmio slot.
pub const VIRTIO_BASE: u64 = 0x1000_1000;
/// Size of one virtio-mmio slot.
pub const VIRTIO_SLOT_SIZE: u64 = 0x1000;
/// PLIC source of the first virtio device.
pub const VIRTIO_FIRST_IRQ: u32 = 11;
/// Most virtio-mmio devices.
pub const MAX_VIRTIO_DEVICES: u32 = 32;
/// Start of RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// The MMIO window: everything below RAM.
pub const MMIO: Range = Range::new(0, RAM_BASE);
/// Timebase (mtime) frequency.
pub const TIMEBASE_HZ: u32 = 10_000_000;
/// Most harts.
pub const MAX_VCPUS: u32 = 64;
/// Smallest RAM.
pub const MIN_MEM: u64 = 0x200_0000;
/// Largest RAM (sv39 maps 256 GiB of linear memory; keep to that).
pub const MAX_MEM: u64 = 256 << 30;

/// Lays out a riscv64 machine.
pub fn memory_map(config: &MachineSize) -> Result<MemoryMap> {
    let arch = GuestArch::Riscv64;
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
        ram: vec![Range::new(RAM_BASE, config.mem_size)],
        mmio: MMIO,
        serial: SerialPort::Mmio(DeviceSlot {
            mmio: UART,
            irq: UART_IRQ,
        }),
        virtio,
        irqchip: InterruptController::ClintPlic {
            clint: CLINT,
            plic: PLIC,
            sources: PLIC_SOURCES,
        },
        power: Some(SYSCON),
        reserved: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_consistent() {
        let map = memory_map(&MachineSize {
            vcpus: 4,
            mem_size: 1 << 30,
            virtio_devices: MAX_VIRTIO_DEVICES,
        })
        .unwrap();
        map.validate().unwrap();
        assert_eq!(map.ram, vec![Range::new(RAM_BASE, 1 << 30)]);
        assert!(map
            .virtio
            .iter()
            .all(|d| d.irq.0 <= PLIC_SOURCES && d.irq != UART_IRQ));
    }

    #[test]
    fn limits() {
        let c = |vcpus, mem, dev| MachineSize {
            vcpus,
            mem_size: mem,
            virtio_devices: dev,
        };
        assert!(matches!(
            memory_map(&c(1, 0x100_0000, 0)),
            Err(PlatformError::MemoryTooSmall { .. })
        ));
        assert!(matches!(
            memory_map(&c(1, MAX_MEM + 1, 0)),
            Err(PlatformError::MemoryTooLarge { .. })
        ));
        assert!(matches!(
            memory_map(&c(0, 1 << 30, 0)),
            Err(PlatformError::VcpuCount { .. })
        ));
        assert!(matches!(
            memory_map(&c(1, 1 << 30, 33)),
            Err(PlatformError::TooManyDevices { .. })
        ));
    }
}
