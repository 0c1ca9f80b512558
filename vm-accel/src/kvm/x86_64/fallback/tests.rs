//! The fallback's semantics against an in-memory CPU and memory model:
//! results, flags, page-crossing operands and hostile inputs.

use super::machine::flags::{AC, CF, OF, PF, SF, ZF};
use super::machine::{CpuState, FallbackError, Guest, SseState};
use super::table::emulate;
use crate::host_profile::FallbackGroup;
use iced_x86::code_asm::{
    ax, bx, dword_ptr, eax, ebx, ecx, qword_ptr, r8, rax, rbx, rcx, rsp, xmm0, xmm1, xmm15,
    xmmword_ptr, CodeAssembler,
};
use iced_x86::Mnemonic;
use std::collections::BTreeMap;

const PAGE: u64 = 4096;
const RAM: usize = 8 * PAGE as usize;
const CODE: u64 = 0x7000_0000;
const DATA: u64 = 0x7000_1000;

/// Guest RAM (8 pages at physical 0) and a page table of linear pages.
struct Model {
    ram: Vec<u8>,
    pages: BTreeMap<u64, (u64, bool)>,
    sse: SseState,
    xcr0: u64,
}

impl Model {
    /// Code page -> phys 0, DATA..DATA+3 pages -> phys 1..4 (writable).
    fn new() -> Self {
        let mut pages = BTreeMap::new();
        pages.insert(CODE, (0, false));
        for i in 0..3 {
            pages.insert(DATA + i * PAGE, ((1 + i) * PAGE, true));
        }
        Self {
            ram: vec![0; RAM],
            pages,
            sse: SseState::default(),
            xcr0: 0x7,
        }
    }

    fn phys(&self, gva: u64) -> usize {
        let (gpa, _) = self.pages[&(gva & !(PAGE - 1))];
        (gpa + gva % PAGE) as usize
    }

    fn poke(&mut self, gva: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let p = self.phys(gva + i as u64);
            self.ram[p] = *b;
        }
    }

    fn peek(&self, gva: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| self.ram[self.phys(gva + i as u64)])
            .collect()
    }
}

impl Guest for Model {
    fn translate(&mut self, gva: u64, write: bool) -> Result<u64, FallbackError> {
        match self.pages.get(&(gva & !(PAGE - 1))) {
            None => Err(FallbackError::NotMapped { gva }),
            Some(&(_, false)) if write => Err(FallbackError::NotWritable { gva }),
            Some(&(gpa, _)) => Ok(gpa + gva % PAGE),
        }
    }

    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), FallbackError> {
        let src = usize::try_from(gpa)
            .ok()
            .and_then(|s| self.ram.get(s..s.checked_add(buf.len())?))
            .ok_or(FallbackError::OutsideRam {
                gpa,
                len: buf.len(),
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), FallbackError> {
        let dst = usize::try_from(gpa)
            .ok()
            .and_then(|s| self.ram.get_mut(s..s.checked_add(data.len())?))
            .ok_or(FallbackError::OutsideRam {
                gpa,
                len: data.len(),
            })?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn sse(&mut self) -> Result<&mut SseState, FallbackError> {
        Ok(&mut self.sse)
    }

    fn xcr0(&mut self) -> Result<u64, FallbackError> {
        Ok(self.xcr0)
    }
}

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const R8: usize = 8;

fn code(f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

fn cpu() -> CpuState {
    CpuState {
        rip: CODE,
        rflags: 0x2,
        ..CpuState::default()
    }
}

fn all(_: FallbackGroup) -> bool {
    true
}

/// Runs one instruction; checks RIP advanced by its length.
fn run(c: &mut CpuState, m: &mut Model, bytes: &[u8]) -> Result<Mnemonic, FallbackError> {
    let before = c.rip;
    let r = emulate(c, m, bytes, &all);
    if r.is_ok() {
        assert_eq!(
            c.rip,
            before + bytes.len() as u64,
            "RIP advanced past the instruction"
        );
    } else {
        assert_eq!(c.rip, before, "RIP unchanged on error");
    }
    r
}

#[test]
fn popcnt_result_and_flags() {
    let mut m = Model::new();
    let mut c = cpu();
    c.rflags |= CF | OF | SF | PF;
    c.gpr[RBX] = 0xf0f0;
    assert_eq!(
        run(&mut c, &mut m, &code(|a| a.popcnt(rax, rbx))),
        Ok(Mnemonic::Popcnt)
    );
    assert_eq!(c.gpr[RAX], 8);
    assert_eq!(c.rflags & (CF | OF | SF | PF | ZF), 0, "all cleared, ZF=0");
    c.rip = CODE;
    c.gpr[RBX] = 0;
    c.gpr[RAX] = u64::MAX;
    run(&mut c, &mut m, &code(|a| a.popcnt(eax, ebx))).unwrap();
    assert_eq!(c.gpr[RAX], 0, "32-bit destination zero-extends");
    assert_ne!(c.rflags & ZF, 0, "ZF set for a zero source");
    // Memory source, 64-bit.
    m.poke(DATA + 8, &u64::MAX.to_le_bytes());
    c.rip = CODE;
    c.gpr[RCX] = DATA;
    run(&mut c, &mut m, &code(|a| a.popcnt(r8, qword_ptr(rcx + 8)))).unwrap();
    assert_eq!(c.gpr[R8], 64);
}

#[test]
fn lzcnt_tzcnt_flags_and_widths() {
    let mut m = Model::new();
    let mut c = cpu();
    c.gpr[RBX] = 0;
    run(&mut c, &mut m, &code(|a| a.lzcnt(eax, ebx))).unwrap();
    assert_eq!(c.gpr[RAX], 32);
    assert_eq!(c.rflags & (CF | ZF), CF, "CF for a zero source, ZF clear");
    c.rip = CODE;
    c.gpr[RBX] = 0x8000_0000;
    run(&mut c, &mut m, &code(|a| a.lzcnt(eax, ebx))).unwrap();
    assert_eq!(c.gpr[RAX], 0);
    assert_eq!(c.rflags & (CF | ZF), ZF, "ZF for a zero result");
    c.rip = CODE;
    c.gpr[RAX] = 0xdead_0000;
    c.gpr[RBX] = 0;
    run(&mut c, &mut m, &code(|a| a.tzcnt(ax, bx))).unwrap();
    assert_eq!(c.gpr[RAX], 0xdead_0010, "16-bit result merges");
    assert_eq!(c.rflags & (CF | ZF), CF);
    c.rip = CODE;
    c.gpr[RBX] = 0x100;
    run(&mut c, &mut m, &code(|a| a.tzcnt(rax, rbx))).unwrap();
    assert_eq!(c.gpr[RAX], 8);
    assert_eq!(c.rflags & (CF | ZF), 0);
}

#[test]
fn cmpxchg16b_swaps_or_loads_with_zf() {
    let mut m = Model::new();
    let mut c = cpu();
    m.poke(DATA + 16, &[0x11; 8]);
    m.poke(DATA + 24, &[0x22; 8]);
    c.gpr[RSP] = DATA;
    c.gpr[RAX] = 0x1111_1111_1111_1111;
    c.gpr[RDX] = 0x2222_2222_2222_2222;
    c.gpr[RBX] = 0xaaaa;
    c.gpr[RCX] = 0xbbbb;
    let insn = code(|a| a.lock().cmpxchg16b(xmmword_ptr(rsp + 16)));
    assert_eq!(run(&mut c, &mut m, &insn), Ok(Mnemonic::Cmpxchg16b));
    assert_ne!(c.rflags & ZF, 0);
    assert_eq!(m.peek(DATA + 16, 8), 0xaaaa_u64.to_le_bytes());
    assert_eq!(m.peek(DATA + 24, 8), 0xbbbb_u64.to_le_bytes());
    // Now the comparison fails: RDX:RAX get the memory value.
    c.rip = CODE;
    run(&mut c, &mut m, &insn).unwrap();
    assert_eq!(c.rflags & ZF, 0);
    assert_eq!((c.gpr[RAX], c.gpr[RDX]), (0xaaaa, 0xbbbb));
    // Misaligned: #GP on hardware; an error here, nothing changed.
    c.rip = CODE;
    let before = (c, m.peek(DATA, 64));
    let err = run(
        &mut c,
        &mut m,
        &code(|a| a.cmpxchg16b(xmmword_ptr(rsp + 8))),
    )
    .unwrap_err();
    assert!(
        matches!(err, FallbackError::Misaligned { align: 16, .. }),
        "{err}"
    );
    assert_eq!((c, m.peek(DATA, 64)), before);
}

#[test]
fn cmpxchg8b_uses_edx_eax() {
    let mut m = Model::new();
    let mut c = cpu();
    m.poke(DATA, &0x0000_0002_0000_0001_u64.to_le_bytes());
    c.gpr[RSP] = DATA;
    c.gpr[RAX] = 0xffff_ffff_0000_0001; // upper halves are ignored
    c.gpr[RDX] = 2;
    c.gpr[RBX] = 5;
    c.gpr[RCX] = 6;
    run(&mut c, &mut m, &code(|a| a.cmpxchg8b(qword_ptr(rsp)))).unwrap();
    assert_ne!(c.rflags & ZF, 0);
    assert_eq!(m.peek(DATA, 8), 0x0000_0006_0000_0005_u64.to_le_bytes());
}

#[test]
fn clac_stac_fwait_xgetbv() {
    let mut m = Model::new();
    let mut c = cpu();
    run(&mut c, &mut m, &code(CodeAssembler::stac)).unwrap();
    assert_ne!(c.rflags & AC, 0);
    c.rip = CODE;
    run(&mut c, &mut m, &code(CodeAssembler::clac)).unwrap();
    assert_eq!(c.rflags & AC, 0);
    c.rip = CODE;
    c.cpl = 3;
    let err = run(&mut c, &mut m, &code(CodeAssembler::stac)).unwrap_err();
    assert!(err.to_string().contains("#UD"), "{err}");
    c.rip = CODE;
    assert_eq!(run(&mut c, &mut m, &[0x9b]), Ok(Mnemonic::Wait));
    c.rip = CODE;
    c.gpr[RCX] = 0;
    c.gpr[RAX] = u64::MAX;
    run(&mut c, &mut m, &code(CodeAssembler::xgetbv)).unwrap();
    assert_eq!((c.gpr[RAX], c.gpr[RDX]), (7, 0));
    c.rip = CODE;
    c.gpr[RCX] = 1;
    assert!(run(&mut c, &mut m, &code(CodeAssembler::xgetbv)).is_err());
}

#[test]
fn mxcsr_and_movd_movq_as_the_probe_saw_them() {
    let mut m = Model::new();
    let mut c = cpu();
    c.gpr[RSP] = DATA;
    m.poke(DATA + 4, &0x1f80_u32.to_le_bytes());
    // ldmxcsr [rsp+4] = 0f ae 54 24 04
    assert_eq!(
        run(&mut c, &mut m, &[0x0f, 0xae, 0x54, 0x24, 0x04]),
        Ok(Mnemonic::Ldmxcsr)
    );
    assert_eq!(m.sse.mxcsr, 0x1f80);
    c.rip = CODE;
    m.sse.mxcsr = 0x1fa0;
    run(&mut c, &mut m, &code(|a| a.stmxcsr(dword_ptr(rsp + 32)))).unwrap();
    assert_eq!(m.peek(DATA + 32, 4), 0x1fa0_u32.to_le_bytes());
    c.rip = CODE;
    m.poke(DATA + 4, &0x1_0000_u32.to_le_bytes());
    assert!(
        run(&mut c, &mut m, &[0x0f, 0xae, 0x54, 0x24, 0x04]).is_err(),
        "reserved bits"
    );
    // movd xmm15, ecx = 66 44 0f 6e f9: zero-extends to 128 bits.
    c.rip = CODE;
    c.gpr[RCX] = 0xffff_ffff_8765_4321;
    m.sse.xmm[15] = u128::MAX;
    assert_eq!(
        run(&mut c, &mut m, &[0x66, 0x44, 0x0f, 0x6e, 0xf9]),
        Ok(Mnemonic::Movd)
    );
    assert_eq!(m.sse.xmm[15], 0x8765_4321);
    c.rip = CODE;
    m.sse.xmm[1] = (5u128 << 64) | 0x1234_5678_9abc_def0;
    run(&mut c, &mut m, &code(|a| a.movq(rax, xmm1))).unwrap();
    assert_eq!(c.gpr[RAX], 0x1234_5678_9abc_def0);
    c.rip = CODE;
    run(&mut c, &mut m, &code(|a| a.movq(xmm0, xmm1))).unwrap();
    assert_eq!(
        m.sse.xmm[0], 0x1234_5678_9abc_def0,
        "movq xmm, xmm clears the top"
    );
    c.rip = CODE;
    run(&mut c, &mut m, &code(|a| a.movd(dword_ptr(rsp), xmm15))).unwrap();
    assert_eq!(m.peek(DATA, 4), 0x8765_4321_u32.to_le_bytes());
}

#[test]
fn sse_moves_and_packed_integer_ops() {
    let mut m = Model::new();
    let mut c = cpu();
    c.gpr[RSP] = DATA;
    // movdqu across the DATA/DATA+1 page boundary.
    let v: u128 = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100;
    m.poke(DATA + PAGE - 8, &v.to_le_bytes());
    c.gpr[RAX] = DATA + PAGE - 8;
    run(&mut c, &mut m, &code(|a| a.movdqu(xmm0, xmmword_ptr(rax)))).unwrap();
    assert_eq!(m.sse.xmm[0], v);
    // The aligned form faults on that address.
    c.rip = CODE;
    let err = run(&mut c, &mut m, &code(|a| a.movdqa(xmm1, xmmword_ptr(rax)))).unwrap_err();
    assert!(matches!(err, FallbackError::Misaligned { .. }), "{err}");
    c.rip = CODE;
    run(
        &mut c,
        &mut m,
        &code(|a| a.movaps(xmmword_ptr(rsp + 32), xmm0)),
    )
    .unwrap();
    assert_eq!(m.peek(DATA + 32, 16), v.to_le_bytes());
    c.rip = CODE;
    m.sse.xmm[1] = u128::MAX;
    run(&mut c, &mut m, &code(|a| a.paddd(xmm1, xmm0))).unwrap();
    assert_eq!(m.sse.xmm[1], 0x0f0e_0d0b_0b0a_0907_0706_0503_0302_00ff);
    c.rip = CODE;
    run(&mut c, &mut m, &code(|a| a.pxor(xmm1, xmm1))).unwrap();
    assert_eq!(m.sse.xmm[1], 0);
    c.rip = CODE;
    run(&mut c, &mut m, &code(|a| a.pcmpeqb(xmm1, xmm0))).unwrap();
    assert_eq!(m.sse.xmm[1], 0xff, "only byte 0 of xmm0 is zero");
    c.rip = CODE;
    run(&mut c, &mut m, &code(|a| a.pshufd(xmm15, xmm0, 0x1b))).unwrap();
    assert_eq!(m.sse.xmm[15], 0x0302_0100_0706_0504_0b0a_0908_0f0e_0d0c);
    c.rip = CODE;
    run(
        &mut c,
        &mut m,
        &code(|a| a.psubq(xmm15, xmmword_ptr(rsp + 32))),
    )
    .unwrap();
    c.rip = CODE;
    run(&mut c, &mut m, &code(|a| a.pmovmskb(ecx, xmm1))).unwrap();
    assert_eq!(c.gpr[RCX], 1);
    // pshufb (SSSE3, the kernel's blake2s): reverse the bytes, zero where bit 7 is set.
    c.rip = CODE;
    m.sse.xmm[12] = 0x8000_0102_0304_0506_0708_090a_0b0c_0d0e;
    m.sse.xmm[3] = v;
    let bytes = [0x66, 0x41, 0x0f, 0x38, 0x00, 0xdc]; // pshufb xmm3,xmm12, as the boot hit it
    assert_eq!(run(&mut c, &mut m, &bytes).unwrap(), Mnemonic::Pshufb);
    assert_eq!(m.sse.xmm[3], 0x0000_0102_0304_0506_0708_090a_0b0c_0d0e);
}

#[test]
fn hostile_inputs_are_errors_and_change_nothing() {
    let mut m = Model::new();
    let mut c = cpu();
    let all_groups = |_| true;
    // Truncated instruction bytes.
    let err = emulate(&mut c, &mut m, &[0xf3, 0x48, 0x0f], &all_groups).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(emulate(&mut c, &mut m, &[], &all_groups).is_err());
    // An operand in an unmapped page.
    c.gpr[RBX] = 0x1234_5000;
    let err = run(&mut c, &mut m, &code(|a| a.popcnt(rax, qword_ptr(rbx)))).unwrap_err();
    assert_eq!(err, FallbackError::NotMapped { gva: 0x1234_5000 });
    // A store whose second half is in an unmapped page writes nothing.
    c.gpr[RAX] = DATA + 3 * PAGE - 8;
    m.sse.xmm[0] = u128::MAX;
    let err = run(&mut c, &mut m, &code(|a| a.movdqu(xmmword_ptr(rax), xmm0))).unwrap_err();
    assert_eq!(
        err,
        FallbackError::NotMapped {
            gva: DATA + 3 * PAGE
        }
    );
    assert_eq!(m.peek(DATA + 3 * PAGE - 8, 8), [0; 8]);
    // A read-only page.
    c.gpr[RAX] = CODE + 64;
    let err = run(&mut c, &mut m, &code(|a| a.movdqu(xmmword_ptr(rax), xmm0))).unwrap_err();
    assert!(matches!(err, FallbackError::NotWritable { .. }), "{err}");
    // A page that maps outside guest RAM.
    m.pages.insert(0x5000_0000, (1 << 40, true));
    c.gpr[RBX] = 0x5000_0000;
    let err = run(&mut c, &mut m, &code(|a| a.popcnt(rax, qword_ptr(rbx)))).unwrap_err();
    assert!(matches!(err, FallbackError::OutsideRam { .. }), "{err}");
    // Instructions the fallback does not emulate name themselves.
    let err = run(&mut c, &mut m, &[0x0f, 0xae, 0x2c, 0x24]).unwrap_err(); // xrstor [rsp]
    assert!(err.to_string().contains("xrstor"), "{err}");
    // A disabled group.
    let err = emulate(&mut c, &mut m, &code(|a| a.popcnt(rax, rbx)), &|g| {
        g != FallbackGroup::BitCount
    })
    .unwrap_err();
    assert!(err.to_string().contains("bit-count"), "{err}");
    // VEX-encoded SSE is not emulated.
    let err = run(&mut c, &mut m, &[0xc5, 0xf9, 0xef, 0xc0]).unwrap_err(); // vpxor xmm0,xmm0,xmm0
    assert!(err.to_string().contains("vpxor"), "{err}");
    assert_eq!(
        c.gpr[RAX],
        CODE + 64,
        "failed instructions change no register"
    );
}
