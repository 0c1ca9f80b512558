//! Converting between this crate's register types and WHPX register names
//! and values (`WHvGet/SetVirtualProcessorRegisters`).

use super::api::{self, Api};
use crate::decode::whpx_abi::{segment_attributes, segment_from_whpx};
use crate::error::AccelError;
use crate::regs::{X86DescriptorTable, X86Segment, X86_64Registers, X86_64SpecialRegisters};
use windows_sys::Win32::System::Hypervisor::{
    WHvX64RegisterApicBase, WHvX64RegisterCr0, WHvX64RegisterCr2, WHvX64RegisterCr3,
    WHvX64RegisterCr4, WHvX64RegisterCr8, WHvX64RegisterCs, WHvX64RegisterDs, WHvX64RegisterEfer,
    WHvX64RegisterEs, WHvX64RegisterFs, WHvX64RegisterGdtr, WHvX64RegisterGs, WHvX64RegisterIdtr,
    WHvX64RegisterLdtr, WHvX64RegisterR10, WHvX64RegisterR11, WHvX64RegisterR12, WHvX64RegisterR13,
    WHvX64RegisterR14, WHvX64RegisterR15, WHvX64RegisterR8, WHvX64RegisterR9, WHvX64RegisterRax,
    WHvX64RegisterRbp, WHvX64RegisterRbx, WHvX64RegisterRcx, WHvX64RegisterRdi, WHvX64RegisterRdx,
    WHvX64RegisterRflags, WHvX64RegisterRip, WHvX64RegisterRsi, WHvX64RegisterRsp,
    WHvX64RegisterSs, WHvX64RegisterTr, WHV_PARTITION_HANDLE, WHV_REGISTER_NAME,
    WHV_REGISTER_VALUE, WHV_X64_SEGMENT_REGISTER, WHV_X64_SEGMENT_REGISTER_0,
    WHV_X64_TABLE_REGISTER,
};

/// The general registers in [`X86_64Registers`] order used below.
pub(super) const GPR_NAMES: [WHV_REGISTER_NAME; 18] = [
    WHvX64RegisterRax,
    WHvX64RegisterRbx,
    WHvX64RegisterRcx,
    WHvX64RegisterRdx,
    WHvX64RegisterRsi,
    WHvX64RegisterRdi,
    WHvX64RegisterRsp,
    WHvX64RegisterRbp,
    WHvX64RegisterR8,
    WHvX64RegisterR9,
    WHvX64RegisterR10,
    WHvX64RegisterR11,
    WHvX64RegisterR12,
    WHvX64RegisterR13,
    WHvX64RegisterR14,
    WHvX64RegisterR15,
    WHvX64RegisterRip,
    WHvX64RegisterRflags,
];

/// The system registers in [`X86_64SpecialRegisters`] order used below.
const SREG_NAMES: [WHV_REGISTER_NAME; 17] = [
    WHvX64RegisterCs,
    WHvX64RegisterDs,
    WHvX64RegisterEs,
    WHvX64RegisterFs,
    WHvX64RegisterGs,
    WHvX64RegisterSs,
    WHvX64RegisterTr,
    WHvX64RegisterLdtr,
    WHvX64RegisterGdtr,
    WHvX64RegisterIdtr,
    WHvX64RegisterCr0,
    WHvX64RegisterCr2,
    WHvX64RegisterCr3,
    WHvX64RegisterCr4,
    WHvX64RegisterCr8,
    WHvX64RegisterEfer,
    WHvX64RegisterApicBase,
];

/// One virtual processor's register file access.
#[derive(Debug, Clone, Copy)]
pub(super) struct VpRegisters {
    pub(super) api: &'static Api,
    pub(super) partition: WHV_PARTITION_HANDLE,
    pub(super) index: u32,
}

fn reg64(value: u64) -> WHV_REGISTER_VALUE {
    WHV_REGISTER_VALUE { Reg64: value }
}

impl VpRegisters {
    /// Reads `names` into `values` (same length).
    pub(super) fn get(
        &self,
        names: &[WHV_REGISTER_NAME],
        values: &mut [WHV_REGISTER_VALUE],
    ) -> Result<(), AccelError> {
        let count = names.len().min(values.len()) as u32;
        // SAFETY: `names` and `values` hold at least `count` elements each.
        api::check("WHvGetVirtualProcessorRegisters", unsafe {
            (self.api.WHvGetVirtualProcessorRegisters)(
                self.partition,
                self.index,
                names.as_ptr(),
                count,
                values.as_mut_ptr(),
            )
        })
    }

    /// Writes `values` to `names` (same length).
    pub(super) fn set(
        &self,
        names: &[WHV_REGISTER_NAME],
        values: &[WHV_REGISTER_VALUE],
    ) -> Result<(), AccelError> {
        let count = names.len().min(values.len()) as u32;
        // SAFETY: `names` and `values` hold at least `count` elements each.
        api::check("WHvSetVirtualProcessorRegisters", unsafe {
            (self.api.WHvSetVirtualProcessorRegisters)(
                self.partition,
                self.index,
                names.as_ptr(),
                count,
                values.as_ptr(),
            )
        })
    }

    /// Writes one 64-bit register.
    pub(super) fn set64(&self, name: WHV_REGISTER_NAME, value: u64) -> Result<(), AccelError> {
        self.set(&[name], &[reg64(value)])
    }

    /// Reads the general registers.
    pub(super) fn gprs(&self) -> Result<X86_64Registers, AccelError> {
        let mut v = [WHV_REGISTER_VALUE::default(); 18];
        self.get(&GPR_NAMES, &mut v)?;
        // SAFETY: general registers are returned in Reg64; any bit pattern is valid.
        let r = |i: usize| unsafe { v[i].Reg64 };
        Ok(X86_64Registers {
            rax: r(0),
            rbx: r(1),
            rcx: r(2),
            rdx: r(3),
            rsi: r(4),
            rdi: r(5),
            rsp: r(6),
            rbp: r(7),
            r8: r(8),
            r9: r(9),
            r10: r(10),
            r11: r(11),
            r12: r(12),
            r13: r(13),
            r14: r(14),
            r15: r(15),
            rip: r(16),
            rflags: r(17),
        })
    }

    /// Writes the general registers.
    pub(super) fn set_gprs(&self, g: &X86_64Registers) -> Result<(), AccelError> {
        let v = [
            g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rsp, g.rbp, g.r8, g.r9, g.r10, g.r11,
            g.r12, g.r13, g.r14, g.r15, g.rip, g.rflags,
        ]
        .map(reg64);
        self.set(&GPR_NAMES, &v)
    }

    /// Reads the system registers.
    pub(super) fn sregs(&self) -> Result<X86_64SpecialRegisters, AccelError> {
        let mut v = [WHV_REGISTER_VALUE::default(); 17];
        self.get(&SREG_NAMES, &mut v)?;
        // SAFETY: segment registers come back in `Segment`, tables in `Table`,
        // the rest in `Reg64`, as the names requested; all are plain data.
        unsafe {
            let seg = |i: usize| {
                let s = v[i].Segment;
                segment_from_whpx(s.Base, s.Limit, s.Selector, s.Anonymous.Attributes)
            };
            let table = |i: usize| X86DescriptorTable {
                base: v[i].Table.Base,
                limit: v[i].Table.Limit,
            };
            Ok(X86_64SpecialRegisters {
                cs: seg(0),
                ds: seg(1),
                es: seg(2),
                fs: seg(3),
                gs: seg(4),
                ss: seg(5),
                tr: seg(6),
                ldt: seg(7),
                gdt: table(8),
                idt: table(9),
                cr0: v[10].Reg64,
                cr2: v[11].Reg64,
                cr3: v[12].Reg64,
                cr4: v[13].Reg64,
                cr8: v[14].Reg64,
                efer: v[15].Reg64,
                apic_base: v[16].Reg64,
            })
        }
    }

    /// Writes the system registers.
    pub(super) fn set_sregs(&self, s: &X86_64SpecialRegisters) -> Result<(), AccelError> {
        let seg = |x: &X86Segment| WHV_REGISTER_VALUE {
            Segment: WHV_X64_SEGMENT_REGISTER {
                Base: x.base,
                Limit: x.limit,
                Selector: x.selector,
                Anonymous: WHV_X64_SEGMENT_REGISTER_0 {
                    Attributes: if x.unusable { 0 } else { segment_attributes(x) },
                },
            },
        };
        let table = |t: &X86DescriptorTable| WHV_REGISTER_VALUE {
            Table: WHV_X64_TABLE_REGISTER {
                Pad: [0; 3],
                Limit: t.limit,
                Base: t.base,
            },
        };
        let v = [
            seg(&s.cs),
            seg(&s.ds),
            seg(&s.es),
            seg(&s.fs),
            seg(&s.gs),
            seg(&s.ss),
            seg(&s.tr),
            seg(&s.ldt),
            table(&s.gdt),
            table(&s.idt),
            reg64(s.cr0),
            reg64(s.cr2),
            reg64(s.cr3),
            reg64(s.cr4),
            reg64(s.cr8),
            reg64(s.efer),
            reg64(s.apic_base),
        ];
        self.set(&SREG_NAMES, &v)
    }

    /// The base of a segment register.
    pub(super) fn segment_base(&self, name: WHV_REGISTER_NAME) -> Result<u64, AccelError> {
        let mut value = [WHV_REGISTER_VALUE::default()];
        self.get(&[name], &mut value)?;
        // SAFETY: segment registers are returned in `Segment`; plain data.
        Ok(unsafe { value[0].Segment.Base })
    }
}
