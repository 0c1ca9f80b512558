//! The `Async` strategy: vCPU loops hosted by a tokio runtime.
//!
//! A hardware vCPU blocks inside the hypervisor in `run()`, so its loop goes to
//! the runtime's blocking pool; the runtime's worker threads stay free for
//! async work: a supervisor task waits for the loops and turns a panicked loop
//! into a VM stop, so one broken vCPU never leaves the others running.

use tokio::runtime::{Builder, Runtime};

use super::control::ExecutorControl;
use super::{ExecutorStrategy, StopReason, VcpuLoop};

/// A dedicated tokio runtime for one VM's vCPUs.
#[derive(Debug)]
pub(super) struct TokioExecutor {
    runtime: Runtime,
    control: ExecutorControl,
}

impl TokioExecutor {
    pub(super) fn new(control: ExecutorControl) -> std::io::Result<Self> {
        let vcpus = control.vcpu_count();
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(vcpus.max(1))
            .thread_name("vmm-async")
            .enable_all()
            .build()?;
        Ok(Self { runtime, control })
    }
}

impl ExecutorStrategy for TokioExecutor {
    fn spawn(self, loops: Vec<VcpuLoop>) -> std::io::Result<Box<dyn FnOnce() + Send>> {
        let Self { runtime, control } = self;
        let handles: Vec<_> = loops
            .into_iter()
            .map(|vcpu_loop| {
                runtime.spawn_blocking(move || {
                    // The runtime hosts only this VM's vCPUs, so the name sticks.
                    crate::sandbox::name_current_thread(&format!("vcpu{}", vcpu_loop.vcpu.id().0));
                    vcpu_loop.run();
                })
            })
            .collect();
        let supervisor = runtime.spawn(async move {
            for handle in handles {
                if let Err(e) = handle.await {
                    control.stop_with(StopReason::Failed {
                        vcpu: None,
                        message: format!("a vCPU task ended abnormally: {e}"),
                    });
                }
            }
        });
        // The join closure owns the runtime, so it lives until every loop ended.
        Ok(Box::new(move || {
            let _ = runtime.block_on(supervisor);
        }))
    }
}
