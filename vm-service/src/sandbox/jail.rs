//! The optional jail around a VMM process (README: "Sandbox", "The jail"):
//! a mount namespace whose root holds only what the VM uses, a network
//! namespace where the configuration allows, optionally a PID namespace,
//! cgroup limits, and the drop to an unprivileged user.
//!
//! This module holds what does not depend on the OS: the configuration, its
//! validation, the spec a daemon VM gets from its [`VmConfig`], and the
//! cgroup settings. Entering the jail is `linux/jail.rs` (elsewhere
//! [`enter_jail`] refuses).

use std::path::{Component, Path, PathBuf};

use vm_core::config::{DeviceConfig, NetBackendConfig, VmConfig};

/// Guest memory the cgroup limit adds for the VMM itself (code, thread
/// stacks, buffers, the interpreter's caches), in MiB.
pub const VMM_MEMORY_OVERHEAD_MIB: u64 = 256;
/// The cgroup CPU period a daemon VM's quota is expressed in, in µs.
pub const CPU_PERIOD_US: u64 = 100_000;

/// A host file or directory made visible inside the jail at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path (also the path inside the jail).
    pub path: PathBuf,
    /// The VM writes to it; otherwise it is mounted read-only.
    pub writable: bool,
}

/// Which network namespace the jailed process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNamespace {
    /// The one it was started in (needed for a TAP device that lives there).
    Inherit,
    /// The namespace behind this handle (e.g. `/var/run/netns/NAME`).
    Join(PathBuf),
    /// A new, empty one (only a loopback interface, down).
    New,
}

/// Which cgroup hierarchy a setting is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1: one hierarchy per controller (`/sys/fs/cgroup/<ctrl>`).
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

impl std::str::FromStr for CgroupVersion {
    type Err = JailError;

    fn from_str(s: &str) -> Result<Self, JailError> {
        match s {
            "1" => Ok(Self::V1),
            "2" => Ok(Self::V2),
            other => Err(JailError::Invalid(format!(
                "cgroup version `{other}`: expected 1 or 2"
            ))),
        }
    }
}

/// Controllers a cgroup v1 hierarchy may carry.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];
/// Controllers of cgroup v2.
const V2_CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma",
];

/// One cgroup file and the value written to it, e.g. `memory.max=1G`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSetting {
    /// The hierarchy it belongs to.
    pub version: CgroupVersion,
    /// The file name, `<controller>.<name>`.
    pub file: String,
    /// What is written to it.
    pub value: String,
}

impl CgroupSetting {
    /// Parses `FILE=VALUE` (Firecracker's jailer `--cgroup` form) for `version`.
    pub fn parse(spec: &str, version: CgroupVersion) -> Result<Self, JailError> {
        let (file, value) = spec.split_once('=').ok_or_else(|| {
            JailError::Invalid(format!("cgroup setting `{spec}`: expected FILE=VALUE"))
        })?;
        let setting = Self {
            version,
            file: file.to_string(),
            value: value.to_string(),
        };
        setting.controller()?;
        Ok(setting)
    }

    /// The controller the file belongs to (the part before the first dot),
    /// checked against the controllers of its version.
    pub fn controller(&self) -> Result<&str, JailError> {
        let (controller, rest) = self.file.split_once('.').unwrap_or((&self.file, ""));
        if rest.is_empty() || self.file.contains('/') || self.value.contains('\n') {
            return Err(JailError::Invalid(format!(
                "cgroup file `{}`: expected <controller>.<name> and a one-line value",
                self.file
            )));
        }
        let known = match self.version {
            CgroupVersion::V1 => V1_CONTROLLERS,
            CgroupVersion::V2 => V2_CONTROLLERS,
        };
        if known.contains(&controller) {
            Ok(controller)
        } else {
            Err(JailError::UnknownController {
                controller: controller.to_string(),
                file: self.file.clone(),
                version: self.version,
            })
        }
    }
}

/// Where the jail's cgroups are created: `<hierarchy>/<base>/<parent>/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlacement {
    /// Relative path of the parent cgroup.
    pub parent: PathBuf,
    /// `true`: `parent` is below the cgroup this process is in (per
    /// hierarchy); `false`: below the hierarchy's root (Firecracker's jailer).
    pub below_own: bool,
}

/// Memory and CPU limits derived from a VM's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmLimits {
    /// Most memory of the process: guest RAM plus [`VMM_MEMORY_OVERHEAD_MIB`].
    pub memory_bytes: u64,
    /// CPU time per [`CPU_PERIOD_US`]: one period per vCPU, plus one for the
    /// device I/O threads.
    pub cpu_quota_us: u64,
}

impl VmLimits {
    /// The limits of a VM with `memory_mib` of RAM and `vcpus` vCPUs.
    pub fn for_vm(memory_mib: u64, vcpus: u32) -> Self {
        Self {
            memory_bytes: memory_mib.saturating_add(VMM_MEMORY_OVERHEAD_MIB) << 20,
            cpu_quota_us: (u64::from(vcpus) + 1) * CPU_PERIOD_US,
        }
    }
}

/// What the cgroups of the jail get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLimits {
    /// These files, in the hierarchy each names.
    Settings(Vec<CgroupSetting>),
    /// These limits, written in cgroup v2 where its controller is enabled
    /// and in v1 otherwise (chosen when the jail is entered).
    Vm(VmLimits),
}

/// A jail: what `vm-service jailer` and the daemon's `--jail-dir` build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailConfig {
    /// The jail's id (a VM id): `[A-Za-z0-9_.-]`, at most 64, not starting with `.`.
    pub id: String,
    /// The directory that becomes `/`: `<base>/<exec name>/<id>/root`.
    pub root: PathBuf,
    /// The user the process runs as once jailed.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Host files and directories the VM uses, mounted at the same paths.
    pub binds: Vec<Bind>,
    /// `true`: the root belongs to `uid:gid` and is writable (Firecracker
    /// mode creates its API socket there); `false`: it is read-only.
    pub writable_root: bool,
    /// The network namespace.
    pub net: NetNamespace,
    /// Run in a new PID namespace: the process forks, the child (PID 1 there)
    /// goes on, and the parent writes its pid to `<root>/<this name>` and exits.
    pub new_pid_ns: Option<String>,
    /// Cgroup limits (none when empty).
    pub cgroups: CgroupLimits,
    /// Where the cgroups go.
    pub cgroup_placement: CgroupPlacement,
    /// `setrlimit` values: (`RLIMIT_*` resource, value).
    pub rlimits: Vec<(ResourceLimit, u64)>,
    /// `setsid()` and standard descriptors on `/dev/null`.
    pub daemonize: bool,
}

/// A resource `--resource-limit` bounds (Firecracker's jailer names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceLimit {
    /// `fsize`: largest file the process may create, in bytes.
    FileSize,
    /// `no-file`: one more than the highest descriptor number.
    NoFile,
}

impl ResourceLimit {
    /// Parses `RESOURCE=VALUE`.
    pub fn parse(spec: &str) -> Result<(Self, u64), JailError> {
        let bad = || {
            JailError::Invalid(format!(
                "resource limit `{spec}`: expected fsize=N or no-file=N"
            ))
        };
        let (name, value) = spec.split_once('=').ok_or_else(bad)?;
        let value = value.parse().map_err(|_| bad())?;
        match name {
            "fsize" => Ok((Self::FileSize, value)),
            "no-file" => Ok((Self::NoFile, value)),
            _ => Err(bad()),
        }
    }
}

/// Why a jail could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The configuration is wrong.
    #[error("jail: {0}")]
    Invalid(String),
    /// A path that must be absolute is not.
    #[error("jail: {what} `{}` must be an absolute path without `..`", path.display())]
    BadPath {
        /// What the path is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A file the jail needs does not exist.
    #[error("jail: {what} `{}`: {source}", path.display())]
    Missing {
        /// What the file is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file names a controller that does not exist.
    #[error("jail: unknown cgroup {version:?} controller `{controller}` in `{file}`")]
    UnknownController {
        /// The controller.
        controller: String,
        /// The file.
        file: String,
        /// The hierarchy version.
        version: CgroupVersion,
    },
    /// No hierarchy of the host carries a controller a setting needs.
    #[error("jail: cannot write cgroup file {file}: {why}")]
    NoController {
        /// The file (or files tried).
        file: String,
        /// Which hierarchies were looked at.
        why: String,
    },
    /// A step failed in the OS.
    #[error("jail: {what} `{}`: {source}", path.display())]
    Os {
        /// What was being done.
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Dropping privileges failed.
    #[error(transparent)]
    Sandbox(#[from] super::SandboxError),
    /// Not available on this OS.
    #[error("jail: only available on Linux")]
    Unsupported,
}

/// Checks a jail id: the rules of a VM id (no `/`, not `.` or `..`).
pub fn validate_id(id: &str) -> Result<(), JailError> {
    vm_core::VmId::new(id)
        .map(drop)
        .map_err(|e| JailError::Invalid(format!("id `{id}`: {e}")))
}

/// Checks that `path` is absolute and has no `..` (it is joined below the
/// jail's root, which it must not leave).
pub fn absolute(what: &'static str, path: &Path) -> Result<(), JailError> {
    let escapes = path.components().any(|c| c == Component::ParentDir);
    if path.is_absolute() && !escapes {
        Ok(())
    } else {
        Err(JailError::BadPath {
            what,
            path: path.to_path_buf(),
        })
    }
}

/// The jail root for `id` under `base` for an executable named `exec_name`:
/// `<base>/<exec_name>/<id>/root` (the layout of Firecracker's jailer).
pub fn root_dir(base: &Path, exec_name: &str, id: &str) -> PathBuf {
    base.join(exec_name).join(id).join("root")
}

/// The executable name under which the daemon's VM jails are laid out.
pub const DAEMON_EXEC_NAME: &str = "vm-service";

impl JailConfig {
    /// The jail of a daemon VM `id` (`vm-service daemon --jail-dir base`):
    /// a read-only root under `base` with the kernel, initrd and drives
    /// (read-only unless the drive is writable) and the switch directory at
    /// their host paths; a new network namespace unless a NIC is a TAP
    /// device (which lives in the daemon's); the VM's memory and CPU limits
    /// in a cgroup below the daemon's own.
    pub fn for_vm(
        config: &VmConfig,
        switch_dir: Option<&Path>,
        base: &Path,
        id: &str,
        uid: u32,
        gid: u32,
    ) -> Result<Self, JailError> {
        validate_id(id)?;
        absolute("jail directory", base)?;
        let mut binds = Vec::new();
        for (what, path) in [("kernel", &config.kernel), ("initrd", &config.initrd)] {
            if let Some(path) = path {
                absolute(what, path)?;
                binds.push(Bind {
                    path: path.clone(),
                    writable: false,
                });
            }
        }
        let mut tap = false;
        let mut switch = false;
        for device in &config.devices {
            match device {
                DeviceConfig::Block(b) => {
                    absolute("drive", &b.path_on_host)?;
                    binds.push(Bind {
                        path: b.path_on_host.clone(),
                        writable: !b.is_read_only,
                    });
                }
                DeviceConfig::Net(n) => match &n.backend {
                    NetBackendConfig::Tap { .. } => tap = true,
                    NetBackendConfig::Virtual { .. } => switch = true,
                },
            }
        }
        if let (true, Some(dir)) = (switch, switch_dir) {
            absolute("switch directory", dir)?;
            if dir.is_dir() {
                binds.push(Bind {
                    path: dir.to_path_buf(),
                    writable: true,
                });
            }
        }
        Ok(Self {
            id: id.to_string(),
            root: root_dir(base, DAEMON_EXEC_NAME, id),
            uid,
            gid,
            binds,
            writable_root: false,
            net: if tap {
                NetNamespace::Inherit
            } else {
                NetNamespace::New
            },
            new_pid_ns: None,
            cgroups: CgroupLimits::Vm(VmLimits::for_vm(config.memory_mib, config.vcpus)),
            cgroup_placement: daemon_cgroup_placement(),
            rlimits: Vec::new(),
            daemonize: false,
        })
    }
}

/// Where the daemon's VM cgroups go: `vm-service/<id>` below the daemon's
/// own cgroup in each hierarchy.
pub fn daemon_cgroup_placement() -> CgroupPlacement {
    CgroupPlacement {
        parent: PathBuf::from(DAEMON_EXEC_NAME),
        below_own: true,
    }
}

/// Enters the jail `config` describes; the process must have one thread.
/// Afterwards it is in the jail's root as `config.uid`/`gid` with no
/// capabilities (seccomp comes after, from [`super::enter_process`]).
pub fn enter_jail(config: &JailConfig) -> Result<(), JailError> {
    super::imp::enter_jail(config)
}

/// Removes what the jail of a daemon VM `id` left on the host once its
/// process has ended: the jail directory (mount points only: the mounts
/// were in the process's own namespace) and its cgroups. Best effort,
/// failures are logged.
pub fn remove_daemon_jail(base: &Path, id: &str) {
    if validate_id(id).is_err() {
        return;
    }
    let dir = base.join(DAEMON_EXEC_NAME).join(id);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a VM's jail");
        }
    }
    super::imp::remove_cgroups(&daemon_cgroup_placement(), id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_core::config::{BlockConfig, NetConfig};

    #[test]
    fn ids_paths_and_cgroup_files_are_checked() {
        assert!(validate_id("vm-1_a.b").is_ok());
        for bad in ["", "a/b", "..", ".", "../x", "-x", &"a".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(absolute("kernel", Path::new("/k")).is_ok());
        assert!(absolute("kernel", Path::new("k")).is_err());
        assert!(absolute("kernel", Path::new("/a/../etc/shadow")).is_err());

        let v2 = CgroupSetting::parse("memory.max=1G", CgroupVersion::V2).unwrap();
        assert_eq!((v2.file.as_str(), v2.value.as_str()), ("memory.max", "1G"));
        assert!(CgroupSetting::parse("cpu.cfs_quota_us=5", CgroupVersion::V1).is_ok());
        let err = CgroupSetting::parse("gpu.max=1", CgroupVersion::V2).unwrap_err();
        assert!(err.to_string().contains("unknown cgroup"), "{err}");
        assert!(err.to_string().contains("`gpu`"), "{err}");
        // `io` is v2's, `blkio` v1's.
        assert!(CgroupSetting::parse("io.max=1", CgroupVersion::V1).is_err());
        for bad in ["memory.max", "memory=1", "memory./x=1", "../memory.max=1"] {
            assert!(
                CgroupSetting::parse(bad, CgroupVersion::V2).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            ResourceLimit::parse("no-file=1024").unwrap(),
            (ResourceLimit::NoFile, 1024)
        );
        assert!(ResourceLimit::parse("nproc=1").is_err());
        assert!("3".parse::<CgroupVersion>().is_err());
    }

    #[test]
    fn a_daemon_vm_gets_its_files_limits_and_network_namespace() {
        let mut config = VmConfig {
            kernel: Some("/img/kernel".into()),
            initrd: Some("/img/initrd".into()),
            memory_mib: 64,
            vcpus: 2,
            ..VmConfig::default()
        };
        config.devices.push(DeviceConfig::Block(BlockConfig {
            drive_id: "d".into(),
            path_on_host: "/img/disk".into(),
            is_root_device: true,
            is_read_only: false,
        }));
        let jail = JailConfig::for_vm(&config, None, Path::new("/srv/j"), "v1", 7, 8).unwrap();
        assert_eq!(jail.root, Path::new("/srv/j/vm-service/v1/root"));
        assert_eq!(
            jail.binds,
            [
                Bind {
                    path: "/img/kernel".into(),
                    writable: false
                },
                Bind {
                    path: "/img/initrd".into(),
                    writable: false
                },
                Bind {
                    path: "/img/disk".into(),
                    writable: true
                },
            ]
        );
        assert_eq!(jail.net, NetNamespace::New);
        assert_eq!(
            jail.cgroups,
            CgroupLimits::Vm(VmLimits {
                memory_bytes: (64 + VMM_MEMORY_OVERHEAD_MIB) << 20,
                cpu_quota_us: 3 * CPU_PERIOD_US,
            })
        );
        assert!(!jail.writable_root);

        config.devices.push(DeviceConfig::Net(NetConfig {
            id: "n".into(),
            backend: NetBackendConfig::Tap {
                ifname: "tap0".into(),
            },
            mac: None,
        }));
        let jail = JailConfig::for_vm(&config, None, Path::new("/srv/j"), "v1", 7, 8).unwrap();
        assert_eq!(
            jail.net,
            NetNamespace::Inherit,
            "a TAP lives in the host's namespace"
        );

        config.kernel = Some("relative/kernel".into());
        let err = JailConfig::for_vm(&config, None, Path::new("/srv/j"), "v1", 7, 8).unwrap_err();
        assert!(err.to_string().contains("relative/kernel"), "{err}");
        assert!(JailConfig::for_vm(&config, None, Path::new("/srv/j"), "a/b", 7, 8).is_err());
    }
}
