//! The `gdbstub` target: the VM's vCPUs run in turn on this thread, and the
//! protocol is served between runs (see the module above for the model). The
//! target is generic over the guest architecture ([`DebugArch`]): registers
//! differ (`riscv64.rs`, `x86_64.rs`), the rest is shared.

mod riscv64;
mod x86_64;

use std::collections::BTreeSet;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind as GdbWatchKind,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use vm_accel::{
    DebugStop, GuestArch, GuestDebug, KickHandle, Vcpu, VcpuExit, WatchKind, Watchpoint,
};

use super::{GdbControl, GdbError, GdbListener};
use crate::executor::{ExitAction, ExitHandler};
use crate::{StopReason, Vmm};

/// This build has a stub.
pub(super) const BUILT: bool = true;

/// A guest architecture the stub serves: `gdbstub`'s description of it and
/// how its registers map onto a [`Vcpu`]. `None` answers an error to GDB.
pub(super) trait DebugArch: Arch<Usize = u64, BreakpointKind = usize> {
    /// The guests this serves.
    const GUEST: GuestArch;
    /// Breakpoints the engine holds at once (`None`: no limit); GDB is told
    /// a breakpoint cannot be inserted beyond it.
    const BREAKPOINT_SLOTS: Option<usize>;
    /// Whether the engine stops on watchpoints.
    const WATCHPOINTS: bool;

    /// Reads every register GDB's `g` packet carries.
    fn read_registers(vcpu: &mut dyn Vcpu, regs: &mut Self::Registers) -> Option<()>;
    /// Writes them (`G`).
    fn write_registers(vcpu: &mut dyn Vcpu, regs: &Self::Registers) -> Option<()>;
    /// Reads one register into `buf` (`p`); returns the bytes written.
    fn read_register(vcpu: &mut dyn Vcpu, reg: Self::RegId, buf: &mut [u8]) -> Option<usize>;
    /// Writes one register (`P`) from its little-endian bytes.
    fn write_register(vcpu: &mut dyn Vcpu, reg: Self::RegId, val: &[u8]) -> Option<()>;
}

/// Copies `value` (little-endian) into `buf` as far as it fits.
fn put_le(buf: &mut [u8], value: &[u8]) -> usize {
    let n = value.len().min(buf.len());
    buf[..n].copy_from_slice(&value[..n]);
    n
}

/// Up to eight little-endian bytes as a number.
fn get_le(val: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    let n = val.len().min(8);
    raw[..n].copy_from_slice(&val[..n]);
    u64::from_le_bytes(raw)
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
struct Machine<A> {
    vcpus: Vec<Box<dyn Vcpu>>,
    handler: Arc<dyn ExitHandler>,
    /// Per vCPU; `None` is the default action (continue), which scheduler
    /// locking turns into `Stop`.
    actions: Vec<Option<Action>>,
    sw: BTreeSet<u64>,
    hw: BTreeSet<u64>,
    watch: Vec<Watchpoint>,
    /// Round-robin position.
    next: usize,
    /// Set once the VM has stopped.
    stopped: Option<StopReason>,
    /// Another thread's pause and stop requests.
    control: GdbControl,
    arch: PhantomData<A>,
}

/// What one `run()` of one vCPU led to.
enum Ran {
    Nothing,
    Debug {
        index: usize,
        pc: u64,
        stop: DebugStop,
    },
    Ended,
}

impl<A: DebugArch> Machine<A> {
    fn new(vcpus: Vec<Box<dyn Vcpu>>, handler: Arc<dyn ExitHandler>, control: GdbControl) -> Self {
        let n = vcpus.len();
        Self {
            vcpus,
            handler,
            actions: vec![None; n],
            sw: BTreeSet::new(),
            hw: BTreeSet::new(),
            watch: Vec::new(),
            next: 0,
            stopped: None,
            control,
            arch: PhantomData,
        }
    }

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
            Ok(VcpuExit::Debug { pc, stop }) => return Ran::Debug { index: i, pc, stop },
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
                watchpoints: self.watch.clone(),
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
        self.watch.clear();
        self.actions.fill(None);
        for vcpu in &mut self.vcpus {
            if let Err(e) = vcpu.set_guest_debug(&GuestDebug::default()) {
                tracing::warn!(vcpu = vcpu.id().0, error = %e, "cannot clear guest debugging");
            }
        }
    }

    fn stop_reason(&self, index: usize, pc: u64, stop: DebugStop) -> MultiThreadStopReason<u64> {
        let Some(tid) = Self::tid(index) else {
            return MultiThreadStopReason::Signal(Signal::SIGTRAP);
        };
        if let DebugStop::Watch { addr, kind } = stop {
            let kind = match kind {
                WatchKind::Write => GdbWatchKind::Write,
                WatchKind::Read => GdbWatchKind::Read,
                WatchKind::Access => GdbWatchKind::ReadWrite,
            };
            MultiThreadStopReason::Watch { tid, kind, addr }
        } else if self.action(index) == Action::Step {
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

    /// Whether one more breakpoint at `addr` fits the engine's slots.
    fn breakpoint_fits(&self, addr: u64) -> bool {
        match A::BREAKPOINT_SLOTS {
            None => true,
            Some(slots) => {
                self.sw.contains(&addr)
                    || self.hw.contains(&addr)
                    || self.sw.union(&self.hw).count() < slots
            }
        }
    }

    fn exit_code(&self) -> u8 {
        match &self.stopped {
            Some(r) if r.is_clean() => 0,
            _ => 1,
        }
    }
}

impl<A: DebugArch> Target for Machine<A> {
    type Arch = A;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl<A: DebugArch> MultiThreadBase for Machine<A> {
    fn read_registers(&mut self, regs: &mut A::Registers, tid: Tid) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        A::read_registers(self.vcpus[i].as_mut(), regs).ok_or(TargetError::NonFatal)
    }

    fn write_registers(&mut self, regs: &A::Registers, tid: Tid) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        A::write_registers(self.vcpus[i].as_mut(), regs).ok_or(TargetError::NonFatal)
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

impl<A: DebugArch> SingleRegisterAccess<Tid> for Machine<A> {
    fn read_register(
        &mut self,
        tid: Tid,
        reg: A::RegId,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let i = self.index(tid)?;
        A::read_register(self.vcpus[i].as_mut(), reg, buf).ok_or(TargetError::NonFatal)
    }

    fn write_register(&mut self, tid: Tid, reg: A::RegId, val: &[u8]) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        A::write_register(self.vcpus[i].as_mut(), reg, val).ok_or(TargetError::NonFatal)
    }
}

impl<A: DebugArch> MultiThreadResume for Machine<A> {
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

impl<A: DebugArch> MultiThreadSingleStep for Machine<A> {
    fn set_resume_action_step(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), String> {
        if signal.is_some() {
            return Err("signals cannot be delivered to a vCPU".into());
        }
        let i = self.index(tid).map_err(|_| format!("no thread {tid}"))?;
        self.actions[i] = Some(Action::Step);
        Ok(())
    }
}

impl<A: DebugArch> MultiThreadSchedulerLocking for Machine<A> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), String> {
        for a in &mut self.actions {
            a.get_or_insert(Action::Stop);
        }
        Ok(())
    }
}

impl<A: DebugArch> Breakpoints for Machine<A> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl<A: DebugArch> SwBreakpoint for Machine<A> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if !self.breakpoint_fits(addr) {
            return Ok(false);
        }
        self.sw.insert(addr);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.sw.remove(&addr))
    }
}

impl<A: DebugArch> HwBreakpoint for Machine<A> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if !self.breakpoint_fits(addr) {
            return Ok(false);
        }
        self.hw.insert(addr);
        Ok(true)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hw.remove(&addr))
    }
}

fn watchpoint(addr: u64, len: u64, kind: GdbWatchKind) -> Watchpoint {
    let kind = match kind {
        GdbWatchKind::Write => WatchKind::Write,
        GdbWatchKind::Read => WatchKind::Read,
        GdbWatchKind::ReadWrite => WatchKind::Access,
    };
    Watchpoint { addr, len, kind }
}

impl<A: DebugArch> HwWatchpoint for Machine<A> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        // An engine without watchpoints refuses them here, before GDB resumes.
        if !A::WATCHPOINTS {
            return Ok(false);
        }
        let w = watchpoint(addr, len, kind);
        if !self.watch.contains(&w) {
            self.watch.push(w);
        }
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let w = watchpoint(addr, len, kind);
        let before = self.watch.len();
        self.watch.retain(|x| *x != w);
        Ok(self.watch.len() != before)
    }
}

/// Runs the vCPUs between packets; a byte from GDB (e.g. Ctrl-C) stops them.
struct EventLoop<A>(PhantomData<A>);

impl<A: DebugArch> run_blocking::BlockingEventLoop for EventLoop<A> {
    type Target = Machine<A>;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut Machine<A>,
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
            if let Some(reason) = target.control.stop_requested() {
                target.stopped.get_or_insert(reason);
                return Ok(run_blocking::Event::TargetStopped(
                    MultiThreadStopReason::Exited(target.exit_code()),
                ));
            }
            if target.control.held() {
                target.control.wait(TICK);
                continue;
            }
            match target.run_next(true) {
                Ran::Nothing => {}
                Ran::Debug { index, pc, stop } => {
                    return Ok(run_blocking::Event::TargetStopped(
                        target.stop_reason(index, pc, stop),
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

    fn on_interrupt(target: &mut Machine<A>) -> Result<Option<Self::StopReason>, String> {
        // The vCPUs only run inside `wait_for_stop_reason`: they are stopped.
        let _ = target;
        Ok(Some(MultiThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// A debugger's connection whose reads give up every [`TICK`] to look at
/// the [`GdbControl`]: a stop requested while the debugger holds the vCPUs
/// (the stub waits for its next packet) ends the session.
struct Watched {
    inner: Conn,
    control: GdbControl,
}

impl gdbstub::conn::Connection for Watched {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.inner.write(byte)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn on_session_start(&mut self) -> io::Result<()> {
        self.inner.on_session_start()
    }
}

impl ConnectionExt for Watched {
    fn read(&mut self) -> io::Result<u8> {
        loop {
            if self.control.stop_requested().is_some() {
                return Err(io::Error::other("the VM is stopping"));
            }
            // The debugger holds the vCPUs: a pause has nothing more to wait for.
            let _ = self.control.held();
            match self.inner.read() {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                other => return other,
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        self.inner.peek()
    }
}

/// Accepts one debugger; `None` when none is waiting (non-blocking listener).
fn accept(listener: &GdbListener, control: &GdbControl) -> io::Result<Option<Conn>> {
    let conn: Conn = match listener {
        GdbListener::Unix(l, _) => match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))?;
                Box::new(s)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        },
        GdbListener::Tcp(l) => match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    Ok(Some(Box::new(Watched {
        inner: conn,
        control: control.clone(),
    })))
}

fn set_nonblocking(listener: &GdbListener, on: bool) -> io::Result<()> {
    match listener {
        GdbListener::Unix(l, _) => l.set_nonblocking(on),
        GdbListener::Tcp(l) => l.set_nonblocking(on),
    }
}

/// One debugger session, the vCPUs stopped at its start. Returns once the
/// debugger is gone; the VM's stop reason is in `machine.stopped` if it ended.
fn session<A: DebugArch>(machine: &mut Machine<A>, conn: Conn) {
    tracing::info!("gdb attached");
    machine.actions.fill(Some(Action::Stop));
    match GdbStub::new(conn).run_blocking::<EventLoop<A>>(machine) {
        Ok(DisconnectReason::Disconnect) => tracing::info!("gdb detached; the guest runs on"),
        Ok(DisconnectReason::Kill) => {
            tracing::info!("gdb killed the VM");
            machine.stopped.get_or_insert(StopReason::Requested);
        }
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {}
        Err(e) if machine.control.stop_requested().is_some() => {
            tracing::info!(error = %e, "gdb session cut off: the VM stops");
        }
        Err(e) => {
            tracing::warn!(error = %e, "gdb session ended by an error; the guest runs on");
        }
    }
    machine.detach();
}

/// Kicks every vCPU out of `run()` now and then, so that a guest that runs
/// without exits (on KVM) still lets the stub read GDB's Ctrl-C and accept a
/// debugger; stops when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often [`Ticker`] kicks.
const TICK: Duration = Duration::from_millis(50);

impl Ticker {
    fn start(kicks: Vec<KickHandle>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("gdb-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(TICK);
                    kicks.iter().for_each(KickHandle::kick);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn run(
    vmm: Vmm,
    listener: GdbListener,
    wait: bool,
    control: &GdbControl,
) -> Result<StopReason, GdbError> {
    match vmm.info().arch {
        GuestArch::Riscv64 => run_as::<riscv64::Riscv64>(vmm, listener, wait, control),
        GuestArch::X86_64 => run_as::<x86_64::X86_64>(vmm, listener, wait, control),
        other @ GuestArch::Arm64 => Err(GdbError::UnsupportedArch(other)),
    }
}

fn run_as<A: DebugArch>(
    vmm: Vmm,
    listener: GdbListener,
    wait: bool,
    control: &GdbControl,
) -> Result<StopReason, GdbError> {
    let parts = vmm.into_parts();
    debug_assert_eq!(parts.info.arch, A::GUEST);
    let mut machine = Machine::<A>::new(parts.vcpus, parts.handler, control.clone());
    // Refuse early, before a debugger connects, if the engine cannot debug.
    for vcpu in &mut machine.vcpus {
        vcpu.set_guest_debug(&GuestDebug::default())?;
    }
    let listen_err = |source| GdbError::Listen {
        addr: "the gdb socket".into(),
        source,
    };
    let kicks = machine.vcpus.iter().map(|v| v.kick_handle()).collect();
    let ticker = Ticker::start(kicks).map_err(listen_err)?;
    set_nonblocking(&listener, true).map_err(listen_err)?;
    // With `wait`, the vCPUs stay put until a debugger comes (or a stop).
    while wait && control.stop_requested().is_none() {
        if let Some(conn) = accept(&listener, control).map_err(listen_err)? {
            session(&mut machine, conn);
            break;
        }
        let _ = control.held();
        control.wait(TICK);
    }
    let reason = loop {
        if let Some(reason) = machine.stopped.take() {
            break reason;
        }
        if let Some(reason) = control.stop_requested() {
            break reason;
        }
        if control.held() {
            control.wait(TICK);
            continue;
        }
        match accept(&listener, control) {
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
    drop(ticker);
    // The vCPUs go before the VM and memory they use.
    drop(machine);
    drop(parts.keep_alive);
    // Removes a Unix socket.
    drop(listener);
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::super::check_supported;
    use super::GuestArch;

    #[test]
    fn a_build_with_the_stub_serves_riscv64_and_x86_64() {
        assert!(check_supported(GuestArch::Riscv64).is_ok());
        assert!(check_supported(GuestArch::X86_64).is_ok());
        assert!(check_supported(GuestArch::Arm64).is_err());
    }
}
