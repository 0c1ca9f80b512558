//! The slice of Hypervisor.framework's Apple-silicon C API this backend
//! calls, declared by hand (a dozen functions do not warrant a binding
//! crate), plus the macOS 15 in-kernel GIC functions, looked up at run time
//! with `dlsym` so a binary still loads on macOS 11..14.

#![allow(non_camel_case_types)]

use std::ffi::{c_void, CStr};

/// `hv_return_t`.
pub(super) type hv_return_t = i32;
/// `hv_vcpu_t`.
pub(super) type hv_vcpu_t = u64;

/// `hv_vcpu_exit_exception_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct hv_vcpu_exit_exception_t {
    pub(super) syndrome: u64,
    pub(super) virtual_address: u64,
    pub(super) physical_address: u64,
}

/// `hv_vcpu_exit_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct hv_vcpu_exit_t {
    pub(super) reason: u32,
    pub(super) exception: hv_vcpu_exit_exception_t,
}

#[link(name = "Hypervisor", kind = "framework")]
extern "C" {
    pub(super) fn hv_vm_create(config: *mut c_void) -> hv_return_t;
    pub(super) fn hv_vm_destroy() -> hv_return_t;
    pub(super) fn hv_vm_map(addr: *mut c_void, ipa: u64, size: usize, flags: u64) -> hv_return_t;
    pub(super) fn hv_vm_unmap(ipa: u64, size: usize) -> hv_return_t;
    pub(super) fn hv_vm_get_max_vcpu_count(max: *mut u32) -> hv_return_t;
    pub(super) fn hv_vcpu_create(
        vcpu: *mut hv_vcpu_t,
        exit: *mut *const hv_vcpu_exit_t,
        config: *mut c_void,
    ) -> hv_return_t;
    pub(super) fn hv_vcpu_destroy(vcpu: hv_vcpu_t) -> hv_return_t;
    pub(super) fn hv_vcpu_run(vcpu: hv_vcpu_t) -> hv_return_t;
    pub(super) fn hv_vcpus_exit(vcpus: *const hv_vcpu_t, count: u32) -> hv_return_t;
    pub(super) fn hv_vcpu_get_reg(vcpu: hv_vcpu_t, reg: u32, value: *mut u64) -> hv_return_t;
    pub(super) fn hv_vcpu_set_reg(vcpu: hv_vcpu_t, reg: u32, value: u64) -> hv_return_t;
    pub(super) fn hv_vcpu_get_sys_reg(vcpu: hv_vcpu_t, reg: u16, value: *mut u64) -> hv_return_t;
    pub(super) fn hv_vcpu_set_sys_reg(vcpu: hv_vcpu_t, reg: u16, value: u64) -> hv_return_t;
    pub(super) fn hv_vcpu_set_pending_interrupt(
        vcpu: hv_vcpu_t,
        kind: u32,
        pending: bool,
    ) -> hv_return_t;
    pub(super) fn hv_vcpu_set_vtimer_mask(vcpu: hv_vcpu_t, masked: bool) -> hv_return_t;
}

// libSystem, linked into every macOS binary.
extern "C" {
    fn os_release(object: *mut c_void);
}

type ConfigCreate = unsafe extern "C" fn() -> *mut c_void;
type ConfigSetBase = unsafe extern "C" fn(*mut c_void, u64) -> hv_return_t;
type GicCreate = unsafe extern "C" fn(*mut c_void) -> hv_return_t;
type GicSetSpi = unsafe extern "C" fn(u32, bool) -> hv_return_t;

/// The in-kernel GICv3 API of macOS 15 and later.
#[derive(Debug, Clone, Copy)]
pub(super) struct GicApi {
    config_create: ConfigCreate,
    set_distributor_base: ConfigSetBase,
    set_redistributor_base: ConfigSetBase,
    create: GicCreate,
    pub(super) set_spi: GicSetSpi,
}

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the
    // loaded images' symbol tables.
    let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!ptr.is_null()).then_some(ptr)
}

impl GicApi {
    /// The GIC functions, or `None` before macOS 15.
    pub(super) fn lookup() -> Option<Self> {
        let config_create = symbol(c"hv_gic_config_create")?;
        let set_dist = symbol(c"hv_gic_config_set_distributor_base")?;
        let set_redist = symbol(c"hv_gic_config_set_redistributor_base")?;
        let create = symbol(c"hv_gic_create")?;
        let set_spi = symbol(c"hv_gic_set_spi")?;
        // SAFETY: each pointer is the address of the framework function of that
        // name, whose C prototype (hv_gic.h) is the function type it becomes.
        unsafe {
            Some(Self {
                config_create: std::mem::transmute::<*mut c_void, ConfigCreate>(config_create),
                set_distributor_base: std::mem::transmute::<*mut c_void, ConfigSetBase>(set_dist),
                set_redistributor_base: std::mem::transmute::<*mut c_void, ConfigSetBase>(
                    set_redist,
                ),
                create: std::mem::transmute::<*mut c_void, GicCreate>(create),
                set_spi: std::mem::transmute::<*mut c_void, GicSetSpi>(set_spi),
            })
        }
    }

    /// Creates the VM's GIC with its distributor and redistributors at the
    /// given guest-physical bases (after `hv_vm_create`, before any vCPU).
    pub(super) fn create_gic(
        &self,
        distributor: u64,
        redistributor: u64,
    ) -> Result<(), (&'static str, hv_return_t)> {
        // SAFETY: the function pointers came from `lookup`; the config object is
        // created here, used only here, and released with os_release.
        unsafe {
            let config = (self.config_create)();
            if config.is_null() {
                return Err((
                    "hv_gic_config_create",
                    crate::decode::hvf_abi::status::ERROR,
                ));
            }
            let mut result = (self.set_distributor_base)(config, distributor);
            let mut op = "hv_gic_config_set_distributor_base";
            if result == 0 {
                result = (self.set_redistributor_base)(config, redistributor);
                op = "hv_gic_config_set_redistributor_base";
            }
            if result == 0 {
                result = (self.create)(config);
                op = "hv_gic_create";
            }
            os_release(config);
            if result == 0 {
                Ok(())
            } else {
                Err((op, result))
            }
        }
    }
}
