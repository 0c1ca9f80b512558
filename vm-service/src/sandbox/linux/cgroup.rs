//! Cgroups for a jail: finds the hierarchies in `/proc/mounts` (v1, one per
//! controller or group of controllers; v2, the unified one), creates
//! `<hierarchy>/<parent>/<id>`, writes the settings and moves this process
//! in. A host may mix both (hybrid: v1 controllers and a v2 hierarchy with
//! few or none), so a VM's limits pick v2 per controller where it is enabled
//! and v1 otherwise.

use std::path::{Path, PathBuf};

use crate::sandbox::jail::{
    CgroupLimits, CgroupPlacement, CgroupSetting, CgroupVersion, JailError, VmLimits,
    CPU_PERIOD_US, V1_CONTROLLERS,
};

/// The cgroup hierarchies mounted on this host.
#[derive(Debug, Default)]
pub(super) struct Hierarchies {
    /// v1: mount point and the controllers it carries.
    v1: Vec<(PathBuf, Vec<String>)>,
    /// v2: the unified mount point.
    v2: Option<PathBuf>,
    /// `/proc/self/cgroup`: (hierarchy id, controllers, path).
    own: Vec<(String, String, PathBuf)>,
}

fn read(path: &Path) -> Result<String, JailError> {
    std::fs::read_to_string(path).map_err(|source| JailError::Os {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), JailError> {
    std::fs::write(path, value).map_err(|source| JailError::Os {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

impl Hierarchies {
    /// Reads `/proc/mounts` and `/proc/self/cgroup`.
    pub(super) fn probe() -> Result<Self, JailError> {
        let mut out = Self::default();
        for line in read(Path::new("/proc/mounts"))?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, mount, fstype, options, ..] = fields[..] else {
                continue;
            };
            match fstype {
                "cgroup2" if out.v2.is_none() => out.v2 = Some(PathBuf::from(mount)),
                "cgroup" => {
                    let controllers = options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    out.v1.push((PathBuf::from(mount), controllers));
                }
                _ => {}
            }
        }
        for line in read(Path::new("/proc/self/cgroup"))?.lines() {
            let mut parts = line.splitn(3, ':');
            if let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            {
                out.own.push((
                    id.to_string(),
                    ctrls.to_string(),
                    PathBuf::from(path.trim_start_matches('/')),
                ));
            }
        }
        Ok(out)
    }

    /// The v1 mount carrying `controller`.
    fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(_, c)| c.iter().any(|c| c == controller))
            .map(|(m, _)| m.as_path())
    }

    /// Whether v2 offers `controller` (listed in its root's `cgroup.controllers`).
    fn v2_has(&self, controller: &str) -> bool {
        self.v2.as_ref().is_some_and(|m| {
            std::fs::read_to_string(m.join("cgroup.controllers"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
        })
    }

    /// This process's cgroup in the hierarchy of `version` carrying `controller`.
    fn own(&self, version: CgroupVersion, controller: &str) -> PathBuf {
        self.own
            .iter()
            .find(|(id, ctrls, _)| match version {
                CgroupVersion::V2 => id == "0" && ctrls.is_empty(),
                CgroupVersion::V1 => ctrls.split(',').any(|c| c == controller),
            })
            .map(|(_, _, p)| p.clone())
            .unwrap_or_default()
    }

    /// The hierarchy's mount and the jail's cgroup directory in it, for
    /// `setting` (a v2 path is the same for every controller).
    fn cgroup_dir(
        &self,
        setting: &CgroupSetting,
        placement: &CgroupPlacement,
        id: &str,
    ) -> Result<(PathBuf, PathBuf), JailError> {
        let controller = setting.controller()?;
        let mount = match setting.version {
            CgroupVersion::V1 => self.v1_mount(controller).map(Path::to_path_buf),
            CgroupVersion::V2 => self.v2.clone().filter(|_| self.v2_has(controller)),
        };
        let mount = mount.ok_or_else(|| JailError::NoController {
            file: setting.file.clone(),
            why: format!(
                "no cgroup {:?} hierarchy on this host has the `{controller}` controller",
                setting.version
            ),
        })?;
        let base = if placement.below_own {
            self.own(setting.version, controller)
        } else {
            PathBuf::new()
        };
        let dir = mount.join(base).join(&placement.parent).join(id);
        Ok((mount, dir))
    }

    /// The settings that give `limits`: each controller in v2 where v2
    /// offers it, else in v1; an error names the files when neither can.
    pub(super) fn vm_settings(&self, limits: VmLimits) -> Result<Vec<CgroupSetting>, JailError> {
        let setting = |version, file: &str, value: String| CgroupSetting {
            version,
            file: file.to_string(),
            value,
        };
        let mut out = Vec::new();
        if self.v2_has("memory") {
            out.push(setting(
                CgroupVersion::V2,
                "memory.max",
                limits.memory_bytes.to_string(),
            ));
        } else if self.v1_mount("memory").is_some() {
            out.push(setting(
                CgroupVersion::V1,
                "memory.limit_in_bytes",
                limits.memory_bytes.to_string(),
            ));
        } else {
            return Err(JailError::NoController {
                file: "memory.max (v2) or memory.limit_in_bytes (v1)".into(),
                why: "neither cgroup hierarchy has the `memory` controller".into(),
            });
        }
        if self.v2_has("cpu") {
            out.push(setting(
                CgroupVersion::V2,
                "cpu.max",
                format!("{} {CPU_PERIOD_US}", limits.cpu_quota_us),
            ));
        } else if self.v1_mount("cpu").is_some() {
            out.push(setting(
                CgroupVersion::V1,
                "cpu.cfs_period_us",
                CPU_PERIOD_US.to_string(),
            ));
            out.push(setting(
                CgroupVersion::V1,
                "cpu.cfs_quota_us",
                limits.cpu_quota_us.to_string(),
            ));
        } else {
            return Err(JailError::NoController {
                file: "cpu.max (v2) or cpu.cfs_quota_us (v1)".into(),
                why: "neither cgroup hierarchy has the `cpu` controller".into(),
            });
        }
        Ok(out)
    }

    /// Creates the jail's cgroups, writes `limits` and moves this process
    /// (and so everything it starts) into them.
    pub(super) fn apply(
        &self,
        limits: &CgroupLimits,
        placement: &CgroupPlacement,
        id: &str,
    ) -> Result<(), JailError> {
        let settings = match limits {
            CgroupLimits::Settings(s) => s.clone(),
            CgroupLimits::Vm(l) => self.vm_settings(*l)?,
        };
        let mut joined: Vec<PathBuf> = Vec::new();
        for setting in &settings {
            let (mount, dir) = self.cgroup_dir(setting, placement, id)?;
            // Another jail's clean-up may remove the shared parent between
            // the two steps of create_dir_all: try again then.
            let mut created = std::fs::create_dir_all(&dir);
            for _ in 0..3 {
                if created.is_ok() {
                    break;
                }
                created = std::fs::create_dir_all(&dir);
            }
            created.map_err(|source| JailError::Os {
                what: "creating cgroup",
                path: dir.clone(),
                source,
            })?;
            if setting.version == CgroupVersion::V2 {
                enable_v2_controller(&mount, &dir, setting.controller()?)?;
            }
            write(&dir.join(&setting.file), &setting.value)?;
            if !joined.contains(&dir) {
                joined.push(dir);
            }
        }
        let pid = std::process::id().to_string();
        for dir in joined {
            write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Removes the (empty, once its processes ended) cgroups of jail `id`.
    pub(super) fn remove(&self, placement: &CgroupPlacement, id: &str) {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (mount, controllers) in &self.v1 {
            let own = controllers
                .first()
                .map(|c| self.own(CgroupVersion::V1, c))
                .unwrap_or_default();
            dirs.push(placed(mount, own, placement, id));
        }
        if let Some(mount) = &self.v2 {
            dirs.push(placed(
                mount,
                self.own(CgroupVersion::V2, ""),
                placement,
                id,
            ));
        }
        for dir in dirs {
            match std::fs::remove_dir(&dir) {
                // The parent goes too once it is empty (another jail's keeps it).
                Ok(()) => {
                    if let Some(parent) = dir
                        .parent()
                        .filter(|_| !placement.parent.as_os_str().is_empty())
                    {
                        let _ = std::fs::remove_dir(parent);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a jail's cgroup");
                }
            }
        }
    }
}

fn placed(mount: &Path, own: PathBuf, placement: &CgroupPlacement, id: &str) -> PathBuf {
    let base = if placement.below_own {
        own
    } else {
        PathBuf::new()
    };
    mount.join(base).join(&placement.parent).join(id)
}

/// cgroup v2 hands a controller down only where every ancestor lists it in
/// `cgroup.subtree_control`: add it from the hierarchy's root to `dir`'s parent.
fn enable_v2_controller(mount: &Path, dir: &Path, controller: &str) -> Result<(), JailError> {
    let Ok(relative) = dir.strip_prefix(mount) else {
        return Ok(());
    };
    let mut at = mount.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for (i, component) in components.iter().enumerate() {
        let control = at.join("cgroup.subtree_control");
        let enabled = read(&control)?;
        if !enabled.split_whitespace().any(|c| c == controller) {
            write(&control, &format!("+{controller}"))?;
        }
        if i + 1 < components.len() {
            at.push(component);
        }
    }
    Ok(())
}
