//! The x86-64 half of the KVM backend: in-kernel irqchip and PIT, CPUID
//! templates, long-mode boot state, and recovery from internal errors.

mod boot;
mod cpuid;
mod debug;
mod fallback;
mod fixup;
mod regs;
mod state;

pub use fallback::FallbackError;

pub(super) use debug::{debug_exit, fpu_registers, read_memory, set_guest_debug, write_memory};
pub(super) use fixup::handle_internal_error;

use crate::accelerator::AcceleratorKind;
use crate::boot::x86_64::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};
use crate::boot::BootState;
use crate::error::AccelError;
use crate::host_profile::HostProfile;
use crate::kvm::vm::VmShared;
use crate::regs::{GuestArch, Registers, X86_64SpecialRegisters};
use crate::state::{VcpuState, VmState};
use crate::vcpu::VcpuId;
use crate::vm::{IrqLine, VmOptions};
use kvm_bindings::{kvm_pit_config, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{VcpuFd, VmFd};

/// The guest architecture KVM runs on this host.
pub(super) const GUEST_ARCH: GuestArch = GuestArch::X86_64;

/// x86 VM-wide state: the template-filtered CPUID, whether LAPICs are
/// in-kernel, the host profile and what its instruction fallback emulated.
#[derive(Debug)]
pub(super) struct VmArch {
    cpuid: CpuId,
    irqchip: bool,
    profile: Option<&'static HostProfile>,
    emulations: fallback::EmulationCounts,
    state_caps: state::StateCaps,
}

impl Drop for VmArch {
    fn drop(&mut self) {
        if let Some(profile) = self.profile {
            tracing::info!(
                profile = %profile.name,
                emulated = %self.emulations.summary(),
                "instruction fallback: totals"
            );
        }
    }
}

impl VmArch {
    /// TSS and identity-map pages, in-kernel PIC/IOAPIC/LAPIC and PIT, CPUID.
    pub(super) fn new(
        kvm: &kvm_ioctls::Kvm,
        fd: &VmFd,
        config: &VmOptions,
    ) -> Result<Self, AccelError> {
        fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
            .map_err(|e| AccelError::hypervisor("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        fd.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(|e| AccelError::hypervisor("KVM_SET_TSS_ADDR", e))?;
        if config.in_kernel_irqchip {
            fd.create_irq_chip()
                .map_err(|e| AccelError::hypervisor("KVM_CREATE_IRQCHIP", e))?;
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..kvm_pit_config::default()
            };
            fd.create_pit2(pit)
                .map_err(|e| AccelError::hypervisor("KVM_CREATE_PIT2", e))?;
        }
        let profile =
            HostProfile::select(AcceleratorKind::Kvm).map_err(|e| AccelError::InvalidConfig {
                reason: e.to_string(),
            })?;
        if let Some(p) = profile {
            tracing::debug!(profile = %p.name, fallback = ?p.fallback, "host profile");
        }
        Ok(Self {
            cpuid: cpuid::vm_cpuid(kvm, &config.cpu_template)?,
            irqchip: config.in_kernel_irqchip,
            profile,
            emulations: fallback::EmulationCounts::default(),
            state_caps: state::StateCaps::probe(kvm, fd)?,
        })
    }
}

/// GSIs map 1:1 to KVM_IRQ_LINE numbers on x86 (PIC 0-15, IOAPIC 0-23).
pub(super) fn irq_line_number(irq: IrqLine) -> u32 {
    irq.0
}

/// CPUID and (with the in-kernel irqchip) LAPIC for a new vCPU.
pub(super) fn init_vcpu(vm: &VmShared, fd: &VcpuFd, id: VcpuId) -> Result<(), AccelError> {
    fd.set_cpuid2(&cpuid::vcpu_cpuid(&vm.arch.cpuid, id.0))
        .map_err(|e| AccelError::hypervisor("KVM_SET_CPUID2", e))?;
    if vm.arch.irqchip {
        boot::set_up_lapic(fd)?;
    }
    Ok(())
}

pub(super) fn registers(fd: &VcpuFd) -> Result<Registers, AccelError> {
    let r = fd
        .get_regs()
        .map_err(|e| AccelError::hypervisor("KVM_GET_REGS", e))?;
    Ok(Registers::X86_64(regs::from_kvm_regs(&r)))
}

pub(super) fn set_registers(fd: &VcpuFd, r: &Registers) -> Result<(), AccelError> {
    let Registers::X86_64(r) = r else {
        return Err(AccelError::ArchMismatch {
            what: "registers",
            given: r.arch(),
            vcpu: GUEST_ARCH,
        });
    };
    fd.set_regs(&regs::to_kvm_regs(r))
        .map_err(|e| AccelError::hypervisor("KVM_SET_REGS", e))
}

pub(super) fn special_registers(fd: &VcpuFd) -> Result<X86_64SpecialRegisters, AccelError> {
    let s = fd
        .get_sregs()
        .map_err(|e| AccelError::hypervisor("KVM_GET_SREGS", e))?;
    Ok(regs::from_kvm_sregs(&s))
}

pub(super) fn set_special_registers(
    fd: &VcpuFd,
    sregs: &X86_64SpecialRegisters,
) -> Result<(), AccelError> {
    let mut k = fd
        .get_sregs()
        .map_err(|e| AccelError::hypervisor("KVM_GET_SREGS", e))?;
    regs::update_kvm_sregs(&mut k, sregs);
    fd.set_sregs(&k)
        .map_err(|e| AccelError::hypervisor("KVM_SET_SREGS", e))
}

pub(super) fn apply_boot_state(
    vm: &VmShared,
    fd: &VcpuFd,
    _id: VcpuId,
    state: &BootState,
) -> Result<(), AccelError> {
    match *state {
        BootState::X86_64Linux {
            ref regs,
            ref system,
        } => boot::linux_entry(fd, regs, system),
        BootState::Secondary { .. } if !vm.arch.irqchip => Err(AccelError::Unsupported {
            what: "x86 secondary vCPUs waiting for INIT/SIPI without the in-kernel irqchip",
            backend: "KVM",
        }),
        BootState::Secondary { .. } => boot::secondary(fd),
        other => Err(AccelError::ArchMismatch {
            what: "boot state",
            given: other.arch(),
            vcpu: GUEST_ARCH,
        }),
    }
}

pub(super) fn save_vcpu_state(vm: &VmShared, fd: &VcpuFd) -> Result<VcpuState, AccelError> {
    Ok(VcpuState::X86_64Kvm(Box::new(state::save_vcpu(vm, fd)?)))
}

pub(super) fn restore_vcpu_state(
    vm: &VmShared,
    fd: &VcpuFd,
    saved: &VcpuState,
) -> Result<(), AccelError> {
    match saved {
        VcpuState::X86_64Kvm(s) => state::restore_vcpu(vm, fd, s),
        other => Err(AccelError::InvalidState {
            what: "the vCPU state",
            reason: format!(
                "it was saved by {}, this is a KVM x86_64 vCPU",
                other.engine()
            ),
        }),
    }
}

pub(super) fn save_vm_state(vm: &VmShared) -> Result<VmState, AccelError> {
    Ok(VmState::X86_64Kvm(state::save_vm(vm)?))
}

pub(super) fn restore_vm_state(vm: &VmShared, saved: &VmState) -> Result<(), AccelError> {
    match saved {
        VmState::X86_64Kvm(s) => state::restore_vm(vm, s),
    }
}
