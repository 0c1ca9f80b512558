//! The back end's encoder: a [`CodeAssembler`]'s instructions to machine
//! code in one pass. Guest-independent: any front end lowers into a
//! `CodeAssembler` and assembles here.
//!
//! iced-x86's own `assemble` runs its `BlockEncoder`, which boxes every
//! instruction and encodes the block several times over while it shortens
//! branches; at some 30 µs a block that was a sixth of a riscv64 Linux
//! boot. Here every branch to a label is near (rel32, the assembler is made
//! with short branches off, see [`new`]), so an instruction's size never
//! depends on where its target lands: each instruction is encoded once, at
//! its final offset, and the branches' displacements are patched in at the
//! end. The price is four bytes more for a conditional branch that a short
//! form would have reached.

use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::{Encoder, IcedError, OpKind};

/// Why a block could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AsmError {
    /// iced-x86 refused an instruction.
    #[error("encoding: {0}")]
    Iced(#[from] IcedError),
    /// A branch to a label in its short form.
    #[error("a short branch: the assembler must come from `asm::new`")]
    ShortBranch,
    /// A RIP-relative memory operand (the code must run wherever it is copied).
    #[error("a RIP-relative operand in position-independent code")]
    RipRelative,
    /// A branch to a label no instruction was bound to.
    #[error("a branch to a label that was never set")]
    UnsetLabel,
    /// An index [`mark`] did not return.
    #[error("no instruction at index {0}")]
    NoInstruction(usize),
    /// Over 4 GiB of code.
    #[error("code over 4 GiB")]
    TooLarge,
}

/// An assembler for [`assemble`]: 64-bit, branches to labels near.
pub fn new() -> Result<CodeAssembler, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.set_prefer_short_branch(false);
    Ok(a)
}

/// Binds `label` to the next instruction and returns that instruction's
/// index, whose offset [`Assembled::offset`] gives once assembled.
pub fn mark(a: &mut CodeAssembler, label: &mut CodeLabel) -> Result<usize, IcedError> {
    a.set_label(label)?;
    Ok(a.instructions().len())
}

/// Machine code and where each instruction starts in it.
#[derive(Debug)]
pub struct Assembled {
    pub code: Vec<u8>,
    offsets: Vec<u32>,
}

impl Assembled {
    /// Offset of instruction `index` (see [`mark`]) from the first byte.
    pub fn offset(&self, index: usize) -> Result<u64, AsmError> {
        self.offsets
            .get(index)
            .map(|&o| u64::from(o))
            .ok_or(AsmError::NoInstruction(index))
    }
}

/// Encodes `a`'s instructions at offset 0. The code is position-independent
/// as long as nothing in it is RIP-relative but its branches to labels
/// (refused otherwise).
pub fn assemble(a: &CodeAssembler) -> Result<Assembled, AsmError> {
    let instrs = a.instructions();
    let mut enc = Encoder::try_with_capacity(64, instrs.len() * 6)?;
    let mut offsets = Vec::with_capacity(instrs.len());
    // Label id (an instruction's `ip`, branches' targets; 0: none) to offset.
    let mut labels: Vec<u32> = Vec::new();
    // (offset right after a branch, its target label)
    let mut fixups: Vec<(usize, u64)> = Vec::new();
    let mut at = 0u32;
    for ins in instrs {
        offsets.push(at);
        let id = ins.ip() as usize;
        if id != 0 {
            if labels.len() <= id {
                labels.resize(id + 1, u32::MAX);
            }
            labels[id] = at;
        }
        let len = if ins.op_count() > 0 && ins.op0_kind() == OpKind::NearBranch64 {
            if !(ins.is_jcc_near() || ins.is_jmp_near() || ins.is_call_near()) {
                return Err(AsmError::ShortBranch);
            }
            // Any in-range target does for the encoding; patched below.
            let mut b = *ins;
            b.set_near_branch64(u64::from(at));
            let len = enc.encode(&b, u64::from(at))?;
            fixups.push((at as usize + len, ins.near_branch64()));
            len
        } else if ins.is_ip_rel_memory_operand() {
            return Err(AsmError::RipRelative);
        } else {
            enc.encode(ins, u64::from(at))?
        };
        at = u32::try_from(at as usize + len).map_err(|_| AsmError::TooLarge)?;
    }
    let mut code = enc.take_buffer();
    for (end, id) in fixups {
        let to = labels
            .get(id as usize)
            .copied()
            .filter(|&o| o != u32::MAX)
            .ok_or(AsmError::UnsetLabel)?;
        // Near branches end in their 32-bit displacement.
        let rel = (i64::from(to) - end as i64) as i32;
        code[end - 4..end].copy_from_slice(&rel.to_le_bytes());
    }
    Ok(Assembled { code, offsets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::code_asm::{eax, ecx, rax};
    use iced_x86::{BlockEncoderOptions, Decoder, DecoderOptions};

    /// Both encoders agree on the instruction stream once branches are
    /// decoded to their targets (iced's may pick short forms).
    #[test]
    fn matches_iced_block_encoder_on_branches_both_ways() {
        let build = || -> Result<(CodeAssembler, usize, usize), IcedError> {
            let mut a = new()?;
            let mut top = a.create_label();
            let mut out = a.create_label();
            let mut far = a.create_label();
            a.mov(eax, 7)?;
            let t = mark(&mut a, &mut top)?;
            a.dec(eax)?;
            a.jne(top)?;
            a.jmp(far)?;
            for _ in 0..40 {
                a.add(ecx, 0x1234_5678)?;
            }
            let f = mark(&mut a, &mut far)?;
            a.cmp(eax, ecx)?;
            a.jb(out)?;
            a.mov(rax, 0x1122_3344_5566_7788u64)?;
            a.set_label(&mut out)?;
            a.ret()?;
            Ok((a, t, f))
        };
        let (a, top, far) = build().unwrap();
        let ours = assemble(&a).unwrap();
        let (mut b, _, _) = build().unwrap();
        let theirs = b
            .assemble_options(0, BlockEncoderOptions::NONE)
            .unwrap()
            .inner
            .code_buffer;
        let listing = |code: &[u8]| {
            Decoder::with_ip(64, code, 0, DecoderOptions::NONE)
                .into_iter()
                .map(|i| {
                    let branch = i.op0_kind() == OpKind::NearBranch64;
                    (i.mnemonic(), (!branch).then_some(i))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(listing(&ours.code), listing(&theirs));
        // Branch targets land on the marked instructions.
        let targets: Vec<u64> = Decoder::with_ip(64, &ours.code, 0, DecoderOptions::NONE)
            .into_iter()
            .filter(|i| i.op0_kind() == OpKind::NearBranch64)
            .map(|i| i.near_branch64())
            .collect();
        let ret = ours.code.len() as u64 - 1;
        assert_eq!(
            targets,
            [ours.offset(top).unwrap(), ours.offset(far).unwrap(), ret]
        );
    }

    #[test]
    fn refuses_short_branches_and_unset_labels() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut l = a.create_label();
        a.set_label(&mut l).unwrap();
        a.jmp(l).unwrap();
        assert!(matches!(assemble(&a), Err(AsmError::ShortBranch)));
        let mut a = new().unwrap();
        let l = a.create_label();
        a.jmp(l).unwrap();
        assert!(matches!(assemble(&a), Err(AsmError::UnsetLabel)));
    }
}
