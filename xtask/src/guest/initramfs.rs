//! The initramfs layout: static busybox with its applet links, the device
//! and mount-point directories, the kernel modules and `/init`.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{Context, Result};

use super::cpio::{Kind, Writer};

/// Busybox applets linked into `/bin` (what `/init` and a shell user need).
pub const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "cp", "cttyhack", "date", "dmesg", "echo", "env", "false", "free", "grep",
    "head", "hostname", "ifconfig", "insmod", "ip", "kill", "ln", "ls", "lsmod", "mkdir",
    "modprobe", "mount", "mv", "nc", "ping", "poweroff", "ps", "reboot", "rm", "route", "sed",
    "setsid", "sleep", "sync", "tail", "test", "true", "udhcpc", "umount", "uname", "uptime", "vi",
    "wget",
];

/// Everything the initramfs is made of.
#[derive(Debug)]
pub struct Contents<'a> {
    /// The static busybox binary.
    pub busybox: &'a [u8],
    /// Kernel release: modules go to `lib/modules/<release>/`.
    pub release: &'a str,
    /// (path below the release directory, uncompressed module) in load order.
    pub modules: &'a [(String, Vec<u8>)],
    /// `modules.dep` for those modules (lets the guest's `modprobe` work).
    pub modules_dep: &'a str,
    /// The `/init` script.
    pub init: &'a str,
}

/// Builds the uncompressed newc archive.
pub fn cpio(c: &Contents<'_>) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    let moddir = format!("lib/modules/{}", c.release);
    let mut dirs: BTreeSet<String> = [
        "bin", "dev", "etc", "lib", "proc", "root", "run", "sbin", "sys", "tmp", "usr", "usr/bin",
        "usr/sbin",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for path in c.modules.iter().map(|(p, _)| format!("{moddir}/{p}")) {
        let mut dir = path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            dirs.insert(parent.to_string());
            dir = parent;
        }
    }
    dirs.insert(moddir.clone());
    // Sorted order puts every parent before its children.
    for d in &dirs {
        w.add(d, 0o755, &Kind::Dir)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    w.add("dev/console", 0o600, &Kind::CharDev(5, 1))?;
    w.add("dev/null", 0o666, &Kind::CharDev(1, 3))?;
    w.add("bin/busybox", 0o755, &Kind::File(c.busybox.to_vec()))?;
    for applet in APPLETS {
        w.add(
            &format!("bin/{applet}"),
            0o777,
            &Kind::Symlink("busybox".into()),
        )?;
    }
    for (path, data) in c.modules {
        w.add(
            &format!("{moddir}/{path}"),
            0o644,
            &Kind::File(data.clone()),
        )?;
    }
    w.add(
        &format!("{moddir}/modules.dep"),
        0o644,
        &Kind::File(c.modules_dep.as_bytes().to_vec()),
    )?;
    w.add("init", 0o755, &Kind::File(c.init.as_bytes().to_vec()))?;
    Ok(w.finish())
}

/// gzip-compresses an archive (what every Debian kernel unpacks).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).context("compressing the initramfs")?;
    enc.finish().context("compressing the initramfs")
}

#[cfg(test)]
mod tests {
    use super::super::cpio::tests::parse;
    use super::*;

    #[test]
    fn layout() {
        let modules = vec![
            ("kernel/net/core/failover.ko".to_string(), b"ko1".to_vec()),
            (
                "kernel/drivers/net/virtio_net.ko".to_string(),
                b"ko2".to_vec(),
            ),
        ];
        let archive = cpio(&Contents {
            busybox: b"BB",
            release: "6.1.0-1-cloud-amd64",
            modules: &modules,
            modules_dep: "kernel/net/core/failover.ko:\n",
            init: "#!/bin/busybox sh\n",
        })
        .unwrap();
        let entries = parse(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let pos = |n: &str| {
            names
                .iter()
                .position(|x| *x == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let m = "lib/modules/6.1.0-1-cloud-amd64";
        assert!(pos("lib") < pos("lib/modules") && pos(m) < pos(&format!("{m}/kernel/net/core")));
        assert!(
            pos(&format!("{m}/kernel/net/core")) < pos(&format!("{m}/kernel/net/core/failover.ko"))
        );
        for n in [
            "proc",
            "sys",
            "dev",
            "dev/console",
            "bin/sh",
            "bin/insmod",
            "bin/ip",
            "init",
            &format!("{m}/modules.dep"),
        ] {
            pos(n);
        }
        assert_eq!(entries[pos("bin/busybox")].2, b"BB");
        assert_eq!(entries[pos("init")].1, 0o100_755);
        assert_eq!(entries[pos("bin/poweroff")].2, b"busybox");
        let unique: BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "no duplicate entries");

        let gz = gzip(&archive).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, archive);
    }
}
