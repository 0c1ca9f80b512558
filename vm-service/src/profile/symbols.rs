//! Function symbols of a guest kernel or program for naming profile samples:
//! the `.symtab` of a 64-bit little-endian ELF of any machine (a `vmlinux`, a
//! test program), or a kernel's `System.map` (what a distribution ships
//! beside a stripped kernel). Read defensively: a corrupt file is an error,
//! never a panic.

/// Why the symbols could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    /// Neither a 64-bit little-endian ELF file nor a `System.map`.
    #[error("not a 64-bit little-endian ELF file or a System.map")]
    NotElf64,
    /// A header or table points outside the file.
    #[error("the ELF {what} at offset {offset:#x} runs past the end of the file")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Where it was expected.
        offset: u64,
    },
    /// No symbol table (a stripped file).
    #[error("the ELF file has no function symbols (stripped?)")]
    NoSymbols,
}

/// Function symbols sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    /// `(start, size, name)`, by start address.
    functions: Vec<(u64, u64, String)>,
}

/// `width` little-endian bytes at `offset`.
fn read(bytes: &[u8], what: &'static str, offset: u64, width: usize) -> Result<u64, SymbolsError> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| bytes.get(start..start.checked_add(width)?))
        .map(|b| b.iter().rev().fold(0, |acc, x| (acc << 8) | u64::from(*x)))
        .ok_or(SymbolsError::Truncated { what, offset })
}

const SHT_SYMTAB: u64 = 2;
const STT_FUNC: u64 = 2;
const SYM_SIZE: u64 = 24;

impl Symbols {
    /// Reads the function symbols of an ELF file or a `System.map`.
    pub fn parse(bytes: &[u8]) -> Result<Self, SymbolsError> {
        if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
            return Self::parse_system_map(bytes);
        }
        let shoff = read(bytes, "header", 0x28, 8)?;
        let shentsize = read(bytes, "header", 0x3a, 2)?;
        let shnum = read(bytes, "header", 0x3c, 2)?;
        let mut functions = Vec::new();
        for i in 0..shnum {
            let sh = shoff.saturating_add(i.saturating_mul(shentsize));
            if read(bytes, "section header", sh.saturating_add(4), 4)? != SHT_SYMTAB {
                continue;
            }
            let offset = read(bytes, "section header", sh.saturating_add(0x18), 8)?;
            let size = read(bytes, "section header", sh.saturating_add(0x20), 8)?;
            let link = read(bytes, "section header", sh.saturating_add(0x28), 4)?;
            let strtab_sh = shoff.saturating_add(link.saturating_mul(shentsize));
            let strtab = read(bytes, "section header", strtab_sh.saturating_add(0x18), 8)?;
            for s in 0..size / SYM_SIZE {
                let sym = offset.saturating_add(s * SYM_SIZE);
                let info = read(bytes, "symbol", sym.saturating_add(4), 1)?;
                let value = read(bytes, "symbol", sym.saturating_add(8), 8)?;
                if info & 0xf != STT_FUNC || value == 0 {
                    continue;
                }
                let name_at = strtab.saturating_add(read(bytes, "symbol", sym, 4)?);
                let name = usize::try_from(name_at)
                    .ok()
                    .and_then(|start| bytes.get(start..))
                    .and_then(|rest| rest.split(|b| *b == 0).next())
                    .ok_or(SymbolsError::Truncated {
                        what: "symbol name",
                        offset: name_at,
                    })?;
                let size = read(bytes, "symbol", sym.saturating_add(16), 8)?;
                functions.push((value, size, String::from_utf8_lossy(name).into_owned()));
            }
        }
        Self::sorted(functions)
    }

    /// `nm`-style lines, `ADDRESS TYPE NAME [MODULE]` (a `System.map`, or
    /// `/proc/kallsyms` read in the guest); text symbols (`T`, `t`, `W`, `w`)
    /// are the functions, each reaching the next.
    fn parse_system_map(bytes: &[u8]) -> Result<Self, SymbolsError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SymbolsError::NotElf64)?;
        let mut functions = Vec::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(SymbolsError::NotElf64);
            };
            let addr = u64::from_str_radix(addr, 16).map_err(|_| SymbolsError::NotElf64)?;
            if matches!(kind, "T" | "t" | "W" | "w") && addr != 0 {
                functions.push((addr, 0, name.to_string()));
            }
        }
        Self::sorted(functions)
    }

    fn sorted(mut functions: Vec<(u64, u64, String)>) -> Result<Self, SymbolsError> {
        if functions.is_empty() {
            return Err(SymbolsError::NoSymbols);
        }
        functions.sort();
        functions.dedup_by_key(|f| f.0);
        Ok(Self { functions })
    }

    /// The function containing `pc`: the last one starting at or below it,
    /// within its size (a symbol without a size reaches the next one).
    pub fn lookup(&self, pc: u64) -> Option<&str> {
        let i = self
            .functions
            .partition_point(|f| f.0 <= pc)
            .checked_sub(1)?;
        let (start, size, name) = &self.functions[i];
        (*size == 0 || pc - start < *size).then_some(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64: null section, .symtab with two functions and an
    /// object, .strtab.
    fn elf() -> Vec<u8> {
        let strtab = b"\0hot\0cold\0data\0".to_vec();
        let mut syms = vec![0u8; 24];
        for (name, info, value, size) in [
            (1u32, 0x12u8, 0x1000u64, 0x20u64),
            (5, 0x12, 0x2000, 0),
            (10, 0x11, 0x1010, 8),
        ] {
            let mut s = Vec::new();
            s.extend_from_slice(&name.to_le_bytes());
            s.extend_from_slice(&[info, 0, 1, 0]);
            s.extend_from_slice(&value.to_le_bytes());
            s.extend_from_slice(&size.to_le_bytes());
            syms.extend_from_slice(&s);
        }
        let symoff = 64u64;
        let stroff = symoff + syms.len() as u64;
        let shoff = stroff + strtab.len() as u64;
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f.extend_from_slice(&syms);
        f.extend_from_slice(&strtab);
        let section = |kind: u32, offset: u64, size: u64, link: u32| {
            let mut sh = vec![0u8; 64];
            sh[4..8].copy_from_slice(&kind.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            sh[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            sh
        };
        f.extend(vec![0u8; 64]);
        f.extend(section(2, symoff, syms.len() as u64, 2));
        f.extend(section(3, stroff, strtab.len() as u64, 0));
        f
    }

    #[test]
    fn functions_are_found_by_address() {
        let s = Symbols::parse(&elf()).unwrap();
        assert_eq!(s.lookup(0x1000), Some("hot"));
        assert_eq!(s.lookup(0x101f), Some("hot"));
        assert_eq!(s.lookup(0x1020), None);
        assert_eq!(s.lookup(0xfff), None);
        assert_eq!(s.lookup(0x9000), Some("cold"));
    }

    #[test]
    fn a_system_map_gives_text_symbols() {
        let map = b"ffffffff80000000 T _start\nffffffff80001000 t helper\nffffffff80002000 D data\nffffffff80003000 T next\nffffffff01000000 t in_module\t[virtio_blk]\n";
        let s = Symbols::parse(map).unwrap();
        assert_eq!(s.lookup(0xffff_ffff_8000_0010), Some("_start"));
        assert_eq!(s.lookup(0xffff_ffff_8000_2500), Some("helper"));
        assert_eq!(s.lookup(0xffff_ffff_8000_3000), Some("next"));
        assert!(Symbols::parse(b"zz T x\n").is_err());
        assert!(Symbols::parse(b"1000 D only_data\n").is_err());
    }

    #[test]
    fn corrupt_files_are_errors() {
        assert!(matches!(
            Symbols::parse(b"nope"),
            Err(SymbolsError::NotElf64)
        ));
        let full = elf();
        for cut in [10, 64, 100, full.len() - 70, full.len() - 36] {
            assert!(Symbols::parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = full.clone();
        let sh = bad.len() - 128;
        bad[sh.saturating_add(0x18)..sh.saturating_add(0x20)]
            .copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Symbols::parse(&bad).is_err());
    }
}
