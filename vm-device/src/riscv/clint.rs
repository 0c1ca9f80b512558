//! The SiFive CLINT: per-hart `msip` (software interrupt) and `mtimecmp`, and
//! the shared `mtime` counter, which runs at a fixed frequency from the host's
//! monotonic clock.
//!
//! Layout: `msip[h]` at `4h`, `mtimecmp[h]` at `0x4000 + 8h`, `mtime` at `0xbff8`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{read_le, write_le, HartWaker};
use crate::bus::BusDevice;
use crate::state::StateError;

const MSIP_BASE: u64 = 0;
const MTIMECMP_BASE: u64 = 0x4000;
const MTIME: u64 = 0xbff8;

/// The core-local interruptor of a machine with `harts` harts.
#[derive(Debug)]
pub struct Clint {
    epoch: Instant,
    freq_hz: u64,
    /// Added to the clock-derived time (guest writes to `mtime`).
    offset: AtomicU64,
    msip: Box<[AtomicBool]>,
    mtimecmp: Box<[AtomicU64]>,
    waker: Arc<dyn HartWaker>,
}

impl Clint {
    /// A CLINT whose `mtime` counts at `freq_hz`; every `mtimecmp` starts at `u64::MAX`.
    pub fn new(harts: u32, freq_hz: u64, waker: Arc<dyn HartWaker>) -> Self {
        Self {
            epoch: Instant::now(),
            freq_hz: freq_hz.max(1),
            offset: AtomicU64::new(0),
            msip: (0..harts).map(|_| AtomicBool::new(false)).collect(),
            mtimecmp: (0..harts).map(|_| AtomicU64::new(u64::MAX)).collect(),
            waker,
        }
    }

    /// The timer frequency.
    pub fn freq_hz(&self) -> u64 {
        self.freq_hz
    }

    /// The current `mtime`.
    pub fn mtime(&self) -> u64 {
        let nanos = self.epoch.elapsed().as_nanos();
        let ticks = nanos * u128::from(self.freq_hz) / 1_000_000_000;
        (ticks as u64).wrapping_add(self.offset.load(Ordering::Relaxed))
    }

    /// Host nanoseconds until `mtime` reaches `deadline` (0 if it has).
    pub fn nanos_until(&self, deadline: u64) -> u64 {
        let now = self.mtime();
        if deadline <= now {
            return 0;
        }
        let ticks = u128::from(deadline - now);
        (ticks * 1_000_000_000 / u128::from(self.freq_hz)).min(u128::from(u64::MAX)) as u64
    }

    /// Hart `hart`'s `mtimecmp` (`u64::MAX` for a hart that does not exist).
    pub fn mtimecmp(&self, hart: u32) -> u64 {
        self.mtimecmp
            .get(hart as usize)
            .map_or(u64::MAX, |c| c.load(Ordering::Relaxed))
    }

    /// Whether hart `hart`'s machine timer interrupt is pending.
    pub fn mtip(&self, hart: u32) -> bool {
        self.mtime() >= self.mtimecmp(hart)
    }

    /// Whether hart `hart`'s machine software interrupt is pending.
    pub fn msip(&self, hart: u32) -> bool {
        self.msip
            .get(hart as usize)
            .is_some_and(|m| m.load(Ordering::Acquire))
    }

    /// Sets or clears hart `hart`'s `msip` and wakes it.
    pub fn set_msip(&self, hart: u32, on: bool) {
        if let Some(m) = self.msip.get(hart as usize) {
            m.store(on, Ordering::Release);
            self.waker.wake(hart);
        }
    }

    /// Reads a register; unknown offsets read as zero.
    pub fn read_at(&self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            o if o < MTIMECMP_BASE => {
                u64::from(self.msip(((o - MSIP_BASE) / 4) as u32)) >> (8 * (o % 4))
            }
            o if (MTIMECMP_BASE..MTIME).contains(&o) => {
                let rel = o - MTIMECMP_BASE;
                let hart = (rel / 8) as usize;
                // Harts that do not exist read as zero.
                self.mtimecmp
                    .get(hart)
                    .map_or(0, |c| c.load(Ordering::Relaxed))
                    >> (8 * (rel % 8))
            }
            o if (MTIME..MTIME + 8).contains(&o) => self.mtime() >> (8 * (o - MTIME)),
            _ => 0,
        };
        write_le(value, data);
    }

    /// Writes a register; unknown offsets are ignored.
    pub fn write_at(&self, offset: u64, data: &[u8]) {
        let value = read_le(data);
        match offset {
            o if o < MTIMECMP_BASE => {
                if o % 4 == 0 {
                    self.set_msip(((o - MSIP_BASE) / 4) as u32, value & 1 != 0);
                }
            }
            o if (MTIMECMP_BASE..MTIME).contains(&o) => {
                let rel = o - MTIMECMP_BASE;
                let hart = (rel / 8) as u32;
                if let Some(cmp) = self.mtimecmp.get(hart as usize) {
                    let shift = 8 * (rel % 8);
                    let width = (data.len() as u64 * 8).min(64);
                    let mask = if width == 64 {
                        u64::MAX
                    } else {
                        ((1u64 << width) - 1) << shift
                    };
                    let old = cmp.load(Ordering::Relaxed);
                    cmp.store((old & !mask) | ((value << shift) & mask), Ordering::Relaxed);
                    self.waker.wake(hart);
                }
            }
            o if (MTIME..MTIME + 8).contains(&o) && data.len() == 8 => {
                let now = self
                    .mtime()
                    .wrapping_sub(self.offset.load(Ordering::Relaxed));
                self.offset
                    .store(value.wrapping_sub(now), Ordering::Relaxed);
            }
            _ => tracing::debug!(offset, "CLINT write ignored"),
        }
    }
}

/// The CLINT's state in a snapshot: the time the guest saw and each hart's registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClintState {
    /// `mtime` when the state was taken; a restored CLINT counts on from it.
    pub mtime: u64,
    /// `msip` per hart.
    pub msip: Vec<bool>,
    /// `mtimecmp` per hart.
    pub mtimecmp: Vec<u64>,
}

impl Clint {
    /// The state to save (take it with the harts paused).
    pub fn state(&self) -> ClintState {
        ClintState {
            mtime: self.mtime(),
            msip: self
                .msip
                .iter()
                .map(|m| m.load(Ordering::Acquire))
                .collect(),
            mtimecmp: self
                .mtimecmp
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Restores `state`: `mtime` continues from the saved value (the guest sees
    /// no time pass while it was saved), per-hart registers are set.
    pub fn restore(&self, state: &ClintState) -> Result<(), StateError> {
        for (what, found) in [
            ("msip", state.msip.len()),
            ("mtimecmp", state.mtimecmp.len()),
        ] {
            if found != self.msip.len() {
                return Err(StateError::Size {
                    device: "CLINT",
                    what,
                    expected: self.msip.len(),
                    found,
                });
            }
        }
        let now = self
            .mtime()
            .wrapping_sub(self.offset.load(Ordering::Relaxed));
        self.offset
            .store(state.mtime.wrapping_sub(now), Ordering::Relaxed);
        for (hart, (m, c)) in state.msip.iter().zip(&state.mtimecmp).enumerate() {
            self.msip[hart].store(*m, Ordering::Release);
            self.mtimecmp[hart].store(*c, Ordering::Relaxed);
            self.waker.wake(hart as u32);
        }
        Ok(())
    }
}

impl BusDevice for Arc<Clint> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.read_at(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.write_at(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::riscv::NoWaker;

    #[test]
    fn msip_and_mtimecmp_round_trip() {
        let clint = Clint::new(2, 10_000_000, Arc::new(NoWaker));
        clint.write_at(4, &1u32.to_le_bytes());
        assert!(clint.msip(1) && !clint.msip(0));
        let mut d = [0u8; 4];
        clint.read_at(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1);
        assert!(!clint.mtip(0));
        clint.write_at(0x4000, &0u64.to_le_bytes());
        assert!(clint.mtip(0));
        // 32-bit halves, as RV32 software writes them.
        clint.write_at(0x4008, &0xffff_ffffu32.to_le_bytes());
        clint.write_at(0x400c, &0x1234u32.to_le_bytes());
        assert_eq!(clint.mtimecmp(1), 0x1234_ffff_ffff);
        // Out-of-range harts are ignored, not a panic.
        clint.write_at(0x4000 + 8 * 100, &0u64.to_le_bytes());
        assert_eq!(clint.mtimecmp(100), u64::MAX);
    }

    #[test]
    fn mtime_advances_and_can_be_set() {
        let clint = Clint::new(1, 1_000_000_000, Arc::new(NoWaker));
        let a = clint.mtime();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(clint.mtime() > a);
        clint.write_at(MTIME, &(1u64 << 50).to_le_bytes());
        assert!(clint.mtime() >= 1 << 50);
        assert_eq!(clint.nanos_until(0), 0);
    }

    #[test]
    fn state_round_trips_and_time_continues_from_the_saved_value() {
        let clint = Clint::new(2, 10_000_000, Arc::new(NoWaker));
        clint.write_at(MTIME, &(1u64 << 40).to_le_bytes());
        clint.set_msip(1, true);
        clint.write_at(0x4000, &77u64.to_le_bytes());
        let state = clint.state();
        let other = Clint::new(2, 10_000_000, Arc::new(NoWaker));
        other.restore(&state).unwrap();
        assert!(other.mtime() >= state.mtime && other.mtime() < state.mtime + (1 << 30));
        assert!(other.msip(1) && !other.msip(0));
        assert_eq!(other.mtimecmp(0), 77);
        assert_eq!(other.mtimecmp(1), u64::MAX);

        let one = Clint::new(1, 10_000_000, Arc::new(NoWaker));
        assert!(matches!(
            one.restore(&state),
            Err(StateError::Size {
                expected: 1,
                found: 2,
                ..
            })
        ));
    }
}
