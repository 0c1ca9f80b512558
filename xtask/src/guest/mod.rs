//! `cargo xtask guest`: stock Debian Linux guests for the VMM.
//!
//! Downloads the kernel and `busybox-static` packages of the guest
//! architecture with a private apt set-up ([`apt`]), takes the kernel our
//! loader enters (the uncompressed `vmlinux` ELF on x86_64, the `Image` on
//! riscv64), the virtio modules with everything they depend on, and builds a
//! gzip'd newc initramfs whose `/init` ([`init`]) configures the network from
//! the command line, prints `VM-GUEST-READY`, runs the command given after
//! ` -- ` and ends the VM. The same tree also goes into an ext4 disk image
//! ([`rootfs`], made with `mkfs.ext4 -d`: no root, no loop mount) that the
//! initramfs's `/init` mounts and switches to when the kernel command line
//! names a root disk (`root=/dev/vda`): Debian's kernels have `virtio_blk`
//! and `ext4` as modules, so the kernel cannot mount it by itself.
//!
//! Inputs are cached per package versions in `target/guest-cache/<arch>/<key>/`;
//! the current guest is published at the stable paths
//! `target/guest/<arch>/{kernel,initrd.cpio.gz,rootfs.ext4,guest.json}`.

mod apt;
mod bzimage;
pub mod cpio;
mod decompress;
mod init;
pub mod initramfs;
mod modules;
pub mod rootfs;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use apt::{Package, PrivateApt};
use modules::Module;

/// A guest architecture `cargo xtask guest` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// x86_64 (Debian amd64, bookworm's cloud kernel).
    #[value(name = "x86_64")]
    X86_64,
    /// riscv64 (Debian sid).
    #[value(name = "riscv64")]
    Riscv64,
    /// arm64 (Debian bookworm); no engine runs it yet, its kernel is loaded
    /// by the platform tests.
    #[value(name = "arm64")]
    Arm64,
}

/// How the kernel our loader enters is obtained from the packaged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelKind {
    /// A bzImage whose payload is the uncompressed x86_64 `vmlinux` ELF.
    BzImageToVmlinux,
    /// An arm64/riscv64 `Image` (possibly compressed) with this magic at 0x38.
    Image(&'static [u8; 4]),
}

/// Everything that differs between architectures.
#[derive(Debug)]
struct ArchSpec {
    name: &'static str,
    debian_arch: &'static str,
    suite: &'static str,
    kernel_meta: &'static str,
    kernel: KernelKind,
    /// Busybox command that ends the VM: x86_64 powers off through ACPI S5,
    /// riscv64 through syscon-poweroff.
    end_vm: &'static str,
    /// Modules this kernel needs as the VMM host of `cargo xtask e2e
    /// --nested-tcg` (KVM), cached beside the guest's own.
    vmm_host_modules: &'static [&'static str],
}

const X86_64: ArchSpec = ArchSpec {
    name: "x86_64",
    debian_arch: "amd64",
    suite: "bookworm",
    kernel_meta: "linux-image-cloud-amd64",
    kernel: KernelKind::BzImageToVmlinux,
    end_vm: "poweroff -f",
    vmm_host_modules: &["kvm_amd"],
};

const RISCV64: ArchSpec = ArchSpec {
    name: "riscv64",
    debian_arch: "riscv64",
    suite: "sid",
    kernel_meta: "linux-image-riscv64",
    kernel: KernelKind::Image(b"RSC\x05"),
    end_vm: "poweroff -f",
    vmm_host_modules: &[],
};

const ARM64: ArchSpec = ArchSpec {
    name: "arm64",
    debian_arch: "arm64",
    suite: "bookworm",
    kernel_meta: "linux-image-arm64",
    kernel: KernelKind::Image(b"ARM\x64"),
    end_vm: "poweroff -f",
    vmm_host_modules: &[],
};

impl Arch {
    fn spec(self) -> &'static ArchSpec {
        match self {
            Self::X86_64 => &X86_64,
            Self::Riscv64 => &RISCV64,
            Self::Arm64 => &ARM64,
        }
    }

    /// The host's architecture when it is one we build, else x86_64.
    pub fn host() -> Self {
        if cfg!(target_arch = "riscv64") {
            Self::Riscv64
        } else if cfg!(target_arch = "aarch64") {
            Self::Arm64
        } else {
            Self::X86_64
        }
    }
}

/// The modules the guest loads at boot; their dependencies come along.
const BOOT_MODULES: &[&str] = &["virtio_mmio", "virtio_net", "virtio_blk"];
/// The modules `/init` loads only to mount a root disk (with what they
/// need that [`BOOT_MODULES`] did not bring): `ext4` brings `jbd2`, `mbcache`
/// and `crc16` on Debian's riscv64 kernel, and loading them costs seconds on
/// the interpreter.
const ROOT_MODULES: &[&str] = &["ext4"];
/// Every module the guest carries: [`BOOT_MODULES`], then [`ROOT_MODULES`].
fn wanted_modules() -> Vec<&'static str> {
    [BOOT_MODULES, ROOT_MODULES].concat()
}
/// Busybox's package.
const BUSYBOX: &str = "busybox-static";

/// What a cache entry holds besides its files; written last, so an entry
/// with a manifest is complete.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    arch: String,
    kernel_release: String,
    packages: Vec<PackageRef>,
    /// In load order: paths below `lib/modules/<release>/` (uncompressed).
    modules: Vec<ModuleRef>,
    /// The spec's `vmm_host_modules` with their dependencies, in load order,
    /// below `host-modules/`.
    #[serde(default)]
    host_modules: Vec<ModuleRef>,
    /// Where the kernel came from inside its package.
    kernel_source: String,
    /// The [`wanted_modules`] the entry was made for (absent in older
    /// entries): an entry made for another list is fetched again.
    #[serde(default)]
    wanted: Vec<String>,
}

impl Manifest {
    fn has_wanted_modules(&self) -> bool {
        self.wanted.iter().map(String::as_str).eq(wanted_modules())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackageRef {
    name: String,
    version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModuleRef {
    name: String,
    path: String,
    deps: Vec<String>,
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Progress on the terminal; nothing when stderr is not one.
struct Progress {
    tty: bool,
}

impl Progress {
    fn spinner(&self, msg: String) -> ProgressBar {
        if !self.tty {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new_spinner().with_message(msg);
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    fn bytes(&self, total: u64) -> ProgressBar {
        if !self.tty {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        pb
    }
}

fn done(pb: &ProgressBar, msg: String) {
    if pb.is_hidden() {
        return;
    }
    pb.finish_with_message(msg);
}

/// Runs `cargo xtask guest`. Without network (the package index cannot be
/// fetched) it builds from the cache, and fails when there is none.
pub fn run(root: &Path, arch: Option<Arch>, offline: bool) -> Result<()> {
    let arch = arch.unwrap_or_else(Arch::host);
    let started = Instant::now();
    let summary = match build(root, arch.spec(), offline) {
        Err(e) if e.downcast_ref::<apt::IndexUnavailable>().is_some() => {
            eprintln!("guest: {e}; building from the cache");
            build(root, arch.spec(), true).with_context(|| {
                format!(
                    "no {} guest: the package index is unavailable and nothing is cached",
                    arch.spec().name
                )
            })?
        }
        other => other?,
    };
    let source = if summary.cached {
        "from the cache".to_string()
    } else {
        format!("downloads and extraction {:.1?}", summary.download_time)
    };
    println!(
        "guest {}: Linux {} ({}), initramfs {} with {} modules, in {:.1?} ({source})",
        arch.spec().name,
        summary.release,
        human(summary.kernel_size),
        human(summary.initrd_size),
        summary.modules,
        started.elapsed(),
    );
    println!("  {}", summary.out.join("kernel").display());
    println!("  {}", summary.out.join("initrd.cpio.gz").display());
    if summary.rootfs {
        println!(
            "  {} ({} MiB ext4, the same tree; `vm-service run --guest debian --rootfs` boots it and writes to it)",
            summary.out.join(rootfs::FILE).display(),
            rootfs::SIZE_MIB
        );
    }
    println!("  {}", summary.out.join("guest.json").display());
    Ok(())
}

fn human(bytes: u64) -> String {
    format!("{}.{} MiB", bytes >> 20, ((bytes & 0xf_ffff) * 10) >> 20)
}

struct Summary {
    out: PathBuf,
    release: String,
    kernel_size: u64,
    initrd_size: u64,
    modules: usize,
    rootfs: bool,
    cached: bool,
    download_time: Duration,
}

/// Builds the guest of `spec` and publishes it; the checks CI runs on it.
fn build(root: &Path, spec: &ArchSpec, offline: bool) -> Result<Summary> {
    let progress = Progress {
        tty: std::io::stderr().is_terminal(),
    };
    let target = target_dir(root);
    let cache_root = target.join("guest-cache").join(spec.name);
    let out = target.join("guest").join(spec.name);
    let mut download_time = Duration::ZERO;
    let (entry, cached) = if offline {
        (latest_cache_entry(&cache_root, &out, spec)?, true)
    } else {
        apt::require_tools()?;
        let mirror = apt::host_mirror();
        let apt = PrivateApt::new(
            &cache_root.join("apt"),
            spec.debian_arch,
            spec.suite,
            &mirror,
        )?;
        let pb = progress.spinner(format!("{}: updating the {} index", spec.name, spec.suite));
        apt.update()?;
        let packages = resolve_packages(&apt, spec)?;
        done(&pb, format!("{}: {} index updated", spec.name, spec.suite));
        let entry = cache_root.join(cache_key(spec, &packages)?);
        if complete(&entry, spec) {
            (entry, true)
        } else {
            let t = Instant::now();
            fetch(&apt, spec, &packages, &entry, &progress)?;
            download_time = t.elapsed();
            (entry, false)
        }
    };
    let manifest = read_manifest(&entry)?;
    if !manifest.has_wanted_modules() {
        eprintln!(
            "guest: warning: the cached {} guest was made for other modules than {:?} \
             (run once with network to refresh it); its root disk may not mount",
            spec.name,
            wanted_modules()
        );
    }
    let pb = progress.spinner(format!("{}: building the initramfs", spec.name));
    let tree = tree::GuestTree::load(&entry, &manifest, spec)?;
    let initrd = initramfs::gzip(&initramfs::cpio(&tree.contents())?)?;
    done(&pb, format!("{}: initramfs built", spec.name));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let rootfs = if let Some(mkfs) = rootfs::find_mkfs() {
        let pb = progress.spinner(format!("{}: building {}", spec.name, rootfs::FILE));
        rootfs::build(&mkfs, &tree.contents(), &out.join(rootfs::FILE))?;
        done(&pb, format!("{}: {} built", spec.name, rootfs::FILE));
        true
    } else {
        eprintln!(
            "guest: {} not built: no mkfs.ext4 (install e2fsprogs: `cargo xtask setup`)",
            rootfs::FILE
        );
        // A stale image would not match this kernel's modules.
        let _ = std::fs::remove_file(out.join(rootfs::FILE));
        false
    };
    let kernel_size = publish(&entry, &out, &initrd, rootfs, &manifest, spec)?;
    Ok(Summary {
        out,
        release: manifest.kernel_release,
        kernel_size,
        initrd_size: initrd.len() as u64,
        rootfs,
        modules: manifest.modules.len(),
        cached,
        download_time,
    })
}

/// Whether the cache entry `entry` holds everything `spec` asks for (entries
/// written before `vmm_host_modules` or the root-disk modules existed lack those).
fn complete(entry: &Path, spec: &ArchSpec) -> bool {
    read_manifest(entry).is_ok_and(|m| {
        m.has_wanted_modules() && (spec.vmm_host_modules.is_empty() || !m.host_modules.is_empty())
    })
}

/// The kernel meta package's closure of kernel packages, plus busybox.
fn resolve_packages(apt: &PrivateApt, spec: &ArchSpec) -> Result<Vec<Package>> {
    let is_kernel_pkg = |n: &str| {
        [
            "linux-image-",
            "linux-binary-",
            "linux-modules-",
            "linux-base-",
        ]
        .iter()
        .any(|p| n.starts_with(p))
    };
    let mut seen = BTreeSet::new();
    let mut level = vec![spec.kernel_meta.to_string(), BUSYBOX.to_string()];
    let mut packages = Vec::new();
    while !level.is_empty() {
        seen.extend(level.iter().cloned());
        let found = apt.show(&level)?;
        level = found
            .iter()
            .flat_map(|p| &p.depends)
            .filter(|d| is_kernel_pkg(d) && !seen.contains(*d))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        packages.extend(found);
    }
    Ok(packages)
}

/// `<versioned kernel image package>_<version>+busybox_<version>`.
fn cache_key(spec: &ArchSpec, packages: &[Package]) -> Result<String> {
    let image = packages
        .iter()
        .find(|p| p.name.starts_with("linux-image-") && p.name != spec.kernel_meta)
        .with_context(|| {
            format!(
                "`{}` depends on no versioned linux-image package",
                spec.kernel_meta
            )
        })?;
    let busybox = packages
        .iter()
        .find(|p| p.name == BUSYBOX)
        .context("busybox-static was not resolved")?;
    Ok(format!(
        "{}_{}+busybox_{}",
        image.name, image.version, busybox.version
    )
    .replace(':', "%3a"))
}

/// Without network: the entry guest.json names, else the newest complete one.
fn latest_cache_entry(cache_root: &Path, out: &Path, spec: &ArchSpec) -> Result<PathBuf> {
    let published = std::fs::read(out.join("guest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["cache_entry"].as_str().map(|s| cache_root.join(s)));
    if let Some(e) = published.filter(|e| e.join("manifest.json").is_file()) {
        return Ok(e);
    }
    let newest = std::fs::read_dir(cache_root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("manifest.json"))
        .filter_map(|m| Some((std::fs::metadata(&m).ok()?.modified().ok()?, m)))
        .max();
    match newest {
        Some((_, m)) => Ok(m.parent().expect("manifest has a parent").to_path_buf()),
        None => bail!(
            "--offline: no cached {} guest in {} (run `cargo xtask guest --arch {}` once with network)",
            spec.name,
            cache_root.display(),
            spec.name
        ),
    }
}

/// Downloads and unpacks the packages and fills the cache entry `entry`.
fn fetch(
    apt: &PrivateApt,
    spec: &ArchSpec,
    packages: &[Package],
    entry: &Path,
    progress: &Progress,
) -> Result<()> {
    let work = entry.join("work");
    let debs = work.join("debs");
    let tree = work.join("tree");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&debs)?;
    let bar = progress.bytes(packages.iter().map(|p| p.size).sum());
    for p in packages {
        bar.set_message(p.name.clone());
        let deb = apt.download(p, &debs, &bar)?;
        apt::extract(&deb, &tree)?;
    }
    done(
        &bar,
        format!("{}: {} packages downloaded", spec.name, packages.len()),
    );

    let pb = progress.spinner(format!("{}: extracting the kernel and modules", spec.name));
    let (kernel_src, release) = find_kernel(&tree)?;
    let packaged =
        std::fs::read(&kernel_src).with_context(|| format!("reading {}", kernel_src.display()))?;
    let kernel = match spec.kernel {
        KernelKind::BzImageToVmlinux => {
            std::fs::write(entry.join("bzImage"), &packaged)?;
            bzimage::vmlinux(&packaged)
                .with_context(|| format!("extracting vmlinux from {}", kernel_src.display()))?
        }
        KernelKind::Image(magic) => {
            let image = decompress::decompress_if_compressed(packaged, "the kernel Image")?;
            if image.get(0x38..0x3c) != Some(&magic[..]) {
                bail!(
                    "{} is not a {} Image (no {magic:x?} magic at 0x38)",
                    kernel_src.display(),
                    spec.name
                );
            }
            image
        }
    };
    std::fs::write(entry.join("kernel"), &kernel)?;

    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_file())
        .context("busybox-static ships no bin/busybox or usr/bin/busybox")?;
    std::fs::copy(&busybox, entry.join("busybox"))?;

    let order = collect_modules(&tree, &release, &wanted_modules(), &entry.join("modules"))?;
    let host_modules = collect_modules(
        &tree,
        &release,
        spec.vmm_host_modules,
        &entry.join("host-modules"),
    )?;
    let manifest = Manifest {
        arch: spec.name.to_string(),
        kernel_release: release,
        packages: packages
            .iter()
            .map(|p| PackageRef {
                name: p.name.clone(),
                version: p.version.clone(),
            })
            .collect(),
        modules: order,
        host_modules,
        wanted: wanted_modules().iter().map(ToString::to_string).collect(),
        kernel_source: kernel_src
            .strip_prefix(&tree)
            .unwrap_or(&kernel_src)
            .display()
            .to_string(),
    };
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    write_atomic(
        &entry.join("manifest.json"),
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    done(&pb, format!("{}: kernel and modules extracted", spec.name));
    Ok(())
}

/// The packaged kernel image and its release, from `boot/vmlinu[xz]-<rel>`
/// or `usr/lib/modules/<rel>/vmlinu[xz]`.
fn find_kernel(tree: &Path) -> Result<(PathBuf, String)> {
    if let Ok(dir) = std::fs::read_dir(tree.join("boot")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rel) = name
                .strip_prefix("vmlinuz-")
                .or(name.strip_prefix("vmlinux-"))
            {
                return Ok((e.path(), rel.to_string()));
            }
        }
    }
    for base in ["usr/lib/modules", "lib/modules"] {
        for e in std::fs::read_dir(tree.join(base))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in ["vmlinuz", "vmlinux"] {
                if e.path().join(f).is_file() {
                    return Ok((
                        e.path().join(f),
                        e.file_name().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
    }
    bail!("no kernel image in the kernel packages (looked for boot/vmlinuz-* and usr/lib/modules/*/vmlinuz)")
}

/// Resolves `wanted` with their dependencies, writes them uncompressed below
/// `dest`, and returns them in load order.
fn collect_modules(
    tree: &Path,
    release: &str,
    wanted: &[&str],
    dest: &Path,
) -> Result<Vec<ModuleRef>> {
    let moddir = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|b| tree.join(b).join(release))
        .find(|d| d.join("kernel").is_dir())
        .with_context(|| format!("the kernel packages ship no modules for {release}"))?;
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin"))
        .map(|t| modules::parse_builtin(&t))
        .unwrap_or_default();
    let shipped_dep = std::fs::read_to_string(moddir.join("modules.dep"))
        .ok()
        .map(|t| modules::parse_modules_dep(&t))
        .transpose()?;
    // Name -> path of every module file (for modinfo-based resolution).
    let mut index = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(rel) = p.strip_prefix(&moddir).ok().and_then(Path::to_str) {
                if let Some(name) = modules::module_name(rel) {
                    index.insert(name, rel.to_string());
                }
            }
        }
    }
    let mut loaded: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut load = |rel: &str| -> Result<Vec<u8>> {
        if let Some(d) = loaded.get(rel) {
            return Ok(d.clone());
        }
        let raw = std::fs::read(moddir.join(rel)).with_context(|| format!("reading {rel}"))?;
        let data = decompress::decompress_if_compressed(raw, rel)?;
        loaded.insert(rel.to_string(), data.clone());
        Ok(data)
    };
    let order = modules::resolve(wanted, &builtin, |name| {
        if let Some(dep) = &shipped_dep {
            return Ok(dep.get(name).cloned());
        }
        let Some(path) = index.get(name) else {
            return Ok(None);
        };
        let deps = modules::modinfo_depends(&load(path)?, path)?;
        Ok(Some(Module {
            name: name.to_string(),
            path: path.clone(),
            deps,
        }))
    })?;
    let mut refs = Vec::new();
    for m in order {
        let data = load(&m.path)?;
        let plain = uncompressed_path(&m.path);
        let file = dest.join(&plain);
        std::fs::create_dir_all(file.parent().expect("module path has a parent"))?;
        std::fs::write(&file, data)?;
        refs.push(ModuleRef {
            name: m.name,
            path: plain,
            deps: m.deps,
        });
    }
    Ok(refs)
}

/// `x.ko.xz` -> `x.ko` (busybox insmod takes uncompressed modules).
fn uncompressed_path(path: &str) -> String {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|e| path.strip_suffix(e))
        .unwrap_or(path)
        .to_string()
}

fn read_manifest(entry: &Path) -> Result<Manifest> {
    let path = entry.join("manifest.json");
    serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))
}

/// Modules as (path below `lib/modules/<release>/`, contents), in load order.
type ModuleFiles = Vec<(String, Vec<u8>)>;

/// The cached modules `refs` (below `dir`) in load order, and their `modules.dep`.
fn read_modules(dir: &Path, refs: &[ModuleRef]) -> Result<(ModuleFiles, String)> {
    let modules = refs
        .iter()
        .map(|m| {
            let data = std::fs::read(dir.join(&m.path))
                .with_context(|| format!("reading cached module {}", m.path))?;
            Ok((m.path.clone(), data))
        })
        .collect::<Result<Vec<_>>>()?;
    let order: Vec<Module> = refs
        .iter()
        .map(|m| Module {
            name: m.name.clone(),
            path: m.path.clone(),
            deps: m.deps.clone(),
        })
        .collect();
    let modules_dep = modules::render_modules_dep(&order, |m| m.path.clone());
    Ok((modules, modules_dep))
}

/// The published guest's kernel as the VMM host of `cargo xtask e2e
/// --nested-tcg`: what its initramfs needs from the cache.
#[derive(Debug)]
pub struct VmmHostKernel {
    /// The kernel QEMU boots (x86_64: the bzImage).
    pub kernel: PathBuf,
    /// Kernel release (`uname -r`).
    pub release: String,
    /// The static busybox.
    pub busybox: Vec<u8>,
    /// The spec's `vmm_host_modules` and their dependencies, in load order.
    pub modules: ModuleFiles,
    /// `modules.dep` for them.
    pub modules_dep: String,
}

/// What `cargo xtask guest --arch ARCH` cached for the guest it published,
/// read for use as a VMM host.
pub fn vmm_host_kernel(root: &Path, arch: Arch) -> Result<VmmHostKernel> {
    let spec = arch.spec();
    let target = target_dir(root);
    let entry = latest_cache_entry(
        &target.join("guest-cache").join(spec.name),
        &target.join("guest").join(spec.name),
        spec,
    )?;
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(entry.join("manifest.json"))
            .with_context(|| format!("reading {}", entry.join("manifest.json").display()))?,
    )?;
    if manifest.host_modules.is_empty() {
        bail!(
            "the cached {} guest in {} has no VMM host modules ({:?}): rebuild it with `cargo xtask guest --arch {}`",
            spec.name,
            entry.display(),
            spec.vmm_host_modules,
            spec.name
        );
    }
    let (modules, modules_dep) = read_modules(&entry.join("host-modules"), &manifest.host_modules)?;
    let kernel = entry.join("bzImage");
    if !kernel.is_file() {
        bail!("the cached {} guest has no bzImage", spec.name);
    }
    Ok(VmmHostKernel {
        kernel,
        release: manifest.kernel_release,
        busybox: std::fs::read(entry.join("busybox")).context("reading the cached busybox")?,
        modules,
        modules_dep,
    })
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn file_record(name: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "path": name,
        "size": data.len(),
        "sha256": format!("{:x}", Sha256::digest(data)),
    })
}

/// [`file_record`] of a file on disk, read in pieces (the disk image is large).
fn file_record_of(name: &str, path: &Path) -> Result<serde_json::Value> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::json!({
        "path": name,
        "size": size,
        "sha256": format!("{:x}", hasher.finalize()),
    }))
}

/// Writes the stable files; returns the kernel's size.
fn publish(
    entry: &Path,
    out: &Path,
    initrd: &[u8],
    rootfs: bool,
    manifest: &Manifest,
    spec: &ArchSpec,
) -> Result<u64> {
    let kernel = std::fs::read(entry.join("kernel")).context("reading the cached kernel")?;
    write_atomic(&out.join("kernel"), &kernel)?;
    write_atomic(&out.join("initrd.cpio.gz"), initrd)?;
    let mut files = vec![
        file_record("kernel", &kernel),
        file_record("initrd.cpio.gz", initrd),
    ];
    if let Ok(bz) = std::fs::read(entry.join("bzImage")) {
        write_atomic(&out.join("bzImage"), &bz)?;
        files.push(file_record("bzImage", &bz));
    }
    if rootfs {
        files.push(file_record_of(rootfs::FILE, &out.join(rootfs::FILE))?);
    }
    let json = serde_json::json!({
        "arch": spec.name,
        "debian_arch": spec.debian_arch,
        "suite": spec.suite,
        "kernel_release": manifest.kernel_release,
        "kernel_format": match spec.kernel {
            KernelKind::BzImageToVmlinux => "elf-vmlinux",
            KernelKind::Image(_) => "image",
        },
        "kernel_source": manifest.kernel_source,
        "packages": manifest.packages.iter().map(|p| serde_json::json!({"name": p.name, "version": p.version})).collect::<Vec<_>>(),
        "modules": manifest.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
        "init": {
            "ready_marker": init::READY_MARKER,
            "exit_marker": init::EXIT_MARKER,
            "end_vm": spec.end_vm,
            "cmdline": "vmguest.ip=ADDR/PREFIX vmguest.gw=GW root=/dev/vda -- COMMAND...",
        },
        "rootfs": rootfs.then(|| serde_json::json!({
            "path": rootfs::FILE,
            "format": "raw ext4",
            "label": rootfs::LABEL,
            "size_mib": rootfs::SIZE_MIB,
            "boot": "with kernel and initrd.cpio.gz: /init mounts root= (or vmguest.root=) and switch_roots into the disk's /init",
        })),
        "files": files,
        "cache_entry": entry.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    write_atomic(&out.join("guest.json"), &serde_json::to_vec_pretty(&json)?)?;
    Ok(kernel.len() as u64)
}

/// CI: builds the guest of every architecture (the tests load or boot each;
/// x86_64's kernel is also the VMM host of the nested-TCG e2e) and checks
/// what each published.
pub fn ci_check(root: &Path) -> Result<()> {
    for arch in [Arch::Riscv64, Arch::X86_64, Arch::Arm64] {
        run(root, Some(arch), false)?;
        check_published(root, arch.spec())?;
    }
    Ok(())
}

/// What a published guest's initramfs and guest.json must hold.
fn check_published(root: &Path, spec: &ArchSpec) -> Result<()> {
    let out = target_dir(root).join("guest").join(spec.name);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("guest.json"))?)
        .context("parsing guest.json")?;
    let release = json["kernel_release"]
        .as_str()
        .context("guest.json: no kernel_release")?;
    let gz = std::fs::read(out.join("initrd.cpio.gz"))?;
    let mut archive = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut archive)
        .context("initrd.cpio.gz is not gzip")?;
    let names = list_cpio(&archive)?;
    for want in ["init", "bin/busybox", "dev/console"] {
        if !names.iter().any(|n| n == want) {
            bail!("initrd.cpio.gz lacks {want}");
        }
    }
    for m in json["modules"]
        .as_array()
        .context("guest.json: no modules")?
    {
        let m = m.as_str().unwrap_or_default();
        let listed = names.iter().any(|n| {
            n.starts_with(&format!("lib/modules/{release}/"))
                && modules::module_name(n).as_deref() == Some(m)
        });
        if !listed {
            bail!("initrd.cpio.gz lacks module {m}");
        }
    }
    for m in ["virtio_net", "virtio_blk", "virtio_mmio"] {
        if !json["modules"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == m))
        {
            bail!("guest.json lists no {m} module");
        }
    }
    let rootfs_checked = rootfs::ci_check(&out, &json)?;
    println!(
        "guest: {} guest checked ({} files in the initramfs{rootfs_checked})",
        spec.name,
        names.len()
    );
    Ok(())
}

/// Names in a newc archive (a minimal, bounds-checked reader).
fn list_cpio(mut a: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    loop {
        let header = a.get(..110).context("cpio: truncated header")?;
        if &header[..6] != b"070701" {
            bail!("cpio: bad magic");
        }
        let field = |i: usize| -> Result<usize> {
            let s = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])?;
            Ok(usize::from_str_radix(s, 16)?)
        };
        let (size, namesize) = (field(6)?, field(11)?);
        let name = a
            .get(110..110 + namesize.saturating_sub(1))
            .context("cpio: truncated name")?;
        let name = String::from_utf8_lossy(name).into_owned();
        let next = ((110 + namesize).next_multiple_of(4) + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            return Ok(names);
        }
        names.push(name);
        a = a.get(next..).context("cpio: truncated data")?;
    }
}
