//! The riscv64 half of the KVM backend: core registers through
//! `KVM_GET/SET_ONE_REG` (`x1..x31`, PC, privilege mode) and the boot
//! convention (`pc` = entry in S-mode, `a0` = hart id, `a1` = DTB).
//!
//! Type-checked for `riscv64gc-unknown-linux-gnu`, never run: no riscv64 KVM
//! host was available. No AIA irqchip is created yet, so `set_irq_line` fails
//! until one is.

pub(super) use super::no_debug::{
    debug_exit, fpu_registers, read_memory, set_guest_debug, write_memory,
};
pub(super) use super::no_snapshot::{
    restore_vcpu_state, restore_vm_state, save_vcpu_state, save_vm_state,
};
use crate::boot::BootState;
use crate::error::AccelError;
use crate::exit::{InstructionBytes, InternalError};
use crate::kvm::exit::{Fixup, InternalErrorData};
use crate::kvm::vm::VmShared;
use crate::regs::{
    GuestArch, Registers, Riscv64CoreRegisters, RiscvPrivilege, X86_64SpecialRegisters,
};
use crate::vcpu::VcpuId;
use crate::vm::{IrqLine, VmOptions};
use kvm_bindings::{
    kvm_mp_state, kvm_riscv_core, kvm_riscv_csr, KVM_MP_STATE_STOPPED, KVM_REG_RISCV,
    KVM_REG_RISCV_CORE, KVM_REG_RISCV_CSR, KVM_REG_SIZE_U64, KVM_RISCV_MODE_S, KVM_RISCV_MODE_U,
};
use kvm_ioctls::{VcpuFd, VmFd};
use std::mem::offset_of;

/// The guest architecture KVM runs on this host.
pub(super) const GUEST_ARCH: GuestArch = GuestArch::Riscv64;

/// riscv64 needs no VM-wide state yet.
#[derive(Debug)]
pub(super) struct VmArch;

impl VmArch {
    // Same signature as the other architectures' constructor, which can fail.
    #[allow(clippy::unnecessary_wraps)]
    pub(super) fn new(
        _kvm: &kvm_ioctls::Kvm,
        _fd: &VmFd,
        _config: &VmOptions,
    ) -> Result<Self, AccelError> {
        Ok(Self)
    }
}

/// Interrupt sources are numbered as the irqchip numbers them.
pub(super) fn irq_line_number(irq: IrqLine) -> u32 {
    irq.0
}

/// `user_regs_struct` holds pc then x1..x31, so u64 slot `n` is `pc` (n = 0) or `x<n>`.
fn core_reg(slot: u64) -> u64 {
    KVM_REG_RISCV as u64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_RISCV_CORE) | slot
}

const MODE_SLOT: u64 = (offset_of!(kvm_riscv_core, mode) / 8) as u64;
const A0: usize = 10;
const A1: usize = 11;

fn get(fd: &VcpuFd, id: u64) -> Result<u64, AccelError> {
    let mut bytes = [0u8; 8];
    fd.get_one_reg(id, &mut bytes)
        .map_err(|e| AccelError::hypervisor("KVM_GET_ONE_REG", e))?;
    Ok(u64::from_le_bytes(bytes))
}

fn set(fd: &VcpuFd, id: u64, value: u64) -> Result<(), AccelError> {
    fd.set_one_reg(id, &value.to_le_bytes())
        .map(|_| ())
        .map_err(|e| AccelError::hypervisor("KVM_SET_ONE_REG", e))
}

/// riscv64 vCPUs need no initialisation ioctl.
// Same signature as the other architectures' vCPU set-up, which can fail.
#[allow(clippy::unnecessary_wraps)]
pub(super) fn init_vcpu(_vm: &VmShared, _fd: &VcpuFd, _id: VcpuId) -> Result<(), AccelError> {
    Ok(())
}

pub(super) fn registers(fd: &VcpuFd) -> Result<Registers, AccelError> {
    let mut r = Riscv64CoreRegisters {
        pc: get(fd, core_reg(0))?,
        ..Riscv64CoreRegisters::default()
    };
    for n in 1..32 {
        r.x[n] = get(fd, core_reg(n as u64))?;
    }
    r.mode = if get(fd, core_reg(MODE_SLOT))? == u64::from(KVM_RISCV_MODE_S) {
        RiscvPrivilege::Supervisor
    } else {
        RiscvPrivilege::User
    };
    Ok(Registers::Riscv64(r))
}

pub(super) fn set_registers(fd: &VcpuFd, regs: &Registers) -> Result<(), AccelError> {
    let Registers::Riscv64(r) = regs else {
        return Err(AccelError::ArchMismatch {
            what: "registers",
            given: regs.arch(),
            vcpu: GUEST_ARCH,
        });
    };
    let mode = match r.mode {
        RiscvPrivilege::Supervisor => KVM_RISCV_MODE_S,
        RiscvPrivilege::User => KVM_RISCV_MODE_U,
        RiscvPrivilege::Machine => {
            return Err(AccelError::Unsupported {
                what: "machine-mode guest state",
                backend: "KVM",
            })
        }
    };
    set(fd, core_reg(0), r.pc)?;
    for n in 1..32 {
        set(fd, core_reg(n as u64), r.x[n])?;
    }
    set(fd, core_reg(MODE_SLOT), u64::from(mode))
}

pub(super) fn special_registers(_fd: &VcpuFd) -> Result<X86_64SpecialRegisters, AccelError> {
    Err(AccelError::ArchMismatch {
        what: "x86_64 special registers",
        given: GuestArch::X86_64,
        vcpu: GUEST_ARCH,
    })
}

pub(super) fn set_special_registers(
    fd: &VcpuFd,
    _sregs: &X86_64SpecialRegisters,
) -> Result<(), AccelError> {
    special_registers(fd).map(|_| ())
}

pub(super) fn apply_boot_state(
    _vm: &VmShared,
    fd: &VcpuFd,
    _id: VcpuId,
    state: &BootState,
) -> Result<(), AccelError> {
    match *state {
        BootState::Riscv64 {
            entry,
            hart_id,
            fdt,
        } => {
            set(fd, core_reg(0), entry.0)?;
            set(fd, core_reg(A0 as u64), hart_id)?;
            set(fd, core_reg(A1 as u64), fdt.0)?;
            set(fd, core_reg(MODE_SLOT), u64::from(KVM_RISCV_MODE_S))
        }
        BootState::Secondary { .. } => fd
            .set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_STOPPED,
            })
            .map_err(|e| AccelError::hypervisor("KVM_SET_MP_STATE", e)),
        // KVM runs guests in S-mode under its own SBI; M-mode is not the guest's.
        BootState::Riscv64Bare { .. } => Err(AccelError::Unsupported {
            what: "bare-metal M-mode programs",
            backend: "KVM",
        }),
        other => Err(AccelError::ArchMismatch {
            what: "boot state",
            given: other.arch(),
            vcpu: GUEST_ARCH,
        }),
    }
}

fn satp() -> u64 {
    KVM_REG_RISCV as u64
        | KVM_REG_SIZE_U64
        | u64::from(KVM_REG_RISCV_CSR)
        | (offset_of!(kvm_riscv_csr, satp) / 8) as u64
}

/// riscv64 has no userspace recovery: report with the PC, and the
/// instruction when translation is off (`satp` mode Bare: the PC is physical).
pub(super) fn handle_internal_error(vm: &VmShared, fd: &VcpuFd, data: &InternalErrorData) -> Fixup {
    let mut report: InternalError = data.bare();
    report.pc = get(fd, core_reg(0)).ok();
    let bare = get(fd, satp()).is_ok_and(|satp| satp >> 60 == 0);
    if let (Some(pc), true) = (report.pc, bare) {
        if let Some(word) = vm.read_phys(pc, 4) {
            report.pc_phys = Some(pc);
            report.instruction = Some(InstructionBytes::new(&word));
        }
    }
    Fixup::Report(report)
}
