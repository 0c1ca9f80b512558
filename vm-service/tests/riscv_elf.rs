//! `vm-service run --arch riscv64 --kernel prog.elf` runs a bare-metal test
//! program on the riscv64 interpreter, built by `VmmBuilder` like any guest;
//! the exit status says pass or fail.
//! A missing riscv64 cross compiler is reported through `test_prerequisites`.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn assemble(dir: &Path, body: &str) -> Option<PathBuf> {
    let gcc = test_prerequisites::riscv64_gcc()?;
    let inc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-cross-arch/tests/riscv");
    let src = dir.join("prog.S");
    std::fs::write(&src, format!("#include \"test.h\"\nSTART\n{body}\nEND\n")).expect("write");
    let out = dir.join("prog.elf");
    let ok = Command::new(gcc)
        .args([
            "-nostdlib",
            "-nostartfiles",
            "-march=rv64gc",
            "-mabi=lp64d",
            "-mcmodel=medany",
            "-Wl,--no-relax",
        ])
        .arg("-T")
        .arg(inc.join("link.ld"))
        .arg("-I")
        .arg(&inc)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("running gcc");
    assert!(ok.success(), "assembling failed");
    Some(out)
}

/// Runs `elf` in execution tier `tier` (`--riscv-tier`).
fn run(elf: &Path, tier: &str) -> (Option<i32>, String) {
    let out = Command::cargo_bin("vm-service")
        .expect("binary")
        .args([
            "run",
            "--riscv-tier",
            tier,
            "--arch",
            "riscv64",
            "--memory",
            "32",
            "--max-instructions",
            "100000",
            "--kernel",
        ])
        .arg(elf)
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn passing_and_failing_programs_set_the_exit_status() {
    for tier in ["translate", "interpret"] {
        programs_set_the_exit_status(tier);
    }
}

fn programs_set_the_exit_status(tier: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pass) = assemble(dir.path(), "  TEST(1); li a0, 2; CHECK(a0, 2)\n  j pass") else {
        return;
    };
    let (code, stderr) = run(&pass, tier);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("guest powered off"), "{stderr}");

    let fail_dir = tempfile::tempdir().expect("tempdir");
    let fail = assemble(
        fail_dir.path(),
        "  TEST(5); li a0, 1; CHECK(a0, 2)\n  j pass",
    )
    .expect("compiler");
    let (code, stderr) = run(&fail, tier);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("test program failed: test 5"), "{stderr}");

    let loop_dir = tempfile::tempdir().expect("tempdir");
    let endless = assemble(loop_dir.path(), "1: j 1b").expect("compiler");
    let (code, stderr) = run(&endless, tier);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the instruction limit (100000) was reached"),
        "{stderr}"
    );
}
