//! Criterion benchmarks for the workspace, one bench target per area under
//! `benches/benches/`. Run them all with `cargo bench`, or one area with
//! `cargo bench --bench NAME`; `cargo xtask bench` adds the peers criterion
//! cannot host and writes the combined report.

use std::path::Path;
use std::time::Duration;

/// How long a bench group measures: `full`, or one second when `cargo xtask
/// bench --quick` set `VM_BENCH_QUICK` (group settings override criterion's
/// command-line flags, so groups ask here instead of hard-coding a time).
pub fn measurement_time(full: Duration) -> Duration {
    if std::env::var_os("VM_BENCH_QUICK").is_some() {
        Duration::from_secs(1).min(full)
    } else {
        full
    }
}

/// Writes a result criterion cannot host (alternated process runs, Linux
/// boots) as `target/bench/extra/<file>`, where `cargo xtask bench` reads it:
/// a JSON object with `area`, `name`, `ours_ns`, and optionally `peer_name`,
/// `peer_ns`, `runs`, `goal`.
pub fn write_extra(file: &str, report: &serde_json::Value) {
    let extra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/extra");
    if std::fs::create_dir_all(&extra).is_ok() {
        let _ = std::fs::write(extra.join(file), report.to_string());
    }
}

/// The medians of two alternated measures and of their per-pair ratio.
#[derive(Debug, Clone, Copy)]
pub struct Alternated {
    /// Median time of the first measure (`ours`).
    pub ours: Duration,
    /// Median time of the second (`peer`).
    pub peer: Duration,
    /// Median of the per-pair ratios `ours / peer`.
    pub ratio: f64,
}

/// Times `ours` and `peer` in `pairs` alternated pairs, swapping which goes
/// first each pair so drift on a shared machine hits both alike.
pub fn alternate(
    pairs: usize,
    mut ours: impl FnMut() -> Duration,
    mut peer: impl FnMut() -> Duration,
) -> Alternated {
    let (mut ours_t, mut peer_t, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs.max(1) {
        let (o, p) = if i % 2 == 0 {
            let p = peer();
            (ours(), p)
        } else {
            let o = ours();
            (o, peer())
        };
        ratios.push(o.as_secs_f64() / p.as_secs_f64());
        ours_t.push(o);
        peer_t.push(p);
    }
    ours_t.sort();
    peer_t.sort();
    ratios.sort_by(f64::total_cmp);
    Alternated {
        ours: ours_t[ours_t.len() / 2],
        peer: peer_t[peer_t.len() / 2],
        ratio: ratios[ratios.len() / 2],
    }
}
