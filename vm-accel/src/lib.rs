//! The accelerator layer: `Accelerator` (probe and create a VM), `Vm` (guest
//! memory, IRQ lines, vCPU creation) and `Vcpu` (`run()` and register access),
//! with hardware backends selected by the build target — KVM on Linux, HVF on
//! macOS, WHPX on Windows.
//!
//! The software engine in `vm-cross-arch` implements the same `Vcpu` trait, so
//! the executors in `vm-service` drive hardware and software vCPUs alike.
