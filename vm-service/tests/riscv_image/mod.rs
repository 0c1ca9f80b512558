//! Shared by the tests that boot a small riscv64 kernel Image: assemble a
//! source from `tests/gdb/` or `tests/profile/` with the riscv64 cross gcc,
//! starting with `tests/gdb/image_header.S` and linked by
//! `tests/gdb/image.ld` where the platform loads an Image.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `tests/<source>` into (ELF with symbols, flat Image for the VMM),
/// or `None` when there is no riscv64 cross gcc (reported as missing).
pub fn build_image(dir: &Path, source: &str) -> Option<(PathBuf, PathBuf)> {
    let gcc = test_prerequisites::riscv64_gcc()?;
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let elf = dir.join("image.elf");
    let ok = Command::new(&gcc)
        .args([
            "-nostdlib",
            "-nostartfiles",
            "-march=rv64gc",
            "-mabi=lp64d",
            "-mcmodel=medany",
            "-Wl,--no-relax",
        ])
        .arg("-I")
        .arg(tests.join("gdb"))
        .arg("-T")
        .arg(tests.join("gdb/image.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(tests.join(source))
        .status()
        .expect("running gcc");
    assert!(ok.success(), "assembling {source} failed");
    // objcopy of the same toolchain sits beside its gcc.
    let name = gcc.file_name().and_then(|n| n.to_str()).expect("gcc name");
    let objcopy = gcc.with_file_name(name.replace("gcc", "objcopy"));
    let bin = dir.join("image.bin");
    let ok = Command::new(&objcopy)
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin)
        .status()
        .expect("running objcopy");
    assert!(ok.success(), "objcopy failed");
    Some((elf, bin))
}
