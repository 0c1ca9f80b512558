//! Executable memory for translated code, W^X: the arena is never writable
//! and executable at once. A block is copied in while its pages are
//! read-write, then they are made read-execute again before anything runs.
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
}

const PAGE: usize = 4096;

impl CodeArena {
    /// Maps `size` bytes (rounded up to pages), read-execute and empty.
    pub fn new(size: usize) -> Result<Self, CodeError> {
        let size = size.div_ceil(PAGE).max(1) * PAGE;
        // SAFETY: an anonymous private mapping at an address the kernel picks
        // touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_EXEC,
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
        })
    }

    /// Copies `code` (position-independent) in at the next 16-byte boundary
    /// and returns its address; `Ok(None)` when the arena is full.
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
        self.protect(first, last - first, libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: `start + code.len() <= size`, inside the mapping, whose
        // pages covering that range were just made writable; `code` is a
        // separate allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.as_ptr().add(start), code.len());
        }
        self.protect(first, last - first, libc::PROT_READ | libc::PROT_EXEC)?;
        self.used = start + code.len();
        // SAFETY: inside the mapping, so not null.
        Ok(Some(unsafe {
            NonNull::new_unchecked(self.base.as_ptr().add(start))
        }))
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
}
