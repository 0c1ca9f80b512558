//! `vm-service jailer`: Firecracker's jailer flags, so orchestrators that
//! start `jailer --id ... --exec-file .../firecracker ... -- <firecracker
//! flags>` can start this VMM the same way.
//!
//! What differs from Firecracker's jailer: the VMM is not executed from a
//! copy inside the jail. This binary jails its own process and then goes on
//! as the VMM (a dynamically linked binary could not be executed in an empty
//! root), so `--exec-file` must be this binary (a link to it, e.g. named
//! `firecracker`, is fine). Its name picks what runs: Firecracker mode with
//! `--id` and the arguments after `--` when it contains `firecracker`, else
//! the `vm-service` command after `--` (`run`, `vmm`, `firecracker`).
//! As with Firecracker's jailer, the kernel, disks and other files the VM
//! uses must be placed (hard-linked or copied) below
//! `<chroot-base-dir>/<exec name>/<id>/root/` first, and paths given to the
//! VMM are paths inside the jail.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::sandbox::jail::{
    self, CgroupLimits, CgroupPlacement, CgroupSetting, CgroupVersion, JailConfig, JailError,
    NetNamespace, ResourceLimit,
};

/// `no-file` when no `--resource-limit` is given (Firecracker's default).
const DEFAULT_NO_FILE: u64 = 2048;

/// `vm-service jailer [flags] -- [what runs jailed]`.
#[derive(Debug, Clone, clap::Args)]
pub struct JailerArgs {
    /// The jail's id: `[A-Za-z0-9_.-]`, at most 64 characters.
    #[arg(long)]
    pub id: String,
    /// This vm-service binary, or a link to it (named `firecracker` for
    /// Firecracker mode). Absolute path.
    #[arg(long)]
    pub exec_file: PathBuf,
    /// The user the VMM runs as.
    #[arg(long)]
    pub uid: u32,
    /// Its group.
    #[arg(long)]
    pub gid: u32,
    /// Where jails are made: `<dir>/<exec file name>/<id>/root`.
    #[arg(long, default_value = "/srv/jailer")]
    pub chroot_base_dir: PathBuf,
    /// Join this network namespace (e.g. `/var/run/netns/NAME`).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// `FILE=VALUE` written in the jail's cgroup, e.g. `cpu.cfs_quota_us=50000`
    /// (v1) or `memory.max=1G` (v2). Repeatable.
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// The hierarchy --cgroup files are in: 1 or 2.
    #[arg(long, default_value = "1")]
    pub cgroup_version: String,
    /// The parent of the jail's cgroup, relative to the hierarchy's root
    /// (default: the exec file's name).
    #[arg(long)]
    pub parent_cgroup: Option<PathBuf>,
    /// `fsize=BYTES` or `no-file=N` (default `no-file=2048`). Repeatable.
    #[arg(long)]
    pub resource_limit: Vec<String>,
    /// `setsid()` and the standard descriptors on `/dev/null`.
    #[arg(long)]
    pub daemonize: bool,
    /// Run the VMM as PID 1 of a new PID namespace; the jailer's process
    /// writes its pid to `<root>/<exec file name>.pid` and exits.
    #[arg(long)]
    pub new_pid_ns: bool,
    /// What runs jailed: Firecracker flags, or a vm-service command.
    #[arg(last = true)]
    pub extra: Vec<OsString>,
}

/// What runs once the jail is entered: an argument vector to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inner {
    /// Firecracker mode (`firecracker --id ID <extra>`).
    Firecracker(Vec<OsString>),
    /// A vm-service command (`vm-service <extra>`).
    VmService(Vec<OsString>),
}

impl JailerArgs {
    /// The exec file's name, which names the jail's directory.
    fn exec_name(&self) -> Result<String, JailError> {
        self.exec_file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                JailError::Invalid(format!(
                    "--exec-file `{}` has no file name",
                    self.exec_file.display()
                ))
            })
    }

    /// What runs in the jail, from the exec file's name and the arguments
    /// after `--`; checks that the exec file is this binary.
    pub fn inner_command(&self) -> Result<Inner, JailError> {
        jail::validate_id(&self.id)?;
        jail::absolute("exec file", &self.exec_file)?;
        let exec = std::fs::metadata(&self.exec_file).map_err(|source| JailError::Missing {
            what: "exec file",
            path: self.exec_file.clone(),
            source,
        })?;
        let this = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map_err(|source| JailError::Missing {
                what: "this executable",
                path: PathBuf::from("/proc/self/exe"),
                source,
            })?;
        if !same_file(&exec, &this) {
            return Err(JailError::Invalid(format!(
                "--exec-file `{}` is not this vm-service binary: the jailer goes on as the VMM \
                 in its own process (pass this binary, or a link to it named `firecracker`)",
                self.exec_file.display()
            )));
        }
        let name = self.exec_name()?;
        let mut argv = vec![OsString::from(&name)];
        if name.contains("firecracker") {
            argv.extend([OsString::from("--id"), OsString::from(&self.id)]);
            argv.extend(self.extra.iter().cloned());
            Ok(Inner::Firecracker(argv))
        } else {
            if self.extra.is_empty() {
                return Err(JailError::Invalid(
                    "nothing to run: give a vm-service command after `--` (e.g. `-- run`)".into(),
                ));
            }
            argv.extend(self.extra.iter().cloned());
            Ok(Inner::VmService(argv))
        }
    }

    /// The jail these flags describe.
    pub fn jail_config(&self) -> Result<JailConfig, JailError> {
        jail::validate_id(&self.id)?;
        jail::absolute("--chroot-base-dir", &self.chroot_base_dir)?;
        let name = self.exec_name()?;
        let version: CgroupVersion = self.cgroup_version.parse()?;
        let settings = self
            .cgroup
            .iter()
            .map(|c| CgroupSetting::parse(c, version))
            .collect::<Result<Vec<_>, _>>()?;
        let parent = self
            .parent_cgroup
            .clone()
            .unwrap_or_else(|| PathBuf::from(&name));
        if parent.is_absolute()
            || jail::absolute("--parent-cgroup", &Path::new("/").join(&parent)).is_err()
        {
            return Err(JailError::BadPath {
                what: "--parent-cgroup (relative, without `..`)",
                path: parent,
            });
        }
        let mut rlimits = self
            .resource_limit
            .iter()
            .map(|r| ResourceLimit::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        if rlimits.is_empty() {
            rlimits.push((ResourceLimit::NoFile, DEFAULT_NO_FILE));
        }
        let net = match &self.netns {
            Some(path) => {
                jail::absolute("--netns", path)?;
                NetNamespace::Join(path.clone())
            }
            None => NetNamespace::Inherit,
        };
        Ok(JailConfig {
            id: self.id.clone(),
            root: jail::root_dir(&self.chroot_base_dir, &name, &self.id),
            uid: self.uid,
            gid: self.gid,
            binds: Vec::new(),
            writable_root: true,
            net,
            new_pid_ns: self.new_pid_ns.then(|| format!("{name}.pid")),
            cgroups: CgroupLimits::Settings(settings),
            cgroup_placement: CgroupPlacement {
                parent,
                below_own: false,
            },
            rlimits,
            daemonize: self.daemonize,
        })
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_a: &std::fs::Metadata, _b: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: JailerArgs,
    }

    fn parse(extra: &[&str]) -> JailerArgs {
        let mut argv = vec!["jailer", "--id", "vm1", "--uid", "1", "--gid", "2"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn flags_become_a_firecracker_style_jail() {
        let args = parse(&[
            "--exec-file",
            "/usr/bin/firecracker",
            "--chroot-base-dir",
            "/srv/j",
            "--cgroup",
            "cpu.cfs_quota_us=50000",
            "--new-pid-ns",
            "--",
            "--api-sock",
            "/api.sock",
        ]);
        let jail = args.jail_config().unwrap();
        assert_eq!(jail.root, Path::new("/srv/j/firecracker/vm1/root"));
        assert_eq!(jail.new_pid_ns.as_deref(), Some("firecracker.pid"));
        assert_eq!(jail.cgroup_placement.parent, Path::new("firecracker"));
        assert_eq!(jail.rlimits, [(ResourceLimit::NoFile, DEFAULT_NO_FILE)]);
        assert!(jail.writable_root);
        assert_eq!(jail.net, NetNamespace::Inherit);
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        let err = |extra: &[&str]| parse(extra).jail_config().unwrap_err().to_string();
        let exec = ["--exec-file", "/x/firecracker"];
        assert!(err(&[&exec[..], &["--chroot-base-dir", "rel"]].concat()).contains("rel"));
        assert!(err(&[&exec[..], &["--cgroup", "gpu.max=1"]].concat()).contains("gpu"));
        assert!(err(&[&exec[..], &["--cgroup-version", "3"]].concat()).contains("`3`"));
        assert!(err(&[&exec[..], &["--parent-cgroup", "../up"]].concat()).contains("up"));
        assert!(err(&[&exec[..], &["--netns", "netns"]].concat()).contains("netns"));
        let bad_id = Cli::parse_from(
            ["j", "--id", "a/..", "--uid", "1", "--gid", "1"]
                .iter()
                .chain(&exec),
        )
        .args;
        assert!(bad_id
            .jail_config()
            .unwrap_err()
            .to_string()
            .contains("a/.."));
        let missing = parse(&["--exec-file", "/nonexistent/firecracker"]);
        let e = missing.inner_command().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/firecracker"), "{e}");
        let relative = parse(&["--exec-file", "firecracker"]);
        assert!(relative.inner_command().is_err());
    }
}
