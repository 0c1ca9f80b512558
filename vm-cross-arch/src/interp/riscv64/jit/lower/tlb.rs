//! The inline TLB lookup of loads and stores.

use iced_x86::code_asm::{eax, edx, qword_ptr, r13, rax, rcx, rdx, CodeAssembler, CodeLabel};
use iced_x86::IcedError;

use super::super::super::decode::Op;
use super::super::super::mmu::TLB_SIZE;
use super::regs::RegCache;

/// The TLB fast path of a load or store of `1 << size` bytes: `rax` = the
/// host address when the TLB set at `out + set` holds the page and the
/// access stays in it; otherwise to `slow` (the interpreter's path, which
/// fills the TLB, faults or leaves for MMIO). Write entries never map
/// pages of decoded code, so a store here cannot hit code (see `mmu.rs`).
pub fn tlb_lookup(
    a: &mut CodeAssembler,
    regs: &RegCache,
    op: &Op,
    size: u8,
    set: i32,
    slow: CodeLabel,
) -> Result<(), IcedError> {
    if let Some(h) = regs.get(op.rs1) {
        a.lea(rax, qword_ptr(h + op.imm))?;
    } else {
        regs.read(a, rax, op.rs1)?;
        a.add(rax, op.imm)?;
    }
    // Compared with the tag: the page of the access's last byte. An entry
    // holds its own page (or `u64::MAX`, none) at the index of the page's
    // low bits, so an access that crosses into the next page (index one
    // more) never matches the entry of its first page.
    if size == 0 {
        a.mov(rcx, rax)?;
    } else {
        a.lea(rcx, qword_ptr(rax + ((1i32 << size) - 1)))?;
    }
    a.shr(rcx, 12)?;
    // The entry's offset in its set: the page's low bits times 24.
    a.mov(edx, eax)?;
    a.shr(edx, 9)?;
    a.and(edx, ((TLB_SIZE - 1) << 3) as i32)?;
    a.lea(rdx, qword_ptr(rdx + rdx * 2))?;
    a.add(rdx, qword_ptr(r13 + set))?;
    a.cmp(rcx, qword_ptr(rdx))?;
    a.jne(slow)?;
    a.add(rax, qword_ptr(rdx + 8))
}
