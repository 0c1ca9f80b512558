//! Decode and dispatch: the instruction at RIP is decoded with iced-x86 and
//! looked up by mnemonic in one table that names its group and handler.

use super::machine::{CpuState, Exec, FallbackError, Guest};
use super::{integer, sse};
use crate::host_profile::FallbackGroup;
use crate::x86_emulator::{decode, mnemonic_name};
use iced_x86::Mnemonic;

type Handler = fn(&mut Exec<'_>) -> Result<(), FallbackError>;

/// Every emulated mnemonic, its group and its handler. Packed SSE operations
/// are listed by [`sse::is_packed_op`] instead, sharing one handler.
const TABLE: &[(Mnemonic, FallbackGroup, Handler)] = {
    use FallbackGroup as G;
    use Mnemonic as M;
    &[
        (M::Popcnt, G::BitCount, integer::bit_count),
        (M::Lzcnt, G::BitCount, integer::bit_count),
        (M::Tzcnt, G::BitCount, integer::bit_count),
        (M::Bsf, G::BitCount, integer::bit_count),
        (M::Bsr, G::BitCount, integer::bit_count),
        (M::Clac, G::Smap, integer::smap),
        (M::Stac, G::Smap, integer::smap),
        (M::Wait, G::X87Wait, integer::fwait),
        (M::Cmpxchg8b, G::WideCmpxchg, integer::cmpxchg_wide),
        (M::Cmpxchg16b, G::WideCmpxchg, integer::cmpxchg_wide),
        (M::Xgetbv, G::Xgetbv, integer::xgetbv),
        (M::Ldmxcsr, G::Sse, sse::mxcsr),
        (M::Stmxcsr, G::Sse, sse::mxcsr),
        (M::Movd, G::Sse, sse::movd_movq),
        (M::Movq, G::Sse, sse::movd_movq),
        (M::Movdqa, G::Sse, sse::move128),
        (M::Movdqu, G::Sse, sse::move128),
        (M::Movaps, G::Sse, sse::move128),
        (M::Movups, G::Sse, sse::move128),
        (M::Movapd, G::Sse, sse::move128),
        (M::Movupd, G::Sse, sse::move128),
        (M::Movntdq, G::Sse, sse::move128),
        (M::Movntps, G::Sse, sse::move128),
        (M::Movntpd, G::Sse, sse::move128),
        (M::Lddqu, G::Sse, sse::move128),
        (M::Pshufd, G::Sse, sse::pshufd),
        (M::Psrlw, G::Sse, sse::shift),
        (M::Psrld, G::Sse, sse::shift),
        (M::Psrlq, G::Sse, sse::shift),
        (M::Psllw, G::Sse, sse::shift),
        (M::Pslld, G::Sse, sse::shift),
        (M::Psllq, G::Sse, sse::shift),
        (M::Psraw, G::Sse, sse::shift),
        (M::Psrad, G::Sse, sse::shift),
        (M::Psrldq, G::Sse, sse::shift),
        (M::Pslldq, G::Sse, sse::shift),
        (M::Pmovmskb, G::Sse, sse::pmovmskb),
    ]
};

fn lookup(m: Mnemonic) -> Option<(FallbackGroup, Handler)> {
    if sse::is_packed_op(m) {
        return Some((FallbackGroup::Sse, sse::packed));
    }
    TABLE
        .iter()
        .find(|(mnemonic, _, _)| *mnemonic == m)
        .map(|&(_, g, h)| (g, h))
}

/// Emulates the instruction in `bytes` (read at `cpu.rip`) if its group is
/// enabled: updates `cpu` (RIP advanced) and the guest, and returns its
/// mnemonic. On error `cpu` is unchanged; guest memory is only written by an
/// instruction's final store, so it is unchanged too.
pub fn emulate(
    cpu: &mut CpuState,
    guest: &mut dyn Guest,
    bytes: &[u8],
    enabled: &dyn Fn(FallbackGroup) -> bool,
) -> Result<Mnemonic, FallbackError> {
    let insn = decode(bytes, 64, cpu.rip).map_err(|e| FallbackError::Undecodable(e.to_string()))?;
    let mnemonic = insn.mnemonic();
    let Some((group, handler)) = lookup(mnemonic) else {
        return Err(FallbackError::Unsupported {
            mnemonic: mnemonic_name(mnemonic),
            why: String::new(),
        });
    };
    if !enabled(group) {
        return Err(FallbackError::Unsupported {
            mnemonic: mnemonic_name(mnemonic),
            why: format!(" (group {group} is off in this host profile)"),
        });
    }
    let mut next = *cpu;
    handler(&mut Exec {
        cpu: &mut next,
        guest,
        insn: &insn,
    })?;
    next.rip = insn.next_ip();
    *cpu = next;
    Ok(mnemonic)
}
