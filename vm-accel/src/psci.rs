//! PSCI (Arm Power State Coordination Interface, DEN0022) for hypervisors
//! that do not implement it in the kernel (Hypervisor.framework): decoding a
//! call from the guest's `x0..x3`, and the per-vCPU power state that
//! `CPU_ON`/`CPU_OFF`/`AFFINITY_INFO` act on. Plain Rust, tested on any host.

use crate::exit::SystemEvent;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// PSCI function ids (SMC32 and SMC64 calling conventions).
pub mod function {
    /// `PSCI_VERSION`.
    pub const VERSION: u32 = 0x8400_0000;
    /// `CPU_SUSPEND` (SMC32).
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// `CPU_SUSPEND` (SMC64).
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// `CPU_ON` (SMC32).
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// `CPU_ON` (SMC64).
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// `AFFINITY_INFO` (SMC32).
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// `AFFINITY_INFO` (SMC64).
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u32 = 0x8400_000a;
    /// `SYSTEM_RESET2` (SMC32).
    pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
    /// `SYSTEM_RESET2` (SMC64).
    pub const SYSTEM_RESET2_64: u32 = 0xc400_0012;
}

/// PSCI return codes (as the signed values the guest sees in `x0`).
pub mod status {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// The function is not implemented.
    pub const NOT_SUPPORTED: i64 = -1;
    /// A parameter was invalid.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// The target CPU is already on.
    pub const ALREADY_ON: i64 = -4;
    /// A `CPU_ON` for the target is already pending.
    pub const ON_PENDING: i64 = -5;
}

/// The PSCI version reported: 1.0.
pub const PSCI_VERSION_1_0: u64 = 0x0001_0000;

/// A decoded PSCI call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciCall {
    /// `PSCI_VERSION`.
    Version,
    /// `CPU_SUSPEND`: treated as a standby request that returns at once.
    CpuSuspend,
    /// `CPU_OFF`: the caller powers down.
    CpuOff,
    /// `CPU_ON`: start `target` at `entry` with `x0 = context`.
    CpuOn {
        /// MPIDR affinity of the CPU to start.
        target: u64,
        /// Physical entry address.
        entry: u64,
        /// Value for the started CPU's `x0`.
        context: u64,
    },
    /// `AFFINITY_INFO` for `target` at affinity `level`.
    AffinityInfo {
        /// MPIDR affinity asked about.
        target: u64,
        /// Lowest affinity level (only 0 is supported by PSCI 1.0 callers here).
        level: u64,
    },
    /// `MIGRATE_INFO_TYPE`.
    MigrateInfoType,
    /// `SYSTEM_OFF`.
    SystemOff,
    /// `SYSTEM_RESET` or `SYSTEM_RESET2`.
    SystemReset,
    /// `PSCI_FEATURES` for `function`.
    Features {
        /// The function id asked about.
        function: u32,
    },
    /// A function id this implementation does not know.
    Unknown(u32),
}

/// Decodes the call in `x0..x3`. SMC32 ids take 32-bit arguments.
pub fn decode(x: [u64; 4]) -> PsciCall {
    let id = (x[0] & 0xffff_ffff) as u32;
    let arg = |n: usize| {
        if id & 0x4000_0000 == 0 {
            x[n] & 0xffff_ffff
        } else {
            x[n]
        }
    };
    match id {
        function::VERSION => PsciCall::Version,
        function::CPU_SUSPEND_32 | function::CPU_SUSPEND_64 => PsciCall::CpuSuspend,
        function::CPU_OFF => PsciCall::CpuOff,
        function::CPU_ON_32 | function::CPU_ON_64 => PsciCall::CpuOn {
            target: arg(1),
            entry: arg(2),
            context: arg(3),
        },
        function::AFFINITY_INFO_32 | function::AFFINITY_INFO_64 => PsciCall::AffinityInfo {
            target: arg(1),
            level: arg(2),
        },
        function::MIGRATE_INFO_TYPE => PsciCall::MigrateInfoType,
        function::SYSTEM_OFF => PsciCall::SystemOff,
        function::SYSTEM_RESET | function::SYSTEM_RESET2_32 | function::SYSTEM_RESET2_64 => {
            PsciCall::SystemReset
        }
        function::FEATURES => PsciCall::Features {
            function: (arg(1) & 0xffff_ffff) as u32,
        },
        other => PsciCall::Unknown(other),
    }
}

/// The MPIDR affinity value a vCPU id gets (Aff0..Aff2 from the id's bytes).
pub fn mpidr_for(id: u32) -> u64 {
    let id = u64::from(id);
    (id & 0xff) | (((id >> 8) & 0xff) << 8) | (((id >> 16) & 0xff) << 16)
}

/// The vCPU id an MPIDR affinity names (inverse of [`mpidr_for`]; Aff3 must be 0).
pub fn id_for_mpidr(mpidr: u64) -> Option<u32> {
    if mpidr & !0x00ff_ffff != 0 {
        return None;
    }
    u32::try_from(mpidr & 0x00ff_ffff).ok()
}

/// What the backend does after a PSCI call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciOutcome {
    /// Write this value to `x0` and resume the guest.
    Return(u64),
    /// The calling vCPU is now off: wait for a `CPU_ON` ([`PsciPower::wait_for_start`]).
    PowerOff,
    /// Report a system event to the VMM.
    Event(SystemEvent),
}

/// Power state of one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuPower {
    On,
    Off,
    /// `CPU_ON` accepted; the vCPU starts at `entry` with `x0 = context`.
    OnPending {
        entry: u64,
        context: u64,
    },
}

/// Where a vCPU powered on by `CPU_ON` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRequest {
    /// Physical entry address.
    pub entry: u64,
    /// Value for `x0`.
    pub context: u64,
}

/// The power state of every vCPU of a VM, shared by its vCPU threads.
#[derive(Debug)]
pub struct PsciPower {
    cpus: Mutex<Vec<CpuPower>>,
    changed: Condvar,
}

fn ret(code: i64) -> PsciOutcome {
    PsciOutcome::Return(code as u64)
}

impl PsciPower {
    /// A table for `count` vCPUs, all on.
    pub fn new(count: u32) -> Self {
        Self {
            cpus: Mutex::new(vec![CpuPower::On; count as usize]),
            changed: Condvar::new(),
        }
    }

    fn cpus(&self) -> MutexGuard<'_, Vec<CpuPower>> {
        self.cpus.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks vCPU `id` on (boot vCPU) or off (a secondary waiting for `CPU_ON`).
    pub fn set_on(&self, id: u32, on: bool) {
        if let Some(cpu) = self.cpus().get_mut(id as usize) {
            *cpu = if on { CpuPower::On } else { CpuPower::Off };
        }
        self.changed.notify_all();
    }

    /// Whether vCPU `id` is off (or has a start request it has not taken yet).
    pub fn is_off(&self, id: u32) -> bool {
        !matches!(self.cpus().get(id as usize), Some(CpuPower::On) | None)
    }

    /// Carries out `call` made by vCPU `caller`.
    pub fn handle(&self, caller: u32, call: PsciCall) -> PsciOutcome {
        match call {
            PsciCall::Version => PsciOutcome::Return(PSCI_VERSION_1_0),
            PsciCall::CpuSuspend => ret(status::SUCCESS),
            PsciCall::MigrateInfoType => PsciOutcome::Return(2), // no trusted OS to migrate
            PsciCall::SystemOff => PsciOutcome::Event(SystemEvent::Shutdown),
            PsciCall::SystemReset => PsciOutcome::Event(SystemEvent::Reset),
            PsciCall::Features { function } => match decode([u64::from(function), 0, 0, 0]) {
                PsciCall::Unknown(_) => ret(status::NOT_SUPPORTED),
                _ => ret(status::SUCCESS),
            },
            PsciCall::Unknown(_) => ret(status::NOT_SUPPORTED),
            PsciCall::CpuOff => {
                self.set_on(caller, false);
                PsciOutcome::PowerOff
            }
            PsciCall::CpuOn {
                target,
                entry,
                context,
            } => {
                let mut cpus = self.cpus();
                let Some(cpu) = id_for_mpidr(target).and_then(|id| cpus.get_mut(id as usize))
                else {
                    return ret(status::INVALID_PARAMETERS);
                };
                match *cpu {
                    CpuPower::On => ret(status::ALREADY_ON),
                    CpuPower::OnPending { .. } => ret(status::ON_PENDING),
                    CpuPower::Off => {
                        *cpu = CpuPower::OnPending { entry, context };
                        drop(cpus);
                        self.changed.notify_all();
                        ret(status::SUCCESS)
                    }
                }
            }
            PsciCall::AffinityInfo { target, level } => {
                if level != 0 {
                    return ret(status::INVALID_PARAMETERS);
                }
                let cpus = self.cpus();
                match id_for_mpidr(target).and_then(|id| cpus.get(id as usize)) {
                    Some(CpuPower::On) => PsciOutcome::Return(0),
                    Some(CpuPower::Off) => PsciOutcome::Return(1),
                    Some(CpuPower::OnPending { .. }) => PsciOutcome::Return(2),
                    None => ret(status::INVALID_PARAMETERS),
                }
            }
        }
    }

    /// Blocks while vCPU `id` is off. Returns its start request once a
    /// `CPU_ON` arrives (the vCPU is then on), or `None` when `interrupted()`
    /// becomes true (checked after every [`PsciPower::wake_all`]) or `id` is unknown.
    pub fn wait_for_start(&self, id: u32, interrupted: impl Fn() -> bool) -> Option<StartRequest> {
        let mut cpus = self.cpus();
        loop {
            match cpus.get(id as usize).copied() {
                None | Some(CpuPower::On) => return None,
                Some(CpuPower::OnPending { entry, context }) => {
                    cpus[id as usize] = CpuPower::On;
                    return Some(StartRequest { entry, context });
                }
                Some(CpuPower::Off) => {}
            }
            if interrupted() {
                return None;
            }
            cpus = self
                .changed
                .wait(cpus)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Wakes every waiter so it re-checks its state and its interruption flag (used by kicks).
    pub fn wake_all(&self) {
        let _guard = self.cpus();
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn decodes_calls_and_truncates_smc32_arguments() {
        assert_eq!(decode([0x8400_0000, 0, 0, 0]), PsciCall::Version);
        assert_eq!(
            decode([0xc400_0003, 1, 0x4008_0000_0000, 7]),
            PsciCall::CpuOn {
                target: 1,
                entry: 0x4008_0000_0000,
                context: 7
            }
        );
        assert_eq!(
            decode([0x8400_0003, 1, 0xffff_0000_4008_0000, 7]),
            PsciCall::CpuOn {
                target: 1,
                entry: 0x4008_0000,
                context: 7
            }
        );
        // The upper half of x0 is ignored for the function id.
        assert_eq!(
            decode([0xdead_0000_8400_0008, 0, 0, 0]),
            PsciCall::SystemOff
        );
        assert_eq!(decode([0x1234, 0, 0, 0]), PsciCall::Unknown(0x1234));
    }

    #[test]
    fn system_calls_become_events_and_unknown_ones_fail() {
        let power = PsciPower::new(1);
        assert_eq!(
            power.handle(0, PsciCall::SystemOff),
            PsciOutcome::Event(SystemEvent::Shutdown)
        );
        assert_eq!(
            power.handle(0, decode([u64::from(function::SYSTEM_RESET2_64), 0, 0, 0])),
            PsciOutcome::Event(SystemEvent::Reset)
        );
        assert_eq!(
            power.handle(0, PsciCall::Unknown(5)),
            PsciOutcome::Return(u64::MAX)
        );
        assert_eq!(
            power.handle(0, PsciCall::Version),
            PsciOutcome::Return(PSCI_VERSION_1_0)
        );
        assert_eq!(
            power.handle(
                0,
                PsciCall::Features {
                    function: function::CPU_ON_64
                }
            ),
            PsciOutcome::Return(0)
        );
        assert_eq!(
            power.handle(
                0,
                PsciCall::Features {
                    function: 0x8400_00ff
                }
            ),
            PsciOutcome::Return(u64::MAX)
        );
    }

    #[test]
    fn cpu_on_starts_a_waiting_secondary_once() {
        let power = Arc::new(PsciPower::new(2));
        power.set_on(1, false);
        assert!(power.is_off(1));
        let info = PsciCall::AffinityInfo {
            target: mpidr_for(1),
            level: 0,
        };
        assert_eq!(power.handle(0, info), PsciOutcome::Return(1));
        let waiter = {
            let power = Arc::clone(&power);
            std::thread::spawn(move || power.wait_for_start(1, || false))
        };
        let on = PsciCall::CpuOn {
            target: mpidr_for(1),
            entry: 0x8000_0000,
            context: 42,
        };
        assert_eq!(power.handle(0, on), PsciOutcome::Return(0));
        assert_eq!(
            waiter.join().unwrap(),
            Some(StartRequest {
                entry: 0x8000_0000,
                context: 42
            })
        );
        assert!(!power.is_off(1));
        assert_eq!(power.handle(0, on), ret(status::ALREADY_ON));
        assert_eq!(power.handle(0, info), PsciOutcome::Return(0));
    }

    #[test]
    fn cpu_on_rejects_bad_targets_and_double_requests() {
        let power = PsciPower::new(2);
        power.set_on(1, false);
        let bad = PsciCall::CpuOn {
            target: mpidr_for(9),
            entry: 0,
            context: 0,
        };
        assert_eq!(power.handle(0, bad), ret(status::INVALID_PARAMETERS));
        let aff3 = PsciCall::CpuOn {
            target: 1 << 32,
            entry: 0,
            context: 0,
        };
        assert_eq!(power.handle(0, aff3), ret(status::INVALID_PARAMETERS));
        let on = PsciCall::CpuOn {
            target: 1,
            entry: 0x1000,
            context: 0,
        };
        assert_eq!(power.handle(0, on), ret(status::SUCCESS));
        assert_eq!(power.handle(0, on), ret(status::ON_PENDING));
        let level1 = PsciCall::AffinityInfo {
            target: 1,
            level: 1,
        };
        assert_eq!(power.handle(0, level1), ret(status::INVALID_PARAMETERS));
    }

    #[test]
    fn cpu_off_then_kick_interrupts_the_wait() {
        let power = Arc::new(PsciPower::new(2));
        assert_eq!(power.handle(1, PsciCall::CpuOff), PsciOutcome::PowerOff);
        let kicked = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (power, kicked) = (Arc::clone(&power), Arc::clone(&kicked));
            std::thread::spawn(move || power.wait_for_start(1, || kicked.load(Ordering::SeqCst)))
        };
        kicked.store(true, Ordering::SeqCst);
        power.wake_all();
        assert_eq!(waiter.join().unwrap(), None);
        assert!(power.is_off(1));
    }

    #[test]
    fn mpidr_round_trips() {
        for id in [0, 1, 255, 256, 0x12_3456] {
            assert_eq!(id_for_mpidr(mpidr_for(id)), Some(id));
        }
        assert_eq!(mpidr_for(0x0102), 0x0102);
        assert_eq!(id_for_mpidr(1 << 32), None);
    }
}
