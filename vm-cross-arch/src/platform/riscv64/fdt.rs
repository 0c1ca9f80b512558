//! The riscv64 device tree: harts with their local interrupt controllers,
//! CLINT, PLIC, a 16550 UART, virtio-mmio, syscon poweroff/reboot, `/chosen`.

use vm_fdt::FdtWriter;

use super::layout::{POWEROFF_VALUE, REBOOT_VALUE, TIMEBASE_HZ};
use crate::interp::riscv64::CBO_BLOCK;
use crate::platform::error::Result;
use crate::platform::fdt;
use crate::platform::layout::{InterruptController, MemoryMap, Range, SerialPort};

const PLIC_PHANDLE: u32 = 1;
const SYSCON_PHANDLE: u32 = 2;
/// Hart `i`'s interrupt controller gets phandle `CPU_INTC_PHANDLE + i`.
const CPU_INTC_PHANDLE: u32 = 3;
/// UART input clock.
const UART_CLOCK_HZ: u32 = 3_686_400;
/// ISA string of the emulated harts (the legacy `riscv,isa` form of
/// [`ISA_EXTENSIONS`]; both list exactly what the interpreter implements).
/// Multi-letter extensions go in the ISA manual's canonical order: `Z`
/// names by the category of their second letter (i, m, a, f, d, q, l, c, b,
/// k, ...), then alphabetically; `S` names after them.
pub const ISA: &str = "rv64imafdc_zicbom_zicbop_zicboz_zicntr_zicond_zicsr_zifencei_zihintpause\
                       _zimop_zfa_zfh_zfhmin_zcmop_zba_zbb_zbc_zbkb_zbkc_zbkx_zbs\
                       _sstc_svinval_svnapot_svpbmt";
/// `riscv,isa-extensions` of the emulated harts.
pub const ISA_EXTENSIONS: [&str; 30] = [
    "i",
    "m",
    "a",
    "f",
    "d",
    "c",
    "zicbom",
    "zicbop",
    "zicboz",
    "zicntr",
    "zicond",
    "zicsr",
    "zifencei",
    "zihintpause",
    "zimop",
    "zfa",
    "zfh",
    "zfhmin",
    "zcmop",
    "zba",
    "zbb",
    "zbc",
    "zbkb",
    "zbkc",
    "zbkx",
    "zbs",
    "sstc",
    "svinval",
    "svnapot",
    "svpbmt",
];
/// Local interrupt numbers (mcause codes).
const IRQ_S_EXT: u32 = 9;
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_M_EXT: u32 = 11;

/// Builds the DTB for `map`.
pub fn build(map: &MemoryMap, cmdline: &str, initrd: Option<Range>) -> Result<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt::root_props(&mut fdt, "riscv-virtio", "vm-workspace riscv64")?;
    // Devices without interrupts-extended (UART, virtio) route to the PLIC.
    fdt.property_u32("interrupt-parent", PLIC_PHANDLE)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", TIMEBASE_HZ)?;
    for hart in 0..map.vcpus {
        let cpu = fdt.begin_node(&format!("cpu@{hart:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", hart)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", ISA)?;
        fdt.property_string("riscv,isa-base", "rv64i")?;
        fdt.property_string_list(
            "riscv,isa-extensions",
            ISA_EXTENSIONS.iter().map(|s| (*s).to_owned()).collect(),
        )?;
        fdt.property_string("mmu-type", "riscv,sv39")?;
        let block = u32::try_from(CBO_BLOCK).unwrap_or(64);
        fdt.property_u32("riscv,cbom-block-size", block)?;
        fdt.property_u32("riscv,cbop-block-size", block)?;
        fdt.property_u32("riscv,cboz-block-size", block)?;
        let intc = fdt.begin_node("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_u32("#address-cells", 0)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_phandle(CPU_INTC_PHANDLE + hart)?;
        fdt.end_node(intc)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    fdt::memory_nodes(&mut fdt, map)?;

    if let InterruptController::ClintPlic {
        clint,
        plic,
        sources,
    } = map.irqchip
    {
        let per_hart = |a: u32, b: u32| -> Vec<u32> {
            (0..map.vcpus)
                .flat_map(|h| [CPU_INTC_PHANDLE + h, a, CPU_INTC_PHANDLE + h, b])
                .collect()
        };
        let node = fdt.begin_node(&format!("clint@{:x}", clint.start.0))?;
        fdt.property_string_list(
            "compatible",
            vec!["sifive,clint0".into(), "riscv,clint0".into()],
        )?;
        fdt.property_array_u64("reg", &[clint.start.0, clint.size])?;
        fdt.property_array_u32("interrupts-extended", &per_hart(IRQ_M_SOFT, IRQ_M_TIMER))?;
        fdt.end_node(node)?;

        let node = fdt.begin_node(&format!("plic@{:x}", plic.start.0))?;
        fdt.property_string_list(
            "compatible",
            vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
        )?;
        fdt.property_array_u64("reg", &[plic.start.0, plic.size])?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_u32("#address-cells", 0)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_u32("riscv,ndev", sources)?;
        // Context 2h is hart h's M-mode, 2h + 1 its S-mode.
        fdt.property_array_u32("interrupts-extended", &per_hart(IRQ_M_EXT, IRQ_S_EXT))?;
        fdt.property_phandle(PLIC_PHANDLE)?;
        fdt.end_node(node)?;
    }

    let mut stdout = String::new();
    if let SerialPort::Mmio(slot) = map.serial {
        let name = fdt::uart_node(&mut fdt, &slot, &[slot.irq.0], UART_CLOCK_HZ)?;
        stdout = format!("/{name}");
    }
    fdt::virtio_nodes(&mut fdt, map, |irq| vec![irq.0])?;

    if let Some(syscon) = map.power {
        let node = fdt.begin_node(&format!("test@{:x}", syscon.start.0))?;
        fdt.property_string_list(
            "compatible",
            vec![
                "sifive,test1".into(),
                "sifive,test0".into(),
                "syscon".into(),
            ],
        )?;
        fdt.property_array_u64("reg", &[syscon.start.0, syscon.size])?;
        fdt.property_phandle(SYSCON_PHANDLE)?;
        fdt.end_node(node)?;
        for (name, compatible, value) in [
            ("poweroff", "syscon-poweroff", POWEROFF_VALUE),
            ("reboot", "syscon-reboot", REBOOT_VALUE),
        ] {
            let node = fdt.begin_node(name)?;
            fdt.property_string("compatible", compatible)?;
            fdt.property_u32("regmap", SYSCON_PHANDLE)?;
            fdt.property_u32("offset", 0)?;
            fdt.property_u32("value", value)?;
            fdt.end_node(node)?;
        }
    }

    fdt::chosen(&mut fdt, cmdline, &stdout, initrd)?;
    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_isa_string_lists_the_extensions_in_order() {
        let (base, rest) = ISA.split_at(10);
        assert_eq!(base, "rv64imafdc");
        let letters: Vec<String> = base[4..].chars().map(String::from).collect();
        let multi: Vec<&str> = rest.split('_').skip(1).collect();
        let listed: Vec<&str> = letters
            .iter()
            .map(String::as_str)
            .chain(multi.iter().copied())
            .collect();
        assert_eq!(listed, ISA_EXTENSIONS);
    }
}
