//! Running a bare-metal test program: load an RV64 ELF at its physical
//! addresses, start hart 0 in M-mode at the entry point, and stop when the
//! program writes the `tohost` symbol (riscv-tests convention: 1 = pass,
//! otherwise `value >> 1` is the failing test number) or the instruction
//! budget runs out. UART writes are collected as console output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_accel::{GuestAddress, GuestRegionMmap, SystemEvent, Vm};

use super::hart::HartExit;
use super::vm::{platform_devices, RiscvVm};
use super::Tier;
use crate::platform::riscv64::layout;

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file, or not a little-endian 64-bit RISC-V one.
    #[error("not a 64-bit little-endian RISC-V ELF file: {0}")]
    NotRiscvElf(&'static str),
    /// A header or table points outside the file.
    #[error("ELF {what} at offset {offset:#x} runs past the end of the file ({len} bytes)")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// File size.
        len: usize,
    },
    /// A loadable segment does not fit in guest RAM.
    #[error("segment at {addr:#x} ({size:#x} bytes) is outside guest RAM {base:#x}..{end:#x}")]
    SegmentOutsideRam {
        /// Physical address.
        addr: u64,
        /// Memory size.
        size: u64,
        /// RAM base.
        base: u64,
        /// RAM end.
        end: u64,
    },
    /// Setting up the machine failed.
    #[error("setting up the software machine: {0}")]
    Machine(String),
}

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address.
    pub paddr: u64,
    /// Offset of the file bytes.
    pub offset: u64,
    /// Bytes in the file.
    pub file_size: u64,
    /// Bytes in memory (the rest is zero).
    pub mem_size: u64,
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfProgram {
    /// Entry point.
    pub entry: u64,
    /// `PT_LOAD` segments.
    pub segments: Vec<Segment>,
    /// Address of the `tohost` symbol, if the program has one.
    pub tohost: Option<u64>,
}

fn field(bytes: &[u8], what: &'static str, offset: u64, width: usize) -> Result<u64, ElfError> {
    let start = usize::try_from(offset).ok();
    let slice = start
        .and_then(|s| s.checked_add(width).map(|e| (s, e)))
        .and_then(|(s, e)| bytes.get(s..e))
        .ok_or(ElfError::Truncated {
            what,
            offset,
            len: bytes.len(),
        })?;
    Ok(slice
        .iter()
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u64::from(*b) << (8 * i))))
}

/// Parses the headers of an RV64 ELF file.
pub fn parse(bytes: &[u8]) -> Result<ElfProgram, ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotRiscvElf("bad magic"));
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ElfError::NotRiscvElf("not ELFCLASS64 little-endian"));
    }
    if field(bytes, "header", 18, 2)? != 243 {
        return Err(ElfError::NotRiscvElf("e_machine is not EM_RISCV"));
    }
    let entry = field(bytes, "header", 24, 8)?;
    let phoff = field(bytes, "header", 32, 8)?;
    let shoff = field(bytes, "header", 40, 8)?;
    let phentsize = field(bytes, "header", 54, 2)?;
    let phnum = field(bytes, "header", 56, 2)?;
    let shentsize = field(bytes, "header", 58, 2)?;
    let shnum = field(bytes, "header", 60, 2)?;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        if field(bytes, "program header", ph, 4)? != 1 {
            continue;
        }
        let seg = Segment {
            offset: field(bytes, "program header", ph + 8, 8)?,
            paddr: field(bytes, "program header", ph + 24, 8)?,
            file_size: field(bytes, "program header", ph + 32, 8)?,
            mem_size: field(bytes, "program header", ph + 40, 8)?,
        };
        if seg.file_size > seg.mem_size {
            return Err(ElfError::NotRiscvElf(
                "segment file size exceeds its memory size",
            ));
        }
        field(bytes, "segment data", seg.offset, 0)?;
        if seg.file_size > 0 {
            field(bytes, "segment data", seg.offset + seg.file_size - 1, 1)?;
        }
        segments.push(seg);
    }
    let mut tohost = None;
    for i in 0..shnum {
        let sh = shoff.saturating_add(i.saturating_mul(shentsize));
        if field(bytes, "section header", sh + 4, 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let offset = field(bytes, "section header", sh + 24, 8)?;
        let size = field(bytes, "section header", sh + 32, 8)?;
        let link = field(bytes, "section header", sh + 40, 4)?;
        let str_sh = shoff.saturating_add(link.saturating_mul(shentsize));
        let str_off = field(bytes, "section header", str_sh + 24, 8)?;
        for s in 0..size / 24 {
            let sym = offset + s * 24;
            let name = field(bytes, "symbol", sym, 4)?;
            let start = str_off.saturating_add(name) as usize;
            if bytes.get(start..start + 7) == Some(b"tohost\0") {
                tohost = Some(field(bytes, "symbol", sym + 8, 8)?);
            }
        }
    }
    Ok(ElfProgram {
        entry,
        segments,
        tohost,
    })
}

/// How a test program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `tohost = 1`.
    Pass,
    /// `tohost = (n << 1) | 1`: test `n` failed.
    Fail(u64),
    /// The program powered off through the syscon or SBI.
    PowerEvent(SystemEvent),
    /// The budget ran out first.
    Timeout,
    /// The engine could not continue.
    Fatal(String),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Instructions retired.
    pub instructions: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Bytes written to the UART.
    pub console: Vec<u8>,
}

/// Loads `bytes` into a fresh machine with `mem_size` bytes of RAM at the
/// platform's RAM base and runs it for at most `budget` instructions, hot
/// code translated where the host has a code generator.
pub fn run(bytes: &[u8], mem_size: u64, budget: u64) -> Result<Report, ElfError> {
    run_with(bytes, mem_size, budget, Tier::default())
}

/// [`run`] in the execution tier `tier`.
pub fn run_with(bytes: &[u8], mem_size: u64, budget: u64, tier: Tier) -> Result<Report, ElfError> {
    let program = parse(bytes)?;
    let base = layout::RAM_BASE;
    let end = base + mem_size;
    for seg in &program.segments {
        if seg.paddr < base || seg.paddr.saturating_add(seg.mem_size) > end {
            return Err(ElfError::SegmentOutsideRam {
                addr: seg.paddr,
                size: seg.mem_size,
                base,
                end,
            });
        }
    }
    let vm = RiscvVm::with_devices(1, platform_devices())
        .map_err(|e| ElfError::Machine(e.to_string()))?;
    let region = GuestRegionMmap::from_range(GuestAddress(base), mem_size as usize, None)
        .map_err(|e| ElfError::Machine(e.to_string()))?;
    vm.map_region(Arc::new(region))
        .map_err(|e| ElfError::Machine(e.to_string()))?;
    let mut vcpu = vm
        .create_riscv_vcpu(vm_accel::VcpuId(0))
        .map_err(|e| ElfError::Machine(e.to_string()))?;
    let hart = vcpu.hart_mut();
    hart.set_tier(tier);
    for seg in &program.segments {
        let data = &bytes[seg.offset as usize..(seg.offset + seg.file_size) as usize];
        if !hart.ram.write(seg.paddr, data) {
            return Err(ElfError::SegmentOutsideRam {
                addr: seg.paddr,
                size: seg.mem_size,
                base,
                end,
            });
        }
    }
    hart.pc = program.entry;
    hart.tohost = program.tohost;
    let started = Instant::now();
    let mut console = Vec::new();
    let uart = layout::UART.start.0;
    // Counted in steps handed to the hart, so a program that traps on every
    // instruction (and so retires none) still ends. An MMIO exit ends a
    // slice early: it costs what the slice retired (at least one step), so a
    // program printing a lot is not charged whole slices per byte.
    let mut spent = 0u64;
    let outcome = loop {
        if spent >= budget {
            break Outcome::Timeout;
        }
        let slice = (budget - spent).min(super::vcpu::RUN_BUDGET);
        let retired = hart.instret();
        let exit = hart.run(slice);
        spent += match exit {
            HartExit::MmioWrite { .. } | HartExit::MmioRead { .. } => {
                hart.instret().wrapping_sub(retired).clamp(1, slice)
            }
            _ => slice,
        };
        match exit {
            HartExit::Interrupted => {}
            HartExit::ToHost(1) => break Outcome::Pass,
            HartExit::ToHost(v) => break Outcome::Fail(v >> 1),
            HartExit::MmioWrite { addr, len } => {
                if addr == uart && len == 1 {
                    console.push(hart.mmio_data()[0]);
                }
            }
            HartExit::MmioRead { addr, len } => {
                // A 16550 that is always ready to transmit; everything else reads zero.
                let value = if addr == uart + 5 { 0x60 } else { 0 };
                let data = hart.mmio_data();
                data.fill(0);
                data[..len.min(8)].fill(0);
                data[0] = value;
            }
            HartExit::System(event) => break Outcome::PowerEvent(event),
            HartExit::Fatal(msg) => break Outcome::Fatal(msg),
            // No debugger is attached to a program run here.
            HartExit::Debug => break Outcome::Fatal("stopped for a debugger".into()),
        }
    };
    Ok(Report {
        outcome,
        instructions: hart.instret(),
        elapsed: started.elapsed(),
        console,
    })
}
