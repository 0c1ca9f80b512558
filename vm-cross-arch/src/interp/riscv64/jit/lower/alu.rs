//! Inline x86_64 code of the RV64I/M register ops.

use iced_x86::code_asm::asm_traits::{CodeAsmAdd, CodeAsmAnd, CodeAsmOr, CodeAsmSub, CodeAsmXor};
use iced_x86::code_asm::{
    cl, dl, eax, ecx, edx, qword_ptr, rax, rcx, rdx, rsp, AsmRegister64, CodeAssembler,
};
use iced_x86::IcedError;

use super::super::super::decode::{Alu, Kind, Op};
use super::regs::{x, RegCache};

/// Emits `x[rd] = f(rax, rcx)` for a 64-bit ALU op (`false`: not inline).
pub fn alu64(a: &mut CodeAssembler, f: Alu) -> Result<bool, IcedError> {
    match f {
        Alu::Add => a.add(rax, rcx)?,
        Alu::Sub => a.sub(rax, rcx)?,
        Alu::Xor => a.xor(rax, rcx)?,
        Alu::Or => a.or(rax, rcx)?,
        Alu::And => a.and(rax, rcx)?,
        Alu::Sll => a.shl(rax, cl)?,
        Alu::Srl => a.shr(rax, cl)?,
        Alu::Sra => a.sar(rax, cl)?,
        Alu::Slt | Alu::Sltu => {
            a.xor(edx, edx)?;
            a.cmp(rax, rcx)?;
            if f == Alu::Slt {
                a.setl(dl)?;
            } else {
                a.setb(dl)?;
            }
            a.mov(rax, rdx)?;
        }
        Alu::Mul => a.imul_2(rax, rcx)?,
        Alu::Mulh => {
            a.imul(rcx)?;
            a.mov(rax, rdx)?;
        }
        Alu::Mulhu => {
            a.mul(rcx)?;
            a.mov(rax, rdx)?;
        }
        Alu::Mulhsu => {
            // hi(signed a * unsigned b) = hi(unsigned a * b) - (a < 0 ? b : 0)
            // (`[rsp]` is the frame's scratch word: no register is free.)
            a.mov(rdx, rax)?;
            a.sar(rdx, 63)?;
            a.and(rdx, rcx)?;
            a.mov(qword_ptr(rsp), rdx)?;
            a.mul(rcx)?;
            a.sub(rdx, qword_ptr(rsp))?;
            a.mov(rax, rdx)?;
        }
        Alu::Div | Alu::Divu | Alu::Rem | Alu::Remu => return Ok(false),
    }
    Ok(true)
}

/// Emits `rax = sext(f(eax, ecx))` for a 32-bit op (`false`: not inline).
pub fn alu32(a: &mut CodeAssembler, f: Alu) -> Result<bool, IcedError> {
    match f {
        Alu::Add => a.add(eax, ecx)?,
        Alu::Sub => a.sub(eax, ecx)?,
        Alu::Sll => a.shl(eax, cl)?,
        Alu::Srl => a.shr(eax, cl)?,
        Alu::Sra => a.sar(eax, cl)?,
        Alu::Mul => a.imul_2(eax, ecx)?,
        _ => return Ok(false),
    }
    a.movsxd(rax, eax)?;
    Ok(true)
}

/// `h op= src` for the ALU ops with a two-operand x86 form.
fn alu_into<T>(a: &mut CodeAssembler, f: Alu, h: AsmRegister64, src: T) -> Result<(), IcedError>
where
    CodeAssembler: CodeAsmAdd<AsmRegister64, T>
        + CodeAsmSub<AsmRegister64, T>
        + CodeAsmXor<AsmRegister64, T>
        + CodeAsmOr<AsmRegister64, T>
        + CodeAsmAnd<AsmRegister64, T>,
{
    match f {
        Alu::Add => a.add(h, src),
        Alu::Sub => a.sub(h, src),
        Alu::Xor => a.xor(h, src),
        Alu::Or => a.or(h, src),
        _ => a.and(h, src),
    }
}

/// Emits an ALU op straight into `rd`'s host register when `rd` is cached
/// and the op has a short x86 form there; `false`: nothing emitted.
pub fn alu_in_place(
    a: &mut CodeAssembler,
    regs: &mut RegCache,
    op: &Op,
) -> Result<bool, IcedError> {
    use Alu::{Add, And, Or, Sll, Sra, Srl, Sub, Xor};
    let Some(h) = regs.get(op.rd) else {
        return Ok(false);
    };
    let into_h = |a: &mut CodeAssembler, r: u8| -> Result<(), IcedError> {
        if regs.get(r) == Some(h) {
            Ok(())
        } else {
            regs.read(a, h, r)
        }
    };
    match op.kind {
        Kind::AluImm(f @ (Add | Xor | Or | And)) => {
            into_h(a, op.rs1)?;
            alu_into(a, f, h, op.imm)?;
        }
        Kind::AluImm(f @ (Sll | Srl | Sra)) => {
            into_h(a, op.rs1)?;
            let n = op.imm & 63;
            match f {
                Sll => a.shl(h, n)?,
                Srl => a.shr(h, n)?,
                _ => a.sar(h, n)?,
            }
        }
        // `rd` is overwritten before `rs2` is read unless they differ (or
        // `rs1` is the same register).
        Kind::AluReg(f @ (Add | Sub | Xor | Or | And)) if op.rd != op.rs2 || op.rs1 == op.rs2 => {
            into_h(a, op.rs1)?;
            match regs.get(op.rs2) {
                _ if op.rs2 == 0 => {
                    if f == And {
                        a.xor(h, h)?;
                    }
                }
                Some(s) => alu_into(a, f, h, s)?,
                None => alu_into(a, f, h, x(op.rs2))?,
            }
        }
        Kind::AluImmW(Add) => {
            regs.read(a, rax, op.rs1)?;
            a.add(eax, op.imm)?;
            a.movsxd(h, eax)?;
        }
        _ => return Ok(false),
    }
    regs.touched(op.rd);
    Ok(true)
}
