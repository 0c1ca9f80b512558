//! State the harts of one VM share: RAM, the CLINT and PLIC, the syscon
//! address, and one [`HartSignal`] per hart (kick, wake-up, IPIs, remote
//! fences and the SBI HSM state). Everything a hart touches on its hot path
//! is an atomic; the mutex in `HartSignal` only guards sleeping in `wfi`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use vm_accel::Kick;
use vm_device::riscv::{Clint, HartWaker, Plic};

use super::memory::Ram;

/// Remote requests one hart leaves for another (bits of `HartSignal::requests`).
pub mod request {
    /// Flush the TLB (SBI remote `sfence.vma`).
    pub const SFENCE: u32 = 1;
    /// Flush the instruction cache (SBI remote `fence.i`).
    pub const FENCE_I: u32 = 2;
}

/// SBI HSM states.
pub mod hsm {
    pub const STARTED: u8 = 0;
    pub const STOPPED: u8 = 1;
    pub const START_PENDING: u8 = 2;
}

/// Cross-thread signals of one hart.
#[derive(Debug)]
pub struct HartSignal {
    kicked: AtomicBool,
    woken: Mutex<bool>,
    cv: Condvar,
    /// `mip` bits other harts set (SBI IPIs set SSIP).
    pub ipi: AtomicU64,
    /// Pending [`request`] bits.
    pub requests: AtomicU32,
    /// SBI HSM state ([`hsm`]).
    pub hsm: AtomicU8,
    /// `hart_start` entry address and opaque argument.
    pub start_addr: AtomicU64,
    /// `hart_start` opaque value (a1).
    pub start_arg: AtomicU64,
}

impl Default for HartSignal {
    fn default() -> Self {
        Self {
            kicked: AtomicBool::new(false),
            woken: Mutex::new(false),
            cv: Condvar::new(),
            ipi: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            hsm: AtomicU8::new(hsm::STARTED),
            start_addr: AtomicU64::new(0),
            start_arg: AtomicU64::new(0),
        }
    }
}

impl HartSignal {
    /// Takes a pending kick.
    #[inline]
    pub fn take_kick(&self) -> bool {
        self.kicked.load(Ordering::Relaxed) && self.kicked.swap(false, Ordering::AcqRel)
    }

    /// Wakes the hart if it sleeps in `wfi`.
    pub fn wake(&self) {
        let mut woken = self
            .woken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *woken = true;
        self.cv.notify_all();
    }

    /// Sleeps up to `timeout` unless woken or kicked since the last sleep.
    pub fn sleep(&self, timeout: Duration) {
        let mut woken = self
            .woken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*woken && !self.kicked.load(Ordering::Acquire) {
            woken = match self.cv.wait_timeout(woken, timeout) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *woken = false;
    }
}

impl Kick for HartSignal {
    fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.wake();
    }
}

/// Wakes harts through their signals (given to the CLINT and PLIC).
#[derive(Debug)]
pub struct Harts(pub Vec<Arc<HartSignal>>);

impl HartWaker for Harts {
    fn wake(&self, hart: u32) {
        if let Some(s) = self.0.get(hart as usize) {
            s.wake();
        }
    }
}

/// Device windows the engine serves itself instead of exiting to the VMM.
#[derive(Debug, Clone, Copy)]
pub struct InternalDevices {
    /// CLINT base and size.
    pub clint: (u64, u64),
    /// PLIC base and size.
    pub plic: (u64, u64),
    /// Syscon (SiFive test) base and size, if present.
    pub syscon: Option<(u64, u64)>,
    /// The UART base, for SBI console output.
    pub uart: Option<u64>,
}

/// What the harts of one VM share.
#[derive(Debug)]
pub struct Machine {
    /// Guest RAM (fixed once the first hart is created).
    pub ram: Mutex<Ram>,
    /// The CLINT.
    pub clint: Arc<Clint>,
    /// The PLIC.
    pub plic: Arc<Plic>,
    /// Device windows handled inside the engine.
    pub devices: InternalDevices,
    /// One signal per hart.
    pub harts: Arc<Harts>,
}

impl Machine {
    /// A machine of `harts` harts with a CLINT counting at `timebase_hz`.
    pub fn new(harts: u32, timebase_hz: u64, plic_sources: u32, devices: InternalDevices) -> Self {
        let signals = Arc::new(Harts(
            (0..harts)
                .map(|_| Arc::new(HartSignal::default()))
                .collect(),
        ));
        let waker: Arc<dyn HartWaker> = signals.clone();
        Self {
            ram: Mutex::new(Ram::default()),
            clint: Arc::new(Clint::new(harts, timebase_hz, waker.clone())),
            plic: Arc::new(Plic::new(plic_sources, harts, waker)),
            devices,
            harts: signals,
        }
    }

    /// Hart `id`'s signal.
    pub fn signal(&self, id: u32) -> Option<&Arc<HartSignal>> {
        self.harts.0.get(id as usize)
    }
}
