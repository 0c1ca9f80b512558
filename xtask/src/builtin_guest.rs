//! `cargo xtask builtin-guest [--check]`: rebuild the guest that `vm-service
//! run` boots when no kernel is given, from `vm-service/guest/*.S`, with GNU
//! binutils. `--check` rebuilds into a temporary file and fails if the
//! committed ELF differs, so the embedded bytes always match their source.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cmd::run_in;

/// (assembly source, committed ELF) pairs, relative to the workspace root.
const GUESTS: &[(&str, &str)] = &[(
    "vm-service/guest/builtin-x86_64.S",
    "vm-service/guest/builtin-x86_64.elf",
)];

/// Load address of the guest image: 1 MiB, where a Linux kernel goes.
const LOAD_ADDRESS: &str = "0x100000";

fn assemble(root: &Path, source: &Path, out: &Path) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let object = dir.path().join("guest.o");
    let object_s = object.to_string_lossy();
    run_in(
        root,
        "as",
        &["--64", "-o", &object_s, &source.to_string_lossy()],
    )?;
    let text = format!("-Ttext={LOAD_ADDRESS}");
    run_in(
        root,
        "ld",
        &[
            "-m",
            "elf_x86_64",
            "-nostdlib",
            "-static",
            // One RWX segment at the load address: no ELF headers loaded below 1 MiB.
            "-N",
            &text,
            "-e",
            "_start",
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
    for (source, elf) in GUESTS {
        let source = root.join(source);
        let elf = root.join(elf);
        if check {
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let fresh = dir.path().join("guest.elf");
            assemble(root, &source, &fresh)?;
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
            assemble(root, &source, &elf)?;
            println!("builtin-guest: wrote {}", elf.display());
        }
    }
    Ok(())
}
