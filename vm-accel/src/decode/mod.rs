//! The ABIs of Hypervisor.framework and the Windows Hypervisor Platform
//! (constants, bit layouts, status codes) and the decoding of their exits
//! that does not touch the OS (arm64 exception syndromes).
//! x86 instruction decoding lives in [`crate::x86_emulator`].

#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub mod arm64_syndrome;
// The whole ABI table, including values the backend does not use yet.
#[allow(dead_code)]
pub mod hvf_abi;
#[cfg_attr(not(target_os = "windows"), allow(dead_code))]
pub mod whpx_abi;
