//! The state vCPU loops and controllers share: pause/resume/stop requests,
//! who is parked, why the VM stopped, and per-vCPU exit counters.
//!
//! The vCPU hot path reads one atomic flag ([`ExecutorControl::should_yield`])
//! and bumps its own cache-line-padded counter; the mutex and condition variable
//! are only touched when a request is pending.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use vm_accel::{KickHandle, Vcpu};

use super::StopReason;

/// Lifecycle of the vCPUs as the executor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// vCPUs are running guest code.
    Running,
    /// A pause was requested and some vCPUs have not parked yet.
    Pausing,
    /// Every vCPU is parked.
    Paused,
    /// A stop was requested and some vCPU loops have not ended yet.
    Stopping,
    /// Every vCPU loop has ended.
    Stopped,
}

/// An error from a control request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The VM has stopped (or is stopping); it cannot be paused or resumed.
    #[error("the VM is stopped ({0})")]
    Stopped(StopReason),
    /// A request that needs every vCPU parked by a pause came while some were not.
    #[error("the VM is not paused")]
    NotPaused,
}

/// Work a controller runs on each parked vCPU, on that vCPU's own thread.
type ParkedJob = Arc<dyn Fn(usize, &mut dyn Vcpu) + Send + Sync>;

struct Visit {
    job: ParkedJob,
    done: Vec<bool>,
}

impl std::fmt::Debug for Visit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visit")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    pause_requested: bool,
    stop_reason: Option<StopReason>,
    /// vCPUs parked because of a pause request.
    paused: usize,
    /// vCPUs parked because they halted with nothing to wake them.
    halted: usize,
    /// vCPU loops that have ended.
    exited: usize,
    /// Work for the parked vCPUs (snapshot state capture).
    visit: Option<Visit>,
}

/// A counter on its own cache line, so vCPU threads never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct PaddedCounter(AtomicU64);

#[derive(Debug)]
struct Shared {
    /// Set whenever a pause or stop is pending: the only thing the hot path reads.
    yield_flag: AtomicBool,
    inner: Mutex<Inner>,
    changed: Condvar,
    kicks: Vec<KickHandle>,
    exit_counts: Vec<PaddedCounter>,
}

/// A cloneable handle that pauses, resumes and stops a VM's vCPUs from any thread.
#[derive(Debug, Clone)]
pub struct ExecutorControl(Arc<Shared>);

/// How often a pending pause or stop re-kicks vCPUs that have not reacted yet.
const REKICK_INTERVAL: Duration = Duration::from_millis(20);

impl ExecutorControl {
    pub(super) fn new(kicks: Vec<KickHandle>) -> Self {
        let exit_counts = kicks.iter().map(|_| PaddedCounter::default()).collect();
        Self(Arc::new(Shared {
            yield_flag: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            kicks,
            exit_counts,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A vCPU thread that panicked while holding the lock leaves consistent
        // counters behind (every update is a single assignment), so keep going.
        self.0
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn kick_all(&self) {
        for kick in &self.0.kicks {
            kick.kick();
        }
    }

    /// Number of vCPUs under control.
    pub fn vcpu_count(&self) -> usize {
        self.0.kicks.len()
    }

    /// Exits handled so far, per vCPU (interrupted runs are not counted).
    pub fn exit_counts(&self) -> Vec<u64> {
        self.0
            .exit_counts
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .collect()
    }

    /// Why the VM stopped, once a stop was requested.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop_reason.clone()
    }

    /// The current lifecycle state.
    pub fn state(&self) -> RunState {
        let inner = self.lock();
        let n = self.vcpu_count();
        if inner.exited == n {
            RunState::Stopped
        } else if inner.stop_reason.is_some() {
            RunState::Stopping
        } else if inner.pause_requested {
            if inner.paused + inner.halted + inner.exited == n {
                RunState::Paused
            } else {
                RunState::Pausing
            }
        } else {
            RunState::Running
        }
    }

    /// Pauses every vCPU and returns once all of them are parked.
    pub fn pause(&self) -> Result<(), ControlError> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.stop_reason {
            return Err(ControlError::Stopped(reason.clone()));
        }
        inner.pause_requested = true;
        self.0.yield_flag.store(true, Ordering::Release);
        let n = self.vcpu_count();
        loop {
            if inner.paused + inner.halted + inner.exited == n {
                return Ok(());
            }
            if let Some(reason) = &inner.stop_reason {
                return Err(ControlError::Stopped(reason.clone()));
            }
            self.kick_all();
            inner = self
                .0
                .changed
                .wait_timeout(inner, REKICK_INTERVAL)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Runs `job` on every vCPU while the VM is paused, each on its own vCPU
    /// thread (a vCPU is only ever touched by the thread that runs it), and
    /// returns the results in vCPU order. Fails unless every vCPU is parked
    /// by a pause.
    pub fn with_parked_vcpus<T: Send + 'static>(
        &self,
        job: impl Fn(&mut dyn Vcpu) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, ControlError> {
        let n = self.vcpu_count();
        let results: Arc<Mutex<Vec<Option<T>>>> =
            Arc::new(Mutex::new((0..n).map(|_| None).collect()));
        let sink = results.clone();
        let job: ParkedJob = Arc::new(move |index, vcpu| {
            let value = job(vcpu);
            if let Some(slot) = sink
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(index)
            {
                *slot = Some(value);
            }
        });
        let mut inner = self.lock();
        if let Some(reason) = &inner.stop_reason {
            return Err(ControlError::Stopped(reason.clone()));
        }
        if !inner.pause_requested || inner.paused != n || inner.visit.is_some() {
            return Err(ControlError::NotPaused);
        }
        inner.visit = Some(Visit {
            job,
            done: vec![false; n],
        });
        self.0.changed.notify_all();
        loop {
            if inner
                .visit
                .as_ref()
                .is_some_and(|v| v.done.iter().all(|d| *d))
            {
                inner.visit = None;
                break;
            }
            if let Some(reason) = inner.stop_reason.clone() {
                inner.visit = None;
                return Err(ControlError::Stopped(reason));
            }
            inner = self
                .0
                .changed
                .wait_timeout(inner, REKICK_INTERVAL)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(inner);
        let mut results = results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(results.drain(..).flatten().collect())
    }

    /// Asks every vCPU to park at its next exit (or, before the vCPUs run,
    /// before its first instruction) without waiting or kicking: callable
    /// from a vCPU thread handling an exit, so that vCPU stops right after
    /// it; a later [`Self::pause`] kicks the others and waits until every
    /// vCPU is parked. No effect once the VM is stopping.
    pub fn request_pause(&self) {
        let mut inner = self.lock();
        if inner.stop_reason.is_some() {
            return;
        }
        inner.pause_requested = true;
        self.0.yield_flag.store(true, Ordering::Release);
    }

    /// Resumes paused vCPUs.
    pub fn resume(&self) -> Result<(), ControlError> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.stop_reason {
            return Err(ControlError::Stopped(reason.clone()));
        }
        inner.pause_requested = false;
        self.0.yield_flag.store(false, Ordering::Release);
        self.0.changed.notify_all();
        Ok(())
    }

    /// Asks every vCPU to stop; [`super::MultiVcpuExecutor::wait`] returns once they have.
    pub fn stop(&self) {
        self.stop_with(StopReason::Requested);
    }

    /// Stops the VM for `reason` (the first reason given wins): what
    /// [`super::MultiVcpuExecutor::wait`] then returns.
    pub fn stop_with(&self, reason: StopReason) {
        let mut inner = self.lock();
        if inner.stop_reason.is_none() {
            inner.stop_reason = Some(reason);
        }
        self.0.yield_flag.store(true, Ordering::Release);
        self.0.changed.notify_all();
        drop(inner);
        self.kick_all();
    }

    /// Waits until every vCPU loop has ended, re-kicking stragglers.
    pub fn wait_stopped(&self) {
        let mut inner = self.lock();
        while inner.exited < self.vcpu_count() {
            if inner.stop_reason.is_some() {
                self.kick_all();
            }
            inner = self
                .0
                .changed
                .wait_timeout(inner, REKICK_INTERVAL)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Hot path: whether the vCPU loop must check for a pause or stop.
    #[inline]
    pub(super) fn should_yield(&self) -> bool {
        self.0.yield_flag.load(Ordering::Relaxed)
    }

    #[inline]
    pub(super) fn count_exit(&self, index: usize) {
        if let Some(counter) = self.0.exit_counts.get(index) {
            counter.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Parks a vCPU while a pause is pending, running any work a controller
    /// leaves for it ([`Self::with_parked_vcpus`]). Returns false if it must stop.
    pub(super) fn park(&self, index: usize, vcpu: &mut dyn Vcpu) -> bool {
        let mut inner = self.lock();
        if inner.stop_reason.is_some() {
            return false;
        }
        if !inner.pause_requested {
            return true;
        }
        inner.paused += 1;
        self.0.changed.notify_all();
        while inner.pause_requested && inner.stop_reason.is_none() {
            let pending = inner
                .visit
                .as_ref()
                .filter(|v| v.done.get(index) == Some(&false))
                .map(|v| v.job.clone());
            if let Some(job) = pending {
                drop(inner);
                job(index, vcpu);
                inner = self.lock();
                if let Some(done) = inner.visit.as_mut().and_then(|v| v.done.get_mut(index)) {
                    *done = true;
                }
                self.0.changed.notify_all();
                continue;
            }
            inner = self
                .0
                .changed
                .wait(inner)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        inner.paused -= 1;
        inner.stop_reason.is_none()
    }

    /// Parks a halted vCPU until the VM stops. Returns false (always, once woken).
    pub(super) fn park_halted(&self, _index: usize) -> bool {
        let mut inner = self.lock();
        inner.halted += 1;
        self.0.changed.notify_all();
        while inner.stop_reason.is_none() {
            inner = self
                .0
                .changed
                .wait(inner)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        inner.halted -= 1;
        false
    }

    pub(super) fn vcpu_exited(&self, _index: usize) {
        let mut inner = self.lock();
        inner.exited += 1;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_accel::{AccelError, BootState, GuestArch, KickFlag, Registers, VcpuExit, VcpuId};

    /// A vCPU that only parks (the loop that would run it is the test).
    #[derive(Debug)]
    struct Parked(u32);

    impl Vcpu for Parked {
        fn id(&self) -> VcpuId {
            VcpuId(self.0)
        }
        fn arch(&self) -> GuestArch {
            GuestArch::Riscv64
        }
        fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
            Ok(VcpuExit::Interrupted)
        }
        fn kick_handle(&self) -> KickHandle {
            KickHandle::new(Arc::new(KickFlag::default()))
        }
        fn registers(&self) -> Result<Registers, AccelError> {
            Err(AccelError::Unsupported {
                what: "registers",
                backend: "test",
            })
        }
        fn set_registers(&mut self, _regs: &Registers) -> Result<(), AccelError> {
            Ok(())
        }
        fn apply_boot_state(&mut self, _boot: &BootState) -> Result<(), AccelError> {
            Ok(())
        }
    }

    fn control(n: usize) -> (ExecutorControl, Vec<Arc<KickFlag>>) {
        let flags: Vec<_> = (0..n).map(|_| Arc::new(KickFlag::default())).collect();
        let kicks = flags.iter().map(|f| KickHandle::new(f.clone())).collect();
        (ExecutorControl::new(kicks), flags)
    }

    #[test]
    fn first_stop_reason_wins_and_kicks_everyone() {
        let (c, flags) = control(2);
        c.stop_with(StopReason::GuestShutdown);
        c.stop();
        assert_eq!(c.stop_reason(), Some(StopReason::GuestShutdown));
        assert!(flags.iter().all(|f| f.is_pending()));
        assert!(c.should_yield());
        assert_eq!(
            c.pause(),
            Err(ControlError::Stopped(StopReason::GuestShutdown))
        );
    }

    #[test]
    fn pause_waits_for_every_vcpu_to_park() {
        let (c, _flags) = control(2);
        let parked: Vec<_> = (0..2)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    while !c.should_yield() {
                        std::thread::yield_now();
                    }
                    c.park(i, &mut Parked(i as u32))
                })
            })
            .collect();
        assert_eq!(
            c.with_parked_vcpus(|v| v.id()).unwrap_err(),
            ControlError::NotPaused
        );
        c.pause().unwrap();
        assert_eq!(c.state(), RunState::Paused);
        // Work runs on each parked vCPU, results in vCPU order.
        let ids = c.with_parked_vcpus(|v| v.id().0).unwrap();
        assert_eq!(ids, [0, 1]);
        c.resume().unwrap();
        for t in parked {
            assert!(t.join().unwrap(), "resumed vCPUs keep running");
        }
        assert_eq!(c.state(), RunState::Running);
    }

    #[test]
    fn counters_are_per_vcpu() {
        let (c, _) = control(3);
        c.count_exit(0);
        c.count_exit(2);
        c.count_exit(2);
        c.count_exit(7); // out of range: ignored, no panic
        assert_eq!(c.exit_counts(), [1, 0, 2]);
    }
}
