//! A software RV64GC hart (RV64IMAFDC, Zicsr, Zifencei, Zicntr; the B
//! extension and Zbkb/Zbkc/Zbkx; Zicond, Zihintpause, Zicbom/Zicboz/Zicbop;
//! Sstc, Svinval, Svnapot, Svpbmt; M/S/U privilege, Sv39; zero Sdtrig triggers)
//! behind `vm_accel::Vcpu`, with a built-in SBI for booting kernels in
//! S-mode and an ELF runner for bare-metal test programs.
//!
//! Speed comes from decoding once: a per-hart cache of pre-decoded
//! instructions keyed by guest physical page ([`icache`]), a software TLB of
//! host addresses ([`mmu`]), no allocation and no lock per instruction.
//! Guest mistakes (unmapped fetches, illegal instructions, page tables
//! outside RAM) are guest traps, never host panics.

// CSR fields, decoded-op variants and trap causes carry the names the RISC-V
// specifications give them; the specs are their documentation.
#[allow(missing_docs)]
pub mod csr;
#[allow(missing_docs)]
pub mod decode;
pub mod elf;
mod exec;
#[allow(missing_docs)]
pub mod fpu;
#[allow(missing_docs)]
pub mod hart;
pub mod icache;
#[allow(missing_docs)]
pub mod machine;
pub mod memory;
pub mod mmu;
mod sbi;
pub mod state;
#[allow(missing_docs)]
pub mod trap;
pub mod vcpu;
pub mod vm;

pub use exec::cache::BLOCK as CBO_BLOCK;
pub use hart::{Hart, HartExit};
pub use vcpu::RiscvVcpu;
pub use vm::{RiscvVm, SoftwareAccelerator};
