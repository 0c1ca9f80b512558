//! x86-64 entry state as the backends receive it: the system registers a
//! boot state sets ([`X86_64SystemRegisters`]) and the architectural bits
//! they are made of. Where the GDT, IDT and page tables live and what they
//! hold is the platform's (`vm-cross-arch`'s `platform/x86_64/`): the backend
//! loads the registers it is given and writes no guest memory.

use crate::regs::{X86DescriptorTable, X86Segment, X86_64Registers, X86_64SpecialRegisters};

/// Where KVM puts the real-mode TSS (three pages; the platform keeps them
/// out of RAM and MMIO).
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// Where KVM puts the EPT identity map page (just below the TSS).
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

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

/// General registers at the Linux 64-bit boot protocol's entry: `rip =
/// entry`, `rsi = boot_params` (the zero page), `rsp = rbp = stack`, RFLAGS
/// with only the reserved bit 1 set (interrupts off).
pub fn linux_entry_registers(entry: u64, boot_params: u64, stack: u64) -> X86_64Registers {
    X86_64Registers {
        rip: entry,
        rsi: boot_params,
        rsp: stack,
        rbp: stack,
        rflags: 0x2,
        ..X86_64Registers::default()
    }
}

/// The system registers a boot state loads. The others (CR2, CR8, the LDT,
/// the APIC base) keep the vCPU's reset values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X86_64SystemRegisters {
    /// GDTR.
    pub gdt: X86DescriptorTable,
    /// IDTR.
    pub idt: X86DescriptorTable,
    /// CS.
    pub cs: X86Segment,
    /// DS, ES, FS, GS and SS.
    pub data: X86Segment,
    /// TR.
    pub tr: X86Segment,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

impl X86_64SystemRegisters {
    /// `sregs` with these registers loaded and everything else kept.
    pub fn apply_to(&self, mut sregs: X86_64SpecialRegisters) -> X86_64SpecialRegisters {
        sregs.gdt = self.gdt;
        sregs.idt = self.idt;
        sregs.cs = self.cs;
        sregs.ds = self.data;
        sregs.es = self.data;
        sregs.fs = self.data;
        sregs.gs = self.data;
        sregs.ss = self.data;
        sregs.tr = self.tr;
        sregs.cr0 = self.cr0;
        sregs.cr3 = self.cr3;
        sregs.cr4 = self.cr4;
        sregs.efer = self.efer;
        sregs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_keeps_what_the_boot_state_does_not_own() {
        let system = X86_64SystemRegisters {
            cr0: CR0_PE | CR0_ET | CR0_PG,
            cr3: 0x9000,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            cs: X86Segment {
                selector: 8,
                l: true,
                ..X86Segment::default()
            },
            data: X86Segment {
                selector: 0x10,
                ..X86Segment::default()
            },
            ..X86_64SystemRegisters::default()
        };
        let before = X86_64SpecialRegisters {
            apic_base: 0xfee0_0900,
            cr8: 3,
            cr0: CR0_CD | CR0_NW | CR0_ET,
            ..X86_64SpecialRegisters::default()
        };
        let after = system.apply_to(before);
        assert_eq!((after.apic_base, after.cr8), (0xfee0_0900, 3));
        assert_eq!(after.cr0, CR0_PE | CR0_ET | CR0_PG);
        assert_eq!((after.cr3, after.efer), (0x9000, EFER_LME | EFER_LMA));
        assert_eq!(after.cs.selector, 8);
        assert_eq!((after.ss.selector, after.gs.selector), (0x10, 0x10));
        let regs = linux_entry_registers(0x100_0000, 0x7000, 0x8ff0);
        assert_eq!(
            (regs.rip, regs.rsi, regs.rsp, regs.rbp),
            (0x100_0000, 0x7000, 0x8ff0, 0x8ff0)
        );
        assert_eq!((regs.rflags, regs.rax), (0x2, 0));
    }
}
