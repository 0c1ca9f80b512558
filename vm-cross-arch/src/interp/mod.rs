//! Software execution engines (interpreters) implementing `vm_accel::Vcpu`.

pub mod riscv64;
