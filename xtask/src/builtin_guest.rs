//! `cargo xtask builtin-guest [--check]`: rebuild the guest that `vm-service
//! run` boots when no kernel is given, from `vm-service/guest/*.S`, with GNU
//! binutils. `--check` rebuilds into a temporary file and fails if the
//! committed ELF differs, so the embedded bytes always match their source.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cmd::run_in;

/// (assembly source, linker script, committed ELF), relative to the workspace root.
const GUESTS: &[(&str, &str, &str)] = &[(
    "vm-service/guest/builtin-x86_64.S",
    "vm-service/guest/builtin-x86_64.ld",
    "vm-service/guest/builtin-x86_64.elf",
)];

fn assemble(root: &Path, source: &Path, script: &Path, out: &Path) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let object = dir.path().join("guest.o");
    let object_s = object.to_string_lossy();
    run_in(
        root,
        "as",
        &["--64", "-o", &object_s, &source.to_string_lossy()],
    )?;
    let script = script.to_string_lossy();
    run_in(
        root,
        "ld",
        &[
            "-m",
            "elf_x86_64",
            "-nostdlib",
            "-static",
            // The script places one RWX segment at 1 MiB and no headers below it.
            "-N",
            "-T",
            &script,
            "--build-id=none",
            "--no-warn-rwx-segments",
            "-s",
            "-o",
            &out.to_string_lossy(),
            &object_s,
        ],
    )
}

/// Rebuilds every built-in guest, or with `check` verifies the committed ones.
pub fn run(root: &Path, check: bool) -> Result<()> {
    for (source, script, elf) in GUESTS {
        let source = root.join(source);
        let script = root.join(script);
        let elf = root.join(elf);
        if check {
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let fresh = dir.path().join("guest.elf");
            assemble(root, &source, &script, &fresh)?;
            let built = std::fs::read(&fresh)?;
            let committed =
                std::fs::read(&elf).with_context(|| format!("reading {}", elf.display()))?;
            if built != committed {
                bail!(
                    "{} does not match a rebuild of {}; run `cargo xtask builtin-guest`",
                    elf.display(),
                    source.display()
                );
            }
            println!("builtin-guest: {} matches its source", elf.display());
        } else {
            assemble(root, &source, &script, &elf)?;
            println!("builtin-guest: wrote {}", elf.display());
        }
    }
    Ok(())
}
