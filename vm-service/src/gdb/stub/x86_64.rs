//! x86-64 as GDB sees it: `gdbstub_arch`'s `X86_64_SSE` registers (the 16
//! general registers, rip, eflags, the segment selectors, x87 and SSE).
//! General registers, rip and eflags can be written; the others are read
//! only (a write that changes them is refused).

use gdbstub_arch::x86::reg::id::{X86SegmentRegId, X86_64CoreRegId, X87FpuInternalRegId};
use gdbstub_arch::x86::reg::{X86SegmentRegs, X86_64CoreRegs, X87FpuInternalRegs};
use gdbstub_arch::x86::X86_64_SSE;
use vm_accel::regs::X86_64Registers;
use vm_accel::{GuestArch, Registers, Vcpu};

use super::DebugArch;

pub(super) type X86_64 = X86_64_SSE;

/// General register `n` in GDB's order: rax, rbx, rcx, rdx, rsi, rdi, rbp,
/// rsp, r8-r15.
fn gpr(r: &mut X86_64Registers, n: usize) -> Option<&mut u64> {
    Some(match n {
        0 => &mut r.rax,
        1 => &mut r.rbx,
        2 => &mut r.rcx,
        3 => &mut r.rdx,
        4 => &mut r.rsi,
        5 => &mut r.rdi,
        6 => &mut r.rbp,
        7 => &mut r.rsp,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        15 => &mut r.r15,
        _ => return None,
    })
}

fn general(vcpu: &dyn Vcpu) -> Option<X86_64Registers> {
    match vcpu.registers().ok()? {
        Registers::X86_64(r) => Some(r),
        _ => None,
    }
}

/// The full tag word from `FXSAVE`'s abridged one: a register in use is
/// shown as valid (00), a free one as empty (11).
fn full_tag(abridged: u8) -> u32 {
    (0..8)
        .filter(|i| abridged & (1 << i) == 0)
        .fold(0, |tag, i| tag | 0b11 << (2 * i))
}

/// Everything but the general registers, rip and eflags.
fn read_rest(vcpu: &mut dyn Vcpu, regs: &mut X86_64CoreRegs) -> Option<()> {
    let s = vcpu.x86_64_special_registers().ok()?;
    regs.segments = X86SegmentRegs {
        cs: s.cs.selector.into(),
        ss: s.ss.selector.into(),
        ds: s.ds.selector.into(),
        es: s.es.selector.into(),
        fs: s.fs.selector.into(),
        gs: s.gs.selector.into(),
    };
    let f = vcpu.x86_64_fpu_registers().ok()?;
    regs.st = f.st;
    // The 64-bit FXSAVE layout keeps full instruction and operand addresses
    // and no selectors: GDB's offsets get the low halves, its segments 0.
    regs.fpu = X87FpuInternalRegs {
        fctrl: f.fcw.into(),
        fstat: f.fsw.into(),
        ftag: full_tag(f.ftw),
        fiseg: 0,
        fioff: f.fip as u32,
        foseg: 0,
        fooff: f.fdp as u32,
        fop: f.fop.into(),
    };
    regs.xmm = f.xmm;
    regs.mxcsr = f.mxcsr;
    Some(())
}

impl DebugArch for X86_64 {
    const GUEST: GuestArch = GuestArch::X86_64;
    // KVM x86_64 keeps every breakpoint in a debug register (DR0-DR3).
    const BREAKPOINT_SLOTS: Option<usize> = Some(4);
    const WATCHPOINTS: bool = false;

    fn read_registers(vcpu: &mut dyn Vcpu, regs: &mut X86_64CoreRegs) -> Option<()> {
        let mut r = general(vcpu)?;
        for (n, out) in regs.regs.iter_mut().enumerate() {
            *out = *gpr(&mut r, n)?;
        }
        regs.rip = r.rip;
        // RFLAGS bits 32-63 are reserved (zero).
        regs.eflags = r.rflags as u32;
        read_rest(vcpu, regs)
    }

    fn write_registers(vcpu: &mut dyn Vcpu, regs: &X86_64CoreRegs) -> Option<()> {
        let mut now = X86_64CoreRegs::default();
        read_rest(vcpu, &mut now)?;
        let rest_unchanged = now.segments == regs.segments
            && now.st == regs.st
            && now.fpu == regs.fpu
            && now.xmm == regs.xmm
            && now.mxcsr == regs.mxcsr;
        if !rest_unchanged {
            return None;
        }
        let mut r = general(vcpu)?;
        for (n, value) in regs.regs.iter().enumerate() {
            *gpr(&mut r, n)? = *value;
        }
        r.rip = regs.rip;
        r.rflags = regs.eflags.into();
        vcpu.set_registers(&Registers::X86_64(r)).ok()
    }

    fn read_register(vcpu: &mut dyn Vcpu, reg: X86_64CoreRegId, buf: &mut [u8]) -> Option<usize> {
        let mut all = X86_64CoreRegs::default();
        Self::read_registers(vcpu, &mut all)?;
        let seg = &all.segments;
        let fpu = &all.fpu;
        let n = match reg {
            X86_64CoreRegId::Gpr(n) => {
                super::put_le(buf, &all.regs.get(usize::from(n))?.to_le_bytes())
            }
            X86_64CoreRegId::Rip => super::put_le(buf, &all.rip.to_le_bytes()),
            X86_64CoreRegId::Eflags => super::put_le(buf, &all.eflags.to_le_bytes()),
            X86_64CoreRegId::Segment(s) => {
                let v = match s {
                    X86SegmentRegId::CS => seg.cs,
                    X86SegmentRegId::SS => seg.ss,
                    X86SegmentRegId::DS => seg.ds,
                    X86SegmentRegId::ES => seg.es,
                    X86SegmentRegId::FS => seg.fs,
                    X86SegmentRegId::GS => seg.gs,
                };
                super::put_le(buf, &v.to_le_bytes())
            }
            X86_64CoreRegId::St(i) => super::put_le(buf, all.st.get(usize::from(i))?),
            X86_64CoreRegId::Fpu(f) => {
                let v = match f {
                    X87FpuInternalRegId::Fctrl => fpu.fctrl,
                    X87FpuInternalRegId::Fstat => fpu.fstat,
                    X87FpuInternalRegId::Ftag => fpu.ftag,
                    X87FpuInternalRegId::Fiseg => fpu.fiseg,
                    X87FpuInternalRegId::Fioff => fpu.fioff,
                    X87FpuInternalRegId::Foseg => fpu.foseg,
                    X87FpuInternalRegId::Fooff => fpu.fooff,
                    X87FpuInternalRegId::Fop => fpu.fop,
                };
                super::put_le(buf, &v.to_le_bytes())
            }
            X86_64CoreRegId::Xmm(i) => {
                super::put_le(buf, &all.xmm.get(usize::from(i))?.to_le_bytes())
            }
            X86_64CoreRegId::Mxcsr => super::put_le(buf, &all.mxcsr.to_le_bytes()),
            _ => return None,
        };
        Some(n)
    }

    fn write_register(vcpu: &mut dyn Vcpu, reg: X86_64CoreRegId, val: &[u8]) -> Option<()> {
        let value = super::get_le(val);
        let mut r = general(vcpu)?;
        match reg {
            X86_64CoreRegId::Gpr(n) => *gpr(&mut r, usize::from(n))? = value,
            X86_64CoreRegId::Rip => r.rip = value,
            X86_64CoreRegId::Eflags => r.rflags = value & 0xffff_ffff,
            _ => return None,
        }
        vcpu.set_registers(&Registers::X86_64(r)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abridged_tags_expand_to_valid_or_empty() {
        assert_eq!(full_tag(0), 0xffff);
        assert_eq!(full_tag(0xff), 0);
        assert_eq!(full_tag(0b10), 0xfff3);
    }
}
