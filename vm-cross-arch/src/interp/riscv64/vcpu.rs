//! [`RiscvVcpu`]: a [`Hart`] behind `vm_accel::Vcpu`, so the VMM's executors
//! drive it like a KVM vCPU. `run()` returns after an instruction budget
//! (as `Interrupted`) or at once when kicked.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vm_accel::regs::{Riscv64CoreRegisters, RiscvPrivilege};
use vm_accel::{
    AccelError, BootState, DebugRegister, GuestArch, GuestDebug, InternalError, InternalErrorKind,
    KickHandle, Registers, SystemEvent, Vcpu, VcpuExit, VcpuId, VcpuState,
};

use super::csr::{envcfg, irq, mstatus};
use super::hart::{steps_charged, Hart, HartExit, MODE_M, MODE_S, MODE_U};
use super::machine::{hsm, HartSignal};

/// Instructions per `run()` call before it returns `Interrupted`.
pub const RUN_BUDGET: u64 = 2_000_000;

/// A software riscv64 vCPU.
#[derive(Debug)]
pub struct RiscvVcpu {
    hart: Hart,
    signal: Arc<HartSignal>,
    budget: u64,
    /// Steps this vCPU may run in all ([`RiscvVcpu::set_instruction_limit`]).
    limit: Option<u64>,
    /// Steps charged against `limit` so far.
    spent: u64,
}

impl RiscvVcpu {
    /// Wraps a hart.
    pub fn new(hart: Hart, signal: Arc<HartSignal>) -> Self {
        Self {
            hart,
            signal,
            budget: RUN_BUDGET,
            limit: None,
            spent: 0,
        }
    }

    /// Ends this vCPU's run once it has been given `limit` instruction steps
    /// in all: `run()` then fails with [`AccelError::InstructionLimit`]. A step
    /// that traps counts too, so a program that traps on every instruction
    /// still ends.
    pub fn set_instruction_limit(&mut self, limit: u64) {
        self.limit = Some(limit);
    }

    /// Sets the instruction budget of one `run()`.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget.max(1);
    }

    /// The hart (statistics, tests).
    pub fn hart(&self) -> &Hart {
        &self.hart
    }

    /// The hart, mutably.
    pub fn hart_mut(&mut self) -> &mut Hart {
        &mut self.hart
    }

    /// Puts the hart in S-mode with the built-in SBI as its firmware.
    fn enter_supervisor_with_sbi(&mut self) {
        let h = &mut self.hart;
        h.sbi = true;
        h.mode = MODE_S;
        // Everything S-mode can handle goes straight to it; ecalls from S reach the SBI.
        h.csr.medeleg = 0xb1ff;
        h.csr.mideleg = irq::S_ALL;
        h.csr.mcounteren = 0b111;
        // What OpenSBI grants S-mode on a hart with these extensions.
        h.csr.menvcfg = envcfg::CBIE | envcfg::CBCFE | envcfg::CBZE | envcfg::PBMTE | envcfg::STCE;
        h.csr.stimecmp = u64::MAX;
        h.csr.mstatus &= !(mstatus::MPRV | mstatus::SIE);
        h.csr.satp = 0;
        h.tlb.flush();
        h.fetch_invalidate();
    }
}

fn privilege(mode: u8) -> RiscvPrivilege {
    match mode {
        MODE_U => RiscvPrivilege::User,
        MODE_S => RiscvPrivilege::Supervisor,
        _ => RiscvPrivilege::Machine,
    }
}

/// The exit's name in per-exit trace events.
fn exit_name(exit: &HartExit) -> &'static str {
    match exit {
        HartExit::Interrupted => "interrupted",
        HartExit::MmioRead { .. } => "mmio-read",
        HartExit::MmioWrite { .. } => "mmio-write",
        HartExit::System(_) => "system-event",
        HartExit::ToHost(_) => "tohost",
        HartExit::Fatal(_) => "fatal",
        HartExit::Debug => "debug",
    }
}

impl Vcpu for RiscvVcpu {
    fn id(&self) -> VcpuId {
        VcpuId(self.hart.id())
    }

    fn arch(&self) -> GuestArch {
        GuestArch::Riscv64
    }

    fn translates(&self) -> bool {
        self.hart.jit.on()
    }

    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
        let slice = match self.limit {
            Some(limit) if self.spent >= limit => {
                return Err(AccelError::InstructionLimit { limit });
            }
            Some(limit) => self.budget.min(limit - self.spent),
            None => self.budget,
        };
        let retired = self.hart.instret();
        let exit = self.hart.run(slice);
        if self.limit.is_some() {
            let charged = steps_charged(&exit, self.hart.instret().wrapping_sub(retired), slice);
            self.spent = self.spent.saturating_add(charged);
        }
        if !matches!(exit, HartExit::Interrupted) {
            tracing::trace!(
                target: vm_accel::EXIT_TRACE_TARGET,
                vcpu = self.hart.id(),
                pc = self.hart.pc,
                exit = exit_name(&exit),
            );
        }
        Ok(match exit {
            HartExit::Interrupted => VcpuExit::Interrupted,
            HartExit::MmioRead { addr, len } => VcpuExit::MmioRead {
                addr,
                data: &mut self.hart.mmio_data()[..len],
            },
            HartExit::MmioWrite { addr, len } => VcpuExit::MmioWrite {
                addr,
                data: &self.hart.mmio_data()[..len],
            },
            HartExit::System(event) => VcpuExit::SystemEvent(event),
            HartExit::Debug => VcpuExit::Debug {
                pc: self.hart.pc,
                stop: self.hart.debug.last_stop,
            },
            HartExit::ToHost(1) => {
                tracing::info!(hart = self.hart.id(), "test program passed (tohost = 1)");
                VcpuExit::SystemEvent(SystemEvent::Shutdown)
            }
            HartExit::ToHost(value) => {
                tracing::warn!(
                    hart = self.hart.id(),
                    "test program failed: test {} (tohost = {value:#x})",
                    value >> 1
                );
                VcpuExit::SystemEvent(SystemEvent::Crash)
            }
            HartExit::Fatal(message) => {
                tracing::error!(hart = self.hart.id(), %message, "software vCPU stopped");
                VcpuExit::InternalError(InternalError {
                    kind: InternalErrorKind::UnexpectedExitReason,
                    data: vec![self.hart.csr.mcause, self.hart.csr.mtval],
                    pc: Some(self.hart.csr.mepc),
                    pc_phys: None,
                    instruction: None,
                    detail: None,
                })
            }
        })
    }

    fn kick_handle(&self) -> KickHandle {
        KickHandle::new(self.signal.clone())
    }

    fn registers(&self) -> Result<Registers, AccelError> {
        Ok(Registers::Riscv64(Riscv64CoreRegisters {
            pc: self.hart.pc,
            x: self.hart.x,
            mode: privilege(self.hart.mode),
        }))
    }

    fn set_registers(&mut self, regs: &Registers) -> Result<(), AccelError> {
        let Registers::Riscv64(r) = regs else {
            return Err(AccelError::ArchMismatch {
                what: "registers",
                given: regs.arch(),
                vcpu: GuestArch::Riscv64,
            });
        };
        let h = &mut self.hart;
        h.pc = r.pc;
        h.x = r.x;
        h.x[0] = 0;
        h.mode = match r.mode {
            RiscvPrivilege::User => MODE_U,
            RiscvPrivilege::Supervisor => MODE_S,
            RiscvPrivilege::Machine => MODE_M,
        };
        h.fetch_invalidate();
        Ok(())
    }

    fn apply_boot_state(&mut self, boot: &BootState) -> Result<(), AccelError> {
        match *boot {
            BootState::Riscv64 {
                entry,
                hart_id,
                fdt,
            } => {
                self.enter_supervisor_with_sbi();
                let h = &mut self.hart;
                h.pc = entry.0;
                h.x = [0; 32];
                h.x[10] = hart_id;
                h.x[11] = fdt.0;
                self.signal.hsm.store(hsm::STARTED, Ordering::Release);
                Ok(())
            }
            BootState::Riscv64Bare { entry, tohost } => {
                // As the hart comes out of reset: M-mode, no firmware.
                let h = &mut self.hart;
                h.sbi = false;
                h.mode = MODE_M;
                h.pc = entry.0;
                h.x = [0; 32];
                h.tohost = tohost.map(|a| a.0);
                h.fetch_invalidate();
                self.signal.hsm.store(hsm::STARTED, Ordering::Release);
                Ok(())
            }
            BootState::Secondary {
                arch: GuestArch::Riscv64,
            } => {
                self.enter_supervisor_with_sbi();
                self.signal.hsm.store(hsm::STOPPED, Ordering::Release);
                Ok(())
            }
            other => Err(AccelError::ArchMismatch {
                what: "boot state",
                given: other.arch(),
                vcpu: GuestArch::Riscv64,
            }),
        }
    }

    fn save_state(&mut self) -> Result<VcpuState, AccelError> {
        Ok(VcpuState::Riscv64Interp(Box::new(self.state())))
    }

    fn restore_state(&mut self, state: &VcpuState) -> Result<(), AccelError> {
        let VcpuState::Riscv64Interp(hart) = state else {
            return Err(AccelError::InvalidState {
                what: "the vCPU state",
                reason: format!(
                    "it was saved by {}, this is a riscv64 interpreter hart",
                    state.engine()
                ),
            });
        };
        self.restore(hart).map_err(|e| AccelError::InvalidState {
            what: "the riscv64 hart",
            reason: e.to_string(),
        })
    }

    fn debug_register(&mut self, reg: DebugRegister) -> Result<u64, AccelError> {
        self.hart
            .debug_register(reg)
            .ok_or(AccelError::Unsupported {
                what: "this register",
                backend: "riscv64 interpreter",
            })
    }

    fn set_debug_register(&mut self, reg: DebugRegister, value: u64) -> Result<(), AccelError> {
        if self.hart.set_debug_register(reg, value) {
            Ok(())
        } else {
            Err(AccelError::Unsupported {
                what: "writing this register",
                backend: "riscv64 interpreter",
            })
        }
    }

    fn debug_read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, AccelError> {
        Ok(self.hart.debug_read_memory(addr, buf))
    }

    fn debug_write_memory(&mut self, addr: u64, data: &[u8]) -> Result<usize, AccelError> {
        Ok(self.hart.debug_write_memory(addr, data))
    }

    fn set_guest_debug(&mut self, debug: &GuestDebug) -> Result<(), AccelError> {
        self.hart.set_guest_debug(debug);
        Ok(())
    }
}
