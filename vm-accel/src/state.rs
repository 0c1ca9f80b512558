//! Saved vCPU and VM state: what [`Vcpu::save_state`](crate::Vcpu::save_state)
//! and [`Vm::save_state`](crate::Vm::save_state) return and their `restore_state`
//! counterparts accept, as plain serde data a snapshot file can hold.
//!
//! One variant per engine: the one saved-vCPU type of the workspace, which a
//! snapshot file holds as it is. The KVM x86-64 state keeps each kernel structure
//! (`kvm_regs`, `kvm_sregs`, `kvm_xsave`, `kvm_lapic_state`, ...) as its bytes
//! in the kernel's ABI layout, checked for size when restored, and the lists
//! (MSRs, CPUID) as named fields. The types compile on every host, so a
//! snapshot can be read (and refused with a clear error) where it cannot be
//! restored.

use serde::{Deserialize, Serialize};

pub mod riscv64;

/// Layout version of [`X86_64KvmVcpuState`] and [`X86_64KvmVmState`]; a state
/// with another version is refused on restore.
pub const X86_64_KVM_STATE_VERSION: u32 = 1;

/// A vCPU's complete architectural state, per engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VcpuState {
    /// An x86-64 vCPU of the KVM backend.
    X86_64Kvm(Box<X86_64KvmVcpuState>),
    /// A hart of the riscv64 interpreter.
    Riscv64Interp(Box<riscv64::HartState>),
}

/// VM-wide state that lives in the hypervisor rather than in guest memory or
/// device models, per engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VmState {
    /// An x86-64 VM of the KVM backend.
    X86_64Kvm(X86_64KvmVmState),
}

impl VcpuState {
    /// The engine that produced this state, for error messages.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::X86_64Kvm(_) => "KVM x86_64",
            Self::Riscv64Interp(_) => "the riscv64 interpreter",
        }
    }

    /// The guest architecture of the vCPU this state belongs to.
    pub fn arch(&self) -> crate::GuestArch {
        use crate::GuestArch;
        match self {
            Self::X86_64Kvm(_) => GuestArch::X86_64,
            Self::Riscv64Interp(_) => GuestArch::Riscv64,
        }
    }
}

impl VmState {
    /// The engine that produced this state, for error messages.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::X86_64Kvm(_) => "KVM x86_64",
        }
    }
}

/// One model-specific register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsrEntry {
    /// The MSR index (`ecx` of `rdmsr`).
    pub index: u32,
    /// Its value.
    pub data: u64,
}

/// One CPUID leaf as the vCPU reports it (`kvm_cpuid_entry2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[allow(missing_docs)] // The field names are those of `kvm_cpuid_entry2`.
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// A KVM x86-64 vCPU, in the order it is restored (see the KVM backend's
/// `state` module for why that order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X86_64KvmVcpuState {
    /// [`X86_64_KVM_STATE_VERSION`] when saved.
    pub version: u32,
    /// The CPUID the guest saw (`KVM_GET_CPUID2`).
    pub cpuid: Vec<CpuidEntry>,
    /// TSC frequency in kHz (`KVM_GET_TSC_KHZ`), if KVM reports it.
    pub tsc_khz: Option<u32>,
    /// `kvm_mp_state.mp_state` (runnable, halted, waiting for SIPI, ...).
    pub mp_state: u32,
    /// `kvm_regs` bytes.
    pub regs: Vec<u8>,
    /// `kvm_sregs` bytes.
    pub sregs: Vec<u8>,
    /// The XSAVE area (`KVM_GET_XSAVE`, or `KVM_GET_XSAVE2` when larger than
    /// 4 KiB); its size depends on the host CPU's XSAVE features.
    pub xsave: Vec<u8>,
    /// `kvm_xcrs` bytes, if KVM has `KVM_CAP_XCRS`.
    pub xcrs: Option<Vec<u8>>,
    /// `kvm_debugregs` bytes.
    pub debug_regs: Vec<u8>,
    /// `kvm_lapic_state` bytes, if the VM has an in-kernel irqchip.
    pub lapic: Option<Vec<u8>>,
    /// Every MSR KVM lists in `KVM_GET_MSR_INDEX_LIST` that this vCPU could
    /// read, in KVM's order.
    pub msrs: Vec<MsrEntry>,
    /// `kvm_vcpu_events` bytes (pending exceptions, interrupts, NMIs, SMM).
    pub vcpu_events: Vec<u8>,
}

/// The in-kernel interrupt controllers and timer of a KVM x86-64 VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X86_64KvmIrqchipState {
    /// `kvm_irqchip` bytes of the master 8259 PIC.
    pub pic_master: Vec<u8>,
    /// `kvm_irqchip` bytes of the slave 8259 PIC.
    pub pic_slave: Vec<u8>,
    /// `kvm_irqchip` bytes of the IOAPIC.
    pub ioapic: Vec<u8>,
    /// `kvm_pit_state2` bytes of the i8254 PIT.
    pub pit: Vec<u8>,
}

/// The VM-wide state of a KVM x86-64 VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X86_64KvmVmState {
    /// [`X86_64_KVM_STATE_VERSION`] when saved.
    pub version: u32,
    /// PICs, IOAPIC and PIT, if the VM has the in-kernel irqchip.
    pub irqchip: Option<X86_64KvmIrqchipState>,
    /// The kvmclock value in nanoseconds (`KVM_GET_CLOCK`).
    pub clock_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_serde_and_unknown_engines_are_refused() {
        let state = VmState::X86_64Kvm(X86_64KvmVmState {
            version: X86_64_KVM_STATE_VERSION,
            irqchip: Some(X86_64KvmIrqchipState {
                pic_master: vec![1, 2],
                pic_slave: vec![3],
                ioapic: vec![],
                pit: vec![4; 8],
            }),
            clock_ns: u64::MAX,
        });
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<VmState>(&json).unwrap(), state);
        let other = json.replace("X86_64Kvm", "Arm64Kvm");
        let e = serde_json::from_str::<VmState>(&other).unwrap_err();
        assert!(e.to_string().contains("unknown variant `Arm64Kvm`"), "{e}");
    }
}
