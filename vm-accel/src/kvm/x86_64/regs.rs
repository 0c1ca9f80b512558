//! Conversions between KVM's x86 register structs and ours.

use crate::regs::{X86DescriptorTable, X86Segment, X86_64Registers, X86_64SpecialRegisters};
use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};

pub(super) fn from_kvm_regs(r: &kvm_regs) -> X86_64Registers {
    X86_64Registers {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

pub(super) fn to_kvm_regs(r: &X86_64Registers) -> kvm_regs {
    kvm_regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn from_kvm_segment(s: &kvm_segment) -> X86Segment {
    X86Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        segment_type: s.type_,
        present: s.present != 0,
        dpl: s.dpl,
        db: s.db != 0,
        s: s.s != 0,
        l: s.l != 0,
        g: s.g != 0,
        avl: s.avl != 0,
        unusable: s.unusable != 0,
    }
}

fn to_kvm_segment(s: &X86Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.segment_type,
        present: u8::from(s.present),
        dpl: s.dpl,
        db: u8::from(s.db),
        s: u8::from(s.s),
        l: u8::from(s.l),
        g: u8::from(s.g),
        avl: u8::from(s.avl),
        unusable: u8::from(s.unusable),
        padding: 0,
    }
}

fn from_kvm_dtable(t: &kvm_dtable) -> X86DescriptorTable {
    X86DescriptorTable {
        base: t.base,
        limit: t.limit,
    }
}

fn to_kvm_dtable(t: &X86DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: t.base,
        limit: t.limit,
        padding: [0; 3],
    }
}

pub(super) fn from_kvm_sregs(s: &kvm_sregs) -> X86_64SpecialRegisters {
    X86_64SpecialRegisters {
        cs: from_kvm_segment(&s.cs),
        ds: from_kvm_segment(&s.ds),
        es: from_kvm_segment(&s.es),
        fs: from_kvm_segment(&s.fs),
        gs: from_kvm_segment(&s.gs),
        ss: from_kvm_segment(&s.ss),
        tr: from_kvm_segment(&s.tr),
        ldt: from_kvm_segment(&s.ldt),
        gdt: from_kvm_dtable(&s.gdt),
        idt: from_kvm_dtable(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
    }
}

/// Writes ours into `k`, keeping KVM-only fields (the pending-interrupt bitmap).
pub(super) fn update_kvm_sregs(k: &mut kvm_sregs, s: &X86_64SpecialRegisters) {
    k.cs = to_kvm_segment(&s.cs);
    k.ds = to_kvm_segment(&s.ds);
    k.es = to_kvm_segment(&s.es);
    k.fs = to_kvm_segment(&s.fs);
    k.gs = to_kvm_segment(&s.gs);
    k.ss = to_kvm_segment(&s.ss);
    k.tr = to_kvm_segment(&s.tr);
    k.ldt = to_kvm_segment(&s.ldt);
    k.gdt = to_kvm_dtable(&s.gdt);
    k.idt = to_kvm_dtable(&s.idt);
    k.cr0 = s.cr0;
    k.cr2 = s.cr2;
    k.cr3 = s.cr3;
    k.cr4 = s.cr4;
    k.cr8 = s.cr8;
    k.efer = s.efer;
    k.apic_base = s.apic_base;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::test_support::{long_mode_entry, BOOT_STACK_POINTER};
    use crate::boot::BootState;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    #[test]
    fn sregs_round_trip_through_kvm_layout() {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let BootState::X86_64Linux { system, .. } =
            long_mode_entry(&memory, 0x1_0000, 0, BOOT_STACK_POINTER).unwrap()
        else {
            unreachable!()
        };
        let ours = system.apply_to(X86_64SpecialRegisters::default());
        let mut k = kvm_sregs {
            interrupt_bitmap: [7, 0, 0, 0],
            ..kvm_sregs::default()
        };
        update_kvm_sregs(&mut k, &ours);
        assert_eq!(from_kvm_sregs(&k), ours);
        assert_eq!(k.interrupt_bitmap[0], 7, "KVM-only state kept");
        let regs = X86_64Registers {
            rip: 5,
            r15: 9,
            ..X86_64Registers::default()
        };
        assert_eq!(from_kvm_regs(&to_kvm_regs(&regs)), regs);
    }
}
