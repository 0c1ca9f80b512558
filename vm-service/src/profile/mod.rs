//! A guest profiler: each vCPU's guest PC is sampled between `run()`s
//! (`vm-service run --profile FILE [--profile-symbols ELF]`). On the riscv64
//! interpreter a `run()` covers a fixed number of instructions
//! ([`Profile::period`], set on the harts by [`Vmm::profile`](crate::Vmm::profile)),
//! and a sample is taken when one ran out (not after MMIO exits, which would
//! over-count device drivers), so samples are one per `period` instructions
//! (an idle `wfi` or a kick also ends a `run()`); on KVM, whose `run()`
//! ends only at exits, a sample is taken at every exit, so code that exits
//! often is over-represented.
//!
//! The result is a flat profile: samples per function when the guest's ELF
//! (`vmlinux`, a test program) gives symbols, per PC otherwise. Sampling
//! costs one register read per sample and a hash-map update, on the vCPU's
//! own thread, with no shared lock; the counts are merged when the vCPU's
//! loop ends. Without a profile the executor pays one branch per `run()`.

mod symbols;

pub use symbols::{Symbols, SymbolsError};

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use vm_accel::Vcpu;

/// Instructions per `run()` of a profiled riscv64 hart (one sample each).
pub const DEFAULT_PERIOD: u64 = 10_000;

/// The samples of every vCPU of one VM.
#[derive(Debug)]
pub struct Profile {
    period: u64,
    /// Sample at every exit (engines whose `run()` has no budget).
    every_exit: bool,
    counts: Mutex<HashMap<u64, u64>>,
}

impl Profile {
    /// An empty profile; interpreted vCPUs are sampled every `period`
    /// instructions (at least 1). With `every_exit`, a sample is taken
    /// before every `run()` (hardware engines, whose `run()` ends at exits).
    pub fn new(period: u64, every_exit: bool) -> Arc<Self> {
        Arc::new(Self {
            period: period.max(1),
            every_exit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Instructions per sample on the interpreter.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Samples per guest PC, merged from the vCPUs whose loops have ended.
    pub fn counts(&self) -> HashMap<u64, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `(samples, name)` per function (per PC without symbols or outside
    /// every symbol), most samples first.
    pub fn flat(&self, symbols: Option<&Symbols>) -> Vec<(u64, String)> {
        let mut by_name: HashMap<String, u64> = HashMap::new();
        for (pc, n) in self.counts() {
            let name = symbols
                .and_then(|s| s.lookup(pc))
                .map_or_else(|| format!("{pc:#x}"), str::to_string);
            *by_name.entry(name).or_default() += n;
        }
        let mut rows: Vec<(u64, String)> = by_name.into_iter().map(|(k, v)| (v, k)).collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        rows
    }

    /// Writes the flat profile: a header, then `samples percent name` lines.
    pub fn write_flat(
        &self,
        out: &mut dyn Write,
        symbols: Option<&Symbols>,
    ) -> std::io::Result<()> {
        let rows = self.flat(symbols);
        let total: u64 = rows.iter().map(|r| r.0).sum();
        writeln!(
            out,
            "# vm-service guest profile: {total} samples (interpreter: one per {} instructions; KVM: one per exit)",
            self.period
        )?;
        writeln!(out, "# samples  percent  function")?;
        for (n, name) in rows {
            // Display only: sample counts stay far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let percent = n as f64 * 100.0 / total.max(1) as f64;
            writeln!(out, "{n:>9} {percent:>7.2}%  {name}")?;
        }
        Ok(())
    }
}

/// One vCPU's samples, kept on its own thread and merged into the
/// [`Profile`] when dropped (when the vCPU's loop ends).
#[derive(Debug)]
pub(crate) struct Samples {
    counts: HashMap<u64, u64>,
    profile: Arc<Profile>,
    /// The last `run()` ran out of budget (or was kicked): sample now.
    due: bool,
}

impl Samples {
    pub(crate) fn new(profile: Arc<Profile>) -> Self {
        Self {
            counts: HashMap::new(),
            profile,
            due: true,
        }
    }

    /// Before a `run()`: records where `vcpu` is, if a sample is due (always
    /// on an engine that only returns at exits).
    pub(crate) fn take(&mut self, vcpu: &dyn Vcpu) {
        if !std::mem::take(&mut self.due) && !self.profile.every_exit {
            return;
        }
        if let Ok(regs) = vcpu.registers() {
            *self.counts.entry(regs.pc()).or_default() += 1;
        }
    }

    /// The last `run()` returned without an exit.
    pub(crate) fn interrupted(&mut self) {
        self.due = true;
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        let mut all = self
            .profile
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (pc, n) in self.counts.drain() {
            *all.entry(pc).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_merge_and_sort_by_count() {
        let profile = Profile::new(0, true);
        assert_eq!(profile.period(), 1);
        for (pc, n) in [(0x10, 3), (0x20, 5)] {
            let mut s = Samples::new(profile.clone());
            s.counts.insert(pc, n);
        }
        let mut s = Samples::new(profile.clone());
        s.counts.insert(0x10, 4);
        drop(s);
        assert_eq!(
            profile.flat(None),
            [(7, "0x10".to_string()), (5, "0x20".to_string())]
        );
        let mut out = Vec::new();
        profile.write_flat(&mut out, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("12 samples"), "{text}");
        assert!(text.contains("        7   58.33%  0x10"), "{text}");
    }
}
