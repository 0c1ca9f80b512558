//! Architecture-neutral description of a guest memory map: RAM ranges, the
//! MMIO window, device slots with their interrupt lines, and reserved areas.

pub use vm_accel::IrqLine;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::{PlatformError, Result};
use super::GuestArch;

/// Size of a 4 KiB page.
pub const PAGE_SIZE: u64 = 0x1000;

/// What the VMM asks of a machine: vCPUs, RAM and devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineSize {
    /// Number of vCPUs (harts on riscv64).
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Number of virtio-mmio device slots to lay out.
    pub virtio_devices: u32,
}

/// A contiguous guest-physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub start: GuestAddress,
    /// Length in bytes.
    pub size: u64,
}

impl Range {
    /// A range of `size` bytes from `start`.
    pub const fn new(start: u64, size: u64) -> Self {
        Self {
            start: GuestAddress(start),
            size,
        }
    }

    /// One past the last address (saturating).
    pub fn end(&self) -> u64 {
        self.start.0.saturating_add(self.size)
    }

    /// Whether `[addr, addr + len)` lies inside this range.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.start.0 && addr.checked_add(len).is_some_and(|e| e <= self.end())
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start.0 < other.end() && other.start.0 < self.end()
    }
}

/// A memory-mapped device: its register window and interrupt line (an IOAPIC
/// GSI on x86_64, a 0-based SPI number — INTID minus 32 — on arm64, a PLIC
/// source on riscv64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSlot {
    /// Register window.
    pub mmio: Range,
    /// Interrupt line.
    pub irq: IrqLine,
}

/// Where the console UART sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialPort {
    /// An 8250/16550 on x86 I/O ports (COM1).
    Pio {
        /// First port.
        base: u16,
        /// Number of ports.
        len: u16,
        /// Interrupt line.
        irq: IrqLine,
    },
    /// A memory-mapped 16550 (`ns16550a`).
    Mmio(DeviceSlot),
}

/// The interrupt controller(s) the layout places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptController {
    /// x86 local APICs (one window for all) and one IOAPIC.
    Apic {
        /// Local APIC window.
        lapic: Range,
        /// IOAPIC window.
        ioapic: Range,
        /// IOAPIC input pins.
        pins: u32,
    },
    /// Arm GICv3: distributor and one redistributor frame pair per vCPU.
    GicV3 {
        /// Distributor.
        distributor: Range,
        /// Redistributor region covering every vCPU.
        redistributors: Range,
        /// Number of SPIs wired.
        spis: u32,
    },
    /// RISC-V CLINT (timer, software interrupts) and PLIC (external interrupts).
    ClintPlic {
        /// Core-local interruptor.
        clint: Range,
        /// Platform-level interrupt controller.
        plic: Range,
        /// PLIC sources (1-based ids `1..=sources`).
        sources: u32,
    },
}

/// A range the VMM uses for itself inside RAM (boot data, firmware tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The range.
    pub range: Range,
    /// What lives there.
    pub purpose: &'static str,
}

/// The complete guest memory map of one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryMap {
    /// Guest architecture.
    pub arch: GuestArch,
    /// vCPUs the map was laid out for.
    pub vcpus: u32,
    /// RAM ranges, sorted and disjoint.
    pub ram: Vec<Range>,
    /// The window that holds every MMIO device (never overlaps RAM).
    pub mmio: Range,
    /// The console UART.
    pub serial: SerialPort,
    /// virtio-mmio device slots, in device order.
    pub virtio: Vec<DeviceSlot>,
    /// Interrupt controller placement.
    pub irqchip: InterruptController,
    /// A syscon register used for poweroff/reboot (riscv64), if any.
    pub power: Option<Range>,
    /// Ranges inside RAM the VMM reserves for boot structures.
    pub reserved: Vec<Reserved>,
}

impl MemoryMap {
    /// Total RAM in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram.iter().map(|r| r.size).sum()
    }

    /// The RAM range holding `[addr, addr + len)`, if one does.
    pub fn ram_range_of(&self, addr: u64, len: u64) -> Option<&Range> {
        self.ram.iter().find(|r| r.contains(addr, len))
    }

    /// Allocates guest memory (anonymous mmap) for every RAM range.
    pub fn create_guest_memory(&self) -> Result<GuestMemoryMmap> {
        let ranges: Vec<(GuestAddress, usize)> = self
            .ram
            .iter()
            .map(|r| (r.start, r.size as usize))
            .collect();
        Ok(GuestMemoryMmap::from_ranges(&ranges)?)
    }

    /// Checks that RAM, devices and reserved areas do not collide.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for pair in self.ram.windows(2) {
            if pair[0].end() > pair[1].start.0 {
                return Err(format!(
                    "RAM ranges {:?} and {:?} overlap",
                    pair[0], pair[1]
                ));
            }
        }
        for r in &self.ram {
            if r.overlaps(&self.mmio) {
                return Err(format!(
                    "RAM {r:?} overlaps the MMIO window {:?}",
                    self.mmio
                ));
            }
        }
        let mut devices: Vec<(String, Range)> = self
            .virtio
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("virtio{i}"), d.mmio))
            .collect();
        if let SerialPort::Mmio(s) = self.serial {
            devices.push(("serial".into(), s.mmio));
        }
        match self.irqchip {
            InterruptController::Apic { lapic, ioapic, .. } => {
                devices.push(("lapic".into(), lapic));
                devices.push(("ioapic".into(), ioapic));
            }
            InterruptController::GicV3 {
                distributor,
                redistributors,
                ..
            } => {
                devices.push(("gicd".into(), distributor));
                devices.push(("gicr".into(), redistributors));
            }
            InterruptController::ClintPlic { clint, plic, .. } => {
                devices.push(("clint".into(), clint));
                devices.push(("plic".into(), plic));
            }
        }
        if let Some(p) = self.power {
            devices.push(("power".into(), p));
        }
        for (i, (name, r)) in devices.iter().enumerate() {
            if !self.mmio.contains(r.start.0, r.size) {
                return Err(format!("{name} {r:?} is outside the MMIO window"));
            }
            for (other, o) in &devices[i + 1..] {
                if r.overlaps(o) {
                    return Err(format!("{name} {r:?} overlaps {other} {o:?}"));
                }
            }
        }
        for res in &self.reserved {
            if self
                .ram_range_of(res.range.start.0, res.range.size)
                .is_none()
            {
                return Err(format!(
                    "reserved {} {:?} is not inside RAM",
                    res.purpose, res.range
                ));
            }
        }
        Ok(())
    }
}

/// Rounds `v` down to a multiple of `align` (a power of two).
pub(crate) fn align_down(v: u64, align: u64) -> u64 {
    v & !(align - 1)
}

/// Checks the vCPU and device counts against a platform's limits.
pub(crate) fn check_counts(
    arch: GuestArch,
    config: &MachineSize,
    max_vcpus: u32,
    max_devices: u32,
) -> Result<()> {
    if config.vcpus == 0 || config.vcpus > max_vcpus {
        return Err(PlatformError::VcpuCount {
            arch,
            requested: config.vcpus,
            max: max_vcpus,
        });
    }
    if config.virtio_devices > max_devices {
        return Err(PlatformError::TooManyDevices {
            arch,
            requested: config.virtio_devices,
            max: max_devices,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_contains_and_overlaps() {
        let r = Range::new(0x1000, 0x1000);
        assert!(r.contains(0x1000, 0x1000));
        assert!(!r.contains(0x1000, 0x1001));
        assert!(!r.contains(u64::MAX, 2));
        assert!(r.overlaps(&Range::new(0x1fff, 1)));
        assert!(!r.overlaps(&Range::new(0x2000, 1)));
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
    }
}
