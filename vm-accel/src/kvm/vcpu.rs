//! `KvmVcpu`: the `KVM_RUN` loop, register access and boot state.

use super::arch;
use super::exit::{decode, exit_name, Fixup, InternalErrorData};
use super::kick::KickState;
use super::vm::VmShared;
use crate::boot::BootState;
use crate::debug::{GuestDebug, X86_64FpuRegisters};
use crate::error::AccelError;
use crate::exit::{InternalError, VcpuExit};
use crate::kick::KickHandle;
use crate::regs::{GuestArch, Registers, X86_64SpecialRegisters};
use crate::state::VcpuState;
use crate::vcpu::{Vcpu, VcpuId};
use kvm_bindings::KVM_EXIT_INTERNAL_ERROR;
use kvm_ioctls::VcpuFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

vmm_sys_util::ioctl_io_nr!(KVM_RUN, kvm_bindings::KVMIO, 0x80);

/// How one pass of the run loop ended, before the exit is decoded.
enum Outcome {
    Exit,
    Interrupted,
    Internal(InternalError),
}

/// A KVM vCPU.
#[derive(Debug)]
pub struct KvmVcpu {
    fd: VcpuFd,
    id: VcpuId,
    vm: Arc<VmShared>,
    kick: Arc<KickState>,
    run_size: usize,
}

impl KvmVcpu {
    pub(super) fn new(vm: Arc<VmShared>, id: VcpuId) -> Result<Self, AccelError> {
        super::kick::install_handler()
            .map_err(|e| AccelError::hypervisor("installing the vCPU kick signal handler", e))?;
        let fd = vm
            .fd
            .create_vcpu(u64::from(id.0))
            .map_err(|e| AccelError::hypervisor("KVM_CREATE_VCPU", e))?;
        arch::init_vcpu(&vm, &fd, id)?;
        tracing::debug!(vcpu = id.0, "KVM vCPU created");
        Ok(Self {
            run_size: vm.run_size,
            fd,
            id,
            vm,
            kick: Arc::new(KickState::default()),
        })
    }

    /// The vCPU file descriptor, for KVM features this crate does not wrap.
    pub fn vcpu_fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// The VM this vCPU belongs to.
    // Only the x86 backend's instruction fallback reaches the VM from a vCPU.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn shared(&self) -> &VmShared {
        &self.vm
    }

    fn immediate_exit_field(&mut self) -> *mut u8 {
        std::ptr::addr_of_mut!(self.fd.get_kvm_run().immediate_exit)
    }

    /// Lets KVM finish the exit the VMM last handled: a port or MMIO read (and
    /// string I/O) completes only on the next `KVM_RUN`, so the registers are
    /// not final before it. With `immediate_exit` set, `KVM_RUN` completes it
    /// and returns `EINTR` without running guest code.
    fn complete_pending_exit(&mut self) -> Result<(), AccelError> {
        let field = self.immediate_exit_field();
        // SAFETY: `field` is the immediate_exit byte of this vCPU's kvm_run mapping,
        // alive while `self` is; outside `run()` no signal handler points at it.
        let flag = unsafe { AtomicU8::from_ptr(field) };
        flag.store(1, Ordering::SeqCst);
        // SAFETY: KVM_RUN takes no argument; `fd` is a vCPU fd whose kvm_run is mapped.
        let ret = unsafe { vmm_sys_util::ioctl::ioctl(&self.fd, KVM_RUN()) };
        let err = std::io::Error::last_os_error();
        flag.store(0, Ordering::SeqCst);
        let op = "KVM_RUN (completing the last exit before saving)";
        match ret {
            // The guest ran and its exit would be lost: the state is not the one asked for.
            0.. => Err(AccelError::hypervisor(
                op,
                std::io::Error::other("KVM ran the guest although immediate_exit was set"),
            )),
            _ if err.raw_os_error() == Some(libc::EINTR) => Ok(()),
            _ => Err(AccelError::hypervisor(op, err)),
        }
    }

    /// `KVM_RUN` until an exit for the VMM, handling recoverable internal errors.
    fn enter_guest(&mut self) -> Result<Outcome, AccelError> {
        loop {
            // SAFETY: KVM_RUN takes no argument; `fd` is a vCPU fd whose kvm_run is mapped.
            let ret = unsafe { vmm_sys_util::ioctl::ioctl(&self.fd, KVM_RUN()) };
            if ret < 0 {
                let err = std::io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(libc::EINTR | libc::EAGAIN) => Ok(Outcome::Interrupted),
                    _ => Err(AccelError::hypervisor("KVM_RUN", err)),
                };
            }
            let run = self.fd.get_kvm_run();
            if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
                return Ok(Outcome::Exit);
            }
            let data = InternalErrorData::read(run);
            match arch::handle_internal_error(&self.vm, &self.fd, &data) {
                Fixup::Resume => {}
                Fixup::Report(error) => {
                    tracing::warn!(vcpu = self.id.0, %error, "KVM internal error");
                    return Ok(Outcome::Internal(error));
                }
            }
        }
    }
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> VcpuId {
        self.id
    }

    fn arch(&self) -> GuestArch {
        arch::GUEST_ARCH
    }

    #[inline]
    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
        let field = self.immediate_exit_field();
        let outcome = if self.kick.enter(field) {
            Ok(Outcome::Interrupted)
        } else {
            self.enter_guest()
        };
        self.kick.leave();
        match outcome? {
            Outcome::Exit => {
                let reason = self.fd.get_kvm_run().exit_reason;
                // Off unless `vm_exit=trace` is enabled: then the registers are read.
                tracing::trace!(
                    target: crate::exit::EXIT_TRACE_TARGET,
                    vcpu = self.id.0,
                    pc = arch::registers(&self.fd).map(|r| r.pc()).unwrap_or_default(),
                    exit = exit_name(reason),
                );
                decode(self.fd.get_kvm_run(), self.run_size)
            }
            Outcome::Interrupted => {
                // SAFETY: `field` is the immediate_exit byte of this vCPU's kvm_run
                // mapping, alive while `self` is; the signal handler, the only other
                // writer, runs on this thread and no longer points at it (`leave`).
                unsafe { AtomicU8::from_ptr(field) }.store(0, Ordering::SeqCst);
                self.kick.clear();
                Ok(VcpuExit::Interrupted)
            }
            Outcome::Internal(error) => Ok(VcpuExit::InternalError(error)),
        }
    }

    fn kick_handle(&self) -> KickHandle {
        KickHandle::new(self.kick.clone())
    }

    fn registers(&self) -> Result<Registers, AccelError> {
        arch::registers(&self.fd)
    }

    fn set_registers(&mut self, regs: &Registers) -> Result<(), AccelError> {
        if regs.arch() != arch::GUEST_ARCH {
            return Err(AccelError::ArchMismatch {
                what: "registers",
                given: regs.arch(),
                vcpu: arch::GUEST_ARCH,
            });
        }
        arch::set_registers(&self.fd, regs)
    }

    fn x86_64_special_registers(&self) -> Result<X86_64SpecialRegisters, AccelError> {
        arch::special_registers(&self.fd)
    }

    fn set_x86_64_special_registers(
        &mut self,
        sregs: &X86_64SpecialRegisters,
    ) -> Result<(), AccelError> {
        arch::set_special_registers(&self.fd, sregs)
    }

    fn apply_boot_state(&mut self, boot: &BootState) -> Result<(), AccelError> {
        if boot.arch() != arch::GUEST_ARCH {
            return Err(AccelError::ArchMismatch {
                what: "boot state",
                given: boot.arch(),
                vcpu: arch::GUEST_ARCH,
            });
        }
        arch::apply_boot_state(&self.vm, &self.fd, self.id, boot)
    }

    fn save_state(&mut self) -> Result<VcpuState, AccelError> {
        self.complete_pending_exit()?;
        arch::save_vcpu_state(&self.vm, &self.fd)
    }

    fn restore_state(&mut self, state: &VcpuState) -> Result<(), AccelError> {
        arch::restore_vcpu_state(&self.vm, &self.fd, state)
    }

    fn x86_64_fpu_registers(&mut self) -> Result<X86_64FpuRegisters, AccelError> {
        arch::fpu_registers(&self.fd)
    }

    fn debug_read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, AccelError> {
        arch::read_memory(&self.vm, &self.fd, addr, buf)
    }

    fn debug_write_memory(&mut self, addr: u64, data: &[u8]) -> Result<usize, AccelError> {
        arch::write_memory(&self.vm, &self.fd, addr, data)
    }

    fn set_guest_debug(&mut self, debug: &GuestDebug) -> Result<(), AccelError> {
        arch::set_guest_debug(&self.fd, debug)
    }
}
