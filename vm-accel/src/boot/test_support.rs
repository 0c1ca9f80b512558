//! A long-mode entry for this crate's own tests and examples. The platform
//! crate (`vm-cross-arch`, `platform/x86_64/entry.rs`) owns the boot tables a
//! VMM uses, but it depends on this crate, so tests here cannot call it: this
//! module writes the minimum a tiny 64-bit guest needs (a flat GDT, an empty
//! IDT, 2 MiB pages mapping the first GiB) at fixed low addresses.

use super::x86_64::{linux_entry_registers, CR0_ET, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME};
use super::{BootState, X86_64SystemRegisters};
use crate::error::AccelError;
use crate::regs::{X86DescriptorTable, X86Segment};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The GDT: null, 64-bit code, data, TSS.
pub const GDT: u64 = 0x500;
/// The IDT (empty).
pub const IDT: u64 = 0x520;
/// What tests pass as the Linux zero page (RSI).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// The stack pointer at entry.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page map level 4; the PDPT and the page directory follow it.
pub const PML4: u64 = 0x9000;
/// The selector of the 64-bit code segment.
pub const CODE_SELECTOR: u16 = 0x08;
/// First byte after the tables: test code and data go above it.
pub const TABLES_END: u64 = PML4 + 3 * 0x1000;

/// `(selector, descriptor)` of the code, data and TSS segments.
const SEGMENTS: [(u16, u64); 3] = [
    (CODE_SELECTOR, 0x00af_9b00_0000_ffff),
    (0x10, 0x00cf_9300_0000_ffff),
    (0x18, 0x008f_8b00_0000_ffff),
];

/// The segment cache a descriptor of [`SEGMENTS`] loads (base 0, 4 GiB limit).
fn cache(selector: u16, descriptor: u64) -> X86Segment {
    let bit = |n: u32| (descriptor >> n) & 1 == 1;
    X86Segment {
        base: 0,
        limit: u32::MAX,
        selector,
        segment_type: ((descriptor >> 40) & 0xf) as u8,
        present: true,
        dpl: 0,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: true,
        avl: false,
        unusable: false,
    }
}

/// Writes the tables into `memory` (which must back `0..TABLES_END`) and
/// returns the boot state entering 64-bit code at `entry` with `rsi =
/// boot_params` and `rsp = rbp = stack`.
pub fn long_mode_entry(
    memory: &GuestMemoryMmap,
    entry: u64,
    boot_params: u64,
    stack: u64,
) -> Result<BootState, AccelError> {
    let mut low = vec![0u8; (TABLES_END - GDT) as usize];
    let mut put = |addr: u64, value: u64| {
        let at = (addr - GDT) as usize;
        low[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    for (selector, descriptor) in SEGMENTS {
        put(GDT + u64::from(selector), descriptor);
    }
    put(PML4, (PML4 + 0x1000) | 3);
    put(PML4 + 0x1000, (PML4 + 0x2000) | 3);
    for i in 0..512 {
        put(PML4 + 0x2000 + i * 8, (i << 21) | 0x83);
    }
    memory
        .write_slice(&low, GuestAddress(GDT))
        .map_err(|e| AccelError::GuestMemory {
            addr: GDT,
            len: low.len() as u64,
            reason: format!("writing the test long-mode tables: {e}"),
        })?;
    let [code, data, tss] = SEGMENTS.map(|(selector, descriptor)| cache(selector, descriptor));
    Ok(BootState::X86_64Linux {
        regs: linux_entry_registers(entry, boot_params, stack),
        system: X86_64SystemRegisters {
            gdt: X86DescriptorTable {
                base: GDT,
                limit: 31,
            },
            idt: X86DescriptorTable {
                base: IDT,
                limit: 7,
            },
            cs: code,
            data,
            tr: tss,
            cr0: CR0_PE | CR0_ET | CR0_PG,
            cr3: PML4,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
        },
    })
}
