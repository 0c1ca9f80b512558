//! A block's exits: to its own start, through a link word to a block of
//! the same page, or through the hart's jump cache.

use std::mem::offset_of;

use iced_x86::code_asm::{
    dword_ptr, eax, ecx, edx, qword_ptr, r13, r8, r8d, rax, rcx, rdx, CodeAssembler, CodeLabel,
};
use iced_x86::IcedError;

use super::super::super::icache::Stamp;
use super::super::asm;
use super::{field, imm, BlockOut};

/// Where a block's exits go: its labels and the link words of chainable exits.
pub struct Exits {
    pub start: u64,
    pub top: CodeLabel,
    pub epilogue: CodeLabel,
    /// Looks the guest pc in `rax` up in the jump cache (see [`dispatch`]).
    pub dispatch: CodeLabel,
    /// Host address of the next unused link word.
    pub link: u64,
    /// The stub of each link word, in order (its instruction's index, see
    /// [`asm::mark`]).
    pub stubs: Vec<usize>,
}

impl Exits {
    /// Leaves for guest `target`: the chain entry for the block's own start,
    /// through a link word for a target in the page (whose first value is
    /// a stub leaving for the run loop), else through the jump cache.
    pub fn to(&mut self, a: &mut CodeAssembler, target: u64) -> Result<(), IcedError> {
        if target == self.start {
            return a.jmp(self.top);
        }
        if target >> 12 == self.start >> 12 {
            imm(a, rax, self.link)?;
            a.jmp(qword_ptr(rax))?;
            self.link += 8;
            // The stub is an instruction of its own (a label binds to one).
            let mut stub = a.create_label();
            self.stubs.push(asm::mark(a, &mut stub)?);
            imm(a, rax, target)?;
            a.mov(qword_ptr(r13), rax)?;
            a.xor(eax, eax)?;
            return a.jmp(self.epilogue);
        }
        imm(a, rax, target)?;
        a.jmp(self.dispatch)
    }
}

/// Emits the jump-cache lookup at `exits.dispatch`: the guest pc in `rax`
/// goes on in the block recorded for it (at its chain entry) when that
/// block's page is current and the entry carries the current translation
/// version and fetch context; otherwise the block leaves with `rax` as the
/// next pc. The index is [`super::super::jump_index`]'s. Exits come here with the
/// guest registers in `x`, so the lookup may use any scratch register.
pub fn dispatch(a: &mut CodeAssembler, exits: &mut Exits) -> Result<(), IcedError> {
    let mut miss = a.create_label();
    a.set_label(&mut exits.dispatch)?;
    a.mov(rcx, rax)?;
    a.shr(rcx, 1)?;
    a.mov(rdx, rax)?;
    a.shr(rdx, super::super::JUMP_HASH_SHIFT)?;
    a.xor(rcx, rdx)?;
    a.and(ecx, (super::super::JUMPS - 1) as i32)?;
    // 32-byte entries.
    a.shl(rcx, 5)?;
    a.add(rcx, qword_ptr(r13 + field(offset_of!(BlockOut, jumps))))?;
    a.cmp(
        rax,
        qword_ptr(rcx + field(offset_of!(super::super::Jump, vpc))),
    )?;
    a.jne(miss)?;
    // The stamp of the target's slot: checked this epoch, same generation.
    a.mov(
        edx,
        dword_ptr(rcx + field(offset_of!(super::super::Jump, slot))),
    )?;
    a.shl(rdx, 4)?;
    a.add(rdx, qword_ptr(r13 + field(offset_of!(BlockOut, stamps))))?;
    a.mov(r8, qword_ptr(r13 + field(offset_of!(BlockOut, epoch))))?;
    a.cmp(r8, qword_ptr(rdx + field(offset_of!(Stamp, checked))))?;
    a.jne(miss)?;
    a.mov(r8d, dword_ptr(rdx + field(offset_of!(Stamp, generation))))?;
    a.cmp(
        r8d,
        dword_ptr(rcx + field(offset_of!(super::super::Jump, generation))),
    )?;
    a.jne(miss)?;
    a.mov(
        rdx,
        qword_ptr(r13 + field(offset_of!(BlockOut, ctx_version))),
    )?;
    a.cmp(
        rdx,
        qword_ptr(rcx + field(offset_of!(super::super::Jump, ctx))),
    )?;
    a.jne(miss)?;
    a.jmp(qword_ptr(
        rcx + field(offset_of!(super::super::Jump, entry)),
    ))?;
    a.set_label(&mut miss)?;
    a.mov(qword_ptr(r13), rax)?;
    a.xor(eax, eax)?;
    a.jmp(exits.epilogue)
}
