//! Shared helpers of the integration tests: external tools (dtc, iasl) and
//! the Debian kernel cache. Tests skip with a printed reason when a tool or
//! the network is missing; CI installs `device-tree-compiler` and `acpica-tools`.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::Command;

use vm_cross_arch::platform::{for_arch, BootInfo, GuestArch, MachineConfig, MemoryMap};
use vm_memory::GuestMemoryMmap;

/// Returns the tool's path, or prints why the test is skipped and returns `None`.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not on PATH (install Debian's `{package}`)");
    }
    found
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A laid-out machine with fresh guest memory.
pub fn machine(
    arch: GuestArch,
    vcpus: u32,
    mem_size: u64,
    virtio_devices: u32,
) -> (MemoryMap, GuestMemoryMmap) {
    let map = for_arch(arch)
        .memory_map(&MachineConfig {
            vcpus,
            mem_size,
            virtio_devices,
        })
        .expect("layout");
    let mem = map.create_guest_memory().expect("guest memory");
    (map, mem)
}

/// A minimal arm64/riscv64 `Image` (header only) with the given geometry.
pub fn fake_image(arch: GuestArch, text_offset: u64, image_size: u64) -> Vec<u8> {
    let mut v = vec![0u8; 0x1000];
    v[8..16].copy_from_slice(&text_offset.to_le_bytes());
    v[16..24].copy_from_slice(&image_size.to_le_bytes());
    match arch {
        GuestArch::Arm64 => v[0x38..0x3c].copy_from_slice(b"ARM\x64"),
        _ => v[0x38..0x3c].copy_from_slice(b"RSC\x05"),
    }
    v
}

/// Reads the DTB a boot wrote into guest memory.
pub fn read_dtb(mem: &GuestMemoryMmap, boot: &BootInfo) -> Vec<u8> {
    use vm_cross_arch::platform::BootData;
    use vm_memory::Bytes;
    let BootData::Fdt(range) = boot.data else {
        panic!("boot data is not a device tree: {:?}", boot.data)
    };
    let mut dtb = vec![0u8; range.size as usize];
    mem.read_slice(&mut dtb, range.start)
        .expect("reading the DTB");
    dtb
}

/// Decompiles a DTB with `dtc`; `None` (skip) when dtc is missing. Panics if
/// dtc reports an error or a warning.
pub fn decompile_dtb(dtb: &[u8], dir: &Path) -> Option<String> {
    let dtc = tool("dtc", "device-tree-compiler")?;
    let path = dir.join("guest.dtb");
    std::fs::write(&path, dtb).expect("writing the DTB");
    let (ok, dts, stderr) = run(Command::new(dtc)
        .args(["-I", "dtb", "-O", "dts", "-o", "-"])
        .arg(&path));
    assert!(ok, "dtc failed: {stderr}");
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("Warning"),
        "dtc complained:\n{stderr}"
    );
    Some(dts)
}

/// Where downloaded Debian kernels are cached: `<workspace>/target/debian-kernels`.
pub fn kernel_cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("debian-kernels")
}

/// Downloads (once) and returns the stock Debian kernel for `debian_arch`
/// (`amd64`, `riscv64`) via `scripts/fetch-debian-kernel.sh`; prints the reason
/// and returns `None` when that is impossible here.
pub fn debian_kernel(debian_arch: &str) -> Option<Vec<u8>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-debian-kernel.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(debian_arch)
        .arg(kernel_cache())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: cannot run {}: {e}", script.display());
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or("").trim().to_owned();
    if !out.status.success() || path.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr.lines().last().unwrap_or("no output");
        eprintln!("SKIPPED: no Debian {debian_arch} kernel ({reason})");
        return None;
    }
    match std::fs::read(&path) {
        Ok(bytes) => {
            eprintln!("using {path} ({} bytes)", bytes.len());
            Some(bytes)
        }
        Err(e) => {
            eprintln!("SKIPPED: reading {path}: {e}");
            None
        }
    }
}

/// Downloads (once) Debian's static busybox for `debian_arch` via
/// `scripts/fetch-debian-busybox.sh`; prints the reason and returns `None`
/// when that is impossible here.
pub fn debian_busybox(debian_arch: &str) -> Option<Vec<u8>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-debian-busybox.sh");
    let out = match Command::new("bash")
        .arg(&script)
        .arg(debian_arch)
        .arg(kernel_cache())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: cannot run {}: {e}", script.display());
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or("").trim().to_owned();
    if !out.status.success() || path.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "SKIPPED: no Debian {debian_arch} busybox ({})",
            stderr.lines().last().unwrap_or("no output")
        );
        return None;
    }
    std::fs::read(&path)
        .map_err(|e| eprintln!("SKIPPED: reading {path}: {e}"))
        .ok()
}

/// One entry of a newc cpio archive.
pub enum CpioEntry<'a> {
    /// A directory.
    Dir(&'a str),
    /// A regular file with its mode bits and contents.
    File(&'a str, u32, &'a [u8]),
    /// A character device node (major, minor).
    CharDev(&'a str, u32, u32),
}

/// Builds a newc ("070701") cpio archive, the initramfs format.
pub fn cpio(entries: &[CpioEntry<'_>]) -> Vec<u8> {
    fn push(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            CpioEntry::Dir(name) => push(&mut out, ino, name, 0o040_755, &[], (0, 0)),
            CpioEntry::File(name, mode, data) => {
                push(&mut out, ino, name, 0o100_000 | mode, data, (0, 0));
            }
            CpioEntry::CharDev(name, major, minor) => {
                push(&mut out, ino, name, 0o020_600, &[], (*major, *minor));
            }
        }
    }
    push(&mut out, 0, "TRAILER!!!", 0, &[], (0, 0));
    out
}
