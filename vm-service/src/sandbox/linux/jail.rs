//! Entering a jail (`sandbox::jail` has the configuration): cgroups and
//! resource limits, the network and PID namespaces, a private mount
//! namespace whose root is the jail directory with the VM's files bound in
//! and a `/dev` holding only `kvm` and `net/tun`, then the drop to the
//! jail's user. The order follows Firecracker's jailer, except that the PID
//! namespace comes before the mount namespace (so the process that goes on
//! opens its own `/proc/self/status` for the drop's check) and that nothing
//! is executed afterwards: the process goes on as the VMM it already is, so
//! the jail needs no copy of the binary nor of the libraries it links.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::cgroup::Hierarchies;
use super::privileges::{drop_to, ProcFiles};
use crate::sandbox::jail::{
    absolute, validate_id, CgroupLimits, JailConfig, JailError, NetNamespace, ResourceLimit,
};

/// The device nodes a jail gets when the host has them.
const DEVICES: &[&str] = &["/dev/kvm", "/dev/net/tun"];

fn os_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JailError + 'a {
    move |source| JailError::Os {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `Err` with the OS error when `rc` is negative.
fn check(rc: i64, what: &'static str, path: &Path) -> Result<(), JailError> {
    if rc < 0 {
        Err(os_err(what, path)(std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

fn c_path(path: &Path) -> Result<CString, JailError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| JailError::Invalid(format!("path `{}` holds a NUL byte", path.display())))
}

/// `mount(2)` with optional source, type and data.
fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
    what: &'static str,
) -> Result<(), JailError> {
    let source = source.map(c_path).transpose()?;
    let target_c = c_path(target)?;
    let fstype = fstype.map(|t| CString::new(t).unwrap_or_default());
    let data = data.map(|d| CString::new(d).unwrap_or_default());
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that lives
    // for the call; mount reads them only.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(rc.into(), what, target)
}

/// Creates, below `root`, the directories leading to `path` and `path`
/// itself (an empty file, or a directory when `dir`) to mount over. An
/// existing component that is a symlink is refused: a reused jail
/// directory, writable by its previous VMM, must not redirect mounts or
/// creations outside the root.
fn mount_point(root: &Path, path: &Path, dir: bool) -> Result<PathBuf, JailError> {
    let mut at = root.to_path_buf();
    let parts: Vec<_> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(JailError::Invalid(format!(
                    "`{}` in the jail is a symlink",
                    at.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if last && !dir {
                    File::create(&at).map_err(os_err("creating mount point", &at))?;
                } else {
                    std::fs::create_dir(&at).map_err(os_err("creating directory", &at))?;
                    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))
                        .map_err(os_err("chmod", &at))?;
                }
            }
            Err(e) => return Err(os_err("inspecting", &at)(e)),
        }
    }
    Ok(at)
}

/// Enters the jail; see the module docs. Must run while the process has one
/// thread (namespaces and credentials are per thread).
pub(in crate::sandbox) fn enter_jail(config: &JailConfig) -> Result<(), JailError> {
    validate_id(&config.id)?;
    absolute("jail root", &config.root)?;
    for bind in &config.binds {
        absolute("file the VM uses", &bind.path)?;
    }
    // Everything read from the host's /proc and /dev, while they are visible.
    let bound: Vec<(PathBuf, bool, bool)> = config
        .binds
        .iter()
        .map(|b| {
            std::fs::metadata(&b.path)
                .map(|m| (b.path.clone(), m.is_dir(), b.writable))
                .map_err(|source| JailError::Missing {
                    what: "file the VM uses",
                    path: b.path.clone(),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    let devices: Vec<(&Path, u64)> = DEVICES
        .iter()
        .map(Path::new)
        .filter_map(|p| Some((p, std::fs::metadata(p).ok()?.rdev())))
        .collect();
    let hierarchies = Hierarchies::probe()?;
    let netns = match &config.net {
        NetNamespace::Join(path) => {
            absolute("network namespace", path)?;
            Some(File::open(path).map_err(|source| JailError::Missing {
                what: "network namespace",
                path: path.clone(),
                source,
            })?)
        }
        NetNamespace::Inherit | NetNamespace::New => None,
    };
    let dev_null = if config.daemonize {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(os_err("opening", Path::new("/dev/null")))?;
        Some(null)
    } else {
        None
    };

    // The root and its mount points, on the host's file system.
    let root = &config.root;
    std::fs::create_dir_all(root).map_err(os_err("creating jail root", root))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
        .map_err(os_err("chmod", root))?;
    let mut targets = Vec::new();
    for (path, dir, writable) in &bound {
        targets.push((path, mount_point(root, path, *dir)?, *writable));
    }
    let dev = mount_point(root, Path::new("/dev"), true)?;
    if config.writable_root {
        let c = c_path(root)?;
        // SAFETY: c is a NUL-terminated path that lives for the call.
        let rc = unsafe { libc::chown(c.as_ptr(), config.uid, config.gid) };
        check(rc.into(), "chown", root)?;
    }

    for &(resource, value) in &config.rlimits {
        let which = match resource {
            ResourceLimit::FileSize => libc::RLIMIT_FSIZE,
            ResourceLimit::NoFile => libc::RLIMIT_NOFILE,
        };
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: limit is a valid rlimit that lives for the call.
        let rc = unsafe { libc::setrlimit(which, &raw const limit) };
        check(rc.into(), "setrlimit", root)?;
    }
    let has_limits = match &config.cgroups {
        CgroupLimits::Settings(s) => !s.is_empty(),
        CgroupLimits::Vm(_) => true,
    };
    if has_limits {
        hierarchies.apply(&config.cgroups, &config.cgroup_placement, &config.id)?;
    }

    match (&config.net, &netns) {
        (NetNamespace::Join(path), Some(fd)) => {
            // SAFETY: fd is an open namespace handle; setns reads integers only.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            check(rc.into(), "joining network namespace", path)?;
        }
        (NetNamespace::New, _) => {
            // SAFETY: unshare takes integer flags only.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            check(rc.into(), "new network namespace", root)?;
        }
        _ => {}
    }
    drop(netns);
    if let Some(pid_file) = &config.new_pid_ns {
        enter_pid_namespace(&root.join(pid_file))?;
    }
    let proc = ProcFiles::open()?;

    // A private mount namespace: nothing mounted below reaches the host.
    // SAFETY: unshare takes integer flags only.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    check(rc.into(), "new mount namespace", root)?;
    let private = libc::MS_REC | libc::MS_PRIVATE;
    mount(
        None,
        Path::new("/"),
        None,
        private,
        None,
        "making / private",
    )?;
    mount(Some(root), root, None, libc::MS_BIND, None, "binding root")?;
    let confined = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let remount = libc::MS_REMOUNT | libc::MS_BIND | confined;
    for (path, target, writable) in &targets {
        mount(Some(path), target, None, libc::MS_BIND, None, "binding")?;
        let ro = if *writable { 0 } else { libc::MS_RDONLY };
        mount(None, target, None, remount | ro, None, "remounting")?;
    }
    mount(
        None,
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
        "mounting /dev",
    )?;
    for &(path, rdev) in &devices {
        let node = mount_point(&dev, path.strip_prefix("/dev").unwrap_or(path), false)?;
        std::fs::remove_file(&node).map_err(os_err("replacing", &node))?;
        let c = c_path(&node)?;
        // SAFETY: c is a NUL-terminated path that lives for the call.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, rdev) };
        check(rc.into(), "mknod", &node)?;
        // SAFETY: as above.
        let rc = unsafe { libc::chown(c.as_ptr(), config.uid, config.gid) };
        check(rc.into(), "chown", &node)?;
    }
    let ro = if config.writable_root {
        0
    } else {
        libc::MS_RDONLY
    };
    mount(None, root, None, remount | ro, None, "remounting root")?;
    pivot_into(root)?;

    if let Some(null) = dev_null {
        // SAFETY: setsid takes no arguments.
        let rc = unsafe { libc::setsid() };
        check(rc.into(), "setsid", root)?;
        for fd in 0..=2 {
            // SAFETY: null is open; dup2 onto the standard descriptors.
            let rc = unsafe { libc::dup2(null.as_raw_fd(), fd) };
            check(rc.into(), "dup2", Path::new("/dev/null"))?;
        }
    }
    drop_to(Some(config.uid), Some(config.gid), &proc)?;
    tracing::info!(id = %config.id, root = %root.display(), uid = config.uid, gid = config.gid, "jailed");
    Ok(())
}

/// Makes `root` the process's `/`: `pivot_root(".", ".")` stacks the old
/// root on the new one, and detaching it leaves only the jail.
fn pivot_into(root: &Path) -> Result<(), JailError> {
    let c = c_path(root)?;
    let dot = c".";
    // SAFETY: NUL-terminated paths that live for the calls.
    unsafe {
        check(libc::chdir(c.as_ptr()).into(), "chdir", root)?;
        check(
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()),
            "pivot_root",
            root,
        )?;
        check(
            libc::umount2(dot.as_ptr(), libc::MNT_DETACH).into(),
            "detaching the old root",
            root,
        )?;
        check(libc::chdir(c"/".as_ptr()).into(), "chdir /", root)?;
    }
    Ok(())
}

/// Forks into a new PID namespace: the child (PID 1 there) returns and goes
/// on; the parent writes the child's pid to `pid_file` and exits.
fn enter_pid_namespace(pid_file: &Path) -> Result<(), JailError> {
    // SAFETY: unshare takes integer flags only.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWPID) };
    check(rc.into(), "new PID namespace", pid_file)?;
    // SAFETY: the process has one thread (the caller's contract), so the
    // child's copy of memory is consistent.
    let pid = unsafe { libc::fork() };
    check(pid.into(), "fork", pid_file)?;
    if pid == 0 {
        return Ok(());
    }
    // The root may be writable by the previous jail's user: never follow a
    // link it may have left in the pid file's place.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(pid_file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, pid.to_string().as_bytes()));
    let code = match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vm-service: jail: writing {}: {e}", pid_file.display());
            1
        }
    };
    std::process::exit(code)
}
