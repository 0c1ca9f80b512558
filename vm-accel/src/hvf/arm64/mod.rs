//! Hypervisor.framework on Apple silicon: the accelerator (probe, VM
//! creation), with the VM in `vm.rs`, the vCPU in `vcpu.rs` and the kick in
//! `kick.rs`. See the parent module for the executor contract.

mod ffi;
mod kick;
mod vcpu;
mod vm;

pub use vcpu::HvfVcpu;
pub use vm::HvfVm;

use crate::accelerator::{Accelerator, AcceleratorKind, Unavailable};
use crate::decode::hvf_abi::{describe_status, status};
use crate::error::AccelError;
use crate::regs::GuestArch;
use crate::vm::{Vm, VmOptions};
use std::sync::Arc;

/// Guest-physical base of the in-kernel GICv3 distributor (64 KiB), where
/// the GIC of macOS 15+ is placed; the guest's device tree must match.
pub const GIC_DISTRIBUTOR_BASE: u64 = 0x0800_0000;
/// Guest-physical base of the GICv3 redistributor frames (128 KiB per vCPU).
pub const GIC_REDISTRIBUTOR_BASE: u64 = 0x080a_0000;

/// Turns an `hv_return_t` into a result naming the call.
pub(super) fn check(op: &'static str, code: ffi::hv_return_t) -> Result<(), AccelError> {
    if code == status::SUCCESS {
        Ok(())
    } else {
        Err(AccelError::hypervisor(
            op,
            std::io::Error::other(describe_status(code)),
        ))
    }
}

/// Whether the kernel offers Hypervisor.framework (`sysctl kern.hv_support`).
fn kernel_supports_hv() -> Result<bool, String> {
    let mut value: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>();
    // SAFETY: the name is NUL-terminated, `value`/`size` describe a valid c_int
    // buffer, and no new value is written (null, 0).
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.hv_support".as_ptr(),
            (&raw mut value).cast(),
            &raw mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "sysctl kern.hv_support failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(value != 0)
}

/// Hypervisor.framework on Apple silicon.
#[derive(Debug)]
pub struct HvfAccelerator {
    max_vcpus: u32,
}

impl HvfAccelerator {
    /// Checks that the kernel supports the hypervisor and that this process
    /// may use it (a VM is created and destroyed to prove the entitlement,
    /// unless this process already has one).
    pub fn new() -> Result<Self, AccelError> {
        let unusable = |detail: String| {
            AccelError::hypervisor(
                "probing Hypervisor.framework",
                std::io::Error::other(detail),
            )
        };
        if !kernel_supports_hv().map_err(unusable)? {
            return Err(unusable(
                "kern.hv_support is 0: this Mac (or the VM macOS runs in) has no hardware \
                 virtualisation for Hypervisor.framework"
                    .to_owned(),
            ));
        }
        if !vm::vm_exists() {
            // SAFETY: a null config asks for the default VM configuration.
            let created = unsafe { ffi::hv_vm_create(std::ptr::null_mut()) };
            match created {
                status::SUCCESS => {
                    // SAFETY: the VM was just created by this thread and has no vCPUs.
                    let destroyed = unsafe { ffi::hv_vm_destroy() };
                    check("hv_vm_destroy", destroyed)?;
                }
                // Another part of the process holds a VM: the hypervisor is usable.
                status::BUSY => {}
                code => check("hv_vm_create", code)?,
            }
        }
        let mut max_vcpus = 0u32;
        // SAFETY: `max_vcpus` is a valid out-pointer.
        check("hv_vm_get_max_vcpu_count", unsafe {
            ffi::hv_vm_get_max_vcpu_count(&raw mut max_vcpus)
        })?;
        Ok(Self { max_vcpus })
    }

    /// Creates a VM as the concrete HVF type (see [`Accelerator::create_vm`]).
    pub fn create_hvf_vm(&self, config: &VmOptions) -> Result<HvfVm, AccelError> {
        HvfVm::new(config, self.max_vcpus)
    }
}

impl Accelerator for HvfAccelerator {
    fn kind(&self) -> AcceleratorKind {
        AcceleratorKind::Hvf
    }

    fn guest_arch(&self) -> GuestArch {
        GuestArch::Arm64
    }

    fn max_vcpus(&self) -> u32 {
        self.max_vcpus
    }

    fn create_vm(&self, config: &VmOptions) -> Result<Arc<dyn Vm>, AccelError> {
        Ok(Arc::new(self.create_hvf_vm(config)?))
    }
}

/// The HVF probe for Apple silicon.
pub(super) fn probe() -> Result<Arc<dyn Accelerator>, Unavailable> {
    HvfAccelerator::new()
        .map(|hvf| Arc::new(hvf) as Arc<dyn Accelerator>)
        .map_err(|e| Unavailable {
            kind: AcceleratorKind::Hvf,
            reason: e.to_string(),
        })
}
