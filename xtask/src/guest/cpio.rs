//! A writer for the newc ("070701") cpio format, the format of an initramfs.
//! Entries are written with uid/gid 0 and mtime 0, so a build is reproducible.

use anyhow::{bail, Result};

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the target path.
    Symlink(String),
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// Builds a newc archive entry by entry.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` (relative, no leading `/`) with permission bits `perm`.
    pub fn add(&mut self, path: &str, perm: u32, kind: &Kind) -> Result<()> {
        if path.is_empty() || path.starts_with('/') || path.contains('\0') {
            bail!("cpio entry name {path:?} must be relative, non-empty and without NUL");
        }
        if perm & !0o7777 != 0 {
            bail!("cpio entry {path}: permission bits {perm:o} out of range");
        }
        let (ftype, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match kind {
            Kind::Dir => (S_IFDIR, &[], 2, (0, 0)),
            Kind::File(data) => (S_IFREG, data, 1, (0, 0)),
            Kind::Symlink(target) => (S_IFLNK, target.as_bytes(), 1, (0, 0)),
            Kind::CharDev(major, minor) => (S_IFCHR, &[], 1, (*major, *minor)),
        };
        let Ok(size) = u32::try_from(data.len()) else {
            bail!(
                "cpio entry {path}: {} bytes do not fit newc's 32-bit size",
                data.len()
            );
        };
        self.next_ino += 1;
        self.header(self.next_ino, ftype | perm, nlink, size, rdev, path);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
        Ok(())
    }

    fn header(&mut self, ino: u32, mode: u32, nlink: u32, size: u32, rdev: (u32, u32), name: &str) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.header(0, 0, 1, 0, (0, 0), "TRAILER!!!");
        self.out
    }
}

#[cfg(test)]
pub mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;

    /// One parsed entry: (name, mode, data, rdev).
    pub type Parsed = (String, u32, Vec<u8>, (u32, u32));

    /// Parses a newc archive back (test-side reader; panics on malformed input).
    pub fn parse(mut a: &[u8]) -> Vec<Parsed> {
        let mut entries = Vec::new();
        let total = a.len();
        loop {
            assert_eq!(&a[..6], b"070701", "magic at {}", total - a.len());
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev) = (field(1), field(6) as usize, (field(9), field(10)));
            let namesize = field(11) as usize;
            let name = std::str::from_utf8(&a[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(a[110 + namesize - 1], 0);
            let data_start = (110 + namesize).next_multiple_of(4);
            let data = a[data_start..data_start + size].to_vec();
            a = &a[(data_start + size).next_multiple_of(4)..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty(), "bytes after the trailer");
                return entries;
            }
            entries.push((name, mode, data, rdev));
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new();
        w.add("bin", 0o755, &Kind::Dir).unwrap();
        w.add("bin/busybox", 0o755, &Kind::File(b"\x7fELF...".to_vec()))
            .unwrap();
        w.add("bin/sh", 0o777, &Kind::Symlink("busybox".into()))
            .unwrap();
        w.add("dev", 0o755, &Kind::Dir).unwrap();
        w.add("dev/console", 0o600, &Kind::CharDev(5, 1)).unwrap();
        w.add("init", 0o755, &Kind::File(b"#!/bin/sh\n".to_vec()))
            .unwrap();
        w.finish()
    }

    #[test]
    fn round_trip() {
        let archive = sample();
        assert_eq!(archive.len() % 4, 0);
        let entries = parse(&archive);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"]
        );
        assert_eq!(entries[1].1, 0o100_755);
        assert_eq!(entries[1].2, b"\x7fELF...");
        assert_eq!(entries[2].1, 0o120_777);
        assert_eq!(entries[2].2, b"busybox");
        assert_eq!(entries[4].1, 0o020_600);
        assert_eq!(entries[4].3, (5, 1));
        assert_eq!(entries[0].1, 0o040_755);
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut w = Writer::new();
        assert!(w.add("/abs", 0o644, &Kind::Dir).is_err());
        assert!(w.add("", 0o644, &Kind::Dir).is_err());
        assert!(w.add("a\0b", 0o644, &Kind::Dir).is_err());
        assert!(w.add("x", 0o170_000, &Kind::Dir).is_err());
    }

    /// Cross-check with GNU cpio when it is installed (Debian's `cpio`).
    #[test]
    fn gnu_cpio_lists_the_archive() {
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            test_prerequisites::prerequisite_missing(
                "`cpio` is not on PATH (install Debian's `cpio`)",
            );
            return;
        };
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "cpio: {stderr}"
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<_> = listing.lines().collect();
        assert_eq!(lines.len(), 6, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"));
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].ends_with(" bin/busybox"));
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("bin/sh -> busybox"));
        assert!(lines[4].starts_with("crw-------") && lines[4].contains("5,"));
        assert!(lines[5].ends_with(" init"));
    }
}
