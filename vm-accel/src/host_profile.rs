//! Host-compatibility profiles: data that says how to run stock guests on a
//! host whose accelerator needs help (e.g. the nested `kvm_pvm` KVM, whose
//! instruction emulator lacks SSE and `cmpxchg16b`).
//!
//! The profiles live in `host_profiles.toml`, embedded at build time. At run
//! time [`HostProfile::select`] picks the first profile whose detection
//! matches the host (any of its `detect_paths` exists) and whose accelerator
//! is the one in use. On an ordinary host none matches and nothing changes.
//! The environment variable [`HOST_PROFILE_ENV`] overrides detection:
//! `none` turns profiles off, a profile's name forces it.

use crate::accelerator::AcceleratorKind;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

/// The environment variable that overrides profile detection.
pub const HOST_PROFILE_ENV: &str = "VM_HOST_PROFILE";

const PROFILES_TOML: &str = include_str!("host_profiles.toml");

/// Groups of instructions the userspace fallback can emulate when the host's
/// accelerator fails to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackGroup {
    /// `popcnt`, `lzcnt`, `tzcnt`, `bsf`, `bsr`.
    BitCount,
    /// `clac`, `stac`.
    Smap,
    /// `fwait` (`wait`).
    X87Wait,
    /// `cmpxchg8b`, `cmpxchg16b`.
    WideCmpxchg,
    /// `xgetbv`.
    Xgetbv,
    /// SSE: `ldmxcsr`/`stmxcsr`, `movd`/`movq`, 128-bit moves, packed-integer ops.
    Sse,
}

impl fmt::Display for FallbackGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BitCount => "bit-count",
            Self::Smap => "smap",
            Self::X87Wait => "x87-wait",
            Self::WideCmpxchg => "wide-cmpxchg",
            Self::Xgetbv => "xgetbv",
            Self::Sse => "sse",
        })
    }
}

/// One host-compatibility profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostProfile {
    /// The profile's name, as `VM_HOST_PROFILE` spells it.
    pub name: String,
    /// What the host is and why it needs the profile.
    pub description: String,
    /// The accelerator the profile applies to, as `AcceleratorKind` displays it.
    pub accelerator: String,
    /// The profile matches a host where any of these paths exists.
    pub detect_paths: Vec<String>,
    /// Appended to an x86_64 Linux guest's kernel command line.
    #[serde(default)]
    pub linux_cmdline: String,
    /// Instruction groups the userspace fallback emulates.
    #[serde(default)]
    pub fallback: Vec<FallbackGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    profile: Vec<HostProfile>,
}

/// Why a profile could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostProfileError {
    /// The profile data does not parse.
    #[error("host profile data is invalid: {0}")]
    Invalid(String),
    /// `VM_HOST_PROFILE` names no known profile.
    #[error("{HOST_PROFILE_ENV}={given:?} names no host profile; known: none, {known}")]
    Unknown {
        /// The name given.
        given: String,
        /// The known names, comma-separated.
        known: String,
    },
}

/// Parses profile data (the embedded file, or another for tests).
pub fn parse_profiles(text: &str) -> Result<Vec<HostProfile>, HostProfileError> {
    let file: ProfileFile =
        toml::from_str(text).map_err(|e| HostProfileError::Invalid(e.to_string()))?;
    let mut seen = std::collections::BTreeSet::new();
    for p in &file.profile {
        if p.name.is_empty() || p.name == "none" || !seen.insert(p.name.as_str()) {
            return Err(HostProfileError::Invalid(format!(
                "profile name {:?} is empty, reserved or repeated",
                p.name
            )));
        }
    }
    Ok(file.profile)
}

/// The embedded profiles.
pub fn builtin_profiles() -> Result<&'static [HostProfile], HostProfileError> {
    static PARSED: OnceLock<Result<Vec<HostProfile>, HostProfileError>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse_profiles(PROFILES_TOML))
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

impl HostProfile {
    /// Whether this host matches the profile's detection.
    pub fn matches_host(&self) -> bool {
        self.detect_paths.iter().any(|p| Path::new(p).exists())
    }

    /// Whether the fallback emulates `group` under this profile.
    pub fn enables(&self, group: FallbackGroup) -> bool {
        self.fallback.contains(&group)
    }

    /// The profile for `accelerator` on this host: the `VM_HOST_PROFILE`
    /// override if set, else the first built-in profile whose detection matches.
    pub fn select(
        accelerator: AcceleratorKind,
    ) -> Result<Option<&'static HostProfile>, HostProfileError> {
        let choice = std::env::var(HOST_PROFILE_ENV).ok();
        select_from(
            builtin_profiles()?,
            accelerator,
            choice.as_deref(),
            HostProfile::matches_host,
        )
    }

    /// `cmdline` with the profile's Linux additions added to the kernel's
    /// parameters: before a ` -- `, since what follows it is init's arguments.
    pub fn extend_linux_cmdline(&self, cmdline: &str) -> String {
        let cmdline = cmdline.trim();
        let (params, init_args) = if let Some(rest) = cmdline.strip_prefix("--") {
            ("", Some(rest))
        } else {
            match cmdline.split_once(" -- ") {
                Some((params, rest)) => (params, Some(rest)),
                None => (cmdline, None),
            }
        };
        let params = match (params.trim(), self.linux_cmdline.trim()) {
            (c, "") => c.to_string(),
            ("", add) => add.to_string(),
            (c, add) => format!("{c} {add}"),
        };
        match init_args {
            Some(args) => format!("{params} -- {}", args.trim_start()),
            None => params,
        }
    }
}

/// Selection over `profiles`: `choice` is the override (`none`, a name, or
/// unset/empty for detection by `detect`).
pub fn select_from<'a>(
    profiles: &'a [HostProfile],
    accelerator: AcceleratorKind,
    choice: Option<&str>,
    detect: impl Fn(&HostProfile) -> bool,
) -> Result<Option<&'a HostProfile>, HostProfileError> {
    let applies = |p: &&HostProfile| p.accelerator == accelerator.to_string();
    match choice.map(str::trim) {
        Some("none") => Ok(None),
        Some(name) if !name.is_empty() => {
            match profiles.iter().find(|p| p.name == name) {
                // A forced profile for another accelerator does not apply.
                Some(p) => Ok(Some(p).filter(applies)),
                None => Err(HostProfileError::Unknown {
                    given: name.to_string(),
                    known: profiles
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
        _ => Ok(profiles.iter().filter(applies).find(|p| detect(p))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_name_kvm_pvm() {
        let profiles = builtin_profiles().expect("embedded profiles parse");
        let pvm = profiles.iter().find(|p| p.name == "kvm-pvm").unwrap();
        assert_eq!(pvm.accelerator, "KVM");
        assert!(pvm.linux_cmdline.contains("noxsave"));
        assert!(pvm.enables(FallbackGroup::Sse));
    }

    #[test]
    fn detection_override_and_accelerator_filter() {
        let profiles = builtin_profiles().unwrap();
        let kvm = AcceleratorKind::Kvm;
        let yes = |_: &HostProfile| true;
        let no = |_: &HostProfile| false;
        assert_eq!(select_from(profiles, kvm, None, no).unwrap(), None);
        assert_eq!(
            select_from(profiles, kvm, None, yes).unwrap().unwrap().name,
            "kvm-pvm"
        );
        assert_eq!(select_from(profiles, kvm, Some("none"), yes).unwrap(), None);
        assert_eq!(
            select_from(profiles, kvm, Some("kvm-pvm"), no)
                .unwrap()
                .unwrap()
                .name,
            "kvm-pvm"
        );
        assert_eq!(select_from(profiles, kvm, Some(""), no).unwrap(), None);
        assert_eq!(
            select_from(profiles, AcceleratorKind::Hvf, Some("kvm-pvm"), yes).unwrap(),
            None
        );
        let err = select_from(profiles, kvm, Some("bogus"), yes).unwrap_err();
        assert!(err.to_string().contains("bogus") && err.to_string().contains("kvm-pvm"));
    }

    #[test]
    fn bad_profile_data_is_an_error() {
        for bad in [
            "",
            "[[profile]]\nname = \"x\"",
            "[[profile]]\nname='none'\ndescription=''\naccelerator='KVM'\ndetect_paths=[]",
            "[[profile]]\nname='a'\ndescription=''\naccelerator='KVM'\ndetect_paths=[]\nfallback=['warp-drive']",
        ] {
            assert!(parse_profiles(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cmdline_is_extended_with_one_space() {
        let p = &builtin_profiles().unwrap()[0];
        assert_eq!(
            p.extend_linux_cmdline("console=ttyS0 "),
            format!("console=ttyS0 {}", p.linux_cmdline)
        );
        assert_eq!(p.extend_linux_cmdline(""), p.linux_cmdline);
        // Init's arguments stay last: the additions are kernel parameters.
        let add = &p.linux_cmdline;
        assert_eq!(
            p.extend_linux_cmdline("console=ttyS0 -- sh -c \"echo --\""),
            format!("console=ttyS0 {add} -- sh -c \"echo --\"")
        );
        assert_eq!(p.extend_linux_cmdline("-- true"), format!("{add} -- true"));
    }
}
