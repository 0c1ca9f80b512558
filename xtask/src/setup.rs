//! `cargo xtask setup`: installs what the tests need on a fresh Debian machine,
//! idempotently. `cargo xtask ci` runs it first, so the README's test command
//! is all a new machine needs.
//!
//! Besides Debian packages and rustup components, it makes a Python
//! virtualenv in `target/firecracker-python/venv` holding the PyPI client
//! `firecracker-python` ([`FIRECRACKER_PYTHON`]), which
//! `vm-service/tests/firecracker_python.rs` uses to drive `vm-service` in
//! Firecracker mode.

use std::path::Path;
use std::process::Command;

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
        "python3-venv",
        "a virtualenv for the Firecracker Python client test",
    ),
    (
        "e2fsprogs",
        "mkfs.ext4 -d makes the guests' rootfs.ext4 (`cargo xtask guest`)",
    ),
    (
        "gcc-riscv64-unknown-elf",
        "assembles the riscv64 ISA test programs",
    ),
    ("cpio", "cross-checks the initramfs writer"),
    (
        "qemu-system-x86",
        "runs our x86_64 DSDT under QEMU; the nested-TCG e2e (a standard KVM inside QEMU)",
    ),
    (
        "qemu-system-misc",
        "boots Debian's riscv64 kernel with our device tree under QEMU",
    ),
    ("opensbi", "firmware for qemu-system-riscv64"),
    (
        "qemu-user",
        "qemu-riscv64: the peer of the riscv64 differential test",
    ),
    (
        "qemu-system-arm",
        "boots Debian's arm64 kernel with our device tree under QEMU",
    ),
    (
        "busybox-static",
        "userspace of the QEMU-booted x86_64 test kernel",
    ),
    (
        "gdb-multiarch",
        "drives vm-service's gdb stub in its tests (riscv64 guests)",
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

/// The PyPI package (pinned) the Firecracker-compatibility test drives
/// `vm-service` with.
pub const FIRECRACKER_PYTHON: &str = "firecracker-python==0.0.5";

/// Where the virtualenv with [`FIRECRACKER_PYTHON`] lives, under the target dir.
pub const FIRECRACKER_VENV: &str = "firecracker-python/venv";

/// True when `python` can import the client's API module.
fn client_importable(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import firecracker.api"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes the virtualenv with the Firecracker Python client, unless it is
/// already there; fails, naming the step, when it cannot.
fn firecracker_python(root: &Path) -> Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let venv = target.join(FIRECRACKER_VENV);
    let python = venv.join("bin/python");
    if client_importable(&python) {
        println!("setup: {FIRECRACKER_PYTHON} present in {}", venv.display());
        return Ok(());
    }
    let venv_arg = venv.display().to_string();
    let python_arg = python.display().to_string();
    let steps: [(&str, Vec<&str>); 2] = [
        ("python3", vec!["-m", "venv", "--clear", &venv_arg]),
        (
            &python_arg,
            vec!["-m", "pip", "install", "--quiet", FIRECRACKER_PYTHON],
        ),
    ];
    for (program, args) in steps {
        eprintln!("$ {program} {}", args.join(" "));
        match Command::new(program).args(&args).status() {
            Ok(s) if s.success() => {}
            outcome => anyhow::bail!(
                "setup: could not install {FIRECRACKER_PYTHON} ({program}: {outcome:?}); \
                 the Firecracker Python client test needs it"
            ),
        }
    }
    if !client_importable(&python) {
        anyhow::bail!("setup: {FIRECRACKER_PYTHON} installed but `import firecracker.api` fails");
    }
    Ok(())
}

/// Installs missing packages and components; fails, naming each package and
/// what needs it, when one cannot be installed.
pub fn run(root: &Path) -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
    } else if let Err(e) = install(&missing) {
        let needs: Vec<String> = PACKAGES
            .iter()
            .filter(|(p, _)| missing.contains(p))
            .map(|(p, why)| format!("  {p}: {why}"))
            .collect();
        anyhow::bail!(
            "setup: could not install the packages the tests need ({e:#}):\n{}",
            needs.join("\n")
        );
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
    firecracker_python(root)
}
