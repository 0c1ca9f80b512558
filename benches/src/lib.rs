//! Criterion benchmarks for the workspace, one bench target per area under
//! `benches/benches/`. Run them all with `cargo bench`, or one area with
//! `cargo bench --bench NAME`; `cargo xtask bench` adds the peers criterion
//! cannot host and writes the combined report.

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
