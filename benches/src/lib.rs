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
