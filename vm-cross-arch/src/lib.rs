//! Per-architecture knowledge and the software execution engine.
//!
//! `platform/` describes each guest architecture (x86_64, arm64, riscv64)
//! behind `PlatformTraits`: memory map, kernel placement, boot data and initial
//! register state. The guest architecture is a runtime value, so all three
//! platforms compile on every host. `interp/` holds software vCPUs that run a
//! guest whose architecture differs from the host's.
