//! `cargo xtask <task>`: the workspace's automation.
//!
//! - `gates`: the feature-gate budget (see `xtask/gates.toml`).
//! - `check-targets`: type-check the library crates for Linux, macOS and
//!   Windows on x86_64/aarch64 (and riscv64 Linux).
//! - `features`: the feature matrix (checks per feature group, tests for the
//!   default and all-features configurations).
//! - `bench`: criterion benches plus process peers, one report with ratios.
//! - `guest`: stock Debian Linux guests (kernel + initramfs) in
//!   `target/guest/<arch>/` (`--arch x86_64|riscv64|arm64`, `--offline`).
//! - `builtin-guest`: rebuild (or `--check`) the guest `vm-service run` boots.
//! - `migrate-store`: rewrite a v1 event journal as v2 (crash-safe).
//! - `setup`: install the Debian packages and rustup components tests need.
//! - `e2e`: boot a stock Linux guest with the release VMM, to userspace
//!   (`--nested-tcg`: on a standard KVM inside QEMU, part of CI).
//! - `ci`: everything CI runs, in order; `.ci/run` calls it. Missing test
//!   prerequisites fail it (`VM_REQUIRE_PREREQUISITES=1`, see the
//!   `test-prerequisites` crate); it ends with a summary of what ran.

mod bench;
mod builtin_guest;
mod cmd;
mod e2e;
mod features;
mod gates;
mod guest;
mod setup;
mod targets;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Workspace automation: gates, targets, features, CI"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Count feature gates per file and fail when the budget is broken.
    Gates,
    /// `cargo check` the library crates for every supported target.
    CheckTargets {
        /// Only these targets (default: all six).
        targets: Vec<String>,
    },
    /// Check every feature configuration; test default and all-features.
    Features,
    /// Run the benches and peers; write target/bench/report.{json,md}.
    Bench {
        /// Short measurements (the whole run in a few minutes).
        #[arg(long)]
        quick: bool,
        /// Areas to run (files in benches/benches/); default: all.
        areas: Vec<String>,
    },
    /// Rebuild the built-in guest from its assembly source.
    BuiltinGuest {
        /// Verify the committed image matches a rebuild instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Build a stock Debian Linux guest (kernel, initramfs, guest.json) in
    /// target/guest/<arch>/.
    Guest {
        /// Guest architecture (default: the host's).
        #[arg(long, value_enum)]
        arch: Option<guest::Arch>,
        /// Use only the cache in target/guest-cache/ (no network).
        #[arg(long)]
        offline: bool,
    },
    /// Rewrite a legacy (v1, JSON lines) event journal in the v2 format, in
    /// place and crash-safely; the original is kept as `<path>.v1.bak`.
    MigrateStore {
        /// The journal file.
        path: PathBuf,
    },
    /// Install the Debian packages, rustup components and the Python
    /// virtualenv (Firecracker client) the tests need.
    Setup,
    /// Boot a stock Linux guest with the release vm-service until its
    /// userspace reports ready (or the timeout); reports how far it got.
    E2e(e2e::E2eArgs),
    /// Everything CI runs: setup, fmt, clippy, gates, builtin-guest --check,
    /// guests, features (all tests, ignored ones too, every prerequisite
    /// required), e2e --nested-tcg (one guest, then two guests), the fuzz
    /// crate, check-targets.
    Ci,
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask must live one level below the workspace root")
}

/// Runs CI's steps in order, timing each; ends with what ran.
fn ci(root: &Path) -> Result<()> {
    // Every test and bench run below (child processes inherit it) fails
    // where it would otherwise skip for a missing prerequisite.
    std::env::set_var(test_prerequisites::REQUIRE_PREREQUISITES, "1");
    let mut times: Vec<(&str, std::time::Duration)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = std::time::Instant::now();
        let result = f().with_context(|| format!("ci step `{name}`"));
        times.push((name, t.elapsed()));
        result
    };
    let mut counts = features::TestCounts::default();
    let result = (|| -> Result<()> {
        step("setup", &mut || setup::run(root))?;
        step("fmt", &mut || {
            cmd::cargo(root, &["fmt", "--all", "--", "--check"])
        })?;
        step("clippy", &mut || {
            cmd::cargo(
                root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ],
            )
        })?;
        step("gates", &mut || gates::run(root))?;
        step("builtin-guest", &mut || builtin_guest::run(root, true))?;
        step("guests", &mut || guest::ci_check(root))?;
        step("tests", &mut || {
            features::run(root, features::Tests::IncludeIgnored, &mut counts)
        })?;
        step("e2e --nested-tcg", &mut || {
            e2e::run_nested_tcg(
                root,
                e2e::NESTED_TCG_TIMEOUT,
                "one-guest",
                e2e::NESTED_TCG_ONE_GUEST,
            )
        })?;
        step("e2e --nested-tcg --two-guests", &mut || {
            e2e::run_nested_tcg(
                root,
                e2e::NESTED_TCG_TIMEOUT,
                "two-guests",
                e2e::NESTED_TCG_TWO_GUESTS,
            )
        })?;
        step("fuzz (check)", &mut || {
            cmd::cargo(
                root,
                // The workspace's target directory: the fuzz crate's
                // dependencies are mostly the workspace's, already checked.
                &[
                    "check",
                    "--manifest-path",
                    "fuzz/Cargo.toml",
                    "--bins",
                    "--target-dir",
                    "target",
                ],
            )
        })?;
        step("check-targets", &mut || targets::run(root, &[]))?;
        Ok(())
    })();
    println!("ci summary:");
    for (name, t) in &times {
        println!("  {name:<18} {:>7.1} s", t.as_secs_f64());
    }
    println!("  {}", counts.summary());
    result?;
    if !counts.missing.is_empty() || counts.ignored > 0 || counts.failed > 0 {
        anyhow::bail!("ci: every test must run: {}", counts.summary());
    }
    println!("ci: all steps passed");
    Ok(())
}

fn migrate_store(path: &Path) -> Result<()> {
    use vm_core::store::{migrate_v1_to_v2, MigrationReport};
    match migrate_v1_to_v2(path).with_context(|| format!("migrating {}", path.display()))? {
        MigrationReport::AlreadyV2 => println!("{}: already v2, nothing to do", path.display()),
        MigrationReport::Migrated {
            events,
            backup,
            dropped_tail_bytes,
        } => {
            println!(
                "{}: migrated {events} events to v2; v1 original kept at {}",
                path.display(),
                backup.display()
            );
            if dropped_tail_bytes > 0 {
                println!("  a torn v1 tail of {dropped_tail_bytes} bytes was not carried over");
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.task {
        Task::Gates => gates::run(&root),
        Task::CheckTargets { targets } => targets::run(&root, &targets),
        Task::Features => features::run(
            &root,
            features::Tests::Default,
            &mut features::TestCounts::default(),
        ),
        Task::Bench { quick, areas } => bench::run(&root, quick, &areas),
        Task::BuiltinGuest { check } => builtin_guest::run(&root, check),
        Task::Guest { arch, offline } => guest::run(&root, arch, offline),
        Task::MigrateStore { path } => migrate_store(&path),
        Task::Setup => setup::run(&root),
        Task::E2e(args) => e2e::run(&root, &args),
        Task::Ci => ci(&root),
    }
}
