//! Bare-metal riscv64 test programs (the riscv-tests convention): an RV64
//! ELF file loaded at its segments' physical addresses, entered in M-mode at
//! its entry point, ended by a write to its `tohost` symbol
//! ([`BootState::Riscv64Bare`](vm_accel::BootState::Riscv64Bare)).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

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
    /// Writing a segment into guest memory failed.
    #[error("writing the segment at {addr:#x}: {reason}")]
    Write {
        /// Physical address.
        addr: u64,
        /// What failed.
        reason: String,
    },
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

/// Whether `bytes` start like an ELF file (what tells a test program from a
/// kernel `Image`).
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Parses `bytes` and writes its segments into `mem`; each must lie inside
/// guest RAM (the part of a segment beyond its file bytes stays as `mem`
/// has it: zero in fresh memory).
pub fn load(mem: &GuestMemoryMmap, bytes: &[u8]) -> Result<ElfProgram, ElfError> {
    let program = parse(bytes)?;
    let base = mem.iter().map(|r| r.start_addr().0).min().unwrap_or(0);
    let end = mem
        .iter()
        .map(|r| r.start_addr().0.saturating_add(r.len()))
        .max()
        .unwrap_or(0);
    for seg in &program.segments {
        let fits = usize::try_from(seg.mem_size)
            .is_ok_and(|len| mem.check_range(GuestAddress(seg.paddr), len));
        if !fits {
            return Err(ElfError::SegmentOutsideRam {
                addr: seg.paddr,
                size: seg.mem_size,
                base,
                end,
            });
        }
        // `parse` checked that the file holds these bytes.
        let data = &bytes[seg.offset as usize..(seg.offset + seg.file_size) as usize];
        mem.write_slice(data, GuestAddress(seg.paddr))
            .map_err(|e| ElfError::Write {
                addr: seg.paddr,
                reason: e.to_string(),
            })?;
    }
    Ok(program)
}
