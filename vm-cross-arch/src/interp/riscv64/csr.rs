//! Control and status registers: storage, WARL masks and the privilege rules
//! of `csrr*` (M/S/U, read-only ranges, counter enables, `mstatus.TVM`, `FS`).

use super::hart::{Hart, MODE_M, MODE_S, MODE_U};
use super::trap::{Exc, CAUSE_ILLEGAL};

/// `mstatus` fields.
pub mod mstatus {
    pub const SIE: u64 = 1 << 1;
    pub const MIE: u64 = 1 << 3;
    pub const SPIE: u64 = 1 << 5;
    pub const MPIE: u64 = 1 << 7;
    pub const SPP: u64 = 1 << 8;
    pub const MPP_SHIFT: u32 = 11;
    pub const MPP: u64 = 3 << MPP_SHIFT;
    pub const FS_SHIFT: u32 = 13;
    pub const FS: u64 = 3 << FS_SHIFT;
    pub const MPRV: u64 = 1 << 17;
    pub const SUM: u64 = 1 << 18;
    pub const MXR: u64 = 1 << 19;
    pub const TVM: u64 = 1 << 20;
    pub const TW: u64 = 1 << 21;
    pub const TSR: u64 = 1 << 22;
    /// UXL = SXL = 64-bit.
    pub const XLEN64: u64 = (2 << 32) | (2 << 34);
    pub const SD: u64 = 1 << 63;
    /// What M-mode may write.
    pub const M_WRITABLE: u64 =
        SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR;
    /// The `sstatus` view.
    pub const S_MASK: u64 = SIE | SPIE | SPP | FS | SUM | MXR | XLEN64 & (3 << 32) | SD;
    /// What S-mode may write through `sstatus`.
    pub const S_WRITABLE: u64 = SIE | SPIE | SPP | FS | SUM | MXR;
}

/// `menvcfg`/`senvcfg` fields.
pub mod envcfg {
    pub const FIOM: u64 = 1;
    /// Zicbom `cbo.inval` enable (2 bits: 00 illegal, 01 flush, 11 inval).
    pub const CBIE: u64 = 3 << 4;
    /// Zicbom `cbo.clean`/`cbo.flush` enable.
    pub const CBCFE: u64 = 1 << 6;
    /// Zicboz `cbo.zero` enable.
    pub const CBZE: u64 = 1 << 7;
    /// Svpbmt: PBMT bits of PTEs are honoured (menvcfg only).
    pub const PBMTE: u64 = 1 << 62;
    /// Sstc: `stimecmp` drives STIP (menvcfg only).
    pub const STCE: u64 = 1 << 63;
    /// What S-mode may write in `senvcfg`.
    pub const S_WRITABLE: u64 = FIOM | CBIE | CBCFE | CBZE;
    /// What M-mode may write in `menvcfg`.
    pub const M_WRITABLE: u64 = S_WRITABLE | PBMTE | STCE;

    /// The WARL value stored for a write of `value` under `mask`: the
    /// reserved `CBIE = 10` reads back as 00.
    pub fn legal(value: u64, mask: u64) -> u64 {
        let v = value & mask;
        if v & CBIE == 2 << 4 {
            v & !CBIE
        } else {
            v
        }
    }
}

/// `mcountinhibit` bits the hart honours (CY and IR; TM does not exist).
pub const COUNTINHIBIT_MASK: u64 = 0b101;

/// Interrupt bits of `mip`/`mie` (and their cause numbers).
pub mod irq {
    pub const SSI: u64 = 1 << 1;
    pub const MSI: u64 = 1 << 3;
    pub const STI: u64 = 1 << 5;
    pub const MTI: u64 = 1 << 7;
    pub const SEI: u64 = 1 << 9;
    pub const MEI: u64 = 1 << 11;
    /// Supervisor-level interrupts.
    pub const S_ALL: u64 = SSI | STI | SEI;
    /// Every implemented interrupt.
    pub const ALL: u64 = S_ALL | MSI | MTI | MEI;
}

/// `misa`: RV64 with A, B (Zba, Zbb, Zbs), C, D, F, I, M, S, U.
pub const MISA: u64 = (2 << 62)
    | (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 8)
    | (1 << 12)
    | (1 << 18)
    | (1 << 20);

/// Exceptions M-mode may delegate (all but ecall from M).
pub(super) const MEDELEG_MASK: u64 = 0xb3ff;

/// The CSR file of one hart: the saved-state type is the live one.
pub use vm_accel::state::riscv64::Csrs;

/// What a CSR write changed, so the hart can flush what depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrEffect {
    /// Nothing beyond the register.
    None,
    /// Address translation changed (satp, MPRV/SUM/MXR): flush the TLB.
    Translation,
    /// Interrupt enables or pending bits changed: re-check interrupts.
    Interrupts,
}

impl Hart {
    fn csr_illegal(&self) -> Exc {
        Exc::trap(CAUSE_ILLEGAL, u64::from(self.cur_bits))
    }

    fn counter_allowed(&self, bit: u64) -> bool {
        match self.mode {
            MODE_M => true,
            MODE_S => self.csr.mcounteren >> bit & 1 == 1,
            _ => self.csr.mcounteren >> bit & 1 == 1 && self.csr.scounteren >> bit & 1 == 1,
        }
    }

    fn fs_on(&self) -> bool {
        self.csr.mstatus & mstatus::FS != 0
    }

    /// `mip` as software reads it: written bits plus device lines.
    pub(super) fn read_mip(&mut self) -> u64 {
        self.csr.mip | self.hw_pending()
    }

    /// Reads CSR `num`.
    pub(super) fn csr_read(&mut self, num: u16) -> Result<u64, Exc> {
        let min_priv = u8::try_from((num >> 8) & 3).unwrap_or(3);
        if self.mode < min_priv {
            return Err(self.csr_illegal());
        }
        let c = &self.csr;
        Ok(match num {
            0x001..=0x003 if !self.fs_on() => return Err(self.csr_illegal()),
            0x001 => c.fflags,
            0x002 => c.frm,
            0x003 => c.frm << 5 | c.fflags,
            0xc00..=0xc1f => {
                let bit = u64::from(num - 0xc00);
                if !self.counter_allowed(bit) {
                    return Err(self.csr_illegal());
                }
                match bit {
                    0 => self.counter(0),
                    1 => self.machine.clint.mtime(),
                    2 => self.counter(2),
                    _ => 0,
                }
            }
            0x100 => self.sstatus(),
            0x104 => c.mie & c.mideleg,
            0x105 => c.stvec,
            0x106 => c.scounteren,
            0x10a => c.senvcfg,
            0x14d => {
                if !self.stimecmp_allowed() {
                    return Err(self.csr_illegal());
                }
                c.stimecmp
            }
            0x140 => c.sscratch,
            0x141 => c.sepc,
            0x142 => c.scause,
            0x143 => c.stval,
            0x144 => {
                let deleg = self.csr.mideleg;
                self.read_mip() & deleg
            }
            0x180 => {
                if self.mode == MODE_S && c.mstatus & mstatus::TVM != 0 {
                    return Err(self.csr_illegal());
                }
                c.satp
            }
            0xf14 => u64::from(self.id),
            0x300 => self.read_mstatus(),
            0x301 => MISA,
            0x302 => c.medeleg,
            0x303 => c.mideleg,
            0x304 => c.mie,
            0x305 => c.mtvec,
            0x306 => c.mcounteren,
            0x30a => c.menvcfg,
            0x320 => c.mcountinhibit,
            0x340 => c.mscratch,
            0x341 => c.mepc,
            0x342 => c.mcause,
            0x343 => c.mtval,
            0x344 => self.read_mip(),
            0x3a0..=0x3af => c.pmpcfg[usize::from(num - 0x3a0)],
            0x3b0..=0x3ef => c
                .pmpaddr
                .get(usize::from(num - 0x3b0))
                .copied()
                .unwrap_or(0),
            0xb00 => self.counter(0),
            0xb02 => self.counter(2),
            // Sdtrig probing finds no trigger: tinfo says only type 0
            // ("none") exists; tselect/tdata1..3 read 0 below.
            0x7a4 => 1,
            // Read-only zero: vendor/arch/impl ids, config pointer, HPM events and counters, mtinst/mtval2,
            // and tselect/tdata1..3 of a hart without triggers (tdata1.type = 0).
            0x7a0..=0x7a3
            | 0xf11..=0xf13
            | 0xf15
            | 0x323..=0x33f
            | 0x34a
            | 0x34b
            | 0xb03..=0xb1f => 0,
            _ => return Err(self.csr_illegal()),
        })
    }

    fn read_mstatus(&self) -> u64 {
        let s = self.csr.mstatus | mstatus::XLEN64;
        if s & mstatus::FS == mstatus::FS {
            s | mstatus::SD
        } else {
            s
        }
    }

    fn sstatus(&self) -> u64 {
        self.read_mstatus() & (mstatus::S_WRITABLE | (3 << 32) | mstatus::SD)
    }

    /// Writes CSR `num` (after the read of a read-modify-write).
    pub(super) fn csr_write(&mut self, num: u16, value: u64) -> Result<CsrEffect, Exc> {
        let min_priv = u8::try_from((num >> 8) & 3).unwrap_or(3);
        if self.mode < min_priv || num >> 10 == 3 {
            return Err(self.csr_illegal());
        }
        let c = &mut self.csr;
        let effect = match num {
            0x001..=0x003 => {
                if c.mstatus & mstatus::FS == 0 {
                    return Err(self.csr_illegal());
                }
                match num {
                    0x001 => c.fflags = value & 0x1f,
                    0x002 => c.frm = value & 7,
                    _ => {
                        c.fflags = value & 0x1f;
                        c.frm = (value >> 5) & 7;
                    }
                }
                c.mstatus |= mstatus::FS;
                CsrEffect::None
            }
            0x100 => {
                let m = (c.mstatus & !mstatus::S_WRITABLE) | (value & mstatus::S_WRITABLE);
                c.mstatus = m;
                CsrEffect::Translation
            }
            0x104 => {
                let mask = c.mideleg;
                c.mie = (c.mie & !mask) | (value & mask);
                CsrEffect::Interrupts
            }
            0x105 => {
                c.stvec = legal_tvec(value);
                CsrEffect::None
            }
            0x106 => {
                c.scounteren = value & 0xffff_ffff;
                CsrEffect::None
            }
            0x10a => {
                c.senvcfg = envcfg::legal(value, envcfg::S_WRITABLE);
                CsrEffect::None
            }
            0x14d => {
                if !self.stimecmp_allowed() {
                    return Err(self.csr_illegal());
                }
                self.csr.stimecmp = value;
                CsrEffect::Interrupts
            }
            0x140 => {
                c.sscratch = value;
                CsrEffect::None
            }
            0x141 => {
                c.sepc = value & !1;
                CsrEffect::None
            }
            0x142 => {
                c.scause = value;
                CsrEffect::None
            }
            0x143 => {
                c.stval = value;
                CsrEffect::None
            }
            0x144 => {
                let mask = irq::SSI & c.mideleg;
                c.mip = (c.mip & !mask) | (value & mask);
                CsrEffect::Interrupts
            }
            0x180 => {
                if self.mode == MODE_S && c.mstatus & mstatus::TVM != 0 {
                    return Err(self.csr_illegal());
                }
                let mode = value >> 60;
                if mode == 0 || mode == 8 {
                    // No ASIDs implemented: ASID bits read as zero.
                    c.satp = value & !(0xffff << 44);
                }
                CsrEffect::Translation
            }
            0x300 => {
                let mut v = (c.mstatus & !mstatus::M_WRITABLE) | (value & mstatus::M_WRITABLE);
                if (v & mstatus::MPP) >> mstatus::MPP_SHIFT == 2 {
                    v = (v & !mstatus::MPP) | (c.mstatus & mstatus::MPP);
                }
                c.mstatus = v;
                CsrEffect::Translation
            }
            0x302 => {
                c.medeleg = value & MEDELEG_MASK;
                CsrEffect::None
            }
            0x303 => {
                c.mideleg = value & irq::S_ALL;
                CsrEffect::Interrupts
            }
            0x304 => {
                c.mie = value & irq::ALL;
                CsrEffect::Interrupts
            }
            0x305 => {
                c.mtvec = legal_tvec(value);
                CsrEffect::None
            }
            0x306 => {
                c.mcounteren = value & 0xffff_ffff;
                CsrEffect::None
            }
            0x30a => {
                c.menvcfg = envcfg::legal(value, envcfg::M_WRITABLE);
                // PBMTE changes how PTEs are read; STCE how STIP is made.
                CsrEffect::Translation
            }
            0x320 => {
                self.set_countinhibit(value & COUNTINHIBIT_MASK);
                CsrEffect::None
            }
            // misa is fixed; HPM events/counters, mtinst and mtval2 ignore writes,
            // so do tselect/tdata1..3 without triggers (tselect reads back 0).
            0x7a0..=0x7a3 | 0x301 | 0x323..=0x33f | 0x34a | 0x34b | 0xb03..=0xb1f => {
                CsrEffect::None
            }
            0x340 => {
                c.mscratch = value;
                CsrEffect::None
            }
            0x341 => {
                c.mepc = value & !1;
                CsrEffect::None
            }
            0x342 => {
                c.mcause = value;
                CsrEffect::None
            }
            0x343 => {
                c.mtval = value;
                CsrEffect::None
            }
            0x344 => {
                // Sstc: with STCE, STIP follows stimecmp and is read-only.
                let mask = if c.menvcfg & envcfg::STCE != 0 {
                    irq::S_ALL & !irq::STI
                } else {
                    irq::S_ALL
                };
                c.mip = (c.mip & !mask) | (value & mask);
                CsrEffect::Interrupts
            }
            0x3a0..=0x3af => {
                // Only the even registers exist on RV64.
                if num & 1 == 0 {
                    c.pmpcfg[usize::from(num - 0x3a0)] = value;
                }
                CsrEffect::None
            }
            0x3b0..=0x3ef => {
                let idx = usize::from(num - 0x3b0);
                if c.pmpaddr.len() <= idx {
                    c.pmpaddr.resize(64, 0);
                }
                c.pmpaddr[idx] = value & ((1 << 54) - 1);
                CsrEffect::None
            }
            0xb00 | 0xb02 => {
                self.set_counter(num - 0xb00, value);
                CsrEffect::None
            }
            _ => return Err(self.csr_illegal()),
        };
        Ok(effect)
    }

    /// `mcycle` (`bit` 0) or `minstret` (`bit` 2), counting retired
    /// instructions unless `mcountinhibit` stops them.
    fn counter(&self, bit: u16) -> u64 {
        let c = &self.csr;
        let (offset, frozen) = if bit == 0 {
            (c.cycle_offset, c.cycle_frozen)
        } else {
            (c.instret_offset, c.instret_frozen)
        };
        if c.mcountinhibit >> bit & 1 == 1 {
            frozen
        } else {
            self.instret.wrapping_add(offset)
        }
    }

    /// A CSR write of `value` to `mcycle`/`minstret`: the written value
    /// replaces the writing instruction's own increment, which the run loop
    /// adds when it retires.
    fn set_counter(&mut self, bit: u16, value: u64) {
        let c = &mut self.csr;
        let offset = value.wrapping_sub(self.instret.wrapping_add(1));
        if bit == 0 {
            c.cycle_frozen = value;
            c.cycle_offset = offset;
        } else {
            c.instret_frozen = value;
            c.instret_offset = offset;
        }
    }

    /// Writes `mcountinhibit`: a stopped counter keeps its value, a
    /// restarted one continues from it after this instruction.
    fn set_countinhibit(&mut self, value: u64) {
        for bit in [0u16, 2] {
            let was = self.csr.mcountinhibit >> bit & 1 == 1;
            let now = value >> bit & 1 == 1;
            if !was && now {
                let v = self.counter(bit);
                if bit == 0 {
                    self.csr.cycle_frozen = v;
                } else {
                    self.csr.instret_frozen = v;
                }
            } else if was && !now {
                let v = self.counter(bit);
                self.set_counter(bit, v);
            }
        }
        self.csr.mcountinhibit = value;
    }

    /// Whether the current mode may access `stimecmp` (Sstc).
    fn stimecmp_allowed(&self) -> bool {
        match self.mode {
            MODE_M => true,
            MODE_S => self.csr.menvcfg & envcfg::STCE != 0 && self.csr.mcounteren & 2 != 0,
            _ => false,
        }
    }

    /// The mode data accesses use (`mstatus.MPRV` makes M-mode use `MPP`).
    pub(super) fn data_mode(&self) -> u8 {
        if self.mode == MODE_M && self.csr.mstatus & mstatus::MPRV != 0 {
            ((self.csr.mstatus & mstatus::MPP) >> mstatus::MPP_SHIFT) as u8
        } else {
            self.mode
        }
    }

    /// Marks the FP state dirty (after any FP register or fcsr write).
    #[inline]
    pub(super) fn fs_dirty(&mut self) {
        self.csr.mstatus |= mstatus::FS;
    }

    /// Whether FP instructions may execute (`mstatus.FS != Off`).
    #[inline]
    pub(super) fn fp_enabled(&self) -> bool {
        self.csr.mstatus & mstatus::FS != 0
    }
}

pub(super) fn legal_tvec(value: u64) -> u64 {
    if value & 3 >= 2 {
        value & !3
    } else {
        value
    }
}

/// Checks `mode` is a real privilege level (U, S or M).
pub fn valid_mode(mode: u8) -> bool {
    matches!(mode, MODE_U | MODE_S | MODE_M)
}
