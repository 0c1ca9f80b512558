//! The x86-64 direct 64-bit entry, the way Firecracker enters a Linux kernel:
//! a GDT (null, 64-bit code, data, TSS), an empty IDT and page tables that
//! identity-map the first GiB, written at the addresses of
//! [`layout`](super::layout), and the long-mode registers that point at
//! them. The accelerator loads the registers of the [`BootState`] built here
//! and writes no guest memory.

use vm_accel::boot::x86_64::{
    linux_entry_registers, CR0_ET, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME,
};
use vm_accel::boot::X86_64SystemRegisters;
use vm_accel::regs::{X86DescriptorTable, X86Segment};
use vm_accel::BootState;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::layout::{GDT_ADDR, IDT_ADDR, PDPT_ADDR, PD_ADDR, PML4_ADDR};
use crate::platform::boot::write_blob;
use crate::platform::error::Result;

/// GDT selector of the 64-bit code segment.
pub const CODE_SELECTOR: u16 = 0x08;
/// GDT selector of the data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// GDT selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

const PAGE_PRESENT_RW: u64 = 0x3;
const PAGE_PS: u64 = 0x80;

/// Builds a GDT entry from access/flags bits, base and limit (the layout of the SDM).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The boot GDT: null, 64-bit code, data, TSS.
pub const BOOT_GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// Decodes a GDT entry into the segment-register cache it loads.
pub fn segment_from_gdt(entry: u64, selector: u16) -> X86Segment {
    let g = (entry >> 55) & 1 == 1;
    let raw_limit = ((entry & 0x000f_0000_0000_0000) >> 32 | (entry & 0xffff)) as u32;
    let limit = if g {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = (entry >> 47) & 1 == 1;
    X86Segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit,
        selector,
        segment_type: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: (entry >> 54) & 1 == 1,
        s: (entry >> 44) & 1 == 1,
        l: (entry >> 53) & 1 == 1,
        g,
        avl: (entry >> 52) & 1 == 1,
        unusable: !present,
    }
}

/// Writes the GDT, an empty IDT and identity page tables for the first 1 GiB
/// into guest memory, which must back [`layout::BOOT_TABLES`](super::layout::BOOT_TABLES).
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<()> {
    let mut gdt = [0u8; 32];
    for (chunk, entry) in gdt.chunks_exact_mut(8).zip(BOOT_GDT) {
        chunk.copy_from_slice(&entry.to_le_bytes());
    }
    write_blob(mem, "boot GDT", GuestAddress(GDT_ADDR), &gdt)?;
    write_blob(mem, "boot IDT", GuestAddress(IDT_ADDR), &0u64.to_le_bytes())?;
    let pml4 = (PDPT_ADDR | PAGE_PRESENT_RW).to_le_bytes();
    write_blob(mem, "boot PML4", GuestAddress(PML4_ADDR), &pml4)?;
    let pdpt = (PD_ADDR | PAGE_PRESENT_RW).to_le_bytes();
    write_blob(mem, "boot PDPT", GuestAddress(PDPT_ADDR), &pdpt)?;
    let mut pd = [0u8; 4096];
    for (i, chunk) in pd.chunks_exact_mut(8).enumerate() {
        let entry = ((i as u64) << 21) | PAGE_PRESENT_RW | PAGE_PS;
        chunk.copy_from_slice(&entry.to_le_bytes());
    }
    write_blob(mem, "boot page directory", GuestAddress(PD_ADDR), &pd)
}

/// Long mode with the boot GDT, IDT and page tables, caches enabled.
pub fn long_mode_system_registers() -> X86_64SystemRegisters {
    X86_64SystemRegisters {
        gdt: X86DescriptorTable {
            base: GDT_ADDR,
            limit: (BOOT_GDT.len() * 8 - 1) as u16,
        },
        idt: X86DescriptorTable {
            base: IDT_ADDR,
            limit: 7,
        },
        cs: segment_from_gdt(BOOT_GDT[1], CODE_SELECTOR),
        data: segment_from_gdt(BOOT_GDT[2], DATA_SELECTOR),
        tr: segment_from_gdt(BOOT_GDT[3], TSS_SELECTOR),
        cr0: CR0_PE | CR0_ET | CR0_PG,
        cr3: PML4_ADDR,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
    }
}

/// The boot vCPU at a 64-bit Linux entry: long mode (see
/// [`long_mode_system_registers`]), `rip = entry`, `rsi = boot_params`,
/// `rsp = rbp = stack`, interrupts off ([`linux_entry_registers`]).
pub fn linux_boot_state(entry: u64, boot_params: u64, stack: u64) -> BootState {
    BootState::X86_64Linux {
        regs: linux_entry_registers(entry, boot_params, stack),
        system: long_mode_system_registers(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::{BOOT_STACK, ZERO_PAGE};
    use super::*;
    use crate::platform::error::PlatformError;
    use vm_memory::Bytes;

    #[test]
    fn gdt_entries_decode_to_long_mode_segments() {
        let code = segment_from_gdt(BOOT_GDT[1], CODE_SELECTOR);
        assert!(code.l && code.present && code.s && code.g && !code.db);
        assert_eq!(code.segment_type, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(BOOT_GDT[2], DATA_SELECTOR);
        assert!(data.db && !data.l && data.present);
        assert_eq!(data.segment_type, 0x3);
        let null = segment_from_gdt(BOOT_GDT[0], 0);
        assert!(null.unusable);
    }

    #[test]
    fn gdt_entry_round_trips_base_and_limit() {
        let entry = gdt_entry(0x0093, 0x1234_5678, 0xabcde);
        let seg = segment_from_gdt(entry, 0x10);
        assert_eq!(seg.base, 0x1234_5678);
        assert_eq!(seg.limit, 0xabcde);
    }

    #[test]
    fn boot_tables_identity_map_the_first_gigabyte() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4 & !0xfff, PDPT_ADDR);
        let pd_last: u64 = mem.read_obj(GuestAddress(PD_ADDR + 511 * 8)).unwrap();
        assert_eq!(pd_last & !0xfff, 511 << 21);
        assert_eq!(pd_last & 0x83, 0x83);
        let code: u64 = mem.read_obj(GuestAddress(GDT_ADDR + 8)).unwrap();
        assert_eq!(code, BOOT_GDT[1]);
    }

    #[test]
    fn boot_tables_need_low_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err = write_boot_tables(&mem).unwrap_err();
        assert!(matches!(err, PlatformError::GuestWrite { .. }), "{err}");
        assert!(err.to_string().contains("boot"), "{err}");
    }

    #[test]
    fn linux_entry_is_long_mode_at_the_kernel() {
        let BootState::X86_64Linux { regs, system } =
            linux_boot_state(0x100_0000, ZERO_PAGE, BOOT_STACK)
        else {
            panic!("not an x86_64 boot state")
        };
        assert_eq!(system.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(system.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(system.cr3, PML4_ADDR);
        assert_eq!(system.cs.selector, CODE_SELECTOR);
        assert_eq!((regs.rip, regs.rsi, regs.rsp), (0x100_0000, 0x7000, 0x8ff0));
        assert_eq!(regs.rflags, 0x2);
    }
}
