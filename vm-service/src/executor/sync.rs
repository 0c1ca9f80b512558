//! The `Sync` strategy: one OS thread per vCPU, blocking in `Vcpu::run()`.

use super::{ExecutorStrategy, VcpuLoop};

/// One named OS thread per vCPU.
#[derive(Debug)]
pub(super) struct ThreadPerVcpu;

impl ExecutorStrategy for ThreadPerVcpu {
    fn spawn(self, loops: Vec<VcpuLoop>) -> std::io::Result<Box<dyn FnOnce() + Send>> {
        let mut threads = Vec::with_capacity(loops.len());
        for vcpu_loop in loops {
            let control = vcpu_loop.control.clone();
            let name = format!("vcpu{}", vcpu_loop.vcpu.id().0);
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || vcpu_loop.run())
            {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    // Threads already started must not outlive the failure.
                    control.stop();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Box::new(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a vCPU thread panicked");
                }
            }
        }))
    }
}
