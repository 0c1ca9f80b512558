//! The initramfs layout: static busybox with its applet links, the device
//! and mount-point directories, the kernel modules and `/init`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::cpio::{Kind, Writer};

/// Busybox applets linked into `/bin` (what `/init` and a shell user need).
/// `switch_root` moves `/init` onto a root disk; `dd`, `df`,
/// `sha256sum`, `touch` and `wc` are what disk tests use.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "cat",
    "cp",
    "cttyhack",
    "date",
    "dd",
    "df",
    "dmesg",
    "echo",
    "env",
    "false",
    "free",
    "grep",
    "head",
    "hostname",
    "ifconfig",
    "insmod",
    "ip",
    "kill",
    "ln",
    "ls",
    "lsmod",
    "mkdir",
    "modprobe",
    "mount",
    "mv",
    "nc",
    "ping",
    "poweroff",
    "ps",
    "reboot",
    "rm",
    "route",
    "sed",
    "setsid",
    "sha256sum",
    "sleep",
    "stty",
    "switch_root",
    "sync",
    "tail",
    "test",
    "touch",
    "true",
    "udhcpc",
    "umount",
    "uname",
    "uptime",
    "vi",
    "wc",
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

/// One file-system entry of the guest's root: a path relative to `/`, its
/// permission bits and what it is.
pub type Entry = (String, u32, Kind);

/// The guest's root file system as a list of entries, parents before
/// children: what both the initramfs ([`cpio`]) and the disk image
/// ([`stage_dir`], for `mkfs.ext4 -d`) hold.
pub fn entries(c: &Contents<'_>) -> Vec<Entry> {
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
    let mut out: Vec<Entry> = dirs.into_iter().map(|d| (d, 0o755, Kind::Dir)).collect();
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    out.push(("dev/console".into(), 0o600, Kind::CharDev(5, 1)));
    out.push(("dev/null".into(), 0o666, Kind::CharDev(1, 3)));
    out.push(("bin/busybox".into(), 0o755, Kind::File(c.busybox.to_vec())));
    for applet in APPLETS {
        out.push((
            format!("bin/{applet}"),
            0o777,
            Kind::Symlink("busybox".into()),
        ));
    }
    for (path, data) in c.modules {
        out.push((format!("{moddir}/{path}"), 0o644, Kind::File(data.clone())));
    }
    out.push((
        format!("{moddir}/modules.dep"),
        0o644,
        Kind::File(c.modules_dep.as_bytes().to_vec()),
    ));
    out.push(("init".into(), 0o755, Kind::File(c.init.as_bytes().to_vec())));
    out
}

/// Builds the uncompressed newc archive.
pub fn cpio(c: &Contents<'_>) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    for (path, perm, kind) in entries(c) {
        w.add(&path, perm, &kind)?;
    }
    Ok(w.finish())
}

/// Writes the same tree into the empty directory `dir` (the input of
/// `mkfs.ext4 -d`). Device nodes are left out: creating them needs
/// `CAP_MKNOD`, and a guest booted from the disk gets its `/dev` from
/// devtmpfs (moved there by the initramfs, or mounted by the kernel).
pub fn stage_dir(c: &Contents<'_>, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (path, perm, kind) in entries(c) {
        let at = dir.join(&path);
        match &kind {
            Kind::Dir => std::fs::create_dir_all(&at),
            Kind::File(data) => std::fs::write(&at, data),
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &at),
            Kind::CharDev(..) => continue,
        }
        .with_context(|| format!("staging {}", at.display()))?;
        if !matches!(kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(perm))
                .with_context(|| format!("setting the mode of {}", at.display()))?;
        }
    }
    Ok(())
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

        // The disk image's staging directory holds the same tree, less the
        // device nodes.
        let dir = tempfile::tempdir().unwrap();
        stage_dir(
            &Contents {
                busybox: b"BB",
                release: "6.1.0-1-cloud-amd64",
                modules: &modules,
                modules_dep: "kernel/net/core/failover.ko:\n",
                init: "#!/bin/busybox sh\n",
            },
            dir.path(),
        )
        .unwrap();
        for (name, mode, data, _) in &entries {
            let at = dir.path().join(name);
            let meta = std::fs::symlink_metadata(&at);
            if mode & 0o170_000 == 0o020_000 {
                assert!(meta.is_err(), "{name} staged");
                continue;
            }
            let meta = meta.unwrap_or_else(|e| panic!("{name}: {e}"));
            if meta.file_type().is_symlink() {
                assert_eq!(
                    std::fs::read_link(&at)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    &data[..]
                );
            } else {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(meta.permissions().mode(), *mode, "{name}");
                if meta.is_file() {
                    assert_eq!(&std::fs::read(&at).unwrap(), data, "{name}");
                }
            }
        }

        let gz = gzip(&archive).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, archive);
    }
}
