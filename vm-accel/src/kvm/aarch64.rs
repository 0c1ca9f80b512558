//! The arm64 half of the KVM backend: `KVM_ARM_VCPU_INIT` with PSCI 0.2
//! (secondaries powered off until PSCI `CPU_ON`), core registers through
//! `KVM_GET/SET_ONE_REG`, and the Linux arm64 boot state (EL1h, DAIF masked,
//! `x0` = DTB).
//!
//! Type-checked for `aarch64-unknown-linux-gnu`, never run: no arm64 KVM host
//! was available. No vGIC is created yet, so `set_irq_line` (which encodes
//! `IrqLine(n)` as SPI `n`, INTID `n + 32`) fails until one is.

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
use crate::regs::{Arm64CoreRegisters, GuestArch, Registers, X86_64SpecialRegisters};
use crate::vcpu::VcpuId;
use crate::vm::{IrqLine, VmOptions};
use kvm_bindings::{
    kvm_mp_state, kvm_regs, kvm_vcpu_init, user_pt_regs, PSR_MODE_EL1h, KVM_ARM_IRQ_TYPE_SHIFT,
    KVM_ARM_IRQ_TYPE_SPI, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, KVM_MP_STATE_STOPPED,
    KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_ARM64_SYSREG_CRN_SHIFT,
    KVM_REG_ARM64_SYSREG_OP0_SHIFT, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64, PSR_A_BIT, PSR_D_BIT,
    PSR_F_BIT, PSR_I_BIT,
};
use kvm_ioctls::{VcpuFd, VmFd};
use std::mem::offset_of;

/// The guest architecture KVM runs on this host.
pub(super) const GUEST_ARCH: GuestArch = GuestArch::Arm64;

/// First shared peripheral interrupt INTID.
const SPI_BASE: u32 = 32;

/// arm64 VM-wide state: the host's preferred vCPU target.
#[derive(Debug)]
pub(super) struct VmArch {
    preferred: kvm_vcpu_init,
}

impl VmArch {
    pub(super) fn new(
        _kvm: &kvm_ioctls::Kvm,
        fd: &VmFd,
        _config: &VmOptions,
    ) -> Result<Self, AccelError> {
        let mut preferred = kvm_vcpu_init::default();
        fd.get_preferred_target(&mut preferred)
            .map_err(|e| AccelError::hypervisor("KVM_ARM_PREFERRED_TARGET", e))?;
        Ok(Self { preferred })
    }
}

/// `KVM_IRQ_LINE` encoding of SPI `irq`.
pub(super) fn irq_line_number(irq: IrqLine) -> u32 {
    (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (irq.0 + SPI_BASE)
}

/// The `KVM_REG_ARM_CORE` id of the u64 at `offset` bytes into `kvm_regs`.
const fn core_reg(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

fn x_reg(n: usize) -> u64 {
    core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, regs) + n * 8)
}

const SP: u64 = core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, sp));
const PC: u64 = core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pc));
const PSTATE: u64 = core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pstate));
const SP_EL1: u64 = core_reg(offset_of!(kvm_regs, sp_el1));
const ELR_EL1: u64 = core_reg(offset_of!(kvm_regs, elr_el1));

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

/// `KVM_ARM_VCPU_INIT` with PSCI 0.2; vCPUs other than 0 start powered off.
pub(super) fn init_vcpu(vm: &VmShared, fd: &VcpuFd, id: VcpuId) -> Result<(), AccelError> {
    let mut init = vm.arch.preferred;
    init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    if id.0 != 0 {
        init.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    fd.vcpu_init(&init)
        .map_err(|e| AccelError::hypervisor("KVM_ARM_VCPU_INIT", e))
}

pub(super) fn registers(fd: &VcpuFd) -> Result<Registers, AccelError> {
    let mut r = Arm64CoreRegisters::default();
    for (n, x) in r.x.iter_mut().enumerate() {
        *x = get(fd, x_reg(n))?;
    }
    r.sp = get(fd, SP)?;
    r.pc = get(fd, PC)?;
    r.pstate = get(fd, PSTATE)?;
    r.sp_el1 = get(fd, SP_EL1)?;
    r.elr_el1 = get(fd, ELR_EL1)?;
    Ok(Registers::Arm64(r))
}

pub(super) fn set_registers(fd: &VcpuFd, regs: &Registers) -> Result<(), AccelError> {
    let Registers::Arm64(r) = regs else {
        return Err(AccelError::ArchMismatch {
            what: "registers",
            given: regs.arch(),
            vcpu: GUEST_ARCH,
        });
    };
    for (n, x) in r.x.iter().enumerate() {
        set(fd, x_reg(n), *x)?;
    }
    set(fd, SP, r.sp)?;
    set(fd, PC, r.pc)?;
    set(fd, PSTATE, r.pstate)?;
    set(fd, SP_EL1, r.sp_el1)?;
    set(fd, ELR_EL1, r.elr_el1)
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
        BootState::Arm64Linux { entry, fdt } => {
            let pstate = u64::from(PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT | PSR_MODE_EL1h);
            set(fd, PSTATE, pstate)?;
            set(fd, PC, entry.0)?;
            set(fd, x_reg(0), fdt.0)?;
            for n in 1..4 {
                set(fd, x_reg(n), 0)?;
            }
            Ok(())
        }
        BootState::Secondary { .. } => fd
            .set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_STOPPED,
            })
            .map_err(|e| AccelError::hypervisor("KVM_SET_MP_STATE", e)),
        other => Err(AccelError::ArchMismatch {
            what: "boot state",
            given: other.arch(),
            vcpu: GUEST_ARCH,
        }),
    }
}

/// SCTLR_EL1 (op0 3, op1 0, CRn 1, CRm 0, op2 0).
const SCTLR_EL1: u64 = KVM_REG_ARM64
    | KVM_REG_SIZE_U64
    | KVM_REG_ARM64_SYSREG as u64
    | (3 << KVM_REG_ARM64_SYSREG_OP0_SHIFT)
    | (1 << KVM_REG_ARM64_SYSREG_CRN_SHIFT);
const SCTLR_M: u64 = 1;

/// arm64 has no userspace recovery: report with the PC, and the instruction
/// word when the MMU is off (the PC is then a physical address).
pub(super) fn handle_internal_error(vm: &VmShared, fd: &VcpuFd, data: &InternalErrorData) -> Fixup {
    let mut report: InternalError = data.bare();
    report.pc = get(fd, PC).ok();
    let mmu_off = get(fd, SCTLR_EL1).is_ok_and(|sctlr| sctlr & SCTLR_M == 0);
    if let (Some(pc), true) = (report.pc, mmu_off) {
        if let Some(word) = vm.read_phys(pc, 4) {
            report.pc_phys = Some(pc);
            report.instruction = Some(InstructionBytes::new(&word));
        }
    }
    Fixup::Report(report)
}
