//! The WinHvPlatform.dll functions this backend calls, loaded at run time
//! (`LoadLibraryExA` from System32 + `GetProcAddress`), as QEMU does: the DLL
//! exists only when the "Windows Hypervisor Platform" feature is installed,
//! and linking it at build time would stop any program embedding this crate
//! from starting on machines without it. Types come from `windows-sys`.

use crate::decode::whpx_abi::describe_hresult;
use crate::error::AccelError;
use std::ffi::{c_void, CStr};
use std::sync::OnceLock;
use windows_sys::core::HRESULT;
use windows_sys::Win32::System::Hypervisor::{
    WHV_CAPABILITY_CODE, WHV_INTERRUPT_CONTROL, WHV_MAP_GPA_RANGE_FLAGS, WHV_PARTITION_HANDLE,
    WHV_PARTITION_PROPERTY_CODE, WHV_REGISTER_NAME, WHV_REGISTER_VALUE, WHV_TRANSLATE_GVA_FLAGS,
    WHV_TRANSLATE_GVA_RESULT,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetProcAddress, LoadLibraryExA, LOAD_LIBRARY_SEARCH_SYSTEM32,
};

type Partition = WHV_PARTITION_HANDLE;

/// Function pointers into WinHvPlatform.dll.
#[allow(non_snake_case)] // The fields carry the API's names.
#[derive(Debug, Clone, Copy)]
pub(super) struct Api {
    pub(super) WHvGetCapability:
        unsafe extern "system" fn(WHV_CAPABILITY_CODE, *mut c_void, u32, *mut u32) -> HRESULT,
    pub(super) WHvCreatePartition: unsafe extern "system" fn(*mut Partition) -> HRESULT,
    pub(super) WHvSetupPartition: unsafe extern "system" fn(Partition) -> HRESULT,
    pub(super) WHvDeletePartition: unsafe extern "system" fn(Partition) -> HRESULT,
    pub(super) WHvSetPartitionProperty: unsafe extern "system" fn(
        Partition,
        WHV_PARTITION_PROPERTY_CODE,
        *const c_void,
        u32,
    ) -> HRESULT,
    pub(super) WHvMapGpaRange: unsafe extern "system" fn(
        Partition,
        *const c_void,
        u64,
        u64,
        WHV_MAP_GPA_RANGE_FLAGS,
    ) -> HRESULT,
    pub(super) WHvUnmapGpaRange: unsafe extern "system" fn(Partition, u64, u64) -> HRESULT,
    pub(super) WHvCreateVirtualProcessor: unsafe extern "system" fn(Partition, u32, u32) -> HRESULT,
    pub(super) WHvDeleteVirtualProcessor: unsafe extern "system" fn(Partition, u32) -> HRESULT,
    pub(super) WHvRunVirtualProcessor:
        unsafe extern "system" fn(Partition, u32, *mut c_void, u32) -> HRESULT,
    pub(super) WHvCancelRunVirtualProcessor:
        unsafe extern "system" fn(Partition, u32, u32) -> HRESULT,
    pub(super) WHvGetVirtualProcessorRegisters: unsafe extern "system" fn(
        Partition,
        u32,
        *const WHV_REGISTER_NAME,
        u32,
        *mut WHV_REGISTER_VALUE,
    ) -> HRESULT,
    pub(super) WHvSetVirtualProcessorRegisters: unsafe extern "system" fn(
        Partition,
        u32,
        *const WHV_REGISTER_NAME,
        u32,
        *const WHV_REGISTER_VALUE,
    ) -> HRESULT,
    pub(super) WHvTranslateGva: unsafe extern "system" fn(
        Partition,
        u32,
        u64,
        WHV_TRANSLATE_GVA_FLAGS,
        *mut WHV_TRANSLATE_GVA_RESULT,
        *mut u64,
    ) -> HRESULT,
    pub(super) WHvRequestInterrupt:
        unsafe extern "system" fn(Partition, *const WHV_INTERRUPT_CONTROL, u32) -> HRESULT,
}

/// Looks up `name` in `module` as a function of type `F`.
///
/// # Safety
/// `F` must be the `extern "system"` function-pointer type of `name`'s prototype.
unsafe fn function<F: Copy>(module: *mut c_void, name: &CStr) -> Result<F, String> {
    // SAFETY: `module` is a loaded module handle and `name` is NUL-terminated.
    let address = unsafe { GetProcAddress(module, name.as_ptr().cast()) };
    let Some(address) = address else {
        return Err(format!(
            "WinHvPlatform.dll lacks {} (Windows too old?)",
            name.to_string_lossy()
        ));
    };
    // SAFETY: the caller guarantees `F` is the function's pointer type; both are
    // pointer-sized function pointers.
    Ok(unsafe { std::mem::transmute_copy::<_, F>(&address) })
}

fn load() -> Result<Api, String> {
    // SAFETY: the name is NUL-terminated; searching System32 only avoids DLL planting.
    let module = unsafe {
        LoadLibraryExA(
            c"WinHvPlatform.dll".as_ptr().cast(),
            std::ptr::null_mut(),
            LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    };
    if module.is_null() {
        return Err(format!(
            "WinHvPlatform.dll could not be loaded ({}): enable the \"Windows Hypervisor Platform\" \
             feature (Enable-WindowsOptionalFeature -Online -FeatureName HypervisorPlatform) and reboot",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: each field's type is the prototype of the export of the same
    // name in WinHvPlatform.h (matching windows-sys's declarations).
    unsafe {
        Ok(Api {
            WHvGetCapability: function(module, c"WHvGetCapability")?,
            WHvCreatePartition: function(module, c"WHvCreatePartition")?,
            WHvSetupPartition: function(module, c"WHvSetupPartition")?,
            WHvDeletePartition: function(module, c"WHvDeletePartition")?,
            WHvSetPartitionProperty: function(module, c"WHvSetPartitionProperty")?,
            WHvMapGpaRange: function(module, c"WHvMapGpaRange")?,
            WHvUnmapGpaRange: function(module, c"WHvUnmapGpaRange")?,
            WHvCreateVirtualProcessor: function(module, c"WHvCreateVirtualProcessor")?,
            WHvDeleteVirtualProcessor: function(module, c"WHvDeleteVirtualProcessor")?,
            WHvRunVirtualProcessor: function(module, c"WHvRunVirtualProcessor")?,
            WHvCancelRunVirtualProcessor: function(module, c"WHvCancelRunVirtualProcessor")?,
            WHvGetVirtualProcessorRegisters: function(module, c"WHvGetVirtualProcessorRegisters")?,
            WHvSetVirtualProcessorRegisters: function(module, c"WHvSetVirtualProcessorRegisters")?,
            WHvTranslateGva: function(module, c"WHvTranslateGva")?,
            WHvRequestInterrupt: function(module, c"WHvRequestInterrupt")?,
        })
    }
}

/// The API, loaded once per process (the module stays loaded).
pub(super) fn api() -> Result<&'static Api, AccelError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|reason| {
        AccelError::hypervisor(
            "loading the Windows Hypervisor Platform",
            std::io::Error::other(reason.clone()),
        )
    })
}

/// Turns an `HRESULT` into a result naming the call.
pub(super) fn check(op: &'static str, hr: HRESULT) -> Result<(), AccelError> {
    if hr >= 0 {
        Ok(())
    } else {
        Err(AccelError::hypervisor(
            op,
            std::io::Error::other(describe_hresult(hr)),
        ))
    }
}
