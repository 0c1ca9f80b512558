//! arm64 guest physical layout (modelled on QEMU `virt`): devices below
//! 1 GiB, RAM from 1 GiB.

use crate::platform::error::{PlatformError, Result};
use crate::platform::layout::{
    check_counts, DeviceSlot, InterruptController, IrqLine, MachineSize, MemoryMap, Range,
    SerialPort,
};
use crate::platform::GuestArch;

/// GICv3 distributor.
pub const GICD: Range = Range::new(0x0800_0000, 0x1_0000);
/// First GICv3 redistributor (RD + SGI frames, 128 KiB per vCPU).
pub const GICR_BASE: u64 = 0x080a_0000;
/// Redistributor stride per vCPU.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The 16550 UART.
pub const UART: Range = Range::new(0x0900_0000, 0x1000);
/// UART interrupt (SPI number).
pub const UART_SPI: IrqLine = IrqLine(1);
/// First virtio-mmio slot.
pub const VIRTIO_BASE: u64 = 0x0a00_0000;
/// Size of one virtio-mmio slot.
pub const VIRTIO_SLOT_SIZE: u64 = 0x1000;
/// SPI of the first virtio device; device `i` gets `VIRTIO_FIRST_SPI + i`.
pub const VIRTIO_FIRST_SPI: u32 = 16;
/// Most virtio-mmio devices.
pub const MAX_VIRTIO_DEVICES: u32 = 32;
/// SPIs wired by the layout.
pub const SPIS: u32 = 64;
/// The MMIO window (everything below RAM, above the first 128 MiB).
pub const MMIO: Range = Range::new(0x0800_0000, RAM_BASE - 0x0800_0000);
/// Start of RAM (2 MiB aligned, as the Image protocol wants).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Most vCPUs: the redistributors must end before the UART.
pub const MAX_VCPUS: u32 = ((UART.start.0 - GICR_BASE) / GICR_STRIDE) as u32;
/// Smallest RAM: kernel, initrd headroom and the 2 MiB DTB window.
pub const MIN_MEM: u64 = 0x200_0000;
/// Largest RAM (the DTB must sit in the first 512 GiB; keep all RAM there).
pub const MAX_MEM: u64 = 512 << 30;

/// Lays out an arm64 machine.
pub fn memory_map(config: &MachineSize) -> Result<MemoryMap> {
    let arch = GuestArch::Arm64;
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
            irq: IrqLine(VIRTIO_FIRST_SPI + i),
        })
        .collect();
    Ok(MemoryMap {
        arch,
        vcpus: config.vcpus,
        ram: vec![Range::new(RAM_BASE, config.mem_size)],
        mmio: MMIO,
        serial: SerialPort::Mmio(DeviceSlot {
            mmio: UART,
            irq: UART_SPI,
        }),
        virtio,
        irqchip: InterruptController::GicV3 {
            distributor: GICD,
            redistributors: Range::new(GICR_BASE, GICR_STRIDE * u64::from(config.vcpus)),
            spis: SPIS,
        },
        power: None,
        reserved: Vec::new(),
    })
}

/// The MPIDR affinity KVM gives vCPU `index` (Aff0 = low 4 bits, Aff1 = the rest).
pub fn mpidr(index: u32) -> u32 {
    ((index >> 4) << 8) | (index & 0xf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_consistent() {
        let map = memory_map(&MachineSize {
            vcpus: MAX_VCPUS,
            mem_size: 1 << 30,
            virtio_devices: MAX_VIRTIO_DEVICES,
        })
        .unwrap();
        map.validate().unwrap();
        assert_eq!(map.ram, vec![Range::new(RAM_BASE, 1 << 30)]);
        assert_eq!(map.virtio[0].irq, IrqLine(VIRTIO_FIRST_SPI));
        assert!(map.virtio.iter().all(|d| d.irq.0 < SPIS));
        assert_eq!(mpidr(17), 0x101);
    }

    #[test]
    fn limits() {
        let c = |vcpus, mem, dev| MachineSize {
            vcpus,
            mem_size: mem,
            virtio_devices: dev,
        };
        assert!(matches!(
            memory_map(&c(1, MIN_MEM - 1, 0)),
            Err(PlatformError::MemoryTooSmall { .. })
        ));
        assert!(matches!(
            memory_map(&c(1, MAX_MEM + 1, 0)),
            Err(PlatformError::MemoryTooLarge { .. })
        ));
        assert!(matches!(
            memory_map(&c(MAX_VCPUS + 1, 1 << 30, 0)),
            Err(PlatformError::VcpuCount { .. })
        ));
        assert!(matches!(
            memory_map(&c(1, 1 << 30, MAX_VIRTIO_DEVICES + 1)),
            Err(PlatformError::TooManyDevices { .. })
        ));
    }
}
