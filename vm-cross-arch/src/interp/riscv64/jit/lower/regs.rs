//! Guest registers cached in host registers within one block.
//!
//! A fixed pool of host registers is assigned, per block, to the guest
//! registers the block uses most (by counting their uses when lowering);
//! the assignment holds for the whole block. The block's chain entry loads
//! every cached register from `x`, so between instructions each of them
//! holds its guest register's value and `x` may be stale only for the
//! *dirty* ones (written since they were last stored). The lowering stores
//! the dirty ones ([`RegCache::flush`]) before anything outside the
//! generated code reads `x`: every call-out and every exit. A call-out may
//! change `x` (a load's slow path writes `rd`, a trap, an FP move) and
//! clobbers caller-saved registers, so after it every cached register is
//! loaded again ([`RegCache::reload`]).
//!
//! `x0` is never cached: it reads as zero and writes to it are dropped.

use iced_x86::code_asm::{
    qword_ptr, r10, r11, r15, r8, r9, rbp, rbx, rdi, rsi, AsmMemoryOperand, AsmRegister64,
    CodeAssembler,
};
use iced_x86::IcedError;

use super::super::super::decode::{Kind, Op};

/// Host registers that may hold guest registers. Not `rax`, `rcx`, `rdx`
/// (the lowering's scratch registers), nor `rbx`, `r12`, `r13`, `r14` (the
/// block's fixed pointers and retired count); `rbp` and `r15` are saved by
/// the prologue.
const POOL: [AsmRegister64; 8] = [rbp, r15, rsi, rdi, r8, r9, r10, r11];

/// The callee-saved registers of [`POOL`], which the prologue saves.
pub const SAVED: [AsmRegister64; 2] = [rbp, r15];

/// Guest register `r` in the hart's `x` array (`rbx` points at it).
pub fn x(r: u8) -> AsmMemoryOperand {
    qword_ptr(rbx + i32::from(r) * 8)
}

/// Which guest registers a block keeps in host registers, and which of
/// those are dirty at the point being lowered.
#[derive(Debug, Clone)]
pub struct RegCache {
    host: [Option<AsmRegister64>; 32],
    /// Bit `r`: the host register of guest `r` may differ from `x[r]`.
    pub dirty: u32,
    /// Bit `r`: guest `r` is cached and the block's inline code writes it.
    written: u32,
}

impl RegCache {
    /// Assigns the pool to the guest registers used at least twice by the
    /// inline code of `ops`, most used first (ties: lower number first).
    pub fn for_block(ops: &[(u64, Op)]) -> Self {
        let mut uses = [0u32; 32];
        let mut writes = 0u32;
        for (_, op) in ops {
            let (rd, rs1, rs2) = match op.kind {
                Kind::AluReg(_) | Kind::AluRegW(_) | Kind::BitReg(_) => (true, true, true),
                Kind::AluImm(_)
                | Kind::AluImmW(_)
                | Kind::BitImm(_)
                | Kind::Load { .. }
                | Kind::Jalr => (true, true, false),
                Kind::Lui | Kind::Auipc | Kind::Jal => (true, false, false),
                Kind::Store { .. } | Kind::Branch(_) => (false, true, true),
                _ => (false, false, false),
            };
            if rd {
                writes |= 1 << (op.rd & 31);
            }
            for (used, r) in [(rd, op.rd), (rs1, op.rs1), (rs2, op.rs2)] {
                if used && r != 0 {
                    uses[usize::from(r & 31)] += 1;
                }
            }
        }
        let mut order: Vec<usize> = (1..32).filter(|&r| uses[r] >= 2).collect();
        order.sort_by_key(|&r| (std::cmp::Reverse(uses[r]), r));
        let mut host = [None; 32];
        let mut cached = 0u32;
        for (&r, &h) in order.iter().zip(POOL.iter()) {
            host[r] = Some(h);
            cached |= 1 << r;
        }
        Self {
            host,
            dirty: 0,
            written: writes & cached,
        }
    }

    /// The cached registers the block's inline code writes: every register
    /// that can be dirty anywhere in the block, so the state of a point
    /// that is reached again from the block's end without a store.
    pub fn written(&self) -> u32 {
        self.written
    }

    /// The host register holding guest `r`, if it is cached.
    pub fn get(&self, r: u8) -> Option<AsmRegister64> {
        if r == 0 {
            None
        } else {
            self.host[usize::from(r & 31)]
        }
    }

    /// `dst = x[r]`.
    pub fn read(&self, a: &mut CodeAssembler, dst: AsmRegister64, r: u8) -> Result<(), IcedError> {
        match self.get(r) {
            _ if r == 0 => a.xor(dst, dst),
            Some(h) => a.mov(dst, h),
            None => a.mov(dst, x(r)),
        }
    }

    /// `x[r] = src` (nothing for `x0`).
    pub fn write(
        &mut self,
        a: &mut CodeAssembler,
        r: u8,
        src: AsmRegister64,
    ) -> Result<(), IcedError> {
        match self.get(r) {
            _ if r == 0 => Ok(()),
            Some(h) => {
                self.dirty |= 1 << r;
                if h == src {
                    Ok(())
                } else {
                    a.mov(h, src)
                }
            }
            None => a.mov(x(r), src),
        }
    }

    /// `x[r] = v` (nothing for `x0`), through `scratch` when `r` is not cached.
    pub fn write_imm(
        &mut self,
        a: &mut CodeAssembler,
        r: u8,
        v: u64,
        scratch: AsmRegister64,
    ) -> Result<(), IcedError> {
        match self.get(r) {
            _ if r == 0 => Ok(()),
            Some(h) => {
                self.dirty |= 1 << r;
                a.mov(h, v)
            }
            None => {
                a.mov(scratch, v)?;
                a.mov(x(r), scratch)
            }
        }
    }

    /// Marks guest `r`'s host register as written in place by the caller.
    pub fn touched(&mut self, r: u8) {
        if self.get(r).is_some() {
            self.dirty |= 1 << r;
        }
    }

    /// Stores the dirty registers to `x` (the state stays as it was: code
    /// after this on the same path may go on using the host registers).
    /// Touches no flags and no register but memory.
    pub fn flush(&self, a: &mut CodeAssembler) -> Result<(), IcedError> {
        for r in 1..32u8 {
            if self.dirty & (1 << r) != 0 {
                if let Some(h) = self.get(r) {
                    a.mov(x(r), h)?;
                }
            }
        }
        Ok(())
    }

    /// Loads every cached register from `x`; none is dirty afterwards.
    pub fn reload(&mut self, a: &mut CodeAssembler) -> Result<(), IcedError> {
        for r in 1..32u8 {
            if let Some(h) = self.get(r) {
                a.mov(h, x(r))?;
            }
        }
        self.dirty = 0;
        Ok(())
    }
}
