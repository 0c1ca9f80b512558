//! x86-64 general-purpose registers as instructions name them: the mapping
//! from `iced-x86` registers, and reads and writes with the architecture's
//! partial-write rules (32-bit writes zero the upper half, 8/16-bit writes
//! merge, `AH`..`BH` are bits 8..16). One mapping for every register file
//! the emulator works on ([`GprFile`]).

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

/// The 16 general-purpose registers, by encoding number (see [`GprRef::index`]).
pub trait GprFile {
    /// The full 64-bit register `index`, or `None` past 15.
    fn gpr_mut(&mut self, index: u8) -> Option<&mut u64>;

    /// The full 64-bit value of register `index`, or `None` past 15.
    fn gpr(&self, index: u8) -> Option<u64>;
}

/// Registers in encoding order, as the fallback's CPU state keeps them.
impl GprFile for [u64; 16] {
    fn gpr_mut(&mut self, index: u8) -> Option<&mut u64> {
        self.get_mut(usize::from(index))
    }

    fn gpr(&self, index: u8) -> Option<u64> {
        self.get(usize::from(index)).copied()
    }
}

impl GprFile for X86_64Registers {
    fn gpr_mut(&mut self, index: u8) -> Option<&mut u64> {
        Some(match index {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            15 => &mut self.r15,
            _ => return None,
        })
    }

    fn gpr(&self, index: u8) -> Option<u64> {
        let mut copy = *self;
        copy.gpr_mut(index).map(|r| *r)
    }
}

/// Copies the 16 general registers of `src` into `dst` (RIP, RFLAGS and
/// anything else `dst` holds stay as they are).
pub fn copy_gprs(dst: &mut impl GprFile, src: &impl GprFile) {
    for index in 0..16 {
        if let (Some(slot), Some(value)) = (dst.gpr_mut(index), src.gpr(index)) {
            *slot = value;
        }
    }
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
    pub fn read(self, regs: &impl GprFile) -> u64 {
        let full = regs.gpr(self.index).unwrap_or(0);
        if self.high_byte {
            (full >> 8) & 0xff
        } else {
            full & size_mask(self.size)
        }
    }

    /// Writes `value` with the architecture's partial-register rules.
    pub fn write(self, regs: &mut impl GprFile, value: u64) {
        let Some(slot) = regs.gpr_mut(self.index) else {
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
        assert_eq!(r.gpr(16), None);
    }

    #[test]
    fn both_register_files_agree() {
        let named = regs();
        let mut array = [0u64; 16];
        copy_gprs(&mut array, &named);
        assert_eq!(array[0], named.rax);
        assert_eq!(array[3], named.rbx);
        assert_eq!(array[9], named.r9);
        for reg in [R::AH, R::BX, R::ECX, R::R9L, R::R15] {
            let r = GprRef::from_iced(reg).unwrap();
            assert_eq!(r.read(&array), r.read(&named), "{reg:?}");
            let (mut a, mut n) = (array, named);
            r.write(&mut a, 0x1234_5678_9abc_def0);
            r.write(&mut n, 0x1234_5678_9abc_def0);
            assert_eq!(a.gpr(r.index), n.gpr(r.index), "{reg:?}");
        }
        assert_eq!(array.gpr(16), None);
        assert!(array.gpr_mut(16).is_none());
        let mut back = X86_64Registers {
            rip: 0x1000,
            ..X86_64Registers::default()
        };
        copy_gprs(&mut back, &array);
        assert_eq!(
            back,
            X86_64Registers {
                rip: 0x1000,
                ..named
            }
        );
    }
}
