//! `rootfs.ext4`: the guest's root file system on a raw disk image, made
//! without root or loop mounts: the initramfs tree ([`initramfs::stage_dir`])
//! is staged in a temporary directory and `mkfs.ext4 -d` (e2fsprogs) copies it
//! into a new file system.
//!
//! Debian's kernels build `virtio_blk` and `ext4` as modules, so the kernel
//! cannot mount this disk as its root by itself: the guest still boots the
//! initramfs, whose `/init` loads the modules, mounts `root=` (or
//! `vmguest.root=`) and `switch_root`s into the same `/init` on the disk
//! (see [`super::init`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::initramfs::{self, Contents};

/// Published file name, beside the kernel and initramfs.
pub const FILE: &str = "rootfs.ext4";
/// Size of the image: busybox and the modules take a few MiB, the rest is
/// free space for tests (files, `dd` runs).
pub const SIZE_MIB: u64 = 64;
/// The file system's label (`/dev/disk/by-label/...` where udev runs).
pub const LABEL: &str = "vmguest-root";

/// `mkfs.ext4`, looked up on `PATH` and in the `sbin` directories (a
/// non-root user's `PATH` often lacks them).
pub fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
}

/// Writes an ext4 image of [`SIZE_MIB`] MiB holding `contents` to `dest`
/// (replaced atomically: built beside it, then renamed).
pub fn build(mkfs: &Path, contents: &Contents<'_>, dest: &Path) -> Result<()> {
    let stage = tempfile::tempdir().context("creating a staging directory")?;
    initramfs::stage_dir(contents, stage.path())?;
    let tmp = dest.with_extension("ext4.tmp");
    // A sparse file of the final size: mkfs.ext4 fills in what it needs.
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.set_len(SIZE_MIB << 20)
        .with_context(|| format!("sizing {}", tmp.display()))?;
    drop(file);
    let out = Command::new(mkfs)
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-L", LABEL,
        ])
        // Initialise inode tables and journal now, so the guest's kernel does
        // not write them in the background (a read-only disk could not).
        .args([
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
        ])
        .arg("-d")
        .arg(stage.path())
        .arg(&tmp)
        .output()
        .with_context(|| format!("starting {}", mkfs.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "{} -d {} {} failed ({}): {}",
            mkfs.display(),
            stage.path().display(),
            tmp.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))
}

/// The disk image: listed in guest.json with its size, and a clean ext4
/// file system (`e2fsck -fn`). Absent without mkfs.ext4 (the build said so).
pub fn ci_check(out: &Path, json: &serde_json::Value) -> Result<&'static str> {
    let Some(mkfs) = find_mkfs() else {
        return Ok(", no rootfs.ext4: no mkfs.ext4");
    };
    let image = out.join(FILE);
    let size = std::fs::metadata(&image)
        .with_context(|| format!("{} was not built", image.display()))?
        .len();
    let listed = json["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["path"] == FILE))
        .with_context(|| format!("guest.json lists no {FILE}"))?;
    if listed["size"] != size {
        bail!(
            "guest.json gives {} a size of {}, the file has {size}",
            FILE,
            listed["size"]
        );
    }
    let e2fsck = mkfs.with_file_name("e2fsck");
    let check = std::process::Command::new(&e2fsck)
        .arg("-fn")
        .arg(&image)
        .output()
        .with_context(|| format!("starting {}", e2fsck.display()))?;
    if !check.status.success() {
        bail!(
            "e2fsck -fn {}: {}{}",
            image.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    Ok(", rootfs.ext4 clean")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny tree through mkfs.ext4, read back with debugfs (both e2fsprogs).
    #[test]
    fn image_holds_the_tree() {
        let Some(mkfs) = find_mkfs() else {
            test_prerequisites::prerequisite_missing(
                "no mkfs.ext4 (install e2fsprogs: `cargo xtask setup`)",
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join(FILE);
        let modules = vec![("kernel/fs/ext4/ext4.ko".to_string(), b"ko".to_vec())];
        build(
            &mkfs,
            &Contents {
                busybox: b"BB",
                release: "7.2.13+deb14-riscv64",
                modules: &modules,
                modules_dep: "kernel/fs/ext4/ext4.ko:\n",
                init: "#!/bin/busybox sh\necho hi\n",
            },
            &dest,
        )
        .unwrap();
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), SIZE_MIB << 20);
        assert!(!dest.with_extension("ext4.tmp").exists());
        let debugfs = mkfs.with_file_name("debugfs");
        let Ok(out) = Command::new(&debugfs)
            .args(["-R", "cat /init"])
            .arg(&dest)
            .output()
        else {
            test_prerequisites::prerequisite_missing(format_args!(
                "no {} (e2fsprogs) to read the image back",
                debugfs.display()
            ));
            return;
        };
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "#!/bin/busybox sh\necho hi\n"
        );
        let out = Command::new(&debugfs)
            .args(["-R", "stat /bin/sh"])
            .arg(&dest)
            .output()
            .unwrap();
        let stat = String::from_utf8_lossy(&out.stdout);
        assert!(stat.contains("Type: symlink"), "{stat}");
        let out = Command::new(&debugfs)
            .args([
                "-R",
                "cat /lib/modules/7.2.13+deb14-riscv64/kernel/fs/ext4/ext4.ko",
            ])
            .arg(&dest)
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"ko");
    }

    /// What CI checks of a published image: listed with its size, a clean ext4.
    #[test]
    fn ci_checks_the_published_rootfs() {
        let Some(mkfs) = find_mkfs() else {
            test_prerequisites::prerequisite_missing(
                "no mkfs.ext4 (install e2fsprogs: `cargo xtask setup`)",
            );
            return;
        };
        let out = tempfile::tempdir().unwrap();
        build(
            &mkfs,
            &Contents {
                busybox: b"BB",
                release: "r",
                modules: &[],
                modules_dep: "",
                init: "#!/bin/busybox sh\n",
            },
            &out.path().join(FILE),
        )
        .unwrap();
        let record = super::super::file_record_of(FILE, &out.path().join(FILE)).unwrap();
        assert_eq!(record["size"], SIZE_MIB << 20);
        let json = serde_json::json!({ "files": [record] });
        assert_eq!(ci_check(out.path(), &json).unwrap(), ", rootfs.ext4 clean");
        let wrong = serde_json::json!({ "files": [{"path": FILE, "size": 1}] });
        assert!(ci_check(out.path(), &wrong).is_err());
        let unlisted = serde_json::json!({ "files": [] });
        assert!(ci_check(out.path(), &unlisted).is_err());
        // A corrupted superblock is caught by e2fsck.
        let image = out.path().join(FILE);
        let mut bytes = std::fs::read(&image).unwrap();
        bytes[1024..2048].fill(0xff);
        std::fs::write(&image, &bytes).unwrap();
        let size_only = serde_json::json!({ "files": [{"path": FILE, "size": bytes.len()}] });
        assert!(ci_check(out.path(), &size_only).is_err());
    }
}
