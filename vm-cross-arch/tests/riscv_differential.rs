//! Differential test of the riscv64 interpreter against QEMU's user-mode
//! emulator (`qemu-riscv64`, Debian's `qemu-user`).
//!
//! A deterministic generator writes a few hundred random straight-line
//! programs (short forward branches included) into one assembly file, built
//! twice with the cross gcc: once to run bare-metal in M-mode on our
//! interpreter, once as a static Linux program for `qemu-riscv64`. Each
//! program starts from its own random integer and FP registers, rounding
//! mode and a 256-byte scratch buffer, and ends by dumping the scratch
//! buffer, `x1..x31`, `f0..f31` (all 64 bits, so NaN boxes are compared too)
//! and `fcsr` to the console (the UART here, stdout under QEMU). The two
//! dumps must be equal byte for byte.
//!
//! The instructions drawn are the ones QEMU 7.2 (Debian 12) implements:
//! RV64IMAFDC (no LR/SC: its success is not architecturally fixed), Zba,
//! Zbb, Zbc, Zbs, Zbkb, Zbkc, Zbkx, and Zfh/Zfhmin. Zicond, Zfa, Zimop and
//! Zcmop are not in QEMU 7.2; the ISA tests in `riscv_isa.rs` cover them
//! with constants from the specifications. `ctzw` is left out: QEMU 7.2
//! returns the 64-bit count for some values whose low word is zero (61 for
//! `0x2000_0000_0000_0000`, where the specification says 32); `bitmanip.S`
//! checks that case.
//!
//! Both builds place every program, its data and the `emit` routine at the
//! same addresses (only the entry code after them differs), so
//! PC-relative values such as `auipc` results compare equal too.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use vm_cross_arch::interp::riscv64::elf::{self, Outcome};
use vm_cross_arch::interp::riscv64::Tier;
use vm_cross_arch::platform::riscv64::layout;

/// Programs per run.
const PROGRAMS: usize = 400;
/// Random instructions per program: 1 to `MAX_LEN + 1`.
const MAX_LEN: u64 = 48;
/// Scratch buffer bytes per program.
const SCRATCH: usize = 256;
/// Dumped state: scratch, then x1..x31 and one spare slot, f0..f31, fcsr.
const DUMP: usize = SCRATCH + 8 * (32 + 32 + 1);

const MARCH: &str = "-march=rv64gc_zba_zbb_zbc_zbs_zbkb_zbkc_zbkx_zfh";
const QEMU_CPU: &str = "rv64,zba=true,zbb=true,zbc=true,zbs=true,zbkb=true,zbkc=true,zbkx=true,\
                        Zfh=true,Zfhmin=true";

/// The scratch base register: never written by the random instructions.
const BASE: u32 = 27;
/// Address register of atomics (`BASE` plus an offset, set just before).
const AMO_ADDR: u32 = 26;

struct Gen {
    rng: TestRng,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A destination: any integer register but the scratch base.
    fn xd(&mut self) -> u32 {
        loop {
            let r = self.below(32) as u32;
            if r != BASE {
                return r;
            }
        }
    }

    fn xs(&mut self) -> u32 {
        self.below(32) as u32
    }

    fn f(&mut self) -> u32 {
        self.below(32) as u32
    }

    /// A static or dynamic rounding-mode operand.
    fn rm(&mut self) -> &'static str {
        ["", ", rne", ", rtz", ", rdn", ", rup", ", rmm", ", dyn"][self.below(7) as usize]
    }

    /// A 64-bit integer biased toward edge cases.
    fn int_value(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(16),
            3 => 1 << self.below(64),
            4 => (i64::from(self.rng.next_u32() as i32)) as u64,
            5 => {
                [i64::MIN as u64, i64::MAX as u64, 0x8000_0000, 0x7fff_ffff][self.below(4) as usize]
            }
            _ => self.rng.next_u64(),
        }
    }

    /// A value in a float register: boxed halves and singles, doubles, and
    /// badly boxed values, with IEEE special values over-represented.
    fn fp_value(&mut self) -> u64 {
        // Zeros, ones, infinities, NaNs (quiet, signaling), the smallest
        // subnormal, the largest value, and values around the smallest
        // normal and around 1 (their products land on the underflow
        // boundary).
        const HALF: [u64; 14] = [
            0, 0x8000, 0x3c00, 0xbc00, 0x7c00, 0xfc00, 0x7e00, 0x7d00, 0x0001, 0x7bff, 0x0400,
            0x03ff, 0x3bff, 0x3c01,
        ];
        const SINGLE: [u64; 14] = [
            0,
            0x8000_0000,
            0x3f80_0000,
            0xbf80_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7fa0_0000,
            0x0000_0001,
            0x7f7f_ffff,
            0x0080_0000,
            0x007f_ffff,
            0x3f7f_ffff,
            0x3f80_0001,
        ];
        const DOUBLE: [u64; 12] = [
            0,
            1 << 63,
            0x3ff0_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0x7ff4_0000_0000_0000,
            1,
            0x7fef_ffff_ffff_ffff,
            0x0010_0000_0000_0000,
            0x000f_ffff_ffff_ffff,
            0x3fef_ffff_ffff_ffff,
            0x3ff0_0000_0000_0001,
        ];
        let special = self.below(3) == 0;
        match self.below(7) {
            0 | 1 => {
                let v = if special {
                    HALF[self.below(14) as usize]
                } else {
                    self.below(1 << 16)
                };
                0xffff_ffff_ffff_0000 | v
            }
            2 | 3 => {
                let v = if special {
                    SINGLE[self.below(14) as usize]
                } else {
                    u64::from(self.rng.next_u32())
                };
                0xffff_ffff_0000_0000 | v
            }
            4 | 5 => {
                if special {
                    DOUBLE[self.below(12) as usize]
                } else {
                    // Small exponents make sums and products of doubles meet.
                    (self.rng.next_u64() & 0x800f_ffff_ffff_ffff) | ((0x3f0 + self.below(32)) << 52)
                }
            }
            _ => self.rng.next_u64(),
        }
    }

    fn instruction(&mut self, out: &mut String, label: &mut u32) {
        let (d, a, b) = (self.xd(), self.xs(), self.xs());
        let line = match self.below(20) {
            0..=2 => {
                let op = self.pick(&[
                    "add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "mul",
                    "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu", "addw", "subw",
                    "sllw", "srlw", "sraw", "mulw", "divw", "divuw", "remw", "remuw",
                ]);
                format!("{op} x{d}, x{a}, x{b}")
            }
            3 | 4 => {
                let imm = self.below(4096) as i64 - 2048;
                match self.below(8) {
                    0 => format!("lui x{d}, {}", self.below(1 << 20)),
                    1 => format!("auipc x{d}, {}", self.below(1 << 20)),
                    2 => {
                        let op = self.pick(&[
                            "slli", "srli", "srai", "rori", "bclri", "bseti", "binvi", "bexti",
                            "slli.uw",
                        ]);
                        format!("{op} x{d}, x{a}, {}", self.below(64))
                    }
                    3 => {
                        let op = self.pick(&["slliw", "srliw", "sraiw", "roriw"]);
                        format!("{op} x{d}, x{a}, {}", self.below(32))
                    }
                    _ => {
                        let op =
                            self.pick(&["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"]);
                        format!("{op} x{d}, x{a}, {imm}")
                    }
                }
            }
            5..=7 => {
                let op = self.pick(&[
                    "sh1add",
                    "sh2add",
                    "sh3add",
                    "add.uw",
                    "sh1add.uw",
                    "sh2add.uw",
                    "sh3add.uw",
                    "andn",
                    "orn",
                    "xnor",
                    "max",
                    "maxu",
                    "min",
                    "minu",
                    "rol",
                    "rolw",
                    "ror",
                    "rorw",
                    "clmul",
                    "clmulh",
                    "clmulr",
                    "bclr",
                    "bext",
                    "binv",
                    "bset",
                    "pack",
                    "packh",
                    "packw",
                    "xperm4",
                    "xperm8",
                ]);
                format!("{op} x{d}, x{a}, x{b}")
            }
            8 => {
                let op = self.pick(&[
                    "clz", "clzw", "ctz", "cpop", "cpopw", "sext.b", "sext.h", "zext.h", "orc.b",
                    "rev8", "brev8",
                ]);
                format!("{op} x{d}, x{a}")
            }
            9 | 10 => {
                let (op, size) = [
                    ("lb", 1),
                    ("lbu", 1),
                    ("lh", 2),
                    ("lhu", 2),
                    ("lw", 4),
                    ("lwu", 4),
                    ("ld", 8),
                    ("sb", 1),
                    ("sh", 2),
                    ("sw", 4),
                    ("sd", 8),
                ][self.below(11) as usize];
                let off = self.below((SCRATCH / size) as u64) * size as u64;
                let reg = if op.starts_with('s') { b } else { d };
                format!("{op} x{reg}, {off}(x{BASE})")
            }
            11 => {
                let w = if self.below(2) == 0 { "w" } else { "d" };
                let size = if w == "w" { 4 } else { 8 };
                let op = self.pick(&[
                    "amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax",
                    "amominu", "amomaxu",
                ]);
                let off = self.below((SCRATCH / size) as u64) * size as u64;
                format!("addi x{AMO_ADDR}, x{BASE}, {off}\n  {op}.{w} x{d}, x{b}, (x{AMO_ADDR})")
            }
            12 => {
                *label += 1;
                let op = self.pick(&["beq", "bne", "blt", "bge", "bltu", "bgeu"]);
                format!("{op} x{a}, x{b}, 9{label}f\n  addi x{d}, x{d}, 1\n9{label}:")
            }
            _ => self.fp_instruction(d, a),
        };
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }

    fn fp_instruction(&mut self, d: u32, a: u32) -> String {
        let fmt = self.pick(&["h", "s", "d"]);
        let (fd, f1, f2, f3) = (self.f(), self.f(), self.f(), self.f());
        match self.below(12) {
            0 | 1 => {
                let op = self.pick(&["fadd", "fsub", "fmul", "fdiv"]);
                format!("{op}.{fmt} f{fd}, f{f1}, f{f2}{}", self.rm())
            }
            2 => format!("fsqrt.{fmt} f{fd}, f{f1}{}", self.rm()),
            3 => {
                let op = self.pick(&["fsgnj", "fsgnjn", "fsgnjx", "fmin", "fmax"]);
                format!("{op}.{fmt} f{fd}, f{f1}, f{f2}")
            }
            4 => {
                let op = self.pick(&["fmadd", "fmsub", "fnmadd", "fnmsub"]);
                format!("{op}.{fmt} f{fd}, f{f1}, f{f2}, f{f3}{}", self.rm())
            }
            5 => {
                let op = self.pick(&["feq", "flt", "fle"]);
                format!("{op}.{fmt} x{d}, f{f1}, f{f2}")
            }
            6 => format!("fclass.{fmt} x{d}, f{f1}"),
            7 => {
                let int = self.pick(&["w", "wu", "l", "lu"]);
                format!("fcvt.{int}.{fmt} x{d}, f{f1}{}", self.rm())
            }
            8 => {
                let int = self.pick(&["w", "wu", "l", "lu"]);
                // Exact conversions take no rounding mode in binutils 2.40.
                let rm = if fmt == "d" && int.starts_with('w') {
                    ""
                } else {
                    self.rm()
                };
                format!("fcvt.{fmt}.{int} f{fd}, x{a}{rm}")
            }
            9 => {
                let from = self.pick(&["h", "s", "d"]);
                if from == fmt {
                    format!("fmv.x.{} x{d}, f{f1}", if fmt == "s" { "w" } else { fmt })
                } else {
                    let widening = matches!((from, fmt), ("h", _) | ("s", "d"));
                    let rm = if widening { "" } else { self.rm() };
                    format!("fcvt.{fmt}.{from} f{fd}, f{f1}{rm}")
                }
            }
            10 => format!("fmv.{}.x f{fd}, x{a}", if fmt == "s" { "w" } else { fmt }),
            _ => {
                let (size, name) = match fmt {
                    "h" => (2, "h"),
                    "s" => (4, "w"),
                    _ => (8, "d"),
                };
                let off = self.below((SCRATCH / size) as u64) * size as u64;
                if self.below(2) == 0 {
                    format!("fl{name} f{fd}, {off}(x{BASE})")
                } else {
                    format!("fs{name} f{f1}, {off}(x{BASE})")
                }
            }
        }
    }
}

/// The whole assembly file: programs in `.text.init` (identical in both
/// builds), entry and output code in `.text`, data after them.
fn source(seed: &mut Gen) -> (String, Vec<String>) {
    let mut text = String::from("  .section .text.init\n  .option norvc\nprograms:\n");
    let mut data = String::from("  .data\n  .align 4\n");
    let mut listings = Vec::new();
    let mut label = 0;
    for p in 0..PROGRAMS {
        let mut body = String::new();
        for _ in 0..=seed.below(MAX_LEN) {
            seed.instruction(&mut body, &mut label);
        }
        // Load the starting state.
        let _ = writeln!(
            text,
            "  la x{BASE}, init{p}\n  ld x1, 512(x{BASE})\n  csrw fcsr, x1"
        );
        for r in 0..32 {
            let _ = writeln!(text, "  fld f{r}, {}(x{BASE})", 256 + 8 * r);
        }
        for r in (1..32).filter(|&r| r != BASE) {
            let _ = writeln!(text, "  ld x{r}, {}(x{BASE})", 8 * (r - 1));
        }
        let _ = writeln!(text, "  la x{BASE}, state{p}");
        text.push_str(&body);
        // Dump the final state after the scratch buffer.
        for r in 1..32 {
            let _ = writeln!(text, "  sd x{r}, {}(x{BASE})", SCRATCH + 8 * (r - 1));
        }
        for r in 0..32 {
            let _ = writeln!(text, "  fsd f{r}, {}(x{BASE})", SCRATCH + 256 + 8 * r);
        }
        let _ = writeln!(
            text,
            "  csrr x1, fcsr\n  sd x1, {}(x{BASE})\n  mv a0, x{BASE}\n  li a1, {DUMP}\n  call emit",
            SCRATCH + 512
        );
        listings.push(body);
        // Starting state: x1..x31 (the base's slot unused), f0..f31, fcsr.
        let _ = writeln!(data, "init{p}:");
        for _ in 1..32 {
            let _ = writeln!(data, "  .dword {:#x}", seed.int_value());
        }
        let _ = writeln!(data, "  .dword 0");
        for _ in 0..32 {
            let _ = writeln!(data, "  .dword {:#x}", seed.fp_value());
        }
        let _ = writeln!(data, "  .dword {:#x}", seed.below(5) << 5);
        let _ = writeln!(data, "state{p}:");
        for _ in 0..SCRATCH / 8 {
            let _ = writeln!(data, "  .dword {:#x}", seed.rng.next_u64());
        }
        let _ = writeln!(data, "  .zero {}", DUMP - SCRATCH);
    }
    let uart = layout::UART.start.0;
    let tail = format!(
        r"  j finish
  .text
  .globl _start
_start:
#ifdef USER
  la t0, programs
  jr t0
finish:
  li a0, 0
  li a7, 93
  ecall
emit_failed:
  li a0, 1
  li a7, 93
  ecall
#else
  la t0, trapped
  csrw mtvec, t0
  li t0, 0x2000
  csrs mstatus, t0
  la t0, programs
  jr t0
finish:
  li a0, 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
  .align 2
trapped:
  li a0, 3
  la t0, tohost
  sd a0, 0(t0)
2: j 2b
#endif
  .org 0x100
/* a0 = buffer, a1 = length. */
emit:
  mv s0, a0
  mv s1, a1
#ifdef USER
3: li a0, 1
  mv a1, s0
  mv a2, s1
  li a7, 64
  ecall
  blez a0, emit_failed
  add s0, s0, a0
  sub s1, s1, a0
  bnez s1, 3b
#else
  li t0, {uart:#x}
4: lbu a2, 0(s0)
  sb a2, 0(t0)
  addi s0, s0, 1
  addi s1, s1, -1
  bnez s1, 4b
#endif
  ret
"
    );
    text.push_str(&tail);
    let tohost =
        "  .section .tohost, \"aw\", @progbits\n  .align 6\n  .globl tohost\ntohost: .dword 0\n";
    (format!("{text}{data}{tohost}"), listings)
}

fn assemble(gcc: &Path, dir: &Path, user: bool) -> Vec<u8> {
    let src = dir.join("programs.S");
    let out = dir.join(if user { "user.elf" } else { "bare.elf" });
    let link = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/riscv/link.ld");
    let mut cmd = Command::new(gcc);
    cmd.args(["-static", "-nostdlib", "-nostartfiles", "-mabi=lp64d"])
        .args(["-mcmodel=medany", "-Wl,--no-relax", MARCH])
        .arg("-T")
        .arg(&link);
    if user {
        cmd.arg("-DUSER");
    }
    let output = cmd
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .expect("running the cross compiler");
    assert!(
        output.status.success(),
        "assembling the random programs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("reading the ELF")
}

/// Names the first difference of one program's dump.
fn describe(ours: &[u8], qemu: &[u8]) -> String {
    let word = |d: &[u8], i: usize| u64::from_le_bytes(d[i..i + 8].try_into().expect("8 bytes"));
    let mut out = String::new();
    for i in (0..DUMP).step_by(8) {
        let (a, b) = (word(ours, i), word(qemu, i));
        if a == b {
            continue;
        }
        let what = if i < SCRATCH {
            format!("scratch[{i}]")
        } else if i < SCRATCH + 256 {
            format!("x{}", (i - SCRATCH) / 8 + 1)
        } else if i < SCRATCH + 512 {
            format!("f{}", (i - SCRATCH - 256) / 8)
        } else {
            "fcsr".to_owned()
        };
        let _ = writeln!(out, "  {what}: ours {a:#018x}, qemu {b:#018x}");
    }
    out
}

#[test]
fn random_programs_match_qemu_user_mode() {
    let Some(gcc) = test_prerequisites::riscv64_gcc() else {
        return;
    };
    let Some(qemu) = test_prerequisites::tool("qemu-riscv64", "qemu-user") else {
        return;
    };
    let mut gen = Gen {
        rng: TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let (asm, listings) = source(&mut gen);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("programs.S"), &asm).expect("writing the programs");
    let bare = assemble(&gcc, dir.path(), false);
    let user = assemble(&gcc, dir.path(), true);
    let user_path = dir.path().join("user.elf");
    std::fs::write(&user_path, &user).expect("writing the user-mode ELF");

    let qemu_run = Command::new(qemu)
        .arg("-cpu")
        .arg(QEMU_CPU)
        .arg(&user_path)
        .output()
        .expect("running qemu-riscv64");
    assert!(
        qemu_run.status.success(),
        "qemu-riscv64 failed ({}): {}",
        qemu_run.status,
        String::from_utf8_lossy(&qemu_run.stderr)
    );
    // Interpreted, and with every block translated at its first execution.
    for tier in [Tier::Interpret, Tier::TranslateAll] {
        compare(&bare, tier, &listings, &qemu_run.stdout);
    }
}

/// Runs the bare-metal build in `tier` and compares its dump with QEMU's.
fn compare(bare: &[u8], tier: Tier, listings: &[String], theirs: &[u8]) {
    let report = elf::run_with(bare, 64 << 20, 100_000_000, tier).expect("loading the programs");
    assert_eq!(
        report.outcome,
        Outcome::Pass,
        "our run did not finish ({tier:?})"
    );
    let ours = &report.console;
    assert_eq!(
        theirs.len(),
        PROGRAMS * DUMP,
        "QEMU's dump has the wrong size"
    );
    assert_eq!(
        ours.len(),
        PROGRAMS * DUMP,
        "our dump has the wrong size ({tier:?})"
    );
    let mut failures = String::new();
    let mut failed = 0;
    for (p, listing) in listings.iter().enumerate() {
        let range = p * DUMP..(p + 1) * DUMP;
        if ours[range.clone()] != theirs[range.clone()] {
            failed += 1;
            if failed <= 3 {
                let _ = write!(
                    failures,
                    "program {p}:\n{listing}differs:\n{}\n",
                    describe(&ours[range.clone()], &theirs[range])
                );
            }
        }
    }
    eprintln!(
        "{PROGRAMS} random programs, {} instructions on our engine ({tier:?}), {failed} differ from QEMU",
        report.instructions
    );
    assert_eq!(
        failed, 0,
        "{failed} programs differ from QEMU ({tier:?}):\n{failures}"
    );
}
