//! `HvfVcpu`: lazy creation on the running thread, the `hv_vcpu_run` loop
//! with exit decoding (MMIO from data-abort syndromes, WFI, PSCI, trapped
//! system registers), register access and boot state.

use super::ffi;
use super::kick::HvfKick;
use super::vm::VmShared;
use crate::boot::BootState;
use crate::decode::arm64_syndrome::{
    self as esr, ec, sysreg, Arm64Reg, DataAbort, SysReg, WaitKind,
};
use crate::decode::hvf_abi::{exit_reason, reg, PSTATE_EL1H_MASKED};
use crate::error::AccelError;
use crate::exit::{InternalError, InternalErrorKind, VcpuExit};
use crate::kick::KickHandle;
use crate::psci::{self, PsciOutcome};
use crate::regs::{Arm64CoreRegisters, GuestArch, Registers};
use crate::thread_bound::ThreadBound;
use crate::vcpu::{Vcpu, VcpuId};
use crate::vm::IoEventAddress;
use std::sync::Arc;

/// `SCTLR_EL1` bits a CPU started by PSCI `CPU_ON` must have clear: MMU, D-cache, I-cache.
const SCTLR_MMU_CACHES: u64 = (1 << 0) | (1 << 2) | (1 << 12);

/// The exit-information pointer `hv_vcpu_create` returned.
#[derive(Debug)]
struct ExitInfo(*const ffi::hv_vcpu_exit_t);

// SAFETY: the pointer is only dereferenced through `Live`, which sits in a
// `ThreadBound` that hands it out to the owning (creating) thread only.
unsafe impl Send for ExitInfo {}

/// The hardware vCPU, once created.
#[derive(Debug)]
struct Live {
    handle: ffi::hv_vcpu_t,
    exit: ExitInfo,
}

/// A decoded exit, before it borrows the vCPU's data buffer.
enum Step {
    MmioRead { addr: u64, size: usize },
    MmioWrite { addr: u64, size: usize },
    Exit(VcpuExit<'static>),
}

/// A Hypervisor.framework vCPU (Apple silicon). Created in hardware by its
/// first `run()`, on the thread that runs it (see the module docs).
#[derive(Debug)]
pub struct HvfVcpu {
    id: VcpuId,
    vm: Arc<VmShared>,
    kick: Arc<HvfKick>,
    live: ThreadBound<Live>,
    /// Registers written before creation, applied when the vCPU is made.
    staged: Arm64CoreRegisters,
    /// A data abort whose load the VMM is completing.
    pending_read: Option<DataAbort>,
    data: [u8; 8],
}

/// Creates the hardware vCPU on the calling thread and loads its state.
fn create_live(
    id: VcpuId,
    staged: &Arm64CoreRegisters,
    kick: &HvfKick,
) -> Result<Live, AccelError> {
    let mut handle: ffi::hv_vcpu_t = 0;
    let mut exit: *const ffi::hv_vcpu_exit_t = std::ptr::null();
    // SAFETY: both out-pointers are valid; a null config is the default vCPU.
    super::check("hv_vcpu_create", unsafe {
        ffi::hv_vcpu_create(&raw mut handle, &raw mut exit, std::ptr::null_mut())
    })?;
    // The affinity fields carry the vCPU id (what PSCI CPU_ON targets);
    // the RES1 bit 31 is left to the hypervisor, as QEMU does.
    let loaded = set_sys(handle, sysreg::MPIDR_EL1, psci::mpidr_for(id.0))
        .and_then(|()| write_core(handle, staged));
    if let Err(e) = loaded {
        // SAFETY: created above on this thread and not published anywhere.
        unsafe { ffi::hv_vcpu_destroy(handle) };
        return Err(e);
    }
    kick.set_vcpu(Some(handle));
    tracing::debug!(vcpu = id.0, "HVF vCPU created on its running thread");
    Ok(Live {
        handle,
        exit: ExitInfo(exit),
    })
}

fn get_reg(vcpu: ffi::hv_vcpu_t, r: u32) -> Result<u64, AccelError> {
    let mut value = 0;
    // SAFETY: `value` is a valid out-pointer; the caller is the owning thread.
    super::check("hv_vcpu_get_reg", unsafe {
        ffi::hv_vcpu_get_reg(vcpu, r, &raw mut value)
    })?;
    Ok(value)
}

fn set_reg(vcpu: ffi::hv_vcpu_t, r: u32, value: u64) -> Result<(), AccelError> {
    // SAFETY: plain value argument; the caller is the owning thread.
    super::check("hv_vcpu_set_reg", unsafe {
        ffi::hv_vcpu_set_reg(vcpu, r, value)
    })
}

fn get_sys(vcpu: ffi::hv_vcpu_t, r: SysReg) -> Result<u64, AccelError> {
    let mut value = 0;
    // SAFETY: `value` is a valid out-pointer; the caller is the owning thread.
    super::check("hv_vcpu_get_sys_reg", unsafe {
        ffi::hv_vcpu_get_sys_reg(vcpu, r.hv_encoding(), &raw mut value)
    })?;
    Ok(value)
}

fn set_sys(vcpu: ffi::hv_vcpu_t, r: SysReg, value: u64) -> Result<(), AccelError> {
    // SAFETY: plain value argument; the caller is the owning thread.
    super::check("hv_vcpu_set_sys_reg", unsafe {
        ffi::hv_vcpu_set_sys_reg(vcpu, r.hv_encoding(), value)
    })
}

/// Reads general register `r` (the zero register reads 0).
fn get_x(vcpu: ffi::hv_vcpu_t, r: Arm64Reg) -> Result<u64, AccelError> {
    if r.is_zero() {
        Ok(0)
    } else {
        get_reg(vcpu, reg::X0 + u32::from(r.0))
    }
}

/// Writes general register `r` (writes to the zero register are discarded).
fn set_x(vcpu: ffi::hv_vcpu_t, r: Arm64Reg, value: u64) -> Result<(), AccelError> {
    if r.is_zero() {
        Ok(())
    } else {
        set_reg(vcpu, reg::X0 + u32::from(r.0), value)
    }
}

fn advance_pc(vcpu: ffi::hv_vcpu_t, by: u64) -> Result<(), AccelError> {
    let pc = get_reg(vcpu, reg::PC)?;
    set_reg(vcpu, reg::PC, pc.wrapping_add(by))
}

fn read_core(vcpu: ffi::hv_vcpu_t) -> Result<Arm64CoreRegisters, AccelError> {
    let mut r = Arm64CoreRegisters::default();
    for (n, x) in (0u32..).zip(r.x.iter_mut()) {
        *x = get_reg(vcpu, reg::X0 + n)?;
    }
    r.pc = get_reg(vcpu, reg::PC)?;
    r.pstate = get_reg(vcpu, reg::CPSR)?;
    r.sp = get_sys(vcpu, sysreg::SP_EL0)?;
    r.sp_el1 = get_sys(vcpu, sysreg::SP_EL1)?;
    r.elr_el1 = get_sys(vcpu, sysreg::ELR_EL1)?;
    Ok(r)
}

fn write_core(vcpu: ffi::hv_vcpu_t, r: &Arm64CoreRegisters) -> Result<(), AccelError> {
    for (n, x) in (0u32..).zip(r.x.iter()) {
        set_reg(vcpu, reg::X0 + n, *x)?;
    }
    set_reg(vcpu, reg::PC, r.pc)?;
    set_reg(vcpu, reg::CPSR, r.pstate)?;
    set_sys(vcpu, sysreg::SP_EL0, r.sp)?;
    set_sys(vcpu, sysreg::SP_EL1, r.sp_el1)?;
    set_sys(vcpu, sysreg::ELR_EL1, r.elr_el1)
}

impl HvfVcpu {
    pub(super) fn new(vm: Arc<VmShared>, id: VcpuId) -> Self {
        let kick = Arc::new(HvfKick::new(Arc::clone(&vm.psci)));
        Self {
            id,
            vm,
            kick,
            live: ThreadBound::default(),
            staged: Arm64CoreRegisters {
                pstate: PSTATE_EL1H_MASKED,
                ..Arm64CoreRegisters::default()
            },
            pending_read: None,
            data: [0; 8],
        }
    }

    /// The hardware vCPU handle, if created and owned by the calling thread.
    fn owned(&self) -> Result<Option<ffi::hv_vcpu_t>, AccelError> {
        self.live
            .get()
            .map(|live| live.map(|l| l.handle))
            .map_err(AccelError::from)
    }

    /// The hardware vCPU, creating it on this thread if it does not exist yet.
    fn live(&mut self) -> Result<ffi::hv_vcpu_t, AccelError> {
        let (id, staged, kick) = (self.id, self.staged, &self.kick);
        self.live
            .get_or_try_create(|| create_live(id, &staged, kick))
            .map(|live| live.handle)
    }

    /// Masks or unmasks the virtual timer (it is masked by HVF when it fires,
    /// with exit `HV_EXIT_REASON_VTIMER_ACTIVATED`). Call from the vCPU's thread.
    pub fn set_vtimer_masked(&mut self, masked: bool) -> Result<(), AccelError> {
        let vcpu = self.live()?;
        // SAFETY: plain arguments; `live` checked the owning thread.
        super::check("hv_vcpu_set_vtimer_mask", unsafe {
            ffi::hv_vcpu_set_vtimer_mask(vcpu, masked)
        })
    }

    /// Drives this vCPU's IRQ input (for a VMM that emulates the GIC itself,
    /// on macOS before 15). Call from the vCPU's thread before `run()`.
    pub fn set_pending_irq(&mut self, pending: bool) -> Result<(), AccelError> {
        let vcpu = self.live()?;
        // SAFETY: plain arguments; `live` checked the owning thread.
        super::check("hv_vcpu_set_pending_interrupt", unsafe {
            ffi::hv_vcpu_set_pending_interrupt(vcpu, crate::decode::hvf_abi::INTERRUPT_IRQ, pending)
        })
    }

    /// Completes an MMIO load the VMM has filled in.
    fn complete_pending(&mut self, vcpu: ffi::hv_vcpu_t) -> Result<(), AccelError> {
        if let Some(abort) = self.pending_read.take() {
            let size = usize::from(abort.size).min(8);
            set_x(vcpu, abort.reg, abort.load_value(&self.data[..size]))?;
            advance_pc(vcpu, abort.instruction_len)?;
        }
        Ok(())
    }

    /// Blocks while PSCI has this vCPU powered off; starts it on `CPU_ON`.
    /// Returns false if a kick interrupted the wait.
    fn wait_while_off(&self, vcpu: ffi::hv_vcpu_t) -> Result<bool, AccelError> {
        if !self.vm.psci.is_off(self.id.0) {
            return Ok(true);
        }
        let kick = Arc::clone(&self.kick);
        let Some(start) = self
            .vm
            .psci
            .wait_for_start(self.id.0, move || kick.is_pending())
        else {
            return Ok(!self.vm.psci.is_off(self.id.0));
        };
        set_reg(vcpu, reg::PC, start.entry)?;
        set_reg(vcpu, reg::X0, start.context)?;
        set_reg(vcpu, reg::CPSR, PSTATE_EL1H_MASKED)?;
        let sctlr = get_sys(vcpu, sysreg::SCTLR_EL1)?;
        set_sys(vcpu, sysreg::SCTLR_EL1, sctlr & !SCTLR_MMU_CACHES)?;
        tracing::debug!(
            vcpu = self.id.0,
            entry = start.entry,
            "started by PSCI CPU_ON"
        );
        Ok(true)
    }

    fn internal(vcpu: ffi::hv_vcpu_t, kind: InternalErrorKind, data: Vec<u64>) -> Step {
        Step::Exit(VcpuExit::InternalError(InternalError {
            kind,
            data,
            pc: get_reg(vcpu, reg::PC).ok(),
            pc_phys: None,
            instruction: None,
            detail: None,
        }))
    }

    /// Runs until an exit for the VMM.
    fn step(&mut self) -> Result<Step, AccelError> {
        let vcpu = self.live()?;
        self.complete_pending(vcpu)?;
        loop {
            if self.kick.take() || !self.wait_while_off(vcpu)? {
                self.kick.take();
                return Ok(Step::Exit(VcpuExit::Interrupted));
            }
            // SAFETY: `vcpu` is owned by this thread (checked by `live`).
            super::check("hv_vcpu_run", unsafe { ffi::hv_vcpu_run(vcpu) })?;
            let Some(live) = self.live.get().map_err(AccelError::from)? else {
                return Err(AccelError::MalformedExit {
                    backend: "HVF",
                    detail: "vCPU vanished during run".to_owned(),
                });
            };
            // SAFETY: the exit pointer from hv_vcpu_create stays valid for the
            // vCPU's lifetime and is written only by hv_vcpu_run on this thread.
            let exit = unsafe { *live.exit.0 };
            match exit.reason {
                exit_reason::CANCELED => {
                    self.kick.take();
                    return Ok(Step::Exit(VcpuExit::Interrupted));
                }
                exit_reason::EXCEPTION => {
                    if let Some(step) = self.exception(vcpu, &exit.exception)? {
                        return Ok(step);
                    }
                }
                exit_reason::VTIMER_ACTIVATED => {
                    return Ok(Step::Exit(VcpuExit::Other {
                        name: "HV_EXIT_REASON_VTIMER_ACTIVATED",
                        code: exit_reason::VTIMER_ACTIVATED,
                    }));
                }
                other => {
                    return Ok(Self::internal(
                        vcpu,
                        InternalErrorKind::UnexpectedExitReason,
                        vec![u64::from(other)],
                    ));
                }
            }
        }
    }

    /// Handles a synchronous exception; `None` means resume the guest.
    fn exception(
        &mut self,
        vcpu: ffi::hv_vcpu_t,
        info: &ffi::hv_vcpu_exit_exception_t,
    ) -> Result<Option<Step>, AccelError> {
        let syndrome = info.syndrome;
        let class = esr::exception_class(syndrome);
        match class {
            ec::DABT_LOWER => {
                let abort = match esr::decode_data_abort(syndrome) {
                    Ok(abort) => abort,
                    Err(error) => {
                        tracing::warn!(vcpu = self.id.0, %error, "undecodable data abort");
                        return Ok(Some(Self::internal(
                            vcpu,
                            InternalErrorKind::Emulation,
                            vec![syndrome, info.physical_address],
                        )));
                    }
                };
                let addr = info.physical_address;
                let size = usize::from(abort.size).min(8);
                if abort.write {
                    let value = get_x(vcpu, abort.reg)?;
                    self.data = abort.store_bytes(value);
                    advance_pc(vcpu, abort.instruction_len)?;
                    if self
                        .vm
                        .ioevents
                        .signal(IoEventAddress::Mmio(addr), &self.data[..size])
                    {
                        return Ok(None);
                    }
                    return Ok(Some(Step::MmioWrite { addr, size }));
                }
                self.data = [0; 8];
                self.pending_read = Some(abort);
                Ok(Some(Step::MmioRead { addr, size }))
            }
            ec::WFX => {
                advance_pc(vcpu, esr::instruction_length(syndrome))?;
                match esr::wait_kind(syndrome) {
                    WaitKind::Wfi => Ok(Some(Step::Exit(VcpuExit::Halt))),
                    WaitKind::Wfe => Ok(None),
                }
            }
            ec::HVC64 | ec::SMC64 => {
                // HVC returns past the instruction; a trapped SMC is reported at it.
                if class == ec::SMC64 {
                    advance_pc(vcpu, 4)?;
                }
                if esr::call_immediate(syndrome) != 0 {
                    set_reg(vcpu, reg::X0, psci::status::NOT_SUPPORTED as u64)?;
                    return Ok(None);
                }
                let mut x = [0u64; 4];
                for (n, slot) in (0u32..).zip(x.iter_mut()) {
                    *slot = get_reg(vcpu, reg::X0 + n)?;
                }
                match self.vm.psci.handle(self.id.0, psci::decode(x)) {
                    PsciOutcome::Return(value) => {
                        set_reg(vcpu, reg::X0, value)?;
                        Ok(None)
                    }
                    PsciOutcome::PowerOff => Ok(None),
                    PsciOutcome::Event(event) => Ok(Some(Step::Exit(VcpuExit::SystemEvent(event)))),
                }
            }
            ec::SYS64 => {
                if let Some(access) = esr::decode_sysreg_access(syndrome) {
                    tracing::debug!(
                        vcpu = self.id.0,
                        reg = %access.reg,
                        read = access.read,
                        "trapped system register access: reads as zero, writes ignored"
                    );
                    if access.read {
                        set_x(vcpu, access.rt, 0)?;
                    }
                }
                advance_pc(vcpu, 4)?;
                Ok(None)
            }
            ec::IABT_LOWER => Ok(Some(Step::Exit(VcpuExit::MemoryFault {
                gpa: info.physical_address,
                size: 4,
                flags: 0,
            }))),
            other => Ok(Some(Step::Exit(VcpuExit::Other {
                name: esr::exception_class_name(other),
                code: u32::from(other),
            }))),
        }
    }
}

impl Vcpu for HvfVcpu {
    fn id(&self) -> VcpuId {
        self.id
    }

    fn arch(&self) -> GuestArch {
        GuestArch::Arm64
    }

    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
        Ok(match self.step()? {
            Step::MmioRead { addr, size } => VcpuExit::MmioRead {
                addr,
                data: &mut self.data[..size],
            },
            Step::MmioWrite { addr, size } => VcpuExit::MmioWrite {
                addr,
                data: &self.data[..size],
            },
            Step::Exit(exit) => exit,
        })
    }

    fn kick_handle(&self) -> KickHandle {
        KickHandle::new(self.kick.clone())
    }

    fn registers(&self) -> Result<Registers, AccelError> {
        match self.owned()? {
            Some(vcpu) => read_core(vcpu).map(Registers::Arm64),
            None => Ok(Registers::Arm64(self.staged)),
        }
    }

    fn set_registers(&mut self, regs: &Registers) -> Result<(), AccelError> {
        let Registers::Arm64(core) = regs else {
            return Err(AccelError::ArchMismatch {
                what: "registers",
                given: regs.arch(),
                vcpu: GuestArch::Arm64,
            });
        };
        if let Some(vcpu) = self.owned()? {
            return write_core(vcpu, core);
        }
        self.staged = *core;
        Ok(())
    }

    fn apply_boot_state(&mut self, boot: &BootState) -> Result<(), AccelError> {
        match *boot {
            BootState::Arm64Linux { entry, fdt } => {
                let Registers::Arm64(mut core) = self.registers()? else {
                    return Err(AccelError::MalformedExit {
                        backend: "HVF",
                        detail: "registers of a non-arm64 vCPU".to_owned(),
                    });
                };
                core.pstate = PSTATE_EL1H_MASKED;
                core.pc = entry.0;
                core.x[0] = fdt.0;
                core.x[1..4].fill(0);
                self.set_registers(&Registers::Arm64(core))?;
                self.vm.psci.set_on(self.id.0, true);
                Ok(())
            }
            BootState::Secondary {
                arch: GuestArch::Arm64,
            } => {
                self.vm.psci.set_on(self.id.0, false);
                Ok(())
            }
            other => Err(AccelError::ArchMismatch {
                what: "boot state",
                given: other.arch(),
                vcpu: GuestArch::Arm64,
            }),
        }
    }
}

impl Drop for HvfVcpu {
    fn drop(&mut self) {
        let Some(taken) = self.live.take() else {
            return;
        };
        self.kick.set_vcpu(None);
        let live = match taken {
            Ok(live) => live,
            Err((_, error)) => {
                tracing::warn!(
                    vcpu = self.id.0,
                    %error,
                    "HVF vCPU dropped off its thread: it cannot be destroyed and leaks until the VM ends"
                );
                return;
            }
        };
        // SAFETY: the vCPU is owned by this thread and no kick can reach it now.
        let code = unsafe { ffi::hv_vcpu_destroy(live.handle) };
        if code != 0 {
            tracing::warn!(
                vcpu = self.id.0,
                error = %crate::decode::hvf_abi::describe_status(code),
                "hv_vcpu_destroy failed"
            );
        }
    }
}
