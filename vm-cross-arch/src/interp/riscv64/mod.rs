//! A software RV64GC hart (RV64IMAFDC, Zicsr, Zifencei, Zicntr; the B
//! extension and Zbkb/Zbkc/Zbkx; Zicond, Zihintpause, Zicbom/Zicboz/Zicbop;
//! Zfh/Zfhmin and Zfa; Zimop/Zcmop; Sstc, Svinval, Svnapot, Svpbmt; M/S/U
//! privilege, Sv39; zero Sdtrig triggers)
//! behind `vm_accel::Vcpu`, with a built-in SBI for booting kernels in
//! S-mode and an ELF runner for bare-metal test programs.
//!
//! Speed comes from decoding once: a per-hart cache of pre-decoded
//! instructions keyed by guest physical page (`icache`), a software TLB of
//! host addresses (`mmu`), no allocation and no lock per instruction.
//! Guest mistakes (unmapped fetches, illegal instructions, page tables
//! outside RAM) are guest traps, never host panics.

// CSR fields, decoded-op variants and trap causes carry the names the RISC-V
// specifications give them; the specs are their documentation.
#[allow(missing_docs)]
pub mod csr;
pub(crate) mod debug;
#[allow(missing_docs, clippy::enum_variant_names)]
pub(crate) mod decode;
pub mod elf;
mod exec;
#[allow(missing_docs)]
pub(crate) mod fpu;
#[allow(missing_docs)]
pub(crate) mod hart;
pub(crate) mod icache;
// The translator; without a code generator, a stand-in that translates nothing.
#[cfg_attr(not(all(feature = "jit", target_arch = "x86_64")), path = "jit_off.rs")]
mod jit;
#[allow(missing_docs)]
pub(crate) mod machine;
pub(crate) mod memory;
mod mmio;
pub(crate) mod mmu;
mod sbi;
pub mod state;
mod tier;
#[allow(missing_docs)]
pub(crate) mod trap;
pub(crate) mod vcpu;
pub(crate) mod vm;
pub(crate) mod zfa;

pub(crate) use exec::cache::BLOCK as CBO_BLOCK;
pub use tier::Tier;
pub use vcpu::RiscvVcpu;
pub use vm::{RiscvVm, SoftwareAccelerator};
