//! ISA tests for the riscv64 interpreter: `.S` programs in `tests/riscv/`
//! assembled at test time with Debian's `gcc-riscv64-unknown-elf` (or
//! `gcc-riscv64-linux-gnu`) and run in M-mode until they write `tohost`
//! (1 = pass, otherwise `value >> 1` is the failing test number).
//! A missing cross compiler is reported through `test_prerequisites`.

use std::path::{Path, PathBuf};
use std::process::Command;

use vm_cross_arch::interp::riscv64::elf::{self, Outcome};
use vm_cross_arch::interp::riscv64::Tier;

/// Flags of every test build. `-static`: a linux-gnu toolchain links
/// dynamically by default (an INTERP segment, headers below the RAM base).
const GCC_FLAGS: [&str; 6] = [
    "-static",
    "-nostdlib",
    "-nostartfiles",
    "-mabi=lp64d",
    "-mcmodel=medany",
    "-Wl,--no-relax",
];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/riscv")
}

/// `-march` of the programs using extensions beyond RV64GC (Zicond is not
/// known to gcc 12: those tests spell it with `.insn`).
const MARCH_EXTENDED: &str =
    "-march=rv64gc_zba_zbb_zbc_zbs_zbkb_zbkc_zbkx_zicbom_zicboz_zicbop_zihintpause";

/// Assembles `name.S` into an ELF; `None` when the compiler is missing.
fn build(name: &str) -> Option<Vec<u8>> {
    build_with(name, "-march=rv64gc")
}

/// [`build`] with another `-march`.
fn build_with(name: &str, march: &str) -> Option<Vec<u8>> {
    let gcc = test_prerequisites::riscv64_gcc()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join(format!("{name}.elf"));
    let src = source_dir();
    let status = Command::new(gcc)
        .args(GCC_FLAGS)
        .arg(march)
        .arg("-T")
        .arg(src.join("link.ld"))
        .arg("-I")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .arg(src.join(format!("{name}.S")))
        .output()
        .expect("running the cross compiler");
    assert!(
        status.status.success(),
        "assembling {name}.S failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    Some(std::fs::read(&out).expect("reading the ELF"))
}

fn run_test(name: &str) {
    run_built(name, build(name));
}

/// Runs a test program in every tier: interpreted, with hot blocks
/// translated, and with every block translated at its first execution
/// (where the host has a code generator).
fn run_built(name: &str, program: Option<Vec<u8>>) {
    let Some(program) = program else { return };
    for tier in [Tier::Interpret, Tier::Translate, Tier::TranslateAll] {
        let report = elf::run_with(&program, 64 << 20, 50_000_000, tier).expect("loading the test");
        eprintln!(
            "{name} ({tier:?}): {:?} after {} instructions in {:?}",
            report.outcome, report.instructions, report.elapsed
        );
        assert_eq!(
            report.outcome,
            Outcome::Pass,
            "{name} ({tier:?}): console {:?}",
            String::from_utf8_lossy(&report.console)
        );
    }
}

#[test]
fn rv64i() {
    run_test("rv64i");
}

#[test]
fn rv64m() {
    run_test("rv64m");
}

#[test]
fn rv64a() {
    run_test("rv64a");
}

#[test]
fn rv64c() {
    run_test("rv64c");
}

#[test]
fn bit_manipulation_and_zicond() {
    run_built("bitmanip", build_with("bitmanip", MARCH_EXTENDED));
}

#[test]
fn half_precision_zfa_and_may_be_operations() {
    run_built("zfh", build_with("zfh", "-march=rv64gc_zfh"));
}

#[test]
fn cache_blocks_counters_triggers_and_sstc() {
    run_built("cmo", build_with("cmo", MARCH_EXTENDED));
}

#[test]
fn privilege_modes_and_traps() {
    run_test("priv");
}

#[test]
fn sv39_page_tables() {
    run_test("sv39");
}

#[test]
fn interrupts() {
    run_test("interrupts");
}

#[test]
fn float_single_and_double() {
    run_test("fp");
}

#[test]
fn hostile_guest_code_traps() {
    run_test("hostile");
}

#[test]
fn self_modifying_code() {
    run_test("selfmod");
}

#[test]
fn a_failing_test_reports_its_number() {
    let Some(gcc) = test_prerequisites::riscv64_gcc() else {
        return;
    };
    // Assemble a program that fails test 7 on purpose.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("failing.S");
    std::fs::write(
        &src,
        "#include \"test.h\"\nSTART\n  TEST(7); li a0, 1; CHECK(a0, 2)\n  j pass\nEND\n",
    )
    .expect("write");
    let out = dir.path().join("failing.elf");
    let s = source_dir();
    let ok = Command::new(gcc)
        .args(GCC_FLAGS)
        .arg("-march=rv64gc")
        .arg("-T")
        .arg(s.join("link.ld"))
        .arg("-I")
        .arg(&s)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(ok.success());
    let report = elf::run(&std::fs::read(&out).expect("elf"), 16 << 20, 1_000_000).expect("run");
    assert_eq!(report.outcome, Outcome::Fail(7));
}

#[test]
fn an_endless_loop_hits_the_budget() {
    // `j .` at the entry: hand-assembled, no compiler needed.
    let program = tiny_elf(&[0x6f, 0x00, 0x00, 0x00]);
    let report = elf::run(&program, 16 << 20, 100_000).expect("run");
    assert_eq!(report.outcome, Outcome::Timeout);
    assert!(report.instructions >= 100_000);
}

#[test]
fn a_program_that_traps_for_ever_hits_the_budget() {
    // `jr zero`: a fetch fault at 0, whose handler (mtvec = 0) faults again, for ever.
    let program = tiny_elf(&[0x67, 0x00, 0x00, 0x00]);
    let report = elf::run(&program, 16 << 20, 100_000).expect("run");
    assert_eq!(report.outcome, Outcome::Timeout);
}

#[test]
fn malformed_elf_files_are_errors() {
    assert!(elf::run(b"not an elf", 16 << 20, 10).is_err());
    let mut program = tiny_elf(&[0x6f, 0, 0, 0]);
    program.truncate(70);
    assert!(elf::run(&program, 16 << 20, 10).is_err());
    // A segment outside RAM.
    let mut far = tiny_elf(&[0x6f, 0, 0, 0]);
    far[64 + 24..64 + 32].copy_from_slice(&0x1000u64.to_le_bytes());
    assert!(matches!(
        elf::run(&far, 16 << 20, 10),
        Err(elf::ElfError::SegmentOutsideRam { .. })
    ));
}

/// A minimal ELF64 RISC-V executable with one segment at 0x80000000.
fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&243u16.to_le_bytes());
    f[24..32].copy_from_slice(&0x8000_0000u64.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&0x8000_0000u64.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&0x8000_0000u64.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f.extend_from_slice(code);
    f
}
