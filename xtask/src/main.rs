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
//! - `e2e`: boot a stock Linux guest with the release VMM, to userspace (long; not in CI).
//! - `ci`: everything CI runs, in order; `.ci/run` calls it.

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
    /// Everything CI runs: setup, fmt, clippy, gates, builtin-guest --check, guest (riscv64), features (tests), check-targets.
    Ci,
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask must live one level below the workspace root")
}

fn ci(root: &Path) -> Result<()> {
    setup::run(root)?;
    cmd::cargo(root, &["fmt", "--all", "--", "--check"])?;
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
    )?;
    gates::run(root)?;
    builtin_guest::run(root, true)?;
    guest::ci_check(root)?;
    features::run(root)?;
    targets::run(root, &[])?;
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
        Task::Features => features::run(&root),
        Task::Bench { quick, areas } => bench::run(&root, quick, &areas),
        Task::BuiltinGuest { check } => builtin_guest::run(&root, check),
        Task::Guest { arch, offline } => guest::run(&root, arch, offline),
        Task::MigrateStore { path } => migrate_store(&path),
        Task::Setup => setup::run(&root),
        Task::E2e(args) => e2e::run(&root, &args),
        Task::Ci => ci(&root),
    }
}
