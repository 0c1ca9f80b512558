//! x86-64 general-purpose register references with the architecture's
//! partial-write rules (32-bit writes zero the upper half, 8/16-bit writes
//! merge, `AH`..`BH` are bits 8..16), and the mapping from `iced-x86`
//! registers. Used by the instruction-decoding MMIO and port-I/O paths.

use crate::regs::X86_64Registers;

/// One general-purpose register as an instruction names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GprRef {
    /// Register number in encoding order: 0 = RAX, 1 = RCX, 2 = RDX, 3 = RBX,
    /// 4 = RSP, 5 = RBP, 6 = RSI, 7 = RDI, 8..15 = R8..R15.
    pub index: u8,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// `AH`, `CH`, `DH` or `BH`: bits 8..16 of registers 0..3.
    pub high_byte: bool,
}

/// The field of `regs` holding register `index` (encoding order), or `None` past 15.
pub fn gpr_mut(regs: &mut X86_64Registers, index: u8) -> Option<&mut u64> {
    Some(match index {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        15 => &mut regs.r15,
        _ => return None,
    })
}

/// The full 64-bit value of register `index`, or `None` past 15.
pub fn gpr(regs: &X86_64Registers, index: u8) -> Option<u64> {
    let mut copy = *regs;
    gpr_mut(&mut copy, index).map(|r| *r)
}

fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl GprRef {
    /// Maps an `iced-x86` general-purpose register; `None` for any other kind.
    pub fn from_iced(reg: iced_x86::Register) -> Option<Self> {
        use iced_x86::Register as R;
        if !reg.is_gpr() {
            return None;
        }
        let high_byte = matches!(reg, R::AH | R::CH | R::DH | R::BH);
        let full = reg.full_register();
        let index = (full as u32).checked_sub(R::RAX as u32)?;
        Some(Self {
            index: u8::try_from(index).ok().filter(|i| *i < 16)?,
            size: u8::try_from(reg.size()).ok()?,
            high_byte,
        })
    }

    /// Reads the register's value (zero-extended to 64 bits).
    pub fn read(self, regs: &X86_64Registers) -> u64 {
        let full = gpr(regs, self.index).unwrap_or(0);
        if self.high_byte {
            (full >> 8) & 0xff
        } else {
            full & size_mask(self.size)
        }
    }

    /// Writes `value` with the architecture's partial-register rules.
    pub fn write(self, regs: &mut X86_64Registers, value: u64) {
        let Some(slot) = gpr_mut(regs, self.index) else {
            return;
        };
        *slot = match (self.high_byte, self.size) {
            (true, _) => (*slot & !0xff00) | ((value & 0xff) << 8),
            (false, 4) => value & 0xffff_ffff,
            (false, 8) => value,
            (false, size) => (*slot & !size_mask(size)) | (value & size_mask(size)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::Register as R;

    fn regs() -> X86_64Registers {
        X86_64Registers {
            rax: 0x1111_2222_3333_4444,
            rbx: 0xaaaa_bbbb_cccc_dddd,
            r9: 0x9999_9999_9999_9999,
            ..X86_64Registers::default()
        }
    }

    #[test]
    fn iced_registers_map_to_encoding_numbers() {
        let r = |reg| GprRef::from_iced(reg).unwrap();
        assert_eq!(
            r(R::RAX),
            GprRef {
                index: 0,
                size: 8,
                high_byte: false
            }
        );
        assert_eq!(r(R::ECX).index, 1);
        assert_eq!(r(R::DX).index, 2);
        assert_eq!(r(R::BL).index, 3);
        assert_eq!(r(R::SPL).index, 4);
        assert_eq!(r(R::DIL).index, 7);
        assert_eq!(
            r(R::R15D),
            GprRef {
                index: 15,
                size: 4,
                high_byte: false
            }
        );
        assert_eq!(
            r(R::AH),
            GprRef {
                index: 0,
                size: 1,
                high_byte: true
            }
        );
        assert_eq!(r(R::BH).index, 3);
        assert!(GprRef::from_iced(R::XMM0).is_none());
        assert!(GprRef::from_iced(R::CS).is_none());
    }

    #[test]
    fn partial_writes_follow_x86_rules() {
        let mut r = regs();
        GprRef::from_iced(R::EAX)
            .unwrap()
            .write(&mut r, 0xdead_beef_0000_0001);
        assert_eq!(r.rax, 0x0000_0001, "32-bit writes zero the upper half");
        let mut r = regs();
        GprRef::from_iced(R::AX).unwrap().write(&mut r, 0xffff_1234);
        assert_eq!(r.rax, 0x1111_2222_3333_1234);
        let mut r = regs();
        GprRef::from_iced(R::AL).unwrap().write(&mut r, 0x1ff);
        assert_eq!(r.rax, 0x1111_2222_3333_44ff);
        let mut r = regs();
        GprRef::from_iced(R::BH).unwrap().write(&mut r, 0x12);
        assert_eq!(r.rbx, 0xaaaa_bbbb_cccc_12dd);
        let mut r = regs();
        GprRef::from_iced(R::R9).unwrap().write(&mut r, 7);
        assert_eq!(r.r9, 7);
    }

    #[test]
    fn reads_extract_the_named_part() {
        let r = regs();
        assert_eq!(GprRef::from_iced(R::AH).unwrap().read(&r), 0x44);
        assert_eq!(GprRef::from_iced(R::BH).unwrap().read(&r), 0xdd);
        assert_eq!(GprRef::from_iced(R::AL).unwrap().read(&r), 0x44);
        assert_eq!(GprRef::from_iced(R::EBX).unwrap().read(&r), 0xcccc_dddd);
        assert_eq!(GprRef::from_iced(R::RBX).unwrap().read(&r), r.rbx);
        assert_eq!(gpr(&r, 16), None);
    }
}
