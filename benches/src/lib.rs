//! Criterion benchmarks for the workspace, one bench target per area under
//! `benches/benches/`. Run them all with `cargo bench`, or one area with
//! `cargo bench --bench NAME`; `cargo xtask bench` adds the peers criterion
//! cannot host and writes the combined report.
