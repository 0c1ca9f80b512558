//! The executor contract, run against both strategies with an in-process vCPU
//! that produces port-I/O exits as fast as it is run (no hypervisor needed).
//! The KVM-backed end-to-end tests live in `tests/run_guest.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_accel::{
    AccelError, BootState, GuestArch, KickFlag, KickHandle, Registers, Vcpu, VcpuExit, VcpuId,
};
use vm_service::executor::{
    ExecutorKind, ExitAction, ExitHandler, MultiVcpuExecutor, RunState, StopReason,
};

/// A vCPU whose guest writes its id to port 0x80 forever.
#[derive(Debug)]
struct PortWriter {
    id: VcpuId,
    kick: Arc<KickFlag>,
    byte: [u8; 1],
}

impl PortWriter {
    fn boxed(id: u32) -> Box<dyn Vcpu> {
        Box::new(Self {
            id: VcpuId(id),
            kick: Arc::new(KickFlag::default()),
            byte: [id as u8],
        })
    }
}

impl Vcpu for PortWriter {
    fn id(&self) -> VcpuId {
        self.id
    }
    fn arch(&self) -> GuestArch {
        GuestArch::X86_64
    }
    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
        if self.kick.take() {
            return Ok(VcpuExit::Interrupted);
        }
        Ok(VcpuExit::IoOut {
            port: 0x80,
            data: &self.byte,
        })
    }
    fn kick_handle(&self) -> KickHandle {
        KickHandle::new(self.kick.clone())
    }
    fn registers(&self) -> Result<Registers, AccelError> {
        Ok(Registers::X86_64(vm_accel::regs::X86_64Registers::default()))
    }
    fn set_registers(&mut self, _regs: &Registers) -> Result<(), AccelError> {
        Ok(())
    }
    fn apply_boot_state(&mut self, _boot: &BootState) -> Result<(), AccelError> {
        Ok(())
    }
}

/// Counts port writes per vCPU; stops the VM when vCPU 0 reaches `stop_after`.
#[derive(Debug)]
struct Counter {
    writes: [AtomicU64; 2],
    stop_after: u64,
}

impl ExitHandler for Counter {
    fn handle(&self, vcpu: VcpuId, exit: VcpuExit<'_>) -> ExitAction {
        match exit {
            VcpuExit::IoOut { port: 0x80, data } => {
                assert_eq!(
                    u32::from(data[0]),
                    vcpu.0,
                    "exit data comes from the right vCPU"
                );
                let n = self.writes[vcpu.0 as usize].fetch_add(1, Ordering::Relaxed) + 1;
                if vcpu.0 == 0 && n == self.stop_after {
                    ExitAction::Stop(StopReason::GuestShutdown)
                } else {
                    ExitAction::Continue
                }
            }
            other => ExitAction::Stop(StopReason::Failed {
                vcpu: Some(vcpu),
                message: format!("unexpected exit {other:?}"),
            }),
        }
    }
}

fn start(kind: ExecutorKind, stop_after: u64) -> (MultiVcpuExecutor, Arc<Counter>) {
    let counter = Arc::new(Counter {
        writes: [AtomicU64::new(0), AtomicU64::new(0)],
        stop_after,
    });
    let handler: Arc<dyn ExitHandler> = counter.clone();
    let exec = MultiVcpuExecutor::start(
        kind,
        vec![PortWriter::boxed(0), PortWriter::boxed(1)],
        &handler,
        None,
    )
    .expect("start executor");
    (exec, counter)
}

/// Waits (bounded) until `cond` holds; the bound only guards against a hang.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn guest_stop_ends_every_vcpu(kind: ExecutorKind) {
    let (exec, counter) = start(kind, 5_000);
    let control = exec.control();
    assert_eq!(exec.wait(), StopReason::GuestShutdown);
    assert_eq!(control.state(), RunState::Stopped);
    let counts = control.exit_counts();
    assert!(counts[0] >= 5_000, "{counts:?}");
    assert_eq!(counter.writes[0].load(Ordering::Relaxed), counts[0]);
    assert_eq!(counter.writes[1].load(Ordering::Relaxed), counts[1]);
}

fn pause_resume_stop_from_another_thread(kind: ExecutorKind) {
    let (exec, _counter) = start(kind, u64::MAX);
    let control = exec.control();
    assert!(eventually(|| control
        .exit_counts()
        .iter()
        .all(|&c| c > 100)));

    control.pause().expect("pause");
    assert_eq!(control.state(), RunState::Paused);
    let frozen = control.exit_counts();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(control.exit_counts(), frozen, "no vCPU runs while paused");

    control.resume().expect("resume");
    assert!(eventually(|| {
        let now = control.exit_counts();
        now.iter().zip(&frozen).all(|(n, f)| n > f)
    }));

    control.stop();
    assert_eq!(exec.wait(), StopReason::Requested);
    assert_eq!(control.state(), RunState::Stopped);
    assert!(control.pause().is_err(), "a stopped VM cannot be paused");
}

#[test]
fn sync_guest_stop_ends_every_vcpu() {
    guest_stop_ends_every_vcpu(ExecutorKind::Sync);
}

#[test]
fn async_guest_stop_ends_every_vcpu() {
    guest_stop_ends_every_vcpu(ExecutorKind::Async);
}

#[test]
fn sync_pause_resume_stop() {
    pause_resume_stop_from_another_thread(ExecutorKind::Sync);
}

#[test]
fn async_pause_resume_stop() {
    pause_resume_stop_from_another_thread(ExecutorKind::Async);
}

#[test]
fn executor_kind_parses_and_rejects_unknown() {
    assert_eq!("sync".parse::<ExecutorKind>(), Ok(ExecutorKind::Sync));
    assert_eq!("async".parse::<ExecutorKind>(), Ok(ExecutorKind::Async));
    let err = "threads".parse::<ExecutorKind>().unwrap_err();
    assert!(err.contains("threads"), "{err}");
}
