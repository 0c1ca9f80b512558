//! Shared set-up for the KVM integration tests: open KVM or skip, a VM with
//! 2 MiB of RAM at 0, tiny guests assembled with iced-x86, and an owned view
//! of exits for assertions.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use iced_x86::code_asm::CodeAssembler;
use iced_x86::IcedError;
use std::sync::Arc;
use vm_accel::boot::test_support::{
    long_mode_entry, BOOT_STACK_POINTER, CODE_SELECTOR, ZERO_PAGE_ADDR,
};
use vm_accel::kvm::KvmAccelerator;
use vm_accel::{Accelerator, GuestAddress, GuestMemoryMmap, Vcpu, VcpuExit, VcpuId, Vm, VmOptions};
use vm_memory::Bytes;

pub const RAM_SIZE: usize = 2 << 20;
/// Where long-mode test code goes (above the boot tables).
pub const CODE: u64 = 0x1_0000;
/// Scratch data the guests write.
pub const DATA: u64 = 0x3_0000;
/// An address no memory backs, inside the identity-mapped first GiB.
pub const UNMAPPED: u64 = 0x1000_0000;

/// KVM, or `None` after reporting it missing (see `test_prerequisites`).
pub fn kvm_or_skip(test: &str) -> Option<KvmAccelerator> {
    match KvmAccelerator::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            test_prerequisites::prerequisite_missing(format_args!(
                "{test}: KVM is not usable here: {e}"
            ));
            None
        }
    }
}

/// A VM with `RAM_SIZE` bytes of RAM at guest address 0.
pub struct Guest {
    pub vm: Arc<dyn Vm>,
    pub mem: GuestMemoryMmap,
}

impl Guest {
    /// Without the in-kernel irqchip, so `hlt` exits to the test.
    pub fn new(kvm: &KvmAccelerator, vcpus: u32) -> Self {
        Self::with_irqchip(kvm, vcpus, false)
    }

    pub fn with_irqchip(kvm: &KvmAccelerator, vcpus: u32, in_kernel_irqchip: bool) -> Self {
        let vm = kvm
            .create_vm(&VmOptions {
                vcpu_count: vcpus,
                in_kernel_irqchip,
                ..VmOptions::default()
            })
            .expect("create VM");
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("guest RAM");
        vm.map_memory(&mem).expect("map RAM");
        Self { vm, mem }
    }

    pub fn load(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .expect("write guest memory");
    }

    pub fn read_u64(&self, addr: u64) -> u64 {
        self.mem
            .read_obj(GuestAddress(addr))
            .expect("read guest memory")
    }

    /// vCPU `id` at the 64-bit entry `entry`, its stack below `BOOT_STACK_POINTER`.
    pub fn long_mode_vcpu(&self, id: u32, entry: u64) -> Box<dyn Vcpu> {
        let mut vcpu = self.vm.create_vcpu(VcpuId(id)).expect("create vCPU");
        let boot = long_mode_entry(
            &self.mem,
            entry,
            ZERO_PAGE_ADDR,
            BOOT_STACK_POINTER - u64::from(id) * 0x400,
        )
        .expect("long-mode tables");
        vcpu.apply_boot_state(&boot).expect("boot state");
        vcpu
    }
}

/// A 64-bit interrupt gate to `handler` through the boot code segment.
pub fn idt_gate(handler: u64) -> [u8; 16] {
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&CODE_SELECTOR.to_le_bytes());
    gate[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
    gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    gate
}

/// Assembles `bitness`-bit code for address `ip`.
pub fn asm(
    bitness: u32,
    ip: u64,
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bitness).expect("assembler");
    build(&mut a).expect("assemble");
    a.assemble(ip).expect("encode")
}

/// An exit, copied out of the vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Out(u16, Vec<u8>),
    In(u16, usize),
    MmioWrite(u64, Vec<u8>),
    MmioRead(u64, usize),
    Halt,
    Shutdown,
    Interrupted,
    Internal(String),
    Other(String),
}

/// Runs to the next exit; reads (port and MMIO) are answered with `fill`'s bytes.
pub fn run(vcpu: &mut dyn Vcpu, fill: u64) -> Exit {
    let fill = fill.to_le_bytes();
    match vcpu.run().expect("KVM_RUN") {
        VcpuExit::IoOut { port, data } => Exit::Out(port, data.to_vec()),
        VcpuExit::IoIn { port, data } => {
            let n = data.len().min(8);
            data[..n].copy_from_slice(&fill[..n]);
            Exit::In(port, data.len())
        }
        VcpuExit::MmioWrite { addr, data } => Exit::MmioWrite(addr, data.to_vec()),
        VcpuExit::MmioRead { addr, data } => {
            let n = data.len().min(8);
            data[..n].copy_from_slice(&fill[..n]);
            Exit::MmioRead(addr, data.len())
        }
        VcpuExit::Halt => Exit::Halt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::Interrupted => Exit::Interrupted,
        VcpuExit::InternalError(e) => Exit::Internal(e.to_string()),
        other => Exit::Other(format!("{other:?}")),
    }
}

/// `out` data as a little-endian u32.
pub fn out_u32(exit: &Exit) -> Option<(u16, u32)> {
    match exit {
        Exit::Out(port, data) if data.len() == 4 => Some((
            *port,
            u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
        )),
        _ => None,
    }
}
