//! The built-in guests `vm-service run` boots when no kernel is given.
//!
//! Each is a tiny program assembled from `vm-service/guest/<arch>.S` by
//! `cargo xtask builtin-guest` and embedded here; CI checks the embedded bytes
//! match a rebuild. The x86_64 guest is entered like a Linux kernel, prints a
//! banner with the memory size and vCPU count it discovers (e820, ACPI MADT),
//! starts the secondary vCPUs with INIT/SIPI, reads the first virtio-mmio slot
//! and asks for a reset through the i8042.

use vm_core::config::GuestArch;

use crate::vmm::VmmError;

/// The x86_64 built-in guest, an ELF image loaded at 1 MiB.
pub const X86_64: &[u8] = include_bytes!("../guest/builtin-x86_64.elf");

/// The first line the x86_64 built-in guest prints.
pub const BANNER: &str = "vm-service built-in guest: booted in 64-bit mode";

/// The built-in guest for `arch`, or why there is none.
pub fn builtin(arch: GuestArch) -> Result<&'static [u8], VmmError> {
    match arch {
        GuestArch::X86_64 => Ok(X86_64),
        other => Err(VmmError::NoBuiltinGuest { arch: other }),
    }
}

/// The line a guest built by `cargo xtask guest` prints once its userspace runs
/// (followed by ` uptime=<seconds>`).
pub const READY_MARKER: &str = "VM-GUEST-READY";
/// The line such a guest prints when its command ends (followed by `<status>`).
pub const EXIT_MARKER: &str = "VM-GUEST-EXIT status=";

/// The files of a Debian guest built by `cargo xtask guest --arch ARCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltGuest {
    /// The kernel (`<dir>/<arch>/kernel`).
    pub kernel: std::path::PathBuf,
    /// The compressed initramfs (`<dir>/<arch>/initrd.cpio.gz`).
    pub initrd: std::path::PathBuf,
    /// The root file system image (`<dir>/<arch>/rootfs.ext4`); it may be
    /// absent (built only where `mkfs.ext4` is), see [`BuiltGuest::rootfs`].
    pub rootfs: std::path::PathBuf,
}

impl BuiltGuest {
    /// The guest's disk image, or how to get it. Booting from it writes to it.
    pub fn rootfs(&self) -> Result<&std::path::Path, String> {
        if self.rootfs.is_file() {
            Ok(&self.rootfs)
        } else {
            Err(format!(
                "no root disk image {}: `cargo xtask guest` builds it where mkfs.ext4 is \
                 installed (Debian's e2fsprogs; `cargo xtask setup` installs it)",
                self.rootfs.display()
            ))
        }
    }
}

/// Where `cargo xtask guest` puts its guests when no directory is given:
/// `target/guest` next to the running executable (`target/<profile>/`),
/// else `target/guest` under the current directory.
pub fn default_guest_dir() -> std::path::PathBuf {
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("guest")));
    match beside_exe {
        Some(dir) if dir.is_dir() => dir,
        _ => std::path::PathBuf::from("target/guest"),
    }
}

/// Finds the Debian guest for `arch` under `dir`, or says how to build it.
pub fn find_built(arch: GuestArch, dir: &std::path::Path) -> Result<BuiltGuest, String> {
    let root = dir.join(arch.to_string());
    let guest = BuiltGuest {
        kernel: root.join("kernel"),
        initrd: root.join("initrd.cpio.gz"),
        rootfs: root.join("rootfs.ext4"),
    };
    for file in [&guest.kernel, &guest.initrd] {
        if !file.is_file() {
            return Err(format!(
                "no Debian {arch} guest in {}: {} is missing; build it with \
                 `cargo xtask guest --arch {arch}` (or pass --guest-dir)",
                dir.display(),
                file.display()
            ));
        }
    }
    Ok(guest)
}

/// The kernel command line for a built guest: the console, `ip` for its
/// `eth0` (`ADDR/PREFIX`), and `command` run by its `/init` (after ` -- `).
///
/// Arguments with spaces are double-quoted, which the kernel's parser keeps
/// as one argument; an argument holding a `"` cannot be passed and is refused.
pub fn guest_cmdline(base: &str, ip: Option<&str>, command: &[String]) -> Result<String, String> {
    let mut line = base.to_string();
    if let Some(ip) = ip {
        if ip.is_empty() || ip.contains(char::is_whitespace) || !ip.contains('/') {
            return Err(format!(
                "invalid --ip {ip:?}: expected ADDR/PREFIX, e.g. 10.0.0.1/24"
            ));
        }
        line.push_str(" vmguest.ip=");
        line.push_str(ip);
    }
    if !command.is_empty() {
        line.push_str(" --");
        for arg in command {
            if arg.contains('"') || arg.chars().any(char::is_control) {
                return Err(format!(
                    "the guest command argument {arg:?} holds a quote or control character, \
                     which a kernel command line cannot carry"
                ));
            }
            line.push(' ');
            if arg.is_empty() || arg.contains(' ') {
                line.push('"');
                line.push_str(arg);
                line.push('"');
            } else {
                line.push_str(arg);
            }
        }
    }
    Ok(line)
}

/// Console lines [`ExitWatch`] keeps for a failure report.
pub const CONSOLE_TAIL_LINES: usize = 20;

/// The last console lines, oldest first.
pub type ConsoleTail = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>;

/// A serial writer that passes everything through, remembers the status
/// in the guest's last `VM-GUEST-EXIT status=N` line and keeps the last
/// [`CONSOLE_TAIL_LINES`] lines (each cut at 256 bytes).
#[derive(Debug)]
pub struct ExitWatch<W> {
    inner: W,
    line: Vec<u8>,
    status: std::sync::Arc<std::sync::Mutex<Option<i32>>>,
    tail: ConsoleTail,
}

impl<W> ExitWatch<W> {
    /// Wraps `inner`; the returned handle holds the status once seen.
    pub fn new(inner: W) -> (Self, std::sync::Arc<std::sync::Mutex<Option<i32>>>) {
        let status = std::sync::Arc::default();
        let watch = Self {
            inner,
            line: Vec::with_capacity(128),
            status: std::sync::Arc::clone(&status),
            tail: ConsoleTail::default(),
        };
        (watch, status)
    }

    /// A handle to the last console lines.
    pub fn tail(&self) -> ConsoleTail {
        std::sync::Arc::clone(&self.tail)
    }

    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&self.line);
                let text = text.trim_end();
                if let Some(rest) = text.split(EXIT_MARKER).nth(1) {
                    if let Ok(code) = rest.trim().parse() {
                        *self
                            .status
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(code);
                    }
                }
                let mut tail = self
                    .tail
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if tail.len() == CONSOLE_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.to_string());
                drop(tail);
                self.line.clear();
            } else if self.line.len() < 256 {
                self.line.push(b);
            }
        }
    }
}

impl<W: std::io::Write> std::io::Write for ExitWatch<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.scan(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn cmdline_carries_ip_and_quoted_command() {
        let cmd = ["sh", "-c", "echo hi | wc -c", ""].map(String::from);
        let line = guest_cmdline("console=ttyS0", Some("10.0.0.1/24"), &cmd).unwrap();
        assert_eq!(
            line,
            r#"console=ttyS0 vmguest.ip=10.0.0.1/24 -- sh -c "echo hi | wc -c" """#
        );
        assert_eq!(guest_cmdline("c", None, &[]).unwrap(), "c");
    }

    #[test]
    fn cmdline_refuses_what_the_kernel_cannot_carry() {
        assert!(guest_cmdline("c", Some("10.0.0.1"), &[]).is_err());
        assert!(guest_cmdline("c", Some("10.0.0.1/24 x"), &[]).is_err());
        assert!(guest_cmdline("c", None, &["a\"b".into()]).is_err());
        assert!(guest_cmdline("c", None, &["a\nb".into()]).is_err());
    }

    #[test]
    fn exit_watch_finds_the_last_status_across_split_writes() {
        let (mut w, status) = ExitWatch::new(Vec::new());
        w.write_all(b"boot\r\nVM-GUEST-EX").unwrap();
        assert_eq!(*status.lock().unwrap(), None);
        w.write_all(b"IT status=3\r\nVM-GUEST-EXIT status=junk\n")
            .unwrap();
        assert_eq!(*status.lock().unwrap(), Some(3));
        w.write_all(&[b'x'; 10_000]).unwrap();
        w.write_all(b"\n[ 1.0] VM-GUEST-EXIT status=0\n").unwrap();
        assert_eq!(*status.lock().unwrap(), Some(0));
        assert!(w.inner.starts_with(b"boot\r\nVM-GUEST-EXIT status=3"));
    }

    #[test]
    fn exit_watch_keeps_the_last_lines() {
        let (mut w, _) = ExitWatch::new(std::io::sink());
        let tail = w.tail();
        for i in 0..CONSOLE_TAIL_LINES + 5 {
            write!(w, "line {i}\r\n").unwrap();
        }
        w.write_all(b"no newline yet").unwrap();
        let tail = tail.lock().unwrap();
        assert_eq!(tail.len(), CONSOLE_TAIL_LINES);
        assert_eq!(tail.front().map(String::as_str), Some("line 5"));
        assert_eq!(
            tail.back().cloned(),
            Some(format!("line {}", CONSOLE_TAIL_LINES + 4))
        );
    }

    #[test]
    fn missing_guest_names_the_build_command() {
        let dir = std::env::temp_dir().join("vm-service-no-guest-here");
        let err = find_built(GuestArch::Riscv64, &dir).unwrap_err();
        assert!(err.contains("cargo xtask guest --arch riscv64"), "{err}");
        let guest = BuiltGuest {
            kernel: dir.join("kernel"),
            initrd: dir.join("initrd"),
            rootfs: dir.join("rootfs.ext4"),
        };
        let err = guest.rootfs().unwrap_err();
        assert!(
            err.contains("rootfs.ext4") && err.contains("e2fsprogs"),
            "{err}"
        );
    }
}
