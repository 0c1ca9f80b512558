//! x86-64 vCPU set-up on KVM: LAPIC LINT0/LINT1, boot MSRs, FPU, and the
//! 64-bit Linux entry state.

use super::regs::{from_kvm_sregs, to_kvm_regs, update_kvm_sregs};
use crate::boot::X86_64SystemRegisters;
use crate::error::AccelError;
use crate::regs::X86_64Registers;
use kvm_bindings::{
    kvm_fpu, kvm_mp_state, kvm_msr_entry, Msrs, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::VcpuFd;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default memory type write-back.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

fn lapic_reg(regs: &[libc::c_char; 1024], offset: usize) -> u32 {
    let b = |i: usize| regs[offset + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_lapic_reg(regs: &mut [libc::c_char; 1024], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = byte as libc::c_char;
    }
}

fn with_delivery_mode(lvt: u32, mode: u32) -> u32 {
    (lvt & !0x700) | (mode << 8)
}

/// LINT0 = ExtINT (the PIC), LINT1 = NMI, as a PC's BIOS leaves them.
pub(super) fn set_up_lapic(fd: &VcpuFd) -> Result<(), AccelError> {
    let mut lapic = fd
        .get_lapic()
        .map_err(|e| AccelError::hypervisor("KVM_GET_LAPIC", e))?;
    let lint0 = lapic_reg(&lapic.regs, APIC_LVT0);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT0,
        with_delivery_mode(lint0, APIC_MODE_EXTINT),
    );
    let lint1 = lapic_reg(&lapic.regs, APIC_LVT1);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT1,
        with_delivery_mode(lint1, APIC_MODE_NMI),
    );
    fd.set_lapic(&lapic)
        .map_err(|e| AccelError::hypervisor("KVM_SET_LAPIC", e))
}

fn set_up_msrs(fd: &VcpuFd) -> Result<(), AccelError> {
    let entries: Vec<kvm_msr_entry> = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..kvm_msr_entry::default()
    })
    .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| AccelError::InvalidConfig {
        reason: format!("boot MSR list: {e:?}"),
    })?;
    let written = fd
        .set_msrs(&msrs)
        .map_err(|e| AccelError::hypervisor("KVM_SET_MSRS", e))?;
    if written != entries.len() {
        let failed = entries.get(written).map_or(0, |e| e.index);
        return Err(AccelError::hypervisor(
            "KVM_SET_MSRS",
            std::io::Error::other(format!(
                "only {written} of {} boot MSRs were set; MSR {failed:#x} was refused",
                entries.len()
            )),
        ));
    }
    Ok(())
}

fn set_up_fpu(fd: &VcpuFd) -> Result<(), AccelError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..kvm_fpu::default()
    };
    fd.set_fpu(&fpu)
        .map_err(|e| AccelError::hypervisor("KVM_SET_FPU", e))
}

fn set_mp_state(fd: &VcpuFd, mp_state: u32) -> Result<(), AccelError> {
    fd.set_mp_state(kvm_mp_state { mp_state })
        .map_err(|e| AccelError::hypervisor("KVM_SET_MP_STATE", e))
}

/// The boot vCPU at a 64-bit entry point, with the registers the platform chose.
pub(super) fn linux_entry(
    fd: &VcpuFd,
    regs: &X86_64Registers,
    system: &X86_64SystemRegisters,
) -> Result<(), AccelError> {
    set_up_msrs(fd)?;
    let mut sregs = fd
        .get_sregs()
        .map_err(|e| AccelError::hypervisor("KVM_GET_SREGS", e))?;
    let entry = system.apply_to(from_kvm_sregs(&sregs));
    update_kvm_sregs(&mut sregs, &entry);
    fd.set_sregs(&sregs)
        .map_err(|e| AccelError::hypervisor("KVM_SET_SREGS", e))?;
    fd.set_regs(&to_kvm_regs(regs))
        .map_err(|e| AccelError::hypervisor("KVM_SET_REGS", e))?;
    set_up_fpu(fd)?;
    set_mp_state(fd, KVM_MP_STATE_RUNNABLE)
}

/// An application processor: reset state, waiting for INIT/SIPI from the BSP.
pub(super) fn secondary(fd: &VcpuFd) -> Result<(), AccelError> {
    set_up_msrs(fd)?;
    set_up_fpu(fd)?;
    set_mp_state(fd, KVM_MP_STATE_UNINITIALIZED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_delivery_modes_replace_only_the_mode_bits() {
        let mut regs = [0 as libc::c_char; 1024];
        set_lapic_reg(&mut regs, APIC_LVT0, 0x0001_0700);
        let v = with_delivery_mode(lapic_reg(&regs, APIC_LVT0), APIC_MODE_NMI);
        assert_eq!(v, 0x0001_0400);
        set_lapic_reg(&mut regs, APIC_LVT1, v);
        assert_eq!(lapic_reg(&regs, APIC_LVT1), 0x0001_0400);
    }
}
