//! Generated x86_64 ACPI tables disassemble cleanly with ACPICA's `iasl -d`
//! and carry correct checksums.

mod support;

use std::path::Path;
use std::process::Command;

use support::{machine, run, tool};
use vm_cross_arch::platform::x86_64::acpi::{self, AcpiTables};
use vm_cross_arch::platform::x86_64::layout::ACPI;
use vm_cross_arch::platform::GuestArch;

fn tables(vcpus: u32, devices: u32) -> AcpiTables {
    let (map, _mem) = machine(GuestArch::X86_64, vcpus, 1 << 30, devices);
    acpi::build(&map, ACPI.start.0, ACPI.size).expect("ACPI tables")
}

/// Disassembles one table with `iasl -d` and returns the `.dsl` text.
fn disassemble(iasl: &Path, dir: &Path, name: &str, bytes: &[u8]) -> String {
    let dat = dir.join(format!("{name}.dat"));
    std::fs::write(&dat, bytes).expect("writing the table");
    let (ok, stdout, stderr) = run(Command::new(iasl).current_dir(dir).arg("-d").arg(&dat));
    assert!(ok, "iasl -d {name} failed:\n{stdout}\n{stderr}");
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).expect("iasl wrote no .dsl");
    for bad in ["Incorrect checksum", "Error", "**** Unknown"] {
        assert!(!dsl.contains(bad), "{name}: iasl reports {bad:?}:\n{dsl}");
        assert!(
            !stdout.contains(bad) && !stderr.contains(bad),
            "{name}: {stdout}\n{stderr}"
        );
    }
    dsl
}

#[test]
fn acpi_tables_disassemble_with_iasl() {
    let Some(iasl) = tool("iasl", "acpica-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tables(4, 3);

    let dsdt = disassemble(
        &iasl,
        dir.path(),
        "dsdt",
        &t.get(b"DSDT").expect("DSDT").bytes,
    );
    assert_eq!(
        dsdt.matches("Name (_HID, \"LNRO0005\")").count(),
        3,
        "{dsdt}"
    );
    assert!(dsdt.contains("Name (_HID, EisaId (\"PNP0501\")"), "{dsdt}");
    assert!(dsdt.contains("Device (V002)"), "{dsdt}");
    // Third virtio slot: 0xD0002000, 4 KiB, IRQ 7 edge.
    assert!(dsdt.contains("0xD0002000"), "{dsdt}");
    assert!(dsdt.contains("0x00000007,"), "{dsdt}");
    assert!(
        dsdt.contains("IO (Decode16,") && dsdt.contains("0x03F8,"),
        "{dsdt}"
    );
    assert!(dsdt.contains("Name (_HID, EisaId (\"PNP0B00\")"), "{dsdt}");
    assert!(dsdt.contains("0x0070,"), "the RTC's ports: {dsdt}");
    assert!(dsdt.contains("Name (_S5, Package (0x02)"), "{dsdt}");

    let madt = disassemble(
        &iasl,
        dir.path(),
        "apic",
        &t.get(b"APIC").expect("MADT").bytes,
    );
    assert_eq!(
        madt.matches("Subtable Type : 00 [Processor Local APIC]")
            .count(),
        4,
        "{madt}"
    );
    assert_eq!(
        madt.matches("Subtable Type : 01 [I/O APIC]").count(),
        1,
        "{madt}"
    );
    assert!(madt.contains("FEC00000"), "{madt}");
    assert!(madt.contains("Local Apic Address : FEE00000"), "{madt}");

    let fadt = disassemble(
        &iasl,
        dir.path(),
        "facp",
        &t.get(b"FACP").expect("FADT").bytes,
    );
    let hw_reduced = fadt
        .lines()
        .find(|l| l.contains("Hardware Reduced"))
        .unwrap_or("");
    assert!(hw_reduced.trim_end().ends_with(": 1"), "{fadt}");
    // Sleep control/status registers (how the guest powers off) and the century byte.
    assert!(fadt.contains("0000000000000600"), "{fadt}");
    assert!(fadt.contains("0000000000000601"), "{fadt}");
    assert!(fadt.contains("Century Index : 32"), "{fadt}");
    let dsdt_addr = format!("{:016X}", t.get(b"DSDT").expect("DSDT").addr.0);
    assert!(
        fadt.contains(&dsdt_addr),
        "FADT must point at the DSDT ({dsdt_addr}):\n{fadt}"
    );

    let xsdt = disassemble(
        &iasl,
        dir.path(),
        "xsdt",
        &t.get(b"XSDT").expect("XSDT").bytes,
    );
    assert!(
        xsdt.contains(&format!("{:016X}", t.get(b"APIC").expect("MADT").addr.0)),
        "{xsdt}"
    );
}

#[test]
fn every_table_checksums_to_zero() {
    for (vcpus, devices) in [(1, 0), (2, 1), (64, 19), (254, 19)] {
        let t = tables(vcpus, devices);
        for table in &t.tables {
            let len = if &table.signature == b"RSD " {
                20
            } else {
                table.bytes.len()
            };
            let sum = table.bytes[..len]
                .iter()
                .fold(0u8, |a, b| a.wrapping_add(*b));
            assert_eq!(
                sum,
                0,
                "{} with {vcpus} vCPUs",
                String::from_utf8_lossy(&table.signature)
            );
        }
        let rsdp = &t.get(b"RSD ").expect("RSDP").bytes;
        assert_eq!(
            rsdp.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "RSDP extended checksum"
        );
        assert!(ACPI.contains(t.span().start.0, t.span().size));
    }
}
