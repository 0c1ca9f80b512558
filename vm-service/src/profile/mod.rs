//! A guest profiler: each vCPU's guest PC is sampled before every `run()`
//! (`vm-service run --profile FILE [--profile-symbols ELF]`). On the riscv64
//! interpreter a `run()` covers a fixed number of instructions
//! ([`Profile::period`], set on the harts by [`Vmm::set_profile`](crate::Vmm::set_profile))
//! unless an exit (MMIO, a power event) or an idle `wfi` ends it sooner, so
//! samples are about one per `period` instructions; on KVM a sample is taken
//! at every exit, so code that exits often is over-represented.
//!
//! The result is a flat profile: samples per function when the guest's ELF
//! (`vmlinux`, a test program) gives symbols, per PC otherwise. Sampling
//! costs one register read per `run()` and a hash-map update, on the vCPU's
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
    counts: Mutex<HashMap<u64, u64>>,
}

impl Profile {
    /// An empty profile; interpreted vCPUs are sampled every `period`
    /// instructions (at least 1).
    pub fn new(period: u64) -> Arc<Self> {
        Arc::new(Self {
            period: period.max(1),
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
}

impl Samples {
    pub(crate) fn new(profile: Arc<Profile>) -> Self {
        Self {
            counts: HashMap::new(),
            profile,
        }
    }

    /// Records where `vcpu` is now.
    pub(crate) fn take(&mut self, vcpu: &dyn Vcpu) {
        if let Ok(regs) = vcpu.registers() {
            *self.counts.entry(regs.pc()).or_default() += 1;
        }
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
        let profile = Profile::new(0);
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
