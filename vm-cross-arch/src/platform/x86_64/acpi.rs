//! ACPI tables for an x86_64 guest: RSDP, XSDT, a hardware-reduced FADT
//! (its sleep control register is how the guest powers off, its century
//! field points into the CMOS RTC), a MADT with one local APIC per vCPU plus
//! the IOAPIC, and a DSDT describing COM1, the CMOS RTC (`PNP0B00`), every
//! virtio-mmio device (`LNRO0005`), so a stock kernel finds the devices
//! without `virtio_mmio.device=` on its command line, and `\_S5`.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use vm_device::legacy::{acpi_sleep, cmos_rtc};
use vm_memory::GuestAddress;

use crate::platform::error::{PlatformError, Result};
use crate::platform::layout::{InterruptController, MemoryMap, Range, SerialPort};

const OEM_ID: [u8; 6] = *b"VMWKSP";
const OEM_TABLE_ID: [u8; 8] = *b"VMWKSPAC";
const OEM_REVISION: u32 = 1;
/// Tables are placed on 16-byte boundaries (the RSDP scan granularity).
const TABLE_ALIGN: u64 = 16;
/// IAPC_BOOT_ARCH: no VGA (bit 2), MSI not supported (bit 3, no PCI here).
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3);

/// One serialized ACPI table and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTable {
    /// Four-letter signature (`RSD ` for the RSDP).
    pub signature: [u8; 4],
    /// Guest-physical address.
    pub addr: GuestAddress,
    /// Table bytes, checksummed.
    pub bytes: Vec<u8>,
}

/// A complete, addressed set of ACPI tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// The tables in placement order, RSDP first.
    pub tables: Vec<AcpiTable>,
}

impl AcpiTables {
    /// Address of the RSDP.
    pub fn rsdp(&self) -> GuestAddress {
        self.tables.first().map_or(GuestAddress(0), |t| t.addr)
    }

    /// The table with this signature (`b"DSDT"`, `b"APIC"`, `b"FACP"`, `b"XSDT"`, `b"RSD "`).
    pub fn get(&self, signature: &[u8; 4]) -> Option<&AcpiTable> {
        self.tables.iter().find(|t| &t.signature == signature)
    }

    /// The range spanned by all tables.
    pub fn span(&self) -> Range {
        let start = self.rsdp().0;
        let end = self
            .tables
            .iter()
            .map(|t| t.addr.0 + t.bytes.len() as u64)
            .max()
            .unwrap_or(start);
        Range::new(start, end - start)
    }
}

/// Pre-serialized AML, so devices can be built in a loop and nested later.
struct RawAml(Vec<u8>);

impl Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn to_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// A one-byte I/O register for the FADT.
fn io_register(port: u64) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, port)
}

/// The DSDT body: `\_SB_` with COM1, the RTC and one `LNRO0005` device per
/// virtio slot; `\_S5` (the `SLP_TYP` of soft-off).
pub fn dsdt(map: &MemoryMap) -> Vec<u8> {
    let mut devices: Vec<RawAml> = Vec::new();
    // No interrupt: the RTC model raises none.
    let rtc_port = cmos_rtc::CMOS_PORT_BASE as u16;
    let io = aml::IO::new(rtc_port, rtc_port, 1, cmos_rtc::CMOS_PORT_LEN as u8);
    let crs = aml::ResourceTemplate::new(vec![&io]);
    devices.push(RawAml(to_bytes(&aml::Device::new(
        "RTC_".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0B00")),
            &aml::Name::new("_CRS".into(), &crs),
        ],
    ))));
    if let SerialPort::Pio { base, len, irq } = map.serial {
        let io = aml::IO::new(base, base, 1, len as u8);
        let int = aml::Interrupt::new(true, true, false, false, irq.0);
        let crs = aml::ResourceTemplate::new(vec![&io, &int]);
        let hid = aml::EISAName::new("PNP0501");
        devices.push(RawAml(to_bytes(&aml::Device::new(
            "COM1".into(),
            vec![
                &aml::Name::new("_HID".into(), &hid),
                &aml::Name::new("_UID".into(), &aml::ZERO),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        ))));
    }
    for (i, slot) in map.virtio.iter().enumerate() {
        // The MMIO hole is below 4 GiB, so the 32-bit descriptor always fits.
        let mem = aml::Memory32Fixed::new(true, slot.mmio.start.0 as u32, slot.mmio.size as u32);
        let int = aml::Interrupt::new(true, true, false, false, slot.irq.0);
        let crs = aml::ResourceTemplate::new(vec![&mem, &int]);
        let uid = i;
        devices.push(RawAml(to_bytes(&aml::Device::new(
            format!("V{i:03X}").as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"LNRO0005"),
                &aml::Name::new("_UID".into(), &uid),
                &aml::Name::new("_CCA".into(), &aml::ONE),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        ))));
    }
    let children: Vec<&dyn Aml> = devices.iter().map(|d| d as &dyn Aml).collect();
    let mut body = Vec::new();
    aml::Scope::new("\\_SB_".into(), children).to_aml_bytes(&mut body);
    let s5 = acpi_sleep::S5_SLEEP_TYPE;
    aml::Name::new("_S5_".into(), &aml::Package::new(vec![&s5, &s5])).to_aml_bytes(&mut body);
    body
}

/// Builds every table for `map`, laid out from `base`, within `room` bytes.
pub fn build(map: &MemoryMap, base: u64, room: u64) -> Result<AcpiTables> {
    let InterruptController::Apic { lapic, ioapic, .. } = map.irqchip else {
        return Err(PlatformError::MapMismatch {
            arch: map.arch,
            reason: "x86 ACPI tables need an APIC interrupt controller",
        });
    };

    if map.vcpus == 0 || map.vcpus > super::layout::MAX_VCPUS {
        return Err(PlatformError::VcpuCount {
            arch: map.arch,
            requested: map.vcpus,
            max: super::layout::MAX_VCPUS,
        });
    }
    let mut dsdt_table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt_table.append_slice(&dsdt(map));
    let dsdt_bytes = to_bytes(&dsdt_table);

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(lapic.start.0 as u32),
    );
    for cpu in 0..map.vcpus {
        // MAX_VCPUS (254) keeps every id within u8.
        madt.add_structure(ProcessorLocalApic::new(
            cpu as u8,
            cpu as u8,
            EnabledStatus::Enabled,
        ));
    }
    // The IOAPIC id follows the local APIC ids so the two never collide.
    madt.add_structure(IoApic::new(map.vcpus as u8, ioapic.start.0 as u32, 0));
    let madt_bytes = to_bytes(&madt);

    let align = |v: u64| (v + TABLE_ALIGN - 1) & !(TABLE_ALIGN - 1);
    let rsdp_addr = base;
    let xsdt_addr = align(rsdp_addr + Rsdp::len() as u64);
    let xsdt_len = 36 + 2 * 8;
    let fadt_addr = align(xsdt_addr + xsdt_len);
    let madt_addr = align(fadt_addr + acpi_tables::fadt::FADT::len() as u64);
    let dsdt_addr = align(madt_addr + madt_bytes.len() as u64);
    let end = dsdt_addr + dsdt_bytes.len() as u64;
    if end - base > room {
        return Err(PlatformError::BootDataTooLarge {
            what: "ACPI tables",
            size: end - base,
            max: room,
        });
    }

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.sleep_control_reg = io_register(acpi_sleep::ACPI_SLEEP_PORT_BASE);
    fadt.sleep_status_reg = io_register(acpi_sleep::ACPI_SLEEP_PORT_BASE + 1);
    fadt.century = cmos_rtc::CENTURY_INDEX;
    let fadt_bytes = to_bytes(&fadt.finalize());

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_bytes = to_bytes(&xsdt);
    debug_assert_eq!(xsdt_bytes.len() as u64, xsdt_len);
    let rsdp_bytes = to_bytes(&Rsdp::new(OEM_ID, xsdt_addr));

    Ok(AcpiTables {
        tables: vec![
            AcpiTable {
                signature: *b"RSD ",
                addr: GuestAddress(rsdp_addr),
                bytes: rsdp_bytes,
            },
            AcpiTable {
                signature: *b"XSDT",
                addr: GuestAddress(xsdt_addr),
                bytes: xsdt_bytes,
            },
            AcpiTable {
                signature: *b"FACP",
                addr: GuestAddress(fadt_addr),
                bytes: fadt_bytes,
            },
            AcpiTable {
                signature: *b"APIC",
                addr: GuestAddress(madt_addr),
                bytes: madt_bytes,
            },
            AcpiTable {
                signature: *b"DSDT",
                addr: GuestAddress(dsdt_addr),
                bytes: dsdt_bytes,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::layout::MachineSize;
    use crate::platform::x86_64::layout::{self, ACPI};

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn tables(vcpus: u32, devices: u32) -> AcpiTables {
        let map = layout::memory_map(&MachineSize {
            vcpus,
            mem_size: 512 << 20,
            virtio_devices: devices,
        })
        .unwrap();
        build(&map, ACPI.start.0, ACPI.size).unwrap()
    }

    #[test]
    fn checksums_and_lengths_are_consistent() {
        let t = tables(4, 3);
        for table in &t.tables {
            assert_eq!(sum(&table.bytes), 0, "{:?}", table.signature);
            assert_eq!(table.addr.0 % TABLE_ALIGN, 0);
            if table.signature != *b"RSD " {
                let len = u32::from_le_bytes(table.bytes[4..8].try_into().unwrap());
                assert_eq!(len as usize, table.bytes.len());
                assert_eq!(&table.bytes[0..4], &table.signature);
            }
        }
        let rsdp = &t.get(b"RSD ").unwrap().bytes;
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[0..20]), 0);
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        assert_eq!(xsdt_addr, t.get(b"XSDT").unwrap().addr.0);
        let xsdt = &t.get(b"XSDT").unwrap().bytes;
        let e0 = u64::from_le_bytes(xsdt[36..44].try_into().unwrap());
        let e1 = u64::from_le_bytes(xsdt[44..52].try_into().unwrap());
        assert_eq!(e0, t.get(b"FACP").unwrap().addr.0);
        assert_eq!(e1, t.get(b"APIC").unwrap().addr.0);
        let fadt = &t.get(b"FACP").unwrap().bytes;
        let x_dsdt = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        assert_eq!(x_dsdt, t.get(b"DSDT").unwrap().addr.0);
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_ne!(flags & (1 << 20), 0, "hardware-reduced flag");
    }

    #[test]
    fn madt_has_one_lapic_per_vcpu_and_an_ioapic() {
        for vcpus in [1, 2, 8] {
            let t = tables(vcpus, 0);
            let madt = &t.get(b"APIC").unwrap().bytes;
            assert_eq!(madt.len(), 44 + 8 * vcpus as usize + 12);
            let mut off = 44;
            let mut lapics = 0;
            let mut ioapics = 0;
            while off < madt.len() {
                match madt[off] {
                    0 => {
                        assert_eq!(madt[off + 3] as u32, lapics, "apic id");
                        lapics += 1;
                    }
                    1 => ioapics += 1,
                    other => panic!("unexpected MADT entry type {other}"),
                }
                off += madt[off + 1] as usize;
            }
            assert_eq!((lapics, ioapics), (vcpus, 1));
        }
    }

    #[test]
    fn dsdt_names_every_virtio_device() {
        let t = tables(1, 5);
        let dsdt = &t.get(b"DSDT").unwrap().bytes;
        let count = dsdt.windows(8).filter(|w| w == b"LNRO0005").count();
        assert_eq!(count, 5);
        assert!(dsdt.windows(4).any(|w| w == b"COM1"));
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        // PNP0B00 as an EISA id: 0x41d00b00 stored big-endian.
        assert!(dsdt.windows(4).any(|w| w == [0x41, 0xd0, 0x0b, 0x00]));
    }

    #[test]
    fn too_little_room_is_an_error() {
        let map = layout::memory_map(&MachineSize {
            vcpus: 1,
            mem_size: 512 << 20,
            virtio_devices: 2,
        })
        .unwrap();
        assert!(matches!(
            build(&map, ACPI.start.0, 0x100),
            Err(PlatformError::BootDataTooLarge { .. })
        ));
    }
}
