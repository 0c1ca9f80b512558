//! Positional file I/O (`pread`/`pwrite` semantics) on every OS the store
//! builds for: `std::os::unix::fs::FileExt` on Unix, `seek_read`/`seek_write`
//! loops on Windows (which move the file cursor, which the store never uses).

use std::fs::File;
use std::io;

/// Read and write at an absolute offset without a shared cursor.
pub(crate) trait PositionalIo {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
mod imp {
    use super::{io, File, PositionalIo};
    use std::os::unix::fs::FileExt;

    impl PositionalIo for File {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            FileExt::read_at(self, buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            FileExt::write_all_at(self, buf, offset)
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::{io, File, PositionalIo};
    use std::os::windows::fs::FileExt;

    impl PositionalIo for File {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.seek_read(buf, offset)
        }
        fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
            while !buf.is_empty() {
                match self.seek_write(buf, offset) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        buf = &buf[n..];
                        offset += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PositionalIo;

    #[test]
    fn writes_and_reads_at_offsets() {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(b"world", 6).unwrap();
        file.write_all_at(b"hello ", 0).unwrap();
        let mut buf = [0u8; 11];
        assert_eq!(file.read_at(&mut buf, 0).unwrap(), 11);
        assert_eq!(&buf, b"hello world");
        assert_eq!(
            file.read_at(&mut buf, 100).unwrap(),
            0,
            "reading past the end is EOF"
        );
        let mut word = [0u8; 5];
        file.read_exact_at(&mut word, 6).unwrap();
        assert_eq!(&word, b"world");
        let err = file.read_exact_at(&mut buf, 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
