//! Exceptions and interrupts: cause codes, delegation to S-mode
//! (`medeleg`/`mideleg`), entering the handler, `mret`/`sret`, and picking
//! the interrupt to take by the privileged spec's priority order.

use super::csr::{irq, mstatus};
use super::hart::{Hart, MODE_M, MODE_S, MODE_U};

pub const CAUSE_MISALIGNED_FETCH: u64 = 0;
pub const CAUSE_FETCH_ACCESS: u64 = 1;
pub const CAUSE_ILLEGAL: u64 = 2;
pub const CAUSE_BREAKPOINT: u64 = 3;
pub const CAUSE_MISALIGNED_LOAD: u64 = 4;
pub const CAUSE_LOAD_ACCESS: u64 = 5;
pub const CAUSE_MISALIGNED_STORE: u64 = 6;
pub const CAUSE_STORE_ACCESS: u64 = 7;
pub const CAUSE_ECALL_U: u64 = 8;
pub const CAUSE_ECALL_S: u64 = 9;
pub const CAUSE_ECALL_M: u64 = 11;
pub const CAUSE_FETCH_PAGE: u64 = 12;
pub const CAUSE_LOAD_PAGE: u64 = 13;
pub const CAUSE_STORE_PAGE: u64 = 15;
/// Bit 63 of `xcause`: an interrupt.
pub const INTERRUPT: u64 = 1 << 63;

/// Why an instruction did not complete normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exc {
    /// A synchronous exception for the guest.
    Trap {
        /// `xcause`.
        cause: u64,
        /// `xtval`.
        tval: u64,
    },
    /// The VMM must act (MMIO, power event, idle); the hart recorded what.
    Exit,
    /// The instruction completed but the run loop must re-check interrupts
    /// and drop cached state (CSR writes, `xret`, `fence.i`).
    Resync,
}

impl Exc {
    /// A guest exception.
    #[inline]
    pub fn trap(cause: u64, tval: u64) -> Self {
        Exc::Trap { cause, tval }
    }
}

/// Interrupts in the order they are taken when several are pending.
const PRIORITY: [u64; 6] = [11, 3, 7, 9, 1, 5];

impl Hart {
    /// Enters the trap handler for `cause` (bit 63 set for interrupts).
    pub(super) fn take_trap(&mut self, cause: u64, tval: u64) {
        let interrupt = cause & INTERRUPT != 0;
        let code = cause & !INTERRUPT;
        let deleg = if interrupt {
            self.csr.mideleg
        } else {
            self.csr.medeleg
        };
        tracing::trace!(
            hart = self.id,
            cause,
            tval,
            pc = self.pc,
            mode = self.mode,
            "trap"
        );
        let s = &mut self.csr.mstatus;
        if self.mode <= MODE_S && code < 64 && deleg >> code & 1 == 1 {
            self.csr.scause = cause;
            self.csr.sepc = self.pc;
            self.csr.stval = tval;
            let sie = *s & mstatus::SIE != 0;
            *s &= !(mstatus::SPIE | mstatus::SIE | mstatus::SPP);
            if sie {
                *s |= mstatus::SPIE;
            }
            if self.mode == MODE_S {
                *s |= mstatus::SPP;
            }
            let base = self.csr.stvec & !3;
            self.pc = if interrupt && self.csr.stvec & 1 == 1 {
                base.wrapping_add(4 * code)
            } else {
                base
            };
            self.mode = MODE_S;
        } else {
            self.csr.mcause = cause;
            self.csr.mepc = self.pc;
            self.csr.mtval = tval;
            let mie = *s & mstatus::MIE != 0;
            *s &= !(mstatus::MPIE | mstatus::MIE | mstatus::MPP);
            if mie {
                *s |= mstatus::MPIE;
            }
            *s |= u64::from(self.mode) << mstatus::MPP_SHIFT;
            let base = self.csr.mtvec & !3;
            self.pc = if interrupt && self.csr.mtvec & 1 == 1 {
                base.wrapping_add(4 * code)
            } else {
                base
            };
            self.mode = MODE_M;
        }
        self.reservation = None;
        self.fetch_invalidate();
    }

    /// `mret`: back to `MPP` at `mepc`.
    pub(super) fn do_mret(&mut self) {
        let s = self.csr.mstatus;
        let mpp = ((s & mstatus::MPP) >> mstatus::MPP_SHIFT) as u8;
        let mut n = s & !(mstatus::MIE | mstatus::MPP);
        if s & mstatus::MPIE != 0 {
            n |= mstatus::MIE;
        }
        n |= mstatus::MPIE;
        if mpp != MODE_M {
            n &= !mstatus::MPRV;
        }
        self.csr.mstatus = n;
        self.mode = mpp;
        self.pc = self.csr.mepc;
        self.fetch_invalidate();
    }

    /// `sret`: back to `SPP` at `sepc`.
    pub(super) fn do_sret(&mut self) {
        let s = self.csr.mstatus;
        let spp = if s & mstatus::SPP != 0 {
            MODE_S
        } else {
            MODE_U
        };
        let mut n = s & !(mstatus::SIE | mstatus::SPP | mstatus::MPRV);
        if s & mstatus::SPIE != 0 {
            n |= mstatus::SIE;
        }
        n |= mstatus::SPIE;
        self.csr.mstatus = n;
        self.mode = spp;
        self.pc = self.csr.sepc;
        self.fetch_invalidate();
    }

    /// The interrupt to take now, if any (as an `xcause` value).
    pub(super) fn pending_interrupt(&mut self) -> Option<u64> {
        let pending = (self.csr.mip | self.hw_pending()) & self.csr.mie;
        if pending == 0 {
            return None;
        }
        let s = self.csr.mstatus;
        let m_enabled = self.mode < MODE_M || s & mstatus::MIE != 0;
        let s_enabled = self.mode < MODE_S || (self.mode == MODE_S && s & mstatus::SIE != 0);
        let m_level = pending & !self.csr.mideleg;
        let s_level = pending & self.csr.mideleg;
        let take = if m_enabled && m_level != 0 {
            m_level
        } else if s_enabled && s_level != 0 {
            s_level
        } else {
            return None;
        };
        PRIORITY
            .iter()
            .find(|&&code| take >> code & 1 == 1)
            .map(|&code| INTERRUPT | code)
    }

    /// Whether any enabled interrupt is pending, ignoring the global enables (`wfi` wake-up).
    pub(super) fn wfi_should_wake(&mut self) -> bool {
        (self.csr.mip | self.hw_pending()) & self.csr.mie & irq::ALL != 0
    }
}
