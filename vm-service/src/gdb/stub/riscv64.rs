//! riscv64 as GDB sees it: `gdbstub_arch`'s registers and numbering, with a
//! target description that adds the FPU, the CSRs and the privilege level
//! (`gdbstub_arch`'s own lists only x0-x31 and pc).

use gdbstub::arch::Arch;
use gdbstub_arch::riscv::reg::id::RiscvRegId;
use gdbstub_arch::riscv::reg::RiscvCoreRegs;
use vm_accel::{DebugRegister, GuestArch, Registers, Vcpu};

use super::DebugArch;

pub(super) enum Riscv64 {}

impl Arch for Riscv64 {
    type Usize = u64;
    type Registers = RiscvCoreRegs<u64>;
    type BreakpointKind = usize;
    type RegId = RiscvRegId<u64>;

    fn target_description_xml() -> Option<&'static str> {
        Some(include_str!("riscv64.xml"))
    }
}

fn core(vcpu: &dyn Vcpu) -> Option<vm_accel::regs::Riscv64CoreRegisters> {
    match vcpu.registers().ok()? {
        Registers::Riscv64(r) => Some(r),
        _ => None,
    }
}

impl DebugArch for Riscv64 {
    const GUEST: GuestArch = GuestArch::Riscv64;
    const BREAKPOINT_SLOTS: Option<usize> = None;
    const WATCHPOINTS: bool = true;

    fn read_registers(vcpu: &mut dyn Vcpu, regs: &mut RiscvCoreRegs<u64>) -> Option<()> {
        let r = core(vcpu)?;
        regs.x = r.x;
        regs.pc = r.pc;
        Some(())
    }

    fn write_registers(vcpu: &mut dyn Vcpu, regs: &RiscvCoreRegs<u64>) -> Option<()> {
        let mut r = core(vcpu)?;
        r.x = regs.x;
        r.pc = regs.pc;
        vcpu.set_registers(&Registers::Riscv64(r)).ok()
    }

    fn read_register(vcpu: &mut dyn Vcpu, reg: RiscvRegId<u64>, buf: &mut [u8]) -> Option<usize> {
        let regs = core(vcpu)?;
        let value = match reg {
            RiscvRegId::Gpr(n) => *regs.x.get(usize::from(n))?,
            RiscvRegId::Pc => regs.pc,
            RiscvRegId::Fpr(n) => vcpu.debug_register(DebugRegister::Riscv64Fpr(n)).ok()?,
            RiscvRegId::Csr(n) => vcpu.debug_register(DebugRegister::Riscv64Csr(n)).ok()?,
            RiscvRegId::Priv => {
                *buf.first_mut()? = regs.mode as u8;
                return Some(1);
            }
            _ => return None,
        };
        Some(super::put_le(buf, &value.to_le_bytes()))
    }

    fn write_register(vcpu: &mut dyn Vcpu, reg: RiscvRegId<u64>, val: &[u8]) -> Option<()> {
        let value = super::get_le(val);
        match reg {
            RiscvRegId::Gpr(_) | RiscvRegId::Pc => {
                let mut r = core(vcpu)?;
                match reg {
                    RiscvRegId::Gpr(n) => *r.x.get_mut(usize::from(n))? = value,
                    _ => r.pc = value,
                }
                vcpu.set_registers(&Registers::Riscv64(r)).ok()
            }
            RiscvRegId::Fpr(n) => vcpu
                .set_debug_register(DebugRegister::Riscv64Fpr(n), value)
                .ok(),
            RiscvRegId::Csr(n) => vcpu
                .set_debug_register(DebugRegister::Riscv64Csr(n), value)
                .ok(),
            _ => None,
        }
    }
}
