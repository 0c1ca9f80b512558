//! Embedding the VMM: build a VM from a configuration, capture its serial
//! console, watch it from another thread, and learn why it stopped.
//!
//! ```sh
//! cargo run --example embed -p vm-service            # the built-in guest, 2 vCPUs
//! cargo run --example embed -p vm-service -- vmlinux # your own kernel
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use vm_core::config::VmConfig;
use vm_service::{ExecutorKind, VmmBuilder};

/// Collects the guest's console output.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = VmConfig {
        vcpus: 2,
        memory_mib: 64,
        kernel: std::env::args_os().nth(1).map(Into::into),
        cmdline: "console=ttyS0 reboot=k panic=1".into(),
        ..VmConfig::default()
    };
    let console = Console::default();
    let vmm = VmmBuilder::new(config)
        .executor(ExecutorKind::Async)
        .serial_output(Box::new(console.clone()))
        .build()?;
    println!("built: {:?}", vmm.info());

    let running = vmm.start()?;
    let control = running.control();
    let reason = running.wait();
    println!(
        "stopped: {reason}; exits per vCPU: {:?}",
        control.exit_counts()
    );
    let text = console.0.lock().map_err(|_| "console poisoned")?.clone();
    println!("--- guest console ---\n{}", String::from_utf8_lossy(&text));
    Ok(())
}
