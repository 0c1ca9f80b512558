//! General-purpose instructions: bit counts, `clac`/`stac`, `fwait`,
//! `cmpxchg8b`/`cmpxchg16b`, `xgetbv`.

use super::machine::{flags, Exec, FallbackError};
use iced_x86::{Mnemonic, Register};

fn width_mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// `popcnt`, `lzcnt`, `tzcnt`, `bsf`, `bsr`: destination register, r/m source.
pub(super) fn bit_count(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    let size = x.op_size(0);
    let bits = (size * 8) as u32;
    let src = x.read_int(1, size)? & width_mask(size);
    let mnemonic = x.insn.mnemonic();
    let result = match mnemonic {
        Mnemonic::Popcnt => {
            for f in [flags::OF, flags::SF, flags::AF, flags::CF, flags::PF] {
                x.cpu.set_flag(f, false);
            }
            x.cpu.set_flag(flags::ZF, src == 0);
            Some(u64::from(src.count_ones()))
        }
        Mnemonic::Lzcnt | Mnemonic::Tzcnt => {
            let n = if mnemonic == Mnemonic::Lzcnt {
                src.leading_zeros() - (64 - bits)
            } else {
                src.trailing_zeros().min(bits)
            };
            x.cpu.set_flag(flags::CF, src == 0);
            x.cpu.set_flag(flags::ZF, n == 0);
            Some(u64::from(n))
        }
        Mnemonic::Bsf | Mnemonic::Bsr => {
            // Source 0: ZF set, destination unchanged (AMD documents it; Intel CPUs do it).
            x.cpu.set_flag(flags::ZF, src == 0);
            (src != 0).then(|| {
                u64::from(if mnemonic == Mnemonic::Bsf {
                    src.trailing_zeros()
                } else {
                    src.ilog2()
                })
            })
        }
        _ => return Err(x.unsupported("not a bit-count instruction")),
    };
    match result {
        Some(value) => x.write_int(0, size, value),
        None => Ok(()),
    }
}

/// `clac` / `stac`: clear or set RFLAGS.AC; CPL 0 only.
pub(super) fn smap(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    if x.cpu.cpl != 0 {
        return Err(FallbackError::WouldFault {
            mnemonic: x.mnemonic(),
            why: format!("#UD at CPL {}", x.cpu.cpl),
        });
    }
    let set = x.insn.mnemonic() == Mnemonic::Stac;
    x.cpu.set_flag(flags::AC, set);
    Ok(())
}

/// `fwait`: no x87 exception is ever pending in state the fallback sees.
// Every handler has the table's signature.
#[allow(clippy::unnecessary_wraps)]
pub(super) fn fwait(_: &mut Exec<'_>) -> Result<(), FallbackError> {
    Ok(())
}

/// `cmpxchg8b m64` / `cmpxchg16b m128`. Not atomic against other vCPUs.
pub(super) fn cmpxchg_wide(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    let wide = x.insn.mnemonic() == Mnemonic::Cmpxchg16b;
    let half = if wide { 8 } else { 4 };
    if wide {
        x.check_aligned(0, 16)?;
    }
    let mask = width_mask(half);
    let pair = |hi: u64, lo: u64| (u128::from(hi & mask) << (half * 8)) | u128::from(lo & mask);
    let current = x.read_mem(0, half * 2)?;
    let expected = pair(x.cpu.gpr[2], x.cpu.gpr[0]); // RDX:RAX
    if current == expected {
        let new = pair(x.cpu.gpr[1], x.cpu.gpr[3]); // RCX:RBX
        x.write_mem(0, half * 2, new)?;
        x.cpu.set_flag(flags::ZF, true);
    } else {
        let (lo, hi) = (current as u64 & mask, (current >> (half * 8)) as u64 & mask);
        let (rax, rdx) = if wide {
            (Register::RAX, Register::RDX)
        } else {
            (Register::EAX, Register::EDX)
        };
        x.cpu.set_reg(rax, lo);
        x.cpu.set_reg(rdx, hi);
        x.cpu.set_flag(flags::ZF, false);
    }
    Ok(())
}

/// `xgetbv`: EDX:EAX = XCR[ECX]; only XCR0 exists here.
pub(super) fn xgetbv(x: &mut Exec<'_>) -> Result<(), FallbackError> {
    let index = x.cpu.gpr[1] as u32;
    if index != 0 {
        return Err(FallbackError::WouldFault {
            mnemonic: x.mnemonic(),
            why: format!("XCR{index} is not emulated (#GP)"),
        });
    }
    let xcr0 = x.guest.xcr0()?;
    x.cpu.set_reg(Register::EAX, xcr0 & 0xffff_ffff);
    x.cpu.set_reg(Register::EDX, xcr0 >> 32);
    Ok(())
}
