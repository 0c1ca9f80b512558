//! Executing one pre-decoded instruction. The dispatch is one `match` over
//! [`Kind`]; each instruction family lives in its own file.

pub mod atomic;
pub mod bitmanip;
pub mod cache;
pub mod fp;
pub mod int;
pub mod mem;
pub mod system;

use super::decode::{Kind, Op};
use super::hart::Hart;
use super::trap::{Exc, CAUSE_ILLEGAL};

impl Hart {
    /// Writes `x[rd]` (x0 stays zero).
    #[inline(always)]
    pub(super) fn set_x(&mut self, rd: u8, v: u64) {
        self.x[usize::from(rd)] = v;
        self.x[0] = 0;
    }

    /// Executes `op` at `self.pc`, leaving `pc` at the next instruction.
    #[inline(always)]
    pub(super) fn execute(&mut self, op: Op) -> Result<(), Exc> {
        self.cur_len = op.len;
        let pc = self.pc;
        let next = pc.wrapping_add(u64::from(op.len));
        let a = self.x[usize::from(op.rs1)];
        let b = self.x[usize::from(op.rs2)];
        let imm = i64::from(op.imm) as u64;
        match op.kind {
            Kind::AluImm(f) => self.set_x(op.rd, int::alu(f, a, imm)),
            Kind::AluReg(f) => self.set_x(op.rd, int::alu(f, a, b)),
            Kind::AluImmW(f) => self.set_x(op.rd, int::alu_w(f, a, imm)),
            Kind::AluRegW(f) => self.set_x(op.rd, int::alu_w(f, a, b)),
            Kind::BitReg(f) => self.set_x(op.rd, bitmanip::bit(f, a, b)),
            Kind::BitImm(f) => self.set_x(op.rd, bitmanip::bit(f, a, imm)),
            Kind::CacheBlock(c) => self.exec_cbo(c, a)?,
            Kind::Lui => self.set_x(op.rd, imm),
            Kind::Auipc => self.set_x(op.rd, pc.wrapping_add(imm)),
            Kind::Jal => {
                self.set_x(op.rd, next);
                self.pc = pc.wrapping_add(imm);
                return Ok(());
            }
            Kind::Jalr => {
                self.set_x(op.rd, next);
                self.pc = a.wrapping_add(imm) & !1;
                return Ok(());
            }
            Kind::Branch(c) => {
                if int::branch(c, a, b) {
                    self.pc = pc.wrapping_add(imm);
                    return Ok(());
                }
            }
            Kind::Load { size, unsigned } => {
                let va = a.wrapping_add(imm);
                match self.load(va, size) {
                    Ok(v) => self.set_x(op.rd, mem::extend(v, size, unsigned)),
                    Err(Exc::Exit) => {
                        self.mmio_dest = Some(super::hart::MmioDest {
                            rd: op.rd,
                            size,
                            unsigned,
                            fp: false,
                            len: op.len,
                        });
                        return Err(Exc::Exit);
                    }
                    Err(e) => return Err(e),
                }
            }
            Kind::Store { size } => self.store(a.wrapping_add(imm), size, b)?,
            Kind::Fence => std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst),
            Kind::Lr { size } => self.exec_lr(op, a, size)?,
            Kind::Sc { size } => self.exec_sc(op, a, b, size)?,
            Kind::AmoOp { op: f, size } => self.exec_amo(op, f, a, b, size)?,
            Kind::FLoad { .. } | Kind::FStore { .. } | Kind::FOp { .. } => {
                return self.exec_fp(op, a, next);
            }
            Kind::Csr(_)
            | Kind::Ecall
            | Kind::Ebreak
            | Kind::Mret
            | Kind::Sret
            | Kind::Wfi
            | Kind::SfenceVma
            | Kind::SinvalVma
            | Kind::SfenceInval
            | Kind::FenceI => return self.exec_system(op, a, b, next),
            Kind::Illegal => {
                return Err(Exc::trap(CAUSE_ILLEGAL, u64::from(op.imm as u32)));
            }
            Kind::Undecoded => return Err(Exc::trap(CAUSE_ILLEGAL, 0)),
        }
        self.pc = next;
        Ok(())
    }
}
