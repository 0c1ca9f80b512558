//! The arm64 device tree: PSCI cpus, GICv3, the architected timer, a 16550
//! UART, virtio-mmio devices and `/chosen`.

use vm_fdt::FdtWriter;

use super::layout::mpidr;
use crate::platform::error::Result;
use crate::platform::fdt;
use crate::platform::layout::{InterruptController, IrqLine, MemoryMap, Range, SerialPort};

const GIC_PHANDLE: u32 = 1;
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// 16550 input clock.
const UART_CLOCK_HZ: u32 = 1_843_200;
/// Architected timer PPIs: secure phys, non-secure phys, virtual, hypervisor.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

/// Builds the DTB for `map`.
pub fn build(map: &MemoryMap, cmdline: &str, initrd: Option<Range>) -> Result<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt::root_props(&mut fdt, "linux,dummy-virt", "vm-workspace arm64")?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for i in 0..map.vcpus {
        let cpu = fdt.begin_node(&format!("cpu@{:x}", mpidr(i)))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u32("reg", mpidr(i))?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    fdt::memory_nodes(&mut fdt, map)?;

    if let InterruptController::GicV3 {
        distributor,
        redistributors,
        ..
    } = map.irqchip
    {
        let gic = fdt.begin_node(&format!("intc@{:x}", distributor.start.0))?;
        fdt.property_string("compatible", "arm,gic-v3")?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 3)?;
        // Room for ITS child nodes, as the binding asks of an interrupt provider.
        fdt.property_u32("#address-cells", 2)?;
        fdt.property_u32("#size-cells", 2)?;
        fdt.property_null("ranges")?;
        fdt.property_array_u64(
            "reg",
            &[
                distributor.start.0,
                distributor.size,
                redistributors.start.0,
                redistributors.size,
            ],
        )?;
        fdt.property_phandle(GIC_PHANDLE)?;
        fdt.end_node(gic)?;
    }

    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let cells: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&p| [GIC_PPI, p, IRQ_TYPE_LEVEL_HIGH])
        .collect();
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.end_node(timer)?;

    let mut stdout = String::new();
    if let SerialPort::Mmio(slot) = map.serial {
        let name = fdt::uart_node(
            &mut fdt,
            &slot,
            &[GIC_SPI, slot.irq.0, IRQ_TYPE_LEVEL_HIGH],
            UART_CLOCK_HZ,
        )?;
        stdout = format!("/{name}");
    }
    fdt::virtio_nodes(&mut fdt, map, |IrqLine(spi)| {
        vec![GIC_SPI, spi, IRQ_TYPE_EDGE_RISING]
    })?;
    fdt::chosen(&mut fdt, cmdline, &stdout, initrd)?;
    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}
