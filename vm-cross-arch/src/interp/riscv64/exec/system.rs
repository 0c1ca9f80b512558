//! Zicsr, Zifencei and the privileged instructions: `csrr*`, `ecall`,
//! `ebreak`, `mret`, `sret`, `wfi`, `sfence.vma`, `fence.i`.

use crate::interp::riscv64::csr::{mstatus, CsrEffect};
use crate::interp::riscv64::decode::{CsrOp, Kind, Op};
use crate::interp::riscv64::hart::{Hart, MODE_M, MODE_S, MODE_U};
use crate::interp::riscv64::trap::{
    Exc, CAUSE_BREAKPOINT, CAUSE_ECALL_M, CAUSE_ECALL_S, CAUSE_ECALL_U, CAUSE_ILLEGAL,
};

fn illegal() -> Exc {
    Exc::trap(CAUSE_ILLEGAL, 0)
}

impl Hart {
    pub(in crate::interp::riscv64) fn exec_system(
        &mut self,
        op: Op,
        a: u64,
        _b: u64,
        next: u64,
    ) -> Result<(), Exc> {
        match op.kind {
            Kind::Csr(form) => {
                let num = (op.imm as u32 & 0xfff) as u16;
                let uimm = u64::from(op.rs1);
                let (src, writes) = match form {
                    CsrOp::Rw => (a, true),
                    CsrOp::Rwi => (uimm, true),
                    CsrOp::Rs | CsrOp::Rc => (a, op.rs1 != 0),
                    CsrOp::Rsi | CsrOp::Rci => (uimm, op.rs1 != 0),
                };
                let reads = !matches!(form, CsrOp::Rw | CsrOp::Rwi) || op.rd != 0;
                let old = if reads {
                    self.csr_read(num)?
                } else {
                    // Still check access rights for the write-only form.
                    if self.mode < ((num >> 8) & 3) as u8 {
                        return Err(illegal());
                    }
                    0
                };
                let mut effect = CsrEffect::None;
                if writes {
                    let new = match form {
                        CsrOp::Rw | CsrOp::Rwi => src,
                        CsrOp::Rs | CsrOp::Rsi => old | src,
                        CsrOp::Rc | CsrOp::Rci => old & !src,
                    };
                    let mxr_before = self.csr.mstatus & mstatus::MXR;
                    let satp_before = self.csr.satp;
                    effect = self.csr_write(num, new)?;
                    if effect == CsrEffect::Translation
                        && (self.csr.mstatus & mstatus::MXR != mxr_before
                            || self.csr.satp != satp_before)
                    {
                        self.tlb.flush();
                    }
                }
                self.set_x(op.rd, old);
                self.pc = next;
                if effect != CsrEffect::None {
                    return Err(Exc::Resync);
                }
                Ok(())
            }
            Kind::Ecall => {
                if self.mode == MODE_S && self.sbi {
                    return self.sbi_call(next);
                }
                let cause = match self.mode {
                    MODE_U => CAUSE_ECALL_U,
                    MODE_S => CAUSE_ECALL_S,
                    _ => CAUSE_ECALL_M,
                };
                Err(Exc::trap(cause, 0))
            }
            Kind::Ebreak => Err(Exc::trap(CAUSE_BREAKPOINT, self.pc)),
            Kind::Mret => {
                if self.mode != MODE_M {
                    return Err(illegal());
                }
                self.do_mret();
                Err(Exc::Resync)
            }
            Kind::Sret => {
                if self.mode < MODE_S
                    || (self.mode == MODE_S && self.csr.mstatus & mstatus::TSR != 0)
                {
                    return Err(illegal());
                }
                self.do_sret();
                Err(Exc::Resync)
            }
            Kind::Wfi => {
                if self.mode == MODE_U
                    || (self.mode == MODE_S && self.csr.mstatus & mstatus::TW != 0)
                {
                    return Err(illegal());
                }
                self.pc = next;
                if !self.wfi_should_wake() {
                    self.waiting = true;
                }
                Err(Exc::Resync)
            }
            Kind::SfenceInval => {
                if self.mode == MODE_U {
                    return Err(illegal());
                }
                self.pc = next;
                Ok(())
            }
            Kind::SfenceVma | Kind::SinvalVma => {
                if self.mode == MODE_U
                    || (self.mode == MODE_S && self.csr.mstatus & mstatus::TVM != 0)
                {
                    return Err(illegal());
                }
                if op.rs1 == 0 {
                    self.tlb.flush();
                } else {
                    self.tlb.flush_page(a >> 12);
                }
                self.pc = next;
                Err(Exc::Resync)
            }
            Kind::FenceI => {
                self.icache.fence();
                self.pc = next;
                Err(Exc::Resync)
            }
            _ => Err(illegal()),
        }
    }
}
