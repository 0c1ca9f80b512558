//! Executor strategies: how a VM's vCPUs are given host threads.
//!
//! Every vCPU runs the same loop ([`VcpuLoop`]): `Vcpu::run()`, hand the exit
//! to an [`ExitHandler`], repeat until the handler or a controller asks to
//! stop. The strategy decides where the loops run:
//!
//! - [`ExecutorKind::Sync`]: one OS thread per vCPU, blocking in `run()`.
//! - [`ExecutorKind::Async`]: a tokio runtime per VM; hardware vCPUs run on
//!   its blocking pool (they block inside the hypervisor), and a supervisor
//!   task on the runtime turns an abnormally ended vCPU task into a VM stop.
//!   Every vCPU still gets a thread of that pool: cooperative time-slicing of
//!   many software vCPUs over few threads is not built yet.
//!
//! The kind is a runtime value (configuration or `--executor`), never a cargo
//! feature. [`MultiVcpuExecutor`] gives both the same controls: pause, resume
//! and stop really stop every vCPU (a kick forces `run()` to return at once)
//! and per-vCPU exit counts.

mod r#async;
mod control;
mod sync;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use vm_accel::{AccelError, Vcpu, VcpuExit, VcpuId};

pub use control::{ControlError, ExecutorControl, RunState};
/// Why the VM stopped: the one type shared with the daemon's protocol, the
/// journal and the process exit status.
pub use vm_core::StopReason;

/// Which executor strategy runs the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// One OS thread per vCPU.
    #[default]
    Sync,
    /// vCPU loops hosted by a tokio runtime.
    Async,
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sync => "sync",
            Self::Async => "async",
        })
    }
}

impl FromStr for ExecutorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            other => Err(format!(
                "unknown executor `{other}` (expected `sync` or `async`)"
            )),
        }
    }
}

/// What the executor does after an exit was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitAction {
    /// Run the vCPU again.
    Continue,
    /// This vCPU has nothing to do until an interrupt arrives (it halted with
    /// no in-kernel interrupt controller to wake it): park it until the VM is
    /// resumed or stopped.
    Park,
    /// Stop the whole VM.
    Stop(StopReason),
}

/// Turns vCPU exits into device accesses and lifecycle decisions. Called
/// concurrently from every vCPU's thread.
pub trait ExitHandler: Send + Sync {
    /// Handles one exit of `vcpu`. For `IoIn`/`MmioRead` the handler fills
    /// `data`; the access completes on the next `run()`.
    fn handle(&self, vcpu: VcpuId, exit: VcpuExit<'_>) -> ExitAction;
}

/// One vCPU with everything its loop needs.
struct VcpuLoop {
    vcpu: Box<dyn Vcpu>,
    index: usize,
    handler: Arc<dyn ExitHandler>,
    control: ExecutorControl,
    /// Guest PC samples, when the VM is profiled.
    samples: Option<crate::profile::Samples>,
}

impl VcpuLoop {
    /// Runs until the VM stops. The hot path is `run()`, one relaxed atomic
    /// load and a counter increment: no allocation, no shared lock.
    fn run(mut self) {
        let id = self.vcpu.id();
        let _span = tracing::info_span!("vcpu", vcpu = id.0).entered();
        // Before the first guest instruction: a sandboxed process stacks the
        // vCPU filter; a vCPU that cannot be confined does not run.
        let kind = if self.vcpu.translates() {
            crate::sandbox::ThreadKind::TranslatingVcpu
        } else {
            crate::sandbox::ThreadKind::Vcpu
        };
        if let Err(e) = crate::sandbox::enter_thread(kind) {
            tracing::error!(vcpu = id.0, error = %e, "vCPU thread not confined; stopping the VM");
            self.control.stop_with(StopReason::Failed {
                vcpu: Some(id),
                message: e.to_string(),
            });
            self.control.vcpu_exited(self.index);
            return;
        }
        loop {
            if self.control.should_yield() && !self.control.park(self.index, self.vcpu.as_mut()) {
                break;
            }
            if let Some(samples) = &mut self.samples {
                samples.take(self.vcpu.as_ref());
            }
            let action = match self.vcpu.run() {
                Ok(VcpuExit::Interrupted) => {
                    if let Some(samples) = &mut self.samples {
                        samples.interrupted();
                    }
                    continue;
                }
                Ok(exit) => {
                    self.control.count_exit(self.index);
                    let shutdown = matches!(exit, VcpuExit::Shutdown);
                    let action = self.handler.handle(id, exit);
                    if shutdown {
                        // Off the hot path: a shutdown ends the VM.
                        let state = vm_accel::state_summary(self.vcpu.as_ref());
                        tracing::error!(vcpu = id.0, %state, "vCPU shut down (triple fault)");
                    }
                    action
                }
                Err(e) => ExitAction::Stop(StopReason::Failed {
                    vcpu: Some(id),
                    message: describe_error(&e),
                }),
            };
            match action {
                ExitAction::Continue => {}
                ExitAction::Park => {
                    if !self.control.park_halted(self.index) {
                        break;
                    }
                }
                ExitAction::Stop(reason) => {
                    tracing::info!(vcpu = id.0, %reason, "vCPU stops the VM");
                    self.control.stop_with(reason);
                    break;
                }
            }
        }
        self.control.vcpu_exited(self.index);
    }
}

fn describe_error(e: &AccelError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// A strategy that hosts vCPU loops somewhere and can wait for them.
trait ExecutorStrategy {
    /// Starts every loop; returns a join function that waits for all of them.
    fn spawn(self, loops: Vec<VcpuLoop>) -> std::io::Result<Box<dyn FnOnce() + Send>>;
}

/// Runs the vCPUs of one VM with the chosen strategy and exposes its controls.
pub struct MultiVcpuExecutor {
    control: ExecutorControl,
    join: Option<Box<dyn FnOnce() + Send>>,
    kind: ExecutorKind,
}

impl fmt::Debug for MultiVcpuExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiVcpuExecutor")
            .field("kind", &self.kind)
            .field("state", &self.control.state())
            .finish_non_exhaustive()
    }
}

impl MultiVcpuExecutor {
    /// Starts running `vcpus` with the `kind` strategy; exits go to
    /// `handler`; with `profile`, each vCPU's PC is sampled before every `run()`.
    pub fn start(
        kind: ExecutorKind,
        vcpus: Vec<Box<dyn Vcpu>>,
        handler: &Arc<dyn ExitHandler>,
        profile: Option<&Arc<crate::profile::Profile>>,
    ) -> std::io::Result<Self> {
        Self::start_with(kind, vcpus, handler, profile, false)
    }

    /// [`Self::start`], with every vCPU parked before its first instruction
    /// when `paused` (resume through [`ExecutorControl::resume`]).
    pub fn start_with(
        kind: ExecutorKind,
        vcpus: Vec<Box<dyn Vcpu>>,
        handler: &Arc<dyn ExitHandler>,
        profile: Option<&Arc<crate::profile::Profile>>,
        paused: bool,
    ) -> std::io::Result<Self> {
        let kicks = vcpus.iter().map(|v| v.kick_handle()).collect();
        let control = ExecutorControl::new(kicks);
        if paused {
            control.request_pause();
        }
        let loops = vcpus
            .into_iter()
            .enumerate()
            .map(|(index, vcpu)| VcpuLoop {
                vcpu,
                index,
                handler: Arc::clone(handler),
                control: control.clone(),
                samples: profile.map(|p| crate::profile::Samples::new(Arc::clone(p))),
            })
            .collect();
        let join = match kind {
            ExecutorKind::Sync => sync::ThreadPerVcpu.spawn(loops)?,
            ExecutorKind::Async => r#async::TokioExecutor::new(control.clone())?.spawn(loops)?,
        };
        tracing::info!(executor = %kind, vcpus = control.vcpu_count(), "vCPUs started");
        Ok(Self {
            control,
            join: Some(join),
            kind,
        })
    }

    /// A handle other threads use to pause, resume or stop this VM.
    pub fn control(&self) -> ExecutorControl {
        self.control.clone()
    }

    /// The strategy in use.
    pub fn kind(&self) -> ExecutorKind {
        self.kind
    }

    /// Waits until every vCPU loop has ended and returns why the VM stopped.
    pub fn wait(mut self) -> StopReason {
        if let Some(join) = self.join.take() {
            join();
        }
        self.control.stop_reason().unwrap_or(StopReason::Requested)
    }
}

impl Drop for MultiVcpuExecutor {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            self.control.stop();
            join();
        }
    }
}
