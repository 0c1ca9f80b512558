//! `cargo xtask check-targets`: type-check the library crates for every
//! operating system and architecture the workspace supports.
//!
//! `cargo check` does not link, so the macOS and Windows backends can be
//! type-checked on a Linux host. A target whose standard library cannot be
//! installed is reported as skipped with the reason, never as passed.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cmd::{cargo, output_of};

/// Every target the library crates must type-check for.
pub const TARGETS: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
    "aarch64-apple-darwin",
    "x86_64-apple-darwin",
    "x86_64-pc-windows-msvc",
];

/// The crates that are libraries meant to build on every target.
pub const LIBRARY_CRATES: &[&str] = &["vm-core", "vm-accel", "vm-cross-arch", "vm-device"];

/// Crates that cannot build for a target for a reason outside this workspace:
/// (target, crate, reason). They are reported as skipped, with the reason.
pub const KNOWN_UNSUPPORTED: &[(&str, &str, &str)] = &[
    ("x86_64-pc-windows-msvc", "vm-device", WINDOWS_RAWFD),
    (
        "x86_64-pc-windows-msvc",
        "vm-cross-arch",
        WINDOWS_VIA_DEVICE,
    ),
];

const WINDOWS_VIA_DEVICE: &str = "its riscv64 machine uses vm-device's CLINT/PLIC/syscon, and \
    vm-device cannot build on Windows (virtio-queue 0.18 enables vm-memory's `rawfd`)";

const WINDOWS_RAWFD: &str = "virtio-queue 0.18 enables vm-memory's default `rawfd` feature, \
    which has a compile_error! on Windows";

#[derive(Debug)]
enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

/// Makes sure the std for `target` is installed; returns why not if it cannot be.
fn ensure_target(target: &str) -> Result<(), String> {
    let installed = output_of("rustup", &["target", "list", "--installed"])
        .map_err(|e| format!("rustup is not usable: {e}"))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    let status = std::process::Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("running rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {target}` failed ({status})"))
    }
}

/// Runs the task over `targets` (all of [`TARGETS`] when empty).
pub fn run(root: &Path, targets: &[String]) -> Result<()> {
    let selected: Vec<String> = if targets.is_empty() {
        TARGETS.iter().map(ToString::to_string).collect()
    } else {
        targets.to_vec()
    };
    let mut results = Vec::new();
    let mut skipped_crates = Vec::new();
    for target in &selected {
        let outcome = if let Err(reason) = ensure_target(target) {
            Outcome::Skipped(reason)
        } else {
            let mut args = vec!["check", "--target", target.as_str()];
            for krate in LIBRARY_CRATES {
                if let Some((_, _, reason)) = KNOWN_UNSUPPORTED
                    .iter()
                    .find(|(t, c, _)| t == target && c == krate)
                {
                    println!("check-targets: {target}: skipping {krate}: {reason}");
                    skipped_crates.push(format!("{target}: {krate} skipped ({reason})"));
                } else {
                    args.extend(["-p", krate]);
                }
            }
            println!("check-targets: {target}");
            if cargo(root, &args).is_ok() {
                Outcome::Passed
            } else {
                Outcome::Failed
            }
        };
        results.push((target.clone(), outcome));
    }
    println!("\n{:<30}  result", "target");
    let mut failed = 0;
    for (target, outcome) in &results {
        let text = match outcome {
            Outcome::Passed => "passed".to_string(),
            Outcome::Failed => {
                failed += 1;
                "FAILED".to_string()
            }
            Outcome::Skipped(reason) => format!("skipped: {reason}"),
        };
        println!("{target:<30}  {text}");
    }
    for line in &skipped_crates {
        println!("{line}");
    }
    if failed > 0 {
        bail!("{failed} target(s) failed to type-check");
    }
    Ok(())
}
