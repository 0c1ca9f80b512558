//! The `gdbstub` target: the VM's vCPUs run in turn on this thread, and the
//! protocol is served between runs (see the module above for the model).

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use gdbstub::arch::Arch;
use gdbstub::common::{Signal, Tid};
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{
    SingleRegisterAccess, SingleRegisterAccessOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::riscv::reg::id::RiscvRegId;
use gdbstub_arch::riscv::reg::RiscvCoreRegs;
use vm_accel::{DebugRegister, GuestArch, GuestDebug, Registers, Vcpu, VcpuExit};

use super::{GdbError, GdbListener};
use crate::executor::{ExitAction, ExitHandler};
use crate::{StopReason, Vmm};

/// riscv64 as GDB sees it: `gdbstub_arch`'s registers and numbering, with a
/// target description that adds the FPU, the CSRs and the privilege level
/// (`gdbstub_arch`'s own lists only x0-x31 and pc).
pub(super) enum Riscv64 {}

impl Arch for Riscv64 {
    type Usize = u64;
    type Registers = RiscvCoreRegs<u64>;
    type BreakpointKind = usize;
    type RegId = RiscvRegId<u64>;

    fn target_description_xml() -> Option<&'static str> {
        Some(include_str!("riscv64.xml"))
    }
}

type Conn = Box<dyn ConnectionExt<Error = io::Error>>;

/// What a vCPU does when the debugger resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Stop,
    Continue,
    Step,
}

/// The vCPUs and what the debugger asked of them.
struct Machine {
    vcpus: Vec<Box<dyn Vcpu>>,
    handler: Arc<dyn ExitHandler>,
    /// Per vCPU; `None` is the default action (continue), which scheduler
    /// locking turns into `Stop`.
    actions: Vec<Option<Action>>,
    sw: BTreeSet<u64>,
    hw: BTreeSet<u64>,
    /// Round-robin position.
    next: usize,
    /// Set once the VM has stopped.
    stopped: Option<StopReason>,
}

/// What one `run()` of one vCPU led to.
enum Ran {
    Nothing,
    Debug { index: usize, pc: u64 },
    Ended,
}

impl Machine {
    fn tid(index: usize) -> Option<Tid> {
        Tid::new(index + 1)
    }

    fn index(&self, tid: Tid) -> Result<usize, TargetError<String>> {
        let i = tid.get() - 1;
        if i < self.vcpus.len() {
            Ok(i)
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn action(&self, i: usize) -> Action {
        self.actions[i].unwrap_or(Action::Continue)
    }

    /// Runs vCPU `i` once and hands a non-debug exit to the device handler.
    fn run_one(&mut self, i: usize) -> Ran {
        let vcpu = &mut self.vcpus[i];
        let id = vcpu.id();
        let action = match vcpu.run() {
            Ok(VcpuExit::Interrupted) => return Ran::Nothing,
            Ok(VcpuExit::Debug { pc }) => return Ran::Debug { index: i, pc },
            Ok(exit) => self.handler.handle(id, exit),
            Err(e) => ExitAction::Stop(StopReason::Failed {
                vcpu: Some(id),
                message: e.to_string(),
            }),
        };
        match action {
            // A software engine idles inside `run()`; nothing to park here.
            ExitAction::Continue | ExitAction::Park => Ran::Nothing,
            ExitAction::Stop(reason) => {
                tracing::info!(vcpu = id.0, %reason, "vCPU stops the VM");
                self.stopped = Some(reason);
                Ran::Ended
            }
        }
    }

    /// Runs the next vCPU the debugger let run (every vCPU when detached).
    fn run_next(&mut self, debugging: bool) -> Ran {
        let n = self.vcpus.len();
        for _ in 0..n {
            let i = self.next % n;
            self.next = (i + 1) % n;
            if !debugging || self.action(i) != Action::Stop {
                return self.run_one(i);
            }
        }
        Ran::Nothing
    }

    /// Applies breakpoints and per-vCPU single-step before a resume.
    fn arm(&mut self) -> Result<(), String> {
        let breakpoints: Vec<u64> = self.sw.union(&self.hw).copied().collect();
        for i in 0..self.vcpus.len() {
            let debug = GuestDebug {
                breakpoints: breakpoints.clone(),
                single_step: self.action(i) == Action::Step,
            };
            self.vcpus[i]
                .set_guest_debug(&debug)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Forgets the debugger: no breakpoints, every vCPU runs.
    fn detach(&mut self) {
        self.sw.clear();
        self.hw.clear();
        self.actions.fill(None);
        for vcpu in &mut self.vcpus {
            if let Err(e) = vcpu.set_guest_debug(&GuestDebug::default()) {
                tracing::warn!(vcpu = vcpu.id().0, error = %e, "cannot clear guest debugging");
            }
        }
    }

    fn stop_reason(&self, index: usize, pc: u64) -> MultiThreadStopReason<u64> {
        let Some(tid) = Self::tid(index) else {
            return MultiThreadStopReason::Signal(Signal::SIGTRAP);
        };
        if self.action(index) == Action::Step {
            MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGTRAP,
            }
        } else if self.hw.contains(&pc) && !self.sw.contains(&pc) {
            MultiThreadStopReason::HwBreak(tid)
        } else {
            MultiThreadStopReason::SwBreak(tid)
        }
    }

    fn exit_code(&self) -> u8 {
        match &self.stopped {
            Some(r) if r.is_clean() => 0,
            _ => 1,
        }
    }
}

fn fatal(e: impl std::fmt::Display) -> TargetError<String> {
    TargetError::Fatal(e.to_string())
}

impl Target for Machine {
    type Arch = Riscv64;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for Machine {
    fn read_registers(
        &mut self,
        regs: &mut RiscvCoreRegs<u64>,
        tid: Tid,
    ) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        match self.vcpus[i].registers().map_err(fatal)? {
            Registers::Riscv64(r) => {
                regs.x = r.x;
                regs.pc = r.pc;
                Ok(())
            }
            _ => Err(TargetError::NonFatal),
        }
    }

    fn write_registers(&mut self, regs: &RiscvCoreRegs<u64>, tid: Tid) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        let vcpu = &mut self.vcpus[i];
        let Registers::Riscv64(mut r) = vcpu.registers().map_err(fatal)? else {
            return Err(TargetError::NonFatal);
        };
        r.x = regs.x;
        r.pc = regs.pc;
        vcpu.set_registers(&Registers::Riscv64(r))
            .map_err(|_| TargetError::NonFatal)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let i = self.index(tid)?;
        match self.vcpus[i].debug_read_memory(start, data) {
            Ok(0) | Err(_) => Err(TargetError::NonFatal),
            Ok(n) => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        match self.vcpus[i].debug_write_memory(start, data) {
            Ok(n) if n == data.len() => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }

    fn list_active_threads(&mut self, register: &mut dyn FnMut(Tid)) -> Result<(), String> {
        for tid in (0..self.vcpus.len()).filter_map(Self::tid) {
            register(tid);
        }
        Ok(())
    }

    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<Tid> for Machine {
    fn read_register(
        &mut self,
        tid: Tid,
        reg: RiscvRegId<u64>,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let i = self.index(tid)?;
        let vcpu = &mut self.vcpus[i];
        let Registers::Riscv64(regs) = vcpu.registers().map_err(fatal)? else {
            return Err(TargetError::NonFatal);
        };
        let value = match reg {
            RiscvRegId::Gpr(n) => *regs.x.get(usize::from(n)).ok_or(TargetError::NonFatal)?,
            RiscvRegId::Pc => regs.pc,
            RiscvRegId::Fpr(n) => vcpu
                .debug_register(DebugRegister::Riscv64Fpr(n))
                .map_err(|_| TargetError::NonFatal)?,
            RiscvRegId::Csr(n) => vcpu
                .debug_register(DebugRegister::Riscv64Csr(n))
                .map_err(|_| TargetError::NonFatal)?,
            RiscvRegId::Priv => {
                let level = regs.mode as u8;
                let out = buf.first_mut().ok_or(TargetError::NonFatal)?;
                *out = level;
                return Ok(1);
            }
            _ => return Err(TargetError::NonFatal),
        };
        let bytes = value.to_le_bytes();
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn write_register(
        &mut self,
        tid: Tid,
        reg: RiscvRegId<u64>,
        val: &[u8],
    ) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        let mut raw = [0u8; 8];
        let n = val.len().min(8);
        raw[..n].copy_from_slice(&val[..n]);
        let value = u64::from_le_bytes(raw);
        let vcpu = &mut self.vcpus[i];
        let result = match reg {
            RiscvRegId::Gpr(_) | RiscvRegId::Pc => {
                let Registers::Riscv64(mut r) = vcpu.registers().map_err(fatal)? else {
                    return Err(TargetError::NonFatal);
                };
                match reg {
                    RiscvRegId::Gpr(n) => {
                        *r.x.get_mut(usize::from(n)).ok_or(TargetError::NonFatal)? = value;
                    }
                    _ => r.pc = value,
                }
                vcpu.set_registers(&Registers::Riscv64(r))
            }
            RiscvRegId::Fpr(n) => vcpu.set_debug_register(DebugRegister::Riscv64Fpr(n), value),
            RiscvRegId::Csr(n) => vcpu.set_debug_register(DebugRegister::Riscv64Csr(n), value),
            _ => return Err(TargetError::NonFatal),
        };
        result.map_err(|_| TargetError::NonFatal)
    }
}

impl MultiThreadResume for Machine {
    fn resume(&mut self) -> Result<(), String> {
        self.arm()
    }

    fn clear_resume_actions(&mut self) -> Result<(), String> {
        self.actions.fill(None);
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        signal: Option<Signal>,
    ) -> Result<(), String> {
        if signal.is_some() {
            return Err("signals cannot be delivered to a vCPU".into());
        }
        let i = self.index(tid).map_err(|_| format!("no thread {tid}"))?;
        self.actions[i] = Some(Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for Machine {
    fn set_resume_action_step(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), String> {
        if signal.is_some() {
            return Err("signals cannot be delivered to a vCPU".into());
        }
        let i = self.index(tid).map_err(|_| format!("no thread {tid}"))?;
        self.actions[i] = Some(Action::Step);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for Machine {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), String> {
        for a in &mut self.actions {
            a.get_or_insert(Action::Stop);
        }
        Ok(())
    }
}

impl Breakpoints for Machine {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Machine {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.sw.insert(addr);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.sw.remove(&addr))
    }
}

impl HwBreakpoint for Machine {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.hw.insert(addr);
        Ok(true)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hw.remove(&addr))
    }
}

/// Runs the vCPUs between packets; a byte from GDB (e.g. Ctrl-C) stops them.
enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = Machine;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut Machine,
        conn: &mut Conn,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<String, io::Error>,
    > {
        loop {
            if conn
                .peek()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?
                .is_some()
            {
                let byte = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(byte));
            }
            match target.run_next(true) {
                Ran::Nothing => {}
                Ran::Debug { index, pc } => {
                    return Ok(run_blocking::Event::TargetStopped(
                        target.stop_reason(index, pc),
                    ))
                }
                Ran::Ended => {
                    return Ok(run_blocking::Event::TargetStopped(
                        MultiThreadStopReason::Exited(target.exit_code()),
                    ))
                }
            }
        }
    }

    fn on_interrupt(target: &mut Machine) -> Result<Option<Self::StopReason>, String> {
        // The vCPUs only run inside `wait_for_stop_reason`: they are stopped.
        let _ = target;
        Ok(Some(MultiThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// Accepts one debugger; `None` when none is waiting (non-blocking listener).
fn accept(listener: &GdbListener) -> io::Result<Option<Conn>> {
    let conn: Conn = match listener {
        GdbListener::Unix(l, _) => match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                Box::new(s)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        },
        GdbListener::Tcp(l) => match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    Ok(Some(conn))
}

fn set_nonblocking(listener: &GdbListener, on: bool) -> io::Result<()> {
    match listener {
        GdbListener::Unix(l, _) => l.set_nonblocking(on),
        GdbListener::Tcp(l) => l.set_nonblocking(on),
    }
}

/// One debugger session, the vCPUs stopped at its start. Returns once the
/// debugger is gone; the VM's stop reason is in `machine.stopped` if it ended.
fn session(machine: &mut Machine, conn: Conn) {
    tracing::info!("gdb attached");
    machine.actions.fill(Some(Action::Stop));
    match GdbStub::new(conn).run_blocking::<EventLoop>(machine) {
        Ok(DisconnectReason::Disconnect) => tracing::info!("gdb detached; the guest runs on"),
        Ok(DisconnectReason::Kill) => {
            tracing::info!("gdb killed the VM");
            machine.stopped.get_or_insert(StopReason::Requested);
        }
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "gdb session ended by an error; the guest runs on");
        }
    }
    machine.detach();
}

pub(super) fn run(vmm: Vmm, listener: GdbListener, wait: bool) -> Result<StopReason, GdbError> {
    let parts = vmm.into_parts();
    if parts.info.arch != GuestArch::Riscv64 {
        return Err(GdbError::UnsupportedArch(parts.info.arch));
    }
    let n = parts.vcpus.len();
    let mut machine = Machine {
        vcpus: parts.vcpus,
        handler: parts.handler,
        actions: vec![None; n],
        sw: BTreeSet::new(),
        hw: BTreeSet::new(),
        next: 0,
        stopped: None,
    };
    // Refuse early, before a debugger connects, if the engine cannot debug.
    for vcpu in &mut machine.vcpus {
        vcpu.set_guest_debug(&GuestDebug::default())?;
    }
    let listen_err = |source| GdbError::Listen {
        addr: "the gdb socket".into(),
        source,
    };
    if wait {
        set_nonblocking(&listener, false).map_err(listen_err)?;
        if let Some(conn) = accept(&listener).map_err(listen_err)? {
            session(&mut machine, conn);
        }
    }
    set_nonblocking(&listener, true).map_err(listen_err)?;
    let reason = loop {
        if let Some(reason) = machine.stopped.take() {
            break reason;
        }
        match accept(&listener) {
            Ok(Some(conn)) => {
                session(&mut machine, conn);
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "accepting a gdb connection failed"),
        }
        // An ended VM is picked up at the top of the loop.
        let _ = machine.run_next(false);
    };
    // The vCPUs go before the VM and memory they use.
    drop(machine);
    drop(parts.keep_alive);
    // Removes a Unix socket.
    drop(listener);
    Ok(reason)
}
