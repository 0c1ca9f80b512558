//! x86-64 direct 64-bit boot: the low-memory layout the backends write (GDT,
//! IDT, identity page tables, stack) and the long-mode register state, the way
//! Firecracker enters a Linux kernel. Plain data and pure functions, usable by
//! every backend; the platform's memory map must keep these pages for them.

use crate::error::AccelError;
use crate::regs::{X86DescriptorTable, X86Segment, X86_64Registers, X86_64SpecialRegisters};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest-physical address of the boot GDT (4 entries, 32 bytes).
pub const GDT_ADDR: u64 = 0x500;
/// Guest-physical address of the boot IDT (one empty 8-byte entry).
pub const IDT_ADDR: u64 = 0x520;
/// Suggested guest-physical address of the Linux `boot_params` page.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for the boot vCPU (the stack grows down from here).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Guest-physical address of the PML4 page.
pub const PML4_ADDR: u64 = 0x9000;
/// Guest-physical address of the PDPT page.
pub const PDPT_ADDR: u64 = 0xa000;
/// Guest-physical address of the page directory (512 x 2 MiB = the first 1 GiB).
pub const PD_ADDR: u64 = 0xb000;
/// First byte after the boot tables: `[GDT_ADDR, BOOT_TABLES_END)` is reserved.
pub const BOOT_TABLES_END: u64 = 0xc000;
/// How much memory the boot page tables identity-map.
pub const IDENTITY_MAPPED_BYTES: u64 = 1 << 30;
/// Where KVM puts the real-mode TSS (three pages, must not be RAM or MMIO).
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// Where KVM puts the EPT identity map page (just below the TSS).
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// GDT selector of the 64-bit code segment.
pub const CODE_SELECTOR: u16 = 0x08;
/// GDT selector of the data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// GDT selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1;
/// CR0.ET: extension type (always 1 on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NW: not write-through (set at reset).
pub const CR0_NW: u64 = 1 << 29;
/// CR0.CD: cache disable (set at reset).
pub const CR0_CD: u64 = 1 << 30;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE: physical address extension (required for long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

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
/// into guest memory. The memory must back `[GDT_ADDR, BOOT_TABLES_END)`.
pub fn write_boot_tables(memory: &GuestMemoryMmap) -> Result<(), AccelError> {
    let write = |addr: u64, bytes: &[u8]| {
        memory
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|e| AccelError::GuestMemory {
                addr,
                len: bytes.len() as u64,
                reason: format!("writing the x86_64 boot tables: {e}"),
            })
    };
    let mut gdt = [0u8; 32];
    for (chunk, entry) in gdt.chunks_exact_mut(8).zip(BOOT_GDT) {
        chunk.copy_from_slice(&entry.to_le_bytes());
    }
    write(GDT_ADDR, &gdt)?;
    write(IDT_ADDR, &0u64.to_le_bytes())?;
    write(PML4_ADDR, &(PDPT_ADDR | PAGE_PRESENT_RW).to_le_bytes())?;
    write(PDPT_ADDR, &(PD_ADDR | PAGE_PRESENT_RW).to_le_bytes())?;
    let mut pd = [0u8; 4096];
    for (i, chunk) in pd.chunks_exact_mut(8).enumerate() {
        let entry = ((i as u64) << 21) | PAGE_PRESENT_RW | PAGE_PS;
        chunk.copy_from_slice(&entry.to_le_bytes());
    }
    write(PD_ADDR, &pd)
}

/// Turns `sregs` into 64-bit long mode with the boot GDT/IDT and page tables,
/// with caches enabled, keeping fields the set-up does not own (APIC base, CR8, ...).
pub fn long_mode_special_registers(mut sregs: X86_64SpecialRegisters) -> X86_64SpecialRegisters {
    let code = segment_from_gdt(BOOT_GDT[1], CODE_SELECTOR);
    let data = segment_from_gdt(BOOT_GDT[2], DATA_SELECTOR);
    let tss = segment_from_gdt(BOOT_GDT[3], TSS_SELECTOR);
    sregs.gdt = X86DescriptorTable {
        base: GDT_ADDR,
        limit: (BOOT_GDT.len() * 8 - 1) as u16,
    };
    sregs.idt = X86DescriptorTable {
        base: IDT_ADDR,
        limit: 7,
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = (sregs.cr0 & !(CR0_CD | CR0_NW)) | CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// General registers at the 64-bit Linux entry: `rip = entry`, `rsi = boot_params`,
/// `rsp = rbp = stack`, RFLAGS with only the reserved bit 1 set.
pub fn linux_boot_registers(entry: u64, boot_params: u64, stack: u64) -> X86_64Registers {
    X86_64Registers {
        rip: entry,
        rsi: boot_params,
        rsp: stack,
        rbp: stack,
        rflags: 0x2,
        ..X86_64Registers::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn boot_tables_need_low_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err = write_boot_tables(&mem).unwrap_err();
        assert!(matches!(err, AccelError::GuestMemory { .. }), "{err}");
    }

    #[test]
    fn long_mode_registers_enable_paging_and_lma() {
        let sregs = long_mode_special_registers(X86_64SpecialRegisters::default());
        assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(sregs.cr3, PML4_ADDR);
        assert_eq!(sregs.cs.selector, CODE_SELECTOR);
        let regs = linux_boot_registers(0x100_0000, ZERO_PAGE_ADDR, BOOT_STACK_POINTER);
        assert_eq!((regs.rip, regs.rsi, regs.rsp), (0x100_0000, 0x7000, 0x8ff0));
    }
}
