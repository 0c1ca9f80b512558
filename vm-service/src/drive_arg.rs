//! `vm-service run --drive PATH[,ro][,root][,id=NAME]`: command-line disks,
//! turned into [`BlockConfig`]s and checked before anything boots.
//!
//! Ids default to `drive<N>` for the N-th `--drive` argument (from 0). The
//! VMM attaches the root drive (`root`, or `--rootfs`) first, so the guest
//! sees it as `/dev/vda`; the others follow in order (`/dev/vdb`, ...).
//! A path cannot hold a `,` (it separates the options).

use std::path::{Path, PathBuf};

use vm_core::config::{BlockConfig, DeviceConfig};

/// A `--drive` argument that cannot be used; each names the argument.
#[derive(Debug, thiserror::Error)]
pub enum DriveArgError {
    /// Nothing before the first `,`.
    #[error("--drive {spec:?}: empty path (expected PATH[,ro][,root][,id=NAME])")]
    EmptyPath {
        /// The whole argument.
        spec: String,
    },
    /// An option other than `ro`, `root`, `id=NAME`.
    #[error("--drive {spec:?}: unknown option {option:?} (expected ro, root or id=NAME)")]
    UnknownOption {
        /// The whole argument.
        spec: String,
        /// The option not understood.
        option: String,
    },
    /// The same option twice.
    #[error("--drive {spec:?}: {option:?} given twice")]
    Repeated {
        /// The whole argument.
        spec: String,
        /// The repeated option.
        option: String,
    },
    /// The id is not a valid device id.
    #[error("--drive {spec:?}: bad id: {reason}")]
    BadId {
        /// The whole argument.
        spec: String,
        /// Why the id is refused.
        reason: String,
    },
    /// Two drives with one id.
    #[error("--drive {spec:?}: id {id:?} is used by another drive")]
    DuplicateId {
        /// The whole argument.
        spec: String,
        /// The id used twice.
        id: String,
    },
    /// More than one drive marked `root`.
    #[error("--drive {spec:?}: {other} is already the root drive")]
    SecondRoot {
        /// The whole argument.
        spec: String,
        /// The drive that is the root one.
        other: String,
    },
    /// The image cannot be opened (missing, no permission, ...).
    #[error("--drive {spec:?}: cannot open {}{}: {source}", path.display(), if *read_only { "" } else { " for writing" })]
    Unusable {
        /// The whole argument.
        spec: String,
        /// The image file.
        path: PathBuf,
        /// Whether it was opened read-only.
        read_only: bool,
        /// What the open said.
        source: std::io::Error,
    },
    /// The path is a directory, a device, a socket, ...
    #[error("--drive {spec:?}: {} is not a regular file (a raw disk image)", path.display())]
    NotAnImage {
        /// The whole argument.
        spec: String,
        /// The path given.
        path: PathBuf,
    },
}

/// One `--drive` argument, parsed (not yet checked against the file system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveArg {
    /// The raw image on the host.
    pub path: PathBuf,
    /// `ro`: the guest sees a read-only disk.
    pub read_only: bool,
    /// `root`: the guest boots from this disk.
    pub root: bool,
    /// `id=NAME`, if given.
    pub id: Option<String>,
}

impl std::str::FromStr for DriveArg {
    type Err = DriveArgError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.split(',');
        let path = parts.next().unwrap_or_default();
        if path.is_empty() {
            return Err(DriveArgError::EmptyPath { spec: spec.into() });
        }
        let mut arg = Self {
            path: path.into(),
            read_only: false,
            root: false,
            id: None,
        };
        for option in parts {
            let repeated = match option {
                "ro" => std::mem::replace(&mut arg.read_only, true),
                "root" => std::mem::replace(&mut arg.root, true),
                _ => match option.strip_prefix("id=") {
                    Some(id) => arg.id.replace(id.to_string()).is_some(),
                    None => {
                        return Err(DriveArgError::UnknownOption {
                            spec: spec.into(),
                            option: option.into(),
                        })
                    }
                },
            };
            if repeated {
                return Err(DriveArgError::Repeated {
                    spec: spec.into(),
                    option: option.split('=').next().unwrap_or(option).into(),
                });
            }
        }
        Ok(arg)
    }
}

/// The drives of `specs` (in order), after `rootfs` as a read-write root
/// drive with id `rootfs` when given (the VMM puts the root drive on the
/// first slot wherever it is in the list). Each image must
/// be a regular file (a raw image) and is opened once (read-only, or for
/// writing) so that a missing or forbidden file is reported now, naming it.
pub fn drives(specs: &[String], rootfs: Option<&Path>) -> Result<Vec<BlockConfig>, DriveArgError> {
    let mut parsed: Vec<(String, DriveArg)> = Vec::new();
    if let Some(path) = rootfs {
        let spec = format!("{},root,id=rootfs", path.display());
        parsed.push((
            spec,
            DriveArg {
                path: path.into(),
                read_only: false,
                root: true,
                id: Some("rootfs".into()),
            },
        ));
    }
    for (position, spec) in specs.iter().enumerate() {
        let mut arg: DriveArg = spec.parse()?;
        arg.id.get_or_insert_with(|| format!("drive{position}"));
        parsed.push((spec.clone(), arg));
    }
    let mut out: Vec<BlockConfig> = Vec::new();
    let mut root: Option<String> = None;
    for (spec, arg) in parsed {
        let drive_id = arg.id.clone().unwrap_or_default();
        let config = BlockConfig {
            drive_id,
            path_on_host: arg.path.clone(),
            is_root_device: arg.root,
            is_read_only: arg.read_only,
        };
        DeviceConfig::Block(config.clone())
            .validate("drive")
            .map_err(|e| DriveArgError::BadId {
                spec: spec.clone(),
                reason: e.reason,
            })?;
        if out.iter().any(|d| d.drive_id == config.drive_id) {
            return Err(DriveArgError::DuplicateId {
                spec,
                id: config.drive_id,
            });
        }
        if config.is_root_device {
            if let Some(other) = root.replace(config.drive_id.clone()) {
                return Err(DriveArgError::SecondRoot {
                    spec,
                    other: format!("drive {other:?}"),
                });
            }
        }
        check_image(&spec, &config)?;
        out.push(config);
    }
    Ok(out)
}

fn check_image(spec: &str, drive: &BlockConfig) -> Result<(), DriveArgError> {
    let path = &drive.path_on_host;
    let unusable = |source| DriveArgError::Unusable {
        spec: spec.into(),
        path: path.clone(),
        read_only: drive.is_read_only,
        source,
    };
    // The type first: opening a FIFO would block.
    if !std::fs::metadata(path).map_err(unusable)?.is_file() {
        return Err(DriveArgError::NotAnImage {
            spec: spec.into(),
            path: path.clone(),
        });
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(!drive.is_read_only)
        .open(path)
        .map(drop)
        .map_err(unusable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<DriveArg, DriveArgError> {
        spec.parse()
    }

    #[test]
    fn options_parse() {
        assert_eq!(
            parse("/d.img,ro,id=data").unwrap(),
            DriveArg {
                path: "/d.img".into(),
                read_only: true,
                root: false,
                id: Some("data".into()),
            }
        );
        let root = parse("r.ext4,root").unwrap();
        assert!(root.root && !root.read_only && root.id.is_none());
        for (bad, needle) in [
            ("", "empty path"),
            (",ro", "empty path"),
            ("/d,rw", "unknown option \"rw\""),
            ("/d,ro,ro", "\"ro\" given twice"),
            ("/d,id=a,id=b", "\"id\" given twice"),
            ("/d,", "unknown option \"\""),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
            assert!(err.starts_with(&format!("--drive {bad:?}")), "{err}");
        }
    }

    #[test]
    fn ids_roots_and_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let img = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, [0u8; 512]).unwrap();
            p.display().to_string()
        };
        let (a, b, r) = (img("a.img"), img("b.img"), img("root.ext4"));
        let got = drives(
            &[format!("{a},ro"), format!("{b},id=data")],
            Some(Path::new(&r)),
        )
        .unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|d| (d.drive_id.as_str(), d.is_root_device, d.is_read_only))
            .collect();
        assert_eq!(
            summary,
            [
                ("rootfs", true, false),
                ("drive0", false, true),
                ("data", false, false)
            ]
        );
        let got = drives(&[a.clone(), format!("{b},root")], None).unwrap();
        assert_eq!(got[1].drive_id, "drive1");
        assert!(got[1].is_root_device && !got[0].is_root_device);

        let missing = dir.path().join("nope.img").display().to_string();
        let err = |specs: &[String], rootfs: Option<&str>| {
            drives(specs, rootfs.map(Path::new))
                .unwrap_err()
                .to_string()
        };
        let e = err(std::slice::from_ref(&missing), None);
        assert!(
            e.contains(&format!("cannot open {missing} for writing")),
            "{e}"
        );
        assert!(e.contains("No such file"), "{e}");
        let e = err(&[format!("{missing},ro")], None);
        assert!(e.contains(&format!("cannot open {missing}:")), "{e}");
        let e = err(&[dir.path().display().to_string() + ",ro"], None);
        assert!(e.contains("is not a regular file"), "{e}");
        let e = err(&[format!("{a},root"), format!("{b},root")], None);
        assert!(
            e.contains("drive \"drive0\" is already the root drive"),
            "{e}"
        );
        let e = err(&[format!("{a},root")], Some(&r));
        assert!(
            e.contains("drive \"rootfs\" is already the root drive"),
            "{e}"
        );
        let e = err(&[format!("{a},id=x"), format!("{b},id=x")], None);
        assert!(e.contains("id \"x\" is used by another drive"), "{e}");
        let e = err(&[format!("{a},id=a b")], None);
        assert!(e.contains("bad id") && e.contains("\"a b\""), "{e}");
    }
}
