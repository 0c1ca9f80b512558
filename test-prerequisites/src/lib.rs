//! What the workspace's tests and benches need from the machine they run on
//! (`/dev/kvm`, a program on `PATH`, a guest built by `cargo xtask guest`, a
//! network namespace), and one rule for when it is missing.
//!
//! A test whose prerequisite is missing calls [`prerequisite_missing`] with
//! the reason and returns. Run by hand (`cargo test`), that prints
//! `SKIPPED: <reason>` and the test passes; with
//! [`REQUIRE_PREREQUISITES`]` = 1` in the environment, as `cargo xtask ci`
//! sets it, it panics with the reason, so a green CI run means every test
//! really ran.
//!
//! ```
//! fn test_that_needs_dtc() {
//!     let Some(dtc) = test_prerequisites::tool("dtc", "device-tree-compiler") else {
//!         return; // printed `SKIPPED: ...` (or panicked in CI)
//!     };
//!     // ... use dtc
//! #   let _ = dtc;
//! }
//! # if std::env::var_os(test_prerequisites::REQUIRE_PREREQUISITES).is_none() {
//! #     test_that_needs_dtc();
//! # }
//! ```

use std::fmt::Display;
use std::path::PathBuf;

/// The environment variable that turns a missing prerequisite into a test
/// failure (`1`). `cargo xtask ci` sets it.
pub const REQUIRE_PREREQUISITES: &str = "VM_REQUIRE_PREREQUISITES";

/// The prefix of the line a skipped test prints (`cargo xtask ci` counts them).
pub const SKIPPED: &str = "SKIPPED: ";

/// The text a required-but-missing prerequisite panics with.
pub const MISSING: &str = "required prerequisite missing: ";

/// Whether missing prerequisites fail tests ([`REQUIRE_PREREQUISITES`] is `1`).
pub fn required() -> bool {
    std::env::var_os(REQUIRE_PREREQUISITES).is_some_and(|v| v == "1")
}

/// Reports that a test cannot run here because of `reason`: panics when
/// prerequisites are [`required`], else prints `SKIPPED: reason` to stderr
/// and returns, so the caller can return too.
#[track_caller]
pub fn prerequisite_missing(reason: impl Display) {
    assert!(!required(), "{MISSING}{reason} ({REQUIRE_PREREQUISITES}=1)");
    eprintln!("{SKIPPED}{reason}");
}

/// Whether `/dev/kvm` opens for reading and writing; reports it missing when not.
#[track_caller]
pub fn kvm_available() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            prerequisite_missing(format_args!("/dev/kvm cannot be opened ({e})"));
            false
        }
    }
}

/// The path of the first of `names` found on `PATH`, without reporting anything.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The path of program `name`, or `None` after reporting it missing (Debian
/// ships it in `package`).
#[track_caller]
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_program(&[name]);
    if found.is_none() {
        prerequisite_missing(format_args!(
            "`{name}` is not on PATH (install Debian's `{package}`)"
        ));
    }
    found
}

/// A riscv64 cross gcc (Debian's `gcc-riscv64-unknown-elf`, or
/// `gcc-riscv64-linux-gnu`), or `None` after reporting it missing. Callers
/// pass `-static -nostdlib` so either toolchain builds bare-metal programs.
#[track_caller]
pub fn riscv64_gcc() -> Option<PathBuf> {
    let found = find_program(&["riscv64-unknown-elf-gcc", "riscv64-linux-gnu-gcc"]);
    if found.is_none() {
        prerequisite_missing(
            "no riscv64 cross gcc on PATH (install Debian's `gcc-riscv64-unknown-elf` or `gcc-riscv64-linux-gnu`)",
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path() {
        assert!(find_program(&["no-such-program-here", "sh"]).is_some());
        assert!(find_program(&["no-such-program-here"]).is_none());
    }
}
