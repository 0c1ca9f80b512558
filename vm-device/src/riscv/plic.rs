//! The RISC-V PLIC: sources `1..=sources` with priorities, two contexts per
//! hart (context `2h` is hart h's M-mode, `2h + 1` its S-mode) with enable
//! bits, thresholds and claim/complete.
//!
//! State lives under a mutex taken only by register accesses and interrupt
//! edges; each context's output (an interrupt is deliverable) is mirrored in
//! an atomic that harts poll lock-free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{read_le, write_le, HartWaker};
use crate::bus::BusDevice;
use crate::state::StateError;

const PRIORITY_BASE: u64 = 0;
const PENDING_BASE: u64 = 0x1000;
const ENABLE_BASE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT_BASE: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;
const WORDS: usize = 32; // 1024 sources

#[derive(Debug)]
struct State {
    priority: Vec<u32>,
    pending: [u32; WORDS],
    in_service: [u32; WORDS],
    level: [u32; WORDS],
    enable: Vec<[u32; WORDS]>,
    threshold: Vec<u32>,
}

/// A platform-level interrupt controller.
#[derive(Debug)]
pub struct Plic {
    sources: u32,
    state: Mutex<State>,
    outputs: Box<[AtomicBool]>,
    waker: Arc<dyn HartWaker>,
}

fn bit(set: &[u32; WORDS], src: u32) -> bool {
    set[(src / 32) as usize] >> (src % 32) & 1 == 1
}

fn assign(set: &mut [u32; WORDS], src: u32, on: bool) {
    let w = &mut set[(src / 32) as usize];
    if on {
        *w |= 1 << (src % 32);
    } else {
        *w &= !(1 << (src % 32));
    }
}

impl Plic {
    /// A PLIC with `sources` sources (at most 1023) for `harts` harts.
    pub fn new(sources: u32, harts: u32, waker: Arc<dyn HartWaker>) -> Self {
        let sources = sources.min(1023);
        let contexts = harts as usize * 2;
        Self {
            sources,
            state: Mutex::new(State {
                priority: vec![0; sources as usize + 1],
                pending: [0; WORDS],
                in_service: [0; WORDS],
                level: [0; WORDS],
                enable: vec![[0; WORDS]; contexts],
                threshold: vec![0; contexts],
            }),
            outputs: (0..contexts).map(|_| AtomicBool::new(false)).collect(),
            waker,
        }
    }

    /// Number of interrupt sources.
    pub fn sources(&self) -> u32 {
        self.sources
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the plain integers invalid.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether context `ctx` has a deliverable interrupt (the hart's MEIP/SEIP line).
    pub fn output(&self, ctx: u32) -> bool {
        self.outputs
            .get(ctx as usize)
            .is_some_and(|o| o.load(Ordering::Acquire))
    }

    /// An edge on source `src` (e.g. a device's `Interrupt::trigger`).
    pub fn raise(&self, src: u32) {
        if src == 0 || src > self.sources {
            return;
        }
        let mut s = self.lock();
        assign(&mut s.pending, src, true);
        self.update(&s);
    }

    /// Drives level-triggered source `src` high or low.
    pub fn set_level(&self, src: u32, high: bool) {
        if src == 0 || src > self.sources {
            return;
        }
        let mut s = self.lock();
        assign(&mut s.level, src, high);
        if high && !bit(&s.in_service, src) {
            assign(&mut s.pending, src, true);
        } else if !high {
            assign(&mut s.pending, src, false);
        }
        self.update(&s);
    }

    /// The best claimable source of context `ctx`, or 0.
    fn best(&self, s: &State, ctx: usize) -> u32 {
        let mut best = 0;
        let mut best_prio = s.threshold[ctx];
        for src in 1..=self.sources {
            if bit(&s.pending, src) && bit(&s.enable[ctx], src) && !bit(&s.in_service, src) {
                let p = s.priority[src as usize];
                if p > best_prio {
                    best = src;
                    best_prio = p;
                }
            }
        }
        best
    }

    fn update(&self, s: &State) {
        for (ctx, out) in self.outputs.iter().enumerate() {
            let now = self.best(s, ctx) != 0;
            if out.swap(now, Ordering::AcqRel) != now && now {
                self.waker.wake((ctx / 2) as u32);
            }
        }
    }

    /// Reads a 32-bit register; everything else reads as zero.
    pub fn read_at(&self, offset: u64, data: &mut [u8]) {
        let mut s = self.lock();
        let contexts = s.threshold.len() as u64;
        let value: u32 = match offset {
            o if o < PENDING_BASE => s
                .priority
                .get(((o - PRIORITY_BASE) / 4) as usize)
                .copied()
                .unwrap_or(0),
            o if o < ENABLE_BASE => s
                .pending
                .get(((o - PENDING_BASE) / 4) as usize)
                .copied()
                .unwrap_or(0),
            o if o < CONTEXT_BASE => {
                let ctx = (o - ENABLE_BASE) / ENABLE_STRIDE;
                let word = ((o - ENABLE_BASE) % ENABLE_STRIDE / 4) as usize;
                s.enable.get(ctx as usize).map_or(0, |e| e[word])
            }
            o => {
                let ctx = (o - CONTEXT_BASE) / CONTEXT_STRIDE;
                if ctx >= contexts {
                    0
                } else {
                    match (o - CONTEXT_BASE) % CONTEXT_STRIDE {
                        0 => s.threshold[ctx as usize],
                        4 => {
                            let src = self.best(&s, ctx as usize);
                            if src != 0 {
                                assign(&mut s.pending, src, false);
                                assign(&mut s.in_service, src, true);
                                self.update(&s);
                            }
                            src
                        }
                        _ => 0,
                    }
                }
            }
        };
        write_le(u64::from(value), data);
    }

    /// Writes a 32-bit register; read-only and unknown registers ignore writes.
    pub fn write_at(&self, offset: u64, data: &[u8]) {
        let value = read_le(data) as u32;
        let mut s = self.lock();
        let contexts = s.threshold.len() as u64;
        match offset {
            o if o < PENDING_BASE => {
                if let Some(p) = s.priority.get_mut((o / 4) as usize) {
                    if o >= 4 {
                        *p = value & 7;
                    }
                }
            }
            o if o < ENABLE_BASE => {}
            o if o < CONTEXT_BASE => {
                let ctx = (o - ENABLE_BASE) / ENABLE_STRIDE;
                let word = ((o - ENABLE_BASE) % ENABLE_STRIDE / 4) as usize;
                if let Some(e) = s.enable.get_mut(ctx as usize) {
                    e[word] = if word == 0 { value & !1 } else { value };
                }
            }
            o => {
                let ctx = (o - CONTEXT_BASE) / CONTEXT_STRIDE;
                if ctx < contexts {
                    match (o - CONTEXT_BASE) % CONTEXT_STRIDE {
                        0 => s.threshold[ctx as usize] = value & 7,
                        4 => {
                            let src = value;
                            if src != 0 && src <= self.sources && bit(&s.enable[ctx as usize], src)
                            {
                                assign(&mut s.in_service, src, false);
                                if bit(&s.level, src) {
                                    assign(&mut s.pending, src, true);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.update(&s);
    }
}

/// The PLIC's state in a snapshot. Bit sets are 32 words of 32 sources.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlicState {
    /// Priority per source, index 0 unused.
    pub priority: Vec<u32>,
    /// Pending sources.
    pub pending: Vec<u32>,
    /// Claimed, not yet completed sources.
    pub in_service: Vec<u32>,
    /// Level-triggered lines that are high.
    pub level: Vec<u32>,
    /// Enabled sources per context.
    pub enable: Vec<Vec<u32>>,
    /// Threshold per context.
    pub threshold: Vec<u32>,
}

fn words(what: &'static str, v: &[u32]) -> Result<[u32; WORDS], StateError> {
    <[u32; WORDS]>::try_from(v).map_err(|_| StateError::Size {
        device: "PLIC",
        what,
        expected: WORDS,
        found: v.len(),
    })
}

impl Plic {
    /// The state to save.
    pub fn state(&self) -> PlicState {
        let s = self.lock();
        PlicState {
            priority: s.priority.clone(),
            pending: s.pending.to_vec(),
            in_service: s.in_service.to_vec(),
            level: s.level.to_vec(),
            enable: s.enable.iter().map(|e| e.to_vec()).collect(),
            threshold: s.threshold.clone(),
        }
    }

    /// Restores `state` after checking it has this PLIC's shape; outputs
    /// are recomputed from it.
    pub fn restore(&self, state: &PlicState) -> Result<(), StateError> {
        let mut s = self.lock();
        let size = |what, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(StateError::Size {
                    device: "PLIC",
                    what,
                    expected,
                    found,
                })
            }
        };
        size("priorities", s.priority.len(), state.priority.len())?;
        size("enable contexts", s.enable.len(), state.enable.len())?;
        size("thresholds", s.threshold.len(), state.threshold.len())?;
        let pending = words("pending words", &state.pending)?;
        let in_service = words("in-service words", &state.in_service)?;
        let level = words("level words", &state.level)?;
        let enable = state
            .enable
            .iter()
            .map(|e| words("enable words", e))
            .collect::<Result<Vec<_>, _>>()?;
        // Same masks as register writes: priorities and thresholds are 3 bits.
        s.priority = state.priority.iter().map(|p| p & 7).collect();
        s.priority[0] = 0;
        s.pending = pending;
        s.in_service = in_service;
        s.level = level;
        s.enable = enable;
        s.threshold = state.threshold.iter().map(|t| t & 7).collect();
        self.update(&s);
        Ok(())
    }
}

impl BusDevice for Arc<Plic> {
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

    fn w(p: &Plic, off: u64, v: u32) {
        p.write_at(off, &v.to_le_bytes());
    }

    fn r(p: &Plic, off: u64) -> u32 {
        let mut d = [0u8; 4];
        p.read_at(off, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn claim_complete_with_priorities_and_threshold() {
        let p = Plic::new(63, 1, Arc::new(NoWaker));
        let s_ctx = 1;
        w(&p, 4 * 10, 1);
        w(&p, 4 * 11, 3);
        w(
            &p,
            ENABLE_BASE + ENABLE_STRIDE * s_ctx,
            (1 << 10) | (1 << 11),
        );
        p.raise(10);
        p.raise(11);
        assert!(p.output(1) && !p.output(0));
        assert_eq!(r(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx + 4), 11);
        assert_eq!(r(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx + 4), 10);
        assert!(!p.output(1));
        assert_eq!(r(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx + 4), 0);
        w(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx + 4, 11);
        w(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx + 4, 10);
        // Threshold masks priority 1.
        w(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx, 1);
        p.raise(10);
        assert!(!p.output(1));
        w(&p, CONTEXT_BASE + CONTEXT_STRIDE * s_ctx, 0);
        assert!(p.output(1));
    }

    #[test]
    fn level_source_repends_after_complete_and_bad_offsets_are_ignored() {
        let p = Plic::new(63, 2, Arc::new(NoWaker));
        w(&p, 4 * 5, 1);
        w(&p, ENABLE_BASE, 1 << 5);
        p.set_level(5, true);
        assert_eq!(r(&p, CONTEXT_BASE + 4), 5);
        w(&p, CONTEXT_BASE + 4, 5);
        assert!(p.output(0), "still high: pending again");
        p.set_level(5, false);
        assert!(!p.output(0));
        // Hostile offsets and sources.
        w(&p, CONTEXT_BASE + CONTEXT_STRIDE * 100, 1);
        assert_eq!(r(&p, CONTEXT_BASE + CONTEXT_STRIDE * 100 + 4), 0);
        p.raise(5000);
        w(&p, CONTEXT_BASE + 4, 9999);
        w(&p, 0x1fff_fffc, 1);
    }

    #[test]
    fn state_round_trips_and_a_mismatched_shape_is_refused() {
        let p = Plic::new(63, 1, Arc::new(NoWaker));
        w(&p, 4 * 10, 2);
        w(&p, ENABLE_BASE + ENABLE_STRIDE, 1 << 10);
        p.raise(10);
        let state = p.state();
        let q = Plic::new(63, 1, Arc::new(NoWaker));
        q.restore(&state).unwrap();
        assert!(q.output(1), "the restored PLIC drives the hart's line");
        assert_eq!(r(&q, CONTEXT_BASE + CONTEXT_STRIDE + 4), 10);
        assert_eq!(q.state().priority, state.priority);

        let two_harts = Plic::new(63, 2, Arc::new(NoWaker));
        assert!(matches!(
            two_harts.restore(&state),
            Err(StateError::Size {
                what: "enable contexts",
                ..
            })
        ));
        let mut short = state.clone();
        short.pending.pop();
        assert!(q.restore(&short).is_err());
        let mut wild = state;
        wild.threshold[0] = u32::MAX;
        q.restore(&wild).unwrap();
        assert_eq!(q.state().threshold[0], 7);
    }
}
