//! A private apt set-up per guest architecture: its own sources list, lists,
//! cache and an empty dpkg status, so the host's apt configuration and
//! package state are never read or changed. `apt-get download` fetches
//! packages of any architecture this way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The package index could not be fetched (no network, mirror down).
#[derive(Debug)]
pub struct IndexUnavailable(pub String);

impl std::fmt::Display for IndexUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IndexUnavailable {}

/// One binary package as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Version (with epoch, as apt prints it).
    pub version: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// Names of the packages it depends on (first alternative of each).
    pub depends: Vec<String>,
}

/// apt-get and apt-cache pointed at a private state directory.
#[derive(Debug)]
pub struct PrivateApt {
    root: PathBuf,
    arch: String,
    suite: String,
    mirror: String,
}

/// Fails with a clear message when apt-get, apt-cache or dpkg-deb is missing.
pub fn require_tools() -> Result<()> {
    for (tool, package) in [
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            bail!("`{tool}` is not on PATH: building guests needs Debian's `{package}` package (a Debian or Ubuntu host)");
        }
    }
    Ok(())
}

/// The host's Debian mirror (first `deb.debian.org`-style `.../debian` URI
/// in its apt sources), `$DEBIAN_MIRROR` if set, else deb.debian.org.
pub fn host_mirror() -> String {
    if let Ok(m) = std::env::var("DEBIAN_MIRROR") {
        return m;
    }
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.extend(std::fs::read_to_string(p));
            }
        }
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map_or_else(
            || DEFAULT_MIRROR.to_string(),
            |w| w.trim_end_matches('/').to_string(),
        )
}

/// Parses the first stanza of `apt-cache show` output.
pub fn parse_show(text: &str) -> Result<Package> {
    let stanza = text.split("\n\n").next().unwrap_or("");
    let field = |name: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let name = field("Package").context("no Package field")?;
    let version = field("Version").with_context(|| format!("{name}: no Version field"))?;
    let size = field("Size")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{name}: no Size field"))?;
    let depends = field("Depends")
        .unwrap_or_default()
        .split(',')
        .filter_map(|alt| {
            let first = alt.split('|').next()?.trim();
            let n = first.split([' ', '(']).next()?.split(':').next()?;
            (!n.is_empty()).then(|| n.to_string())
        })
        .collect();
    Ok(Package {
        name,
        version,
        size,
        depends,
    })
}

impl PrivateApt {
    /// Sets up (or reuses) the private state under `root`.
    pub fn new(root: &Path, arch: &str, suite: &str, mirror: &str) -> Result<Self> {
        for d in ["lists/partial", "archives/partial"] {
            std::fs::create_dir_all(root.join(d))
                .with_context(|| format!("creating {}", root.join(d).display()))?;
        }
        std::fs::write(
            root.join("sources.list"),
            format!("deb [arch={arch}] {mirror} {suite} main\n"),
        )
        .context("writing the private sources.list")?;
        Ok(Self {
            root: root.to_path_buf(),
            arch: arch.to_string(),
            suite: suite.to_string(),
            mirror: mirror.to_string(),
        })
    }

    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        let mut o = vec![
            format!("APT::Architectures={}", self.arch),
            format!("APT::Architecture={}", self.arch),
            format!("Dir::Etc::SourceList={r}/sources.list"),
            "Dir::Etc::SourceParts=/nonexistent".into(),
            format!("Dir::State::Lists={r}/lists"),
            "Dir::State::Status=/dev/null".into(),
            format!("Dir::Cache={r}"),
            format!("Dir::Cache::Archives={r}/archives"),
            // Named explicitly: some images (Docker's) set them empty, and
            // without them every apt-cache call re-parses the index.
            format!("Dir::Cache::pkgcache={r}/pkgcache.bin"),
            format!("Dir::Cache::srcpkgcache={r}/srcpkgcache.bin"),
            "Debug::NoLocking=1".into(),
            "APT::Sandbox::User=root".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        ];
        if Path::new(KEYRING).is_file() {
            o.push(format!("Dir::Etc::Trusted={KEYRING}"));
            o.push("Dir::Etc::TrustedParts=/etc/apt/trusted.gpg.d".into());
        }
        o.into_iter().flat_map(|v| ["-o".to_string(), v]).collect()
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(self.options()).env("LC_ALL", "C");
        c
    }

    /// `apt-get update` of the private index; fails when no index arrived.
    pub fn update(&self) -> Result<()> {
        let out = self
            .command("apt-get")
            .args(["-q", "update"])
            .output()
            .context("starting apt-get")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed = stderr
            .lines()
            .find(|l| l.starts_with("E:") || l.contains("Failed to fetch"));
        if !out.status.success() || failed.is_some() {
            return Err(IndexUnavailable(format!(
                "apt-get update of {} {}/{} failed (offline? `--offline` builds from the cache): {}",
                self.mirror,
                self.suite,
                self.arch,
                failed.unwrap_or(stderr.trim())
            ))
            .into());
        }
        let has_index = std::fs::read_dir(self.root.join("lists"))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"));
        if !has_index {
            bail!(
                "no package index for {}/{} from {}",
                self.suite,
                self.arch,
                self.mirror
            );
        }
        Ok(())
    }

    /// The candidate versions of `names` in the private index, in order.
    pub fn show(&self, names: &[String]) -> Result<Vec<Package>> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(names)
            .output()
            .context("starting apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let found = text
            .split("\n\n")
            .filter(|s| !s.trim().is_empty())
            .map(parse_show)
            .collect::<Result<Vec<_>>>()
            .context("reading apt-cache's package records")?;
        names
            .iter()
            .map(|n| {
                found
                    .iter()
                    .find(|p| &p.name == n)
                    .cloned()
                    .with_context(|| {
                        format!(
                            "package `{n}` is not in the {}/{} index from {}: {}",
                            self.suite,
                            self.arch,
                            self.mirror,
                            String::from_utf8_lossy(&out.stderr).trim()
                        )
                    })
            })
            .collect()
    }

    /// Downloads `pkg` into `dest`, advancing `bar` by the bytes received.
    pub fn download(&self, pkg: &Package, dest: &Path, bar: &ProgressBar) -> Result<PathBuf> {
        let base = bar.position();
        let mut child = self
            .command("apt-get")
            .args(["-q", "download", &format!("{}={}", pkg.name, pkg.version)])
            .current_dir(dest)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting apt-get download")?;
        let prefix = format!("{}_", pkg.name);
        let received = || -> u64 {
            std::fs::read_dir(dest).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
        };
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            bar.set_position(base + received().min(pkg.size));
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr).ok();
        }
        if !status.success() {
            bail!(
                "downloading package `{}` {} failed: {}",
                pkg.name,
                pkg.version,
                stderr.trim()
            );
        }
        bar.set_position(base + pkg.size);
        std::fs::read_dir(dest)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&prefix) && n.ends_with(".deb")
                })
            })
            .with_context(|| {
                format!(
                    "apt-get download `{}` left no .deb in {}",
                    pkg.name,
                    dest.display()
                )
            })
    }
}

/// Unpacks a `.deb`'s files into `dir`.
pub fn extract(deb: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .output()
        .context("starting dpkg-deb")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_is_parsed() {
        let text = "Package: linux-image-7.2.13+deb14-riscv64\nSource: linux\nVersion: 7.2.13-1\n\
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-riscv64 (= 7.2.13-1), linux-binary-7.2.13+deb14-riscv64:any (= 7.2.13-1)\n\
Size: 1876\nDescription: x\n\nPackage: other\n";
        let p = parse_show(text).unwrap();
        assert_eq!(p.name, "linux-image-7.2.13+deb14-riscv64");
        assert_eq!(p.version, "7.2.13-1");
        assert_eq!(p.size, 1876);
        assert_eq!(
            p.depends,
            [
                "dracut",
                "linux-base-7.2.13+deb14-riscv64",
                "linux-binary-7.2.13+deb14-riscv64"
            ]
        );
        assert!(parse_show("Package: x\nVersion: 1\n")
            .unwrap_err()
            .to_string()
            .contains("Size"));
        assert!(parse_show("").is_err());
    }
}
