//! Shared helpers of the integration tests: external tools (dtc, iasl) and
//! the Debian guests `cargo xtask guest` builds. A missing tool or guest is
//! reported through `test_prerequisites` (skipped by hand, a failure in CI,
//! which installs the tools and builds the guests).

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::Command;

use vm_cross_arch::platform::{for_arch, BootInfo, GuestArch, MachineSize, MemoryMap};
use vm_memory::GuestMemoryMmap;

pub use test_prerequisites::tool;

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
        .memory_map(&MachineSize {
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

/// Where `cargo xtask guest` publishes the guest for `arch` (`x86_64`,
/// `riscv64`, `arm64`): `<target>/guest/<arch>/`.
pub fn guest_dir(arch: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("guest").join(arch)
}

/// Reads `name` (`kernel`, `initrd.cpio.gz`, `bzImage`) of the built guest
/// for `arch`; reports it missing and returns `None` when the guest has not
/// been built.
pub fn guest_file(arch: &str, name: &str) -> Option<Vec<u8>> {
    let path = guest_dir(arch).join(name);
    match std::fs::read(&path) {
        Ok(bytes) => {
            eprintln!("using {} ({} bytes)", path.display(), bytes.len());
            Some(bytes)
        }
        Err(e) => {
            test_prerequisites::prerequisite_missing(format_args!(
                "no {} ({e}): run `cargo xtask guest --arch {arch}`",
                path.display()
            ));
            None
        }
    }
}
