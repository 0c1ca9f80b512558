//! Running a bare-metal test program on one hart, without a VMM: load an
//! RV64 ELF at its physical addresses
//! ([`crate::platform::riscv64::program`], which `vm-service run` uses too),
//! start hart 0 in M-mode at the entry point, and stop when the program
//! writes the `tohost` symbol (riscv-tests convention: 1 = pass, otherwise
//! `value >> 1` is the failing test number) or the instruction budget runs
//! out. UART writes are collected as console output; the report counts
//! instructions and time, for tests and benchmarks.

use std::time::{Duration, Instant};

use vm_accel::{BootState, GuestAddress, GuestMemoryMmap, SystemEvent, Vcpu, VcpuId, Vm};

use super::hart::{steps_charged, HartExit};
use super::vm::{platform_devices, RiscvVm};
use super::Tier;
use crate::platform::riscv64::layout;
pub use crate::platform::riscv64::program::{load, parse, ElfError, ElfProgram, Segment};

/// How a test program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `tohost = 1`.
    Pass,
    /// `tohost = (n << 1) | 1`: test `n` failed.
    Fail(u64),
    /// The program powered off through the syscon or SBI.
    PowerEvent(SystemEvent),
    /// The budget ran out first.
    Timeout,
    /// The engine could not continue.
    Fatal(String),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Instructions retired.
    pub instructions: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Bytes written to the UART.
    pub console: Vec<u8>,
}

/// Loads `bytes` into a fresh machine with `mem_size` bytes of RAM at the
/// platform's RAM base and runs it for at most `budget` instructions, hot
/// code translated where the host has a code generator.
pub fn run(bytes: &[u8], mem_size: u64, budget: u64) -> Result<Report, ElfError> {
    run_with(bytes, mem_size, budget, Tier::default())
}

/// [`run`] in the execution tier `tier`.
pub fn run_with(bytes: &[u8], mem_size: u64, budget: u64, tier: Tier) -> Result<Report, ElfError> {
    let machine = |e: &dyn std::fmt::Display| ElfError::Machine(e.to_string());
    let size = usize::try_from(mem_size).map_err(|e| machine(&e))?;
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(layout::RAM_BASE), size)])
        .map_err(|e| machine(&e))?;
    let program = load(&mem, bytes)?;
    let vm = RiscvVm::with_devices(1, platform_devices()).map_err(|e| machine(&e))?;
    vm.map_memory(&mem).map_err(|e| machine(&e))?;
    let mut vcpu = vm.create_riscv_vcpu(VcpuId(0)).map_err(|e| machine(&e))?;
    vcpu.apply_boot_state(&BootState::Riscv64Bare {
        entry: GuestAddress(program.entry),
        tohost: program.tohost.map(GuestAddress),
    })
    .map_err(|e| machine(&e))?;
    let hart = vcpu.hart_mut();
    hart.set_tier(tier);
    let started = Instant::now();
    let mut console = Vec::new();
    let uart = layout::UART.start.0;
    // Counted as `steps_charged` says, so a program that traps on every
    // instruction still ends.
    let mut spent = 0u64;
    let outcome = loop {
        if spent >= budget {
            break Outcome::Timeout;
        }
        let slice = (budget - spent).min(super::vcpu::RUN_BUDGET);
        let retired = hart.instret();
        let exit = hart.run(slice);
        spent += steps_charged(&exit, hart.instret().wrapping_sub(retired), slice);
        match exit {
            HartExit::Interrupted => {}
            HartExit::ToHost(1) => break Outcome::Pass,
            HartExit::ToHost(v) => break Outcome::Fail(v >> 1),
            HartExit::MmioWrite { addr, len } => {
                if addr == uart && len == 1 {
                    console.push(hart.mmio_data()[0]);
                }
            }
            HartExit::MmioRead { addr, len } => {
                // A 16550 that is always ready to transmit; everything else reads zero.
                let value = if addr == uart + 5 { 0x60 } else { 0 };
                let data = hart.mmio_data();
                data.fill(0);
                data[..len.min(8)].fill(0);
                data[0] = value;
            }
            HartExit::System(event) => break Outcome::PowerEvent(event),
            HartExit::Fatal(msg) => break Outcome::Fatal(msg),
            // No debugger is attached to a program run here.
            HartExit::Debug => break Outcome::Fatal("stopped for a debugger".into()),
        }
    };
    Ok(Report {
        outcome,
        instructions: hart.instret(),
        elapsed: started.elapsed(),
        console,
    })
}
