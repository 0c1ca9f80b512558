//! Decoding and emulation logic the HVF and WHPX backends need but that does
//! not touch the OS: exception syndromes and PSCI (arm64), MMIO and string
//! port-I/O instruction decoding (x86, with `iced-x86`), the ABI constants and
//! bit layouts of both hypervisors, and userspace ioeventfd matching.
//! Compiled and unit-tested on every host, so the macOS and Windows backends
//! rest on tested code even though they are only type-checked on Linux.

pub mod arm64_syndrome;
pub mod hvf_abi;
pub mod ioevent_match;
pub mod psci;
pub mod whpx_abi;
pub mod x86_gpr;
pub mod x86_mmio;
pub mod x86_port_io;
