//! The guest's root tree (busybox, the modules, `/init`) loaded from a cache
//! entry: the one source of both the initramfs and `rootfs.ext4`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::{init, initramfs, read_modules, ArchSpec, Manifest, ModuleRef, BOOT_MODULES};

/// The paths of `modules` (a load order) that [`BOOT_MODULES`] need, and
/// the others (what [`super::ROOT_MODULES`] add), each in load order.
fn split_boot_modules(modules: &[ModuleRef]) -> (Vec<String>, Vec<String>) {
    let mut needed: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = BOOT_MODULES.to_vec();
    while let Some(name) = stack.pop() {
        if needed.insert(name) {
            if let Some(m) = modules.iter().find(|m| m.name == name) {
                stack.extend(m.deps.iter().map(String::as_str));
            }
        }
    }
    let (boot, root): (Vec<&ModuleRef>, Vec<&ModuleRef>) = modules
        .iter()
        .partition(|m| needed.contains(m.name.as_str()));
    let paths = |ms: Vec<&ModuleRef>| ms.into_iter().map(|m| m.path.clone()).collect();
    (paths(boot), paths(root))
}

/// What the guest's root holds, loaded from a cache entry.
pub struct GuestTree {
    busybox: Vec<u8>,
    release: String,
    modules: Vec<(String, Vec<u8>)>,
    modules_dep: String,
    init: String,
}

impl GuestTree {
    /// Reads the busybox and modules of `entry` and renders `/init` for `spec`.
    pub fn load(entry: &Path, manifest: &Manifest, spec: &ArchSpec) -> Result<Self> {
        let busybox = std::fs::read(entry.join("busybox")).context("reading the cached busybox")?;
        let (modules, modules_dep) = read_modules(&entry.join("modules"), &manifest.modules)?;
        let (boot, root) = split_boot_modules(&manifest.modules);
        let init = init::script(&init::InitSpec {
            arch: spec.name,
            release: &manifest.kernel_release,
            modules: &boot,
            root_modules: &root,
            end_vm: spec.end_vm,
        });
        Ok(Self {
            busybox,
            release: manifest.kernel_release.clone(),
            modules,
            modules_dep,
            init,
        })
    }

    /// The tree as the initramfs and disk-image writers take it.
    pub fn contents(&self) -> initramfs::Contents<'_> {
        initramfs::Contents {
            busybox: &self.busybox,
            release: &self.release,
            modules: &self.modules,
            modules_dep: &self.modules_dep,
            init: &self.init,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_modules_load_apart_from_the_boot_ones() {
        let m = |name: &str, deps: &[&str]| ModuleRef {
            name: name.into(),
            path: format!("kernel/{name}.ko"),
            deps: deps.iter().map(ToString::to_string).collect(),
        };
        let order = [
            m("virtio_mmio", &[]),
            m("failover", &[]),
            m("net_failover", &["failover"]),
            m("virtio_net", &["net_failover"]),
            m("crc16", &[]),
            m("virtio_blk", &["crc16"]),
            m("jbd2", &[]),
            m("ext4", &["jbd2", "crc16"]),
        ];
        let (boot, root) = split_boot_modules(&order);
        let names = |v: &[String]| {
            v.iter()
                .map(|p| p[7..p.len() - 3].to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&boot),
            [
                "virtio_mmio",
                "failover",
                "net_failover",
                "virtio_net",
                "crc16",
                "virtio_blk"
            ]
        );
        assert_eq!(names(&root), ["jbd2", "ext4"]);
    }
}
