//! `cargo xtask setup`: installs what the tests need on a fresh Debian machine,
//! idempotently. `cargo xtask ci` runs it first, so the README's test command
//! is all a new machine needs.

use anyhow::Result;

use crate::cmd::output_of;

/// Debian packages the tests use, and why.
pub const PACKAGES: &[(&str, &str)] = &[
    (
        "binutils",
        "as/ld rebuild the built-in guest (`cargo xtask builtin-guest`)",
    ),
    ("iproute2", "network namespaces for the TAP backend tests"),
    (
        "device-tree-compiler",
        "dtc validates the generated device trees",
    ),
    ("acpica-tools", "iasl validates the generated ACPI tables"),
    (
        "e2fsprogs",
        "mkfs.ext4 -d makes the guests' rootfs.ext4 (`cargo xtask guest`)",
    ),
    (
        "gcc-riscv64-unknown-elf",
        "assembles the riscv64 ISA test programs",
    ),
];

/// Rustup components CI uses.
pub const COMPONENTS: &[&str] = &["rustfmt", "clippy"];

fn is_installed(package: &str) -> bool {
    output_of("dpkg-query", &["-W", "-f=${Status}", package])
        .is_ok_and(|s| s.contains("install ok installed"))
}

fn as_root(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let (program, rest): (&str, Vec<&str>) = if root {
        (args[0], args[1..].to_vec())
    } else {
        ("sudo", [&["-n"], args].concat())
    };
    eprintln!("$ {program} {}", rest.join(" "));
    std::process::Command::new(program)
        .args(rest)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
}

/// Installs Debian `packages` (as root, or through `sudo -n`).
pub fn install(packages: &[&str]) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let status = as_root(args)?;
        anyhow::ensure!(status.success(), "`{}` failed ({status})", args.join(" "));
        Ok(())
    };
    run(&["apt-get", "update", "-qq"])?;
    run(&[
        &["apt-get", "install", "-y", "-qq", "--no-install-recommends"],
        packages,
    ]
    .concat())
}

/// Installs missing packages and components. A package that cannot be
/// installed is reported (the tests that need it skip with a reason); it does
/// not fail the run.
pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
    } else {
        let ok = as_root(&["apt-get", "update", "-qq"]).is_ok_and(|s| s.success())
            && as_root(
                &[
                    &["apt-get", "install", "-y", "-qq", "--no-install-recommends"],
                    &missing[..],
                ]
                .concat(),
            )
            .is_ok_and(|s| s.success());
        if !ok {
            for (package, why) in PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
                eprintln!("setup: could not install {package} ({why}); tests needing it will skip");
            }
        }
    }
    let installed = output_of("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    for component in COMPONENTS {
        if !installed.lines().any(|l| l.starts_with(component)) {
            crate::cmd::run_in(
                std::path::Path::new("."),
                "rustup",
                &["component", "add", component],
            )?;
        }
    }
    Ok(())
}
