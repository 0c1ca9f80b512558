//! Executable memory for translated code, W^X: the arena is never writable
//! and executable at once. Blocks are copied in while their pages are
//! read-write, and those pages are made read-execute again
//! ([`CodeArena::seal`]) before any code runs: blocks placed one after
//! another between two runs of code cost two `mprotect` calls in all, not
//! two each (each one splits and merges the arena's mappings and flushes
//! TLBs: 6% of a riscv64 Linux boot when every block paid them).
//! Guest-independent: any front end places its blocks here.
//!
//! This is the raw-memory edge of the translator: the only `unsafe` besides
//! calling the code it holds.

use std::ptr::NonNull;

/// Why executable memory could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// `mmap` refused the arena.
    #[error("mapping {size} bytes for translated code: {source}")]
    Map {
        /// Arena size.
        size: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// `mprotect` refused a permission change.
    #[error("changing the protection of translated code: {0}")]
    Protect(std::io::Error),
}

/// A fixed-size arena of translated code, filled front to back and emptied
/// all at once.
#[derive(Debug)]
pub struct CodeArena {
    base: NonNull<u8>,
    size: usize,
    used: usize,
    /// Page-aligned offsets of the pages written since the last seal.
    open: Option<(usize, usize)>,
    /// Every page from this offset up has never been sealed: writable,
    /// empty, and never executable yet.
    fresh: usize,
}

const PAGE: usize = 4096;

impl CodeArena {
    /// Maps `size` bytes (rounded up to pages), empty: read-write until code
    /// is placed and sealed in them.
    pub fn new(size: usize) -> Result<Self, CodeError> {
        let size = size.div_ceil(PAGE).max(1) * PAGE;
        // SAFETY: an anonymous private mapping at an address the kernel picks
        // touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(CodeError::Map {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(CodeError::Map {
            size,
            source: std::io::Error::other("mmap returned null"),
        })?;
        Ok(Self {
            base,
            size,
            used: 0,
            open: None,
            fresh: 0,
        })
    }

    /// Copies `code` (position-independent) in at the next 16-byte boundary
    /// and returns its address; `Ok(None)` when the arena is full. The code
    /// must not run before the next [`seal`](Self::seal).
    pub fn place(&mut self, code: &[u8]) -> Result<Option<NonNull<u8>>, CodeError> {
        let start = self.used.next_multiple_of(16);
        if start
            .checked_add(code.len())
            .is_none_or(|end| end > self.size)
        {
            return Ok(None);
        }
        let first = start / PAGE * PAGE;
        let last = (start + code.len()).div_ceil(PAGE) * PAGE;
        // Pages already writable: the open ones and the fresh ones; the
        // sealed ones in between are opened again (as one range, the
        // kernel then only moves the boundary between two mappings).
        let from = match self.open {
            // In or right after the open pages: grow them.
            Some((from, to)) if (from..=to).contains(&first) => {
                self.reopen(to, last)?;
                from
            }
            _ => {
                self.seal()?;
                self.reopen(first, last)?;
                first
            }
        };
        self.open = Some((from, self.open.map_or(last, |(_, to)| to.max(last))));
        // SAFETY: `start + code.len() <= size`, inside the mapping, whose
        // pages covering that range are writable (`open`); `code` is a
        // separate allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.as_ptr().add(start), code.len());
        }
        self.used = start + code.len();
        // SAFETY: inside the mapping, so not null.
        Ok(Some(unsafe {
            NonNull::new_unchecked(self.base.as_ptr().add(start))
        }))
    }

    /// Makes the sealed pages in `from..to` writable again.
    fn reopen(&mut self, from: usize, to: usize) -> Result<(), CodeError> {
        let to = to.min(self.fresh);
        if from < to {
            self.protect(from, to - from, libc::PROT_READ | libc::PROT_WRITE)?;
        }
        Ok(())
    }

    /// Makes every page written since the last seal read-execute: placed
    /// code may run after this.
    pub fn seal(&mut self) -> Result<(), CodeError> {
        if let Some((from, to)) = self.open.take() {
            self.protect(from, to - from, libc::PROT_READ | libc::PROT_EXEC)?;
            self.fresh = self.fresh.max(to);
        }
        Ok(())
    }

    /// Whether code was placed since the last [`seal`](Self::seal).
    #[inline]
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Forgets every block (the caller drops every pointer it was given).
    pub fn clear(&mut self) {
        self.used = 0;
    }

    fn protect(&self, offset: usize, len: usize, prot: libc::c_int) -> Result<(), CodeError> {
        // SAFETY: `offset..offset + len` is page-aligned and inside the
        // mapping this arena owns; no code in those pages runs on another
        // thread (an arena belongs to one hart).
        let rc = unsafe { libc::mprotect(self.base.as_ptr().add(offset).cast(), len, prot) };
        if rc != 0 {
            return Err(CodeError::Protect(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this size and nothing
        // points into it once its owner is dropped.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.size);
        }
    }
}

// SAFETY: the arena is plain memory owned by one value; moving it to another
// thread moves the ownership with it.
unsafe impl Send for CodeArena {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_code_runs_and_the_arena_fills_up() {
        let mut arena = CodeArena::new(PAGE).unwrap();
        // mov eax, 42; ret
        let code = [0xb8, 42, 0, 0, 0, 0xc3];
        let at = arena.place(&code).unwrap().unwrap();
        assert!(arena.is_open());
        arena.seal().unwrap();
        assert!(!arena.is_open());
        // SAFETY: the bytes above are a complete function with this signature.
        let f: extern "sysv64" fn() -> u32 = unsafe { std::mem::transmute(at.as_ptr()) };
        assert_eq!(f(), 42);
        let next = arena.place(&[0xc3]).unwrap().unwrap();
        assert_eq!(
            next.as_ptr() as u64,
            at.as_ptr() as u64 + 16,
            "16-byte aligned"
        );
        assert!(arena.place(&[0x90; PAGE]).unwrap().is_none(), "full");
        arena.clear();
        assert!(arena.place(&[0xc3; PAGE]).unwrap().is_some());
    }

    /// The W^X protections as the kernel has them, for the arena's pages.
    fn protections(arena: &CodeArena) -> Vec<String> {
        let base = arena.base.as_ptr() as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut pages = Vec::new();
        for page in 0..arena.size / PAGE {
            let at = base + page * PAGE;
            let line = maps
                .lines()
                .find(|l| {
                    let (range, _) = l.split_once(' ').unwrap();
                    let (lo, hi) = range.split_once('-').unwrap();
                    let lo = usize::from_str_radix(lo, 16).unwrap();
                    let hi = usize::from_str_radix(hi, 16).unwrap();
                    (lo..hi).contains(&at)
                })
                .unwrap();
            pages.push(line.split_whitespace().nth(1).unwrap()[..3].to_string());
        }
        pages
    }

    #[test]
    fn placed_pages_are_writable_until_sealed_and_never_executable_meanwhile() {
        let mut arena = CodeArena::new(4 * PAGE).unwrap();
        assert_eq!(protections(&arena), ["rw-"; 4]);
        // Two blocks in the first page, one spilling into the second.
        arena.place(&[0xc3; 100]).unwrap().unwrap();
        arena.place(&[0xc3; 100]).unwrap().unwrap();
        arena.place(&[0xc3; PAGE - 100]).unwrap().unwrap();
        assert_eq!(protections(&arena), ["rw-"; 4]);
        arena.seal().unwrap();
        assert_eq!(protections(&arena), ["r-x", "r-x", "rw-", "rw-"]);
        // After a seal, the page the next block shares is opened again.
        arena.place(&[0xc3; 10]).unwrap().unwrap();
        assert_eq!(protections(&arena), ["r-x", "rw-", "rw-", "rw-"]);
        arena.seal().unwrap();
        assert_eq!(protections(&arena), ["r-x", "r-x", "rw-", "rw-"]);
        // Starting over: sealed pages are opened again as they are reused.
        arena.place(&[0xc3; 10]).unwrap().unwrap();
        arena.clear();
        arena.place(&[0xc3; 10]).unwrap().unwrap();
        assert_eq!(protections(&arena), ["rw-", "r-x", "rw-", "rw-"]);
        arena.seal().unwrap();
        assert_eq!(protections(&arena), ["r-x", "r-x", "rw-", "rw-"]);
    }
}
