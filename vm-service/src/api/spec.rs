//! The body of `PUT /vms/{id}`: a VM described with Firecracker's resource
//! and field names, converted to (and from) a [`VmConfig`].
//!
//! | API field (Firecracker name)              | `VmConfig` field            |
//! |-------------------------------------------|-----------------------------|
//! | `boot-source.kernel_image_path`           | `kernel`                    |
//! | `boot-source.initrd_path`                 | `initrd`                    |
//! | `boot-source.boot_args`                   | `cmdline`                   |
//! | `machine-config.vcpu_count`               | `vcpus`                     |
//! | `machine-config.mem_size_mib`             | `memory_mib`                |
//! | `network-interfaces[i].iface_id`          | `devices[i].id`             |
//! | `network-interfaces[i].host_dev_name`     | `devices[i].backend` = tap  |
//! | `network-interfaces[i].guest_mac`         | `devices[i].mac`            |
//! | `network-interfaces[i].switch` (ours)     | `devices[i].backend` = virtual switch |
//! | `drives[j]` (Firecracker's `PUT /drives/{id}` body: `drive_id`, `path_on_host`, `is_root_device`, `is_read_only`) | `devices[n + j]`, a [`BlockConfig`] (`n` NICs come first) |
//! | `arch` (ours)                             | `arch`                      |
//! | `gdb` (ours: `address`, `wait`)           | `gdb`                       |
//!
//! Drive images are checked when the VM is created ([`VmSpec::check_drive_files`]):
//! each must be a regular file the daemon can open (for writing unless
//! `is_read_only`). Firecracker's other drive fields (`partuuid`,
//! `cache_type`, `rate_limiter`, `io_engine`, `socket`) are refused as unknown.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vm_core::config::{
    BlockConfig, DeviceConfig, GdbConfig, GuestArch, MacAddr, NetBackendConfig, NetConfig,
    SerialMode, VmConfig,
};

use super::error::ApiError;

/// A VM as `PUT /vms/{id}` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// The kernel to boot; absent: the built-in guest.
    #[serde(
        rename = "boot-source",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub boot_source: Option<BootSource>,
    /// vCPUs and memory; absent: 1 vCPU, 128 MiB.
    #[serde(
        rename = "machine-config",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub machine_config: Option<MachineConfig>,
    /// virtio-net interfaces.
    #[serde(
        rename = "network-interfaces",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub network_interfaces: Vec<NetworkInterface>,
    /// virtio-blk disks, Firecracker's `drives` (at most one `is_root_device`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drives: Vec<BlockConfig>,
    /// Guest architecture; absent: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<GuestArch>,
    /// Run under a GDB stub (ours; needs the `gdb` feature): `{"address":
    /// "unix:PATH" | "tcp:127.0.0.1:PORT", "wait": false}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gdb: Option<GdbConfig>,
}

/// Firecracker's `boot-source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    /// Host path of the kernel image.
    pub kernel_image_path: PathBuf,
    /// Host path of an initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
}

/// Firecracker's `machine-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Number of vCPUs.
    #[serde(default = "one")]
    pub vcpu_count: u32,
    /// Guest memory in MiB.
    #[serde(default = "default_mem")]
    pub mem_size_mib: u64,
}

fn one() -> u32 {
    1
}

fn default_mem() -> u64 {
    VmConfig::default().memory_mib
}

/// One of Firecracker's `network-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// Interface id, unique within the VM.
    pub iface_id: String,
    /// Host TAP device (Firecracker's field); exclusive with `switch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_dev_name: Option<String>,
    /// Virtual switch shared by name with the daemon's other VMs (ours);
    /// exclusive with `host_dev_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    /// Guest MAC, `"02:00:00:00:00:01"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<MacAddr>,
}

/// Renames a `VmConfig` field path to the API's name for it, for a config
/// whose first `nics` devices are its network interfaces and the rest its
/// drives (the order [`VmSpec::to_config`] gives them).
pub fn api_field(field: &str, nics: usize) -> String {
    const SIMPLE: [(&str, &str); 6] = [
        ("vcpus", "machine-config.vcpu_count"),
        ("memory_mib", "machine-config.mem_size_mib"),
        ("kernel", "boot-source.kernel_image_path"),
        ("initrd", "boot-source.initrd_path"),
        ("cmdline", "boot-source.boot_args"),
        ("arch", "arch"),
    ];
    if let Some((_, api)) = SIMPLE.iter().find(|(f, _)| *f == field) {
        return (*api).to_string();
    }
    let device = field.strip_prefix("devices[").and_then(|rest| {
        let (index, rest) = rest.split_once(']')?;
        Some((index.parse::<usize>().ok()?, rest))
    });
    match device {
        Some((i, rest)) if i < nics => {
            let renamed = match rest {
                ".backend.ifname" => ".host_dev_name",
                ".backend.switch" => ".switch",
                ".id" => ".iface_id",
                ".mac" => ".guest_mac",
                other => other,
            };
            format!("network-interfaces[{i}]{renamed}")
        }
        Some((i, rest)) => {
            let renamed = if rest == ".id" { ".drive_id" } else { rest };
            format!("drives[{}]{renamed}", i - nics)
        }
        None => field.to_string(),
    }
}

impl VmSpec {
    /// The `VmConfig` this describes, validated; errors name the API field.
    /// Its devices are the network interfaces, then the drives. The host's
    /// files are not looked at (see [`VmSpec::check_drive_files`]).
    pub fn to_config(&self) -> Result<VmConfig, ApiError> {
        let mut config = VmConfig {
            serial: SerialMode::Capture,
            ..VmConfig::default()
        };
        if let Some(arch) = self.arch {
            config.arch = arch;
        }
        config.gdb.clone_from(&self.gdb);
        if let Some(m) = &self.machine_config {
            config.vcpus = m.vcpu_count;
            config.memory_mib = m.mem_size_mib;
        }
        if let Some(b) = &self.boot_source {
            config.kernel = Some(b.kernel_image_path.clone());
            config.initrd.clone_from(&b.initrd_path);
            config.cmdline = b
                .boot_args
                .clone()
                .unwrap_or_else(|| "console=ttyS0 reboot=k panic=1".into());
        }
        for (i, nic) in self.network_interfaces.iter().enumerate() {
            let backend = match (&nic.host_dev_name, &nic.switch) {
                (Some(ifname), None) => NetBackendConfig::Tap {
                    ifname: ifname.clone(),
                },
                (None, Some(switch)) => NetBackendConfig::Virtual {
                    switch: switch.clone(),
                },
                (Some(_), Some(_)) => {
                    return Err(ApiError::bad_request(
                        "invalid_config",
                        format!("invalid network-interfaces[{i}]: give host_dev_name or switch, not both"),
                    ))
                }
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "invalid_config",
                        format!("invalid network-interfaces[{i}]: needs host_dev_name (a TAP device) or switch (a virtual switch)"),
                    ))
                }
            };
            config.devices.push(DeviceConfig::Net(NetConfig {
                id: nic.iface_id.clone(),
                backend,
                mac: nic.guest_mac,
            }));
        }
        config
            .devices
            .extend(self.drives.iter().cloned().map(DeviceConfig::Block));
        config.validate().map_err(|e| {
            let field = api_field(&e.field, self.network_interfaces.len());
            ApiError::bad_request("invalid_config", format!("invalid {field}: {}", e.reason))
        })?;
        Ok(config)
    }

    /// Checks each drive's image on the host, as Firecracker's `PUT /drives`
    /// does: a regular file (a raw disk image; a device or directory is
    /// refused without being opened) that can be opened, for writing unless
    /// `is_read_only`. The error names `drives[i].path_on_host`.
    pub fn check_drive_files(&self) -> Result<(), ApiError> {
        for (i, drive) in self.drives.iter().enumerate() {
            let path = &drive.path_on_host;
            let bad = |reason: String| {
                ApiError::bad_request(
                    "invalid_config",
                    format!("invalid drives[{i}].path_on_host: {reason}"),
                )
            };
            if !path.is_absolute() {
                return Err(bad(format!(
                    "{} is relative; give an absolute path",
                    path.display()
                )));
            }
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(bad(format!(
                        "{} is not a regular file (a raw disk image)",
                        path.display()
                    )))
                }
                Err(e) => return Err(bad(format!("{}: {e}", path.display()))),
            }
            std::fs::OpenOptions::new()
                .read(true)
                .write(!drive.is_read_only)
                .open(path)
                .map_err(|e| {
                    let how = if drive.is_read_only {
                        ""
                    } else {
                        " for writing"
                    };
                    bad(format!("cannot open {}{how}: {e}", path.display()))
                })?;
        }
        Ok(())
    }

    /// The API form of `config`.
    pub fn from_config(config: &VmConfig) -> Self {
        Self {
            boot_source: config.kernel.as_ref().map(|k| BootSource {
                kernel_image_path: k.clone(),
                initrd_path: config.initrd.clone(),
                boot_args: Some(config.cmdline.clone()),
            }),
            machine_config: Some(MachineConfig {
                vcpu_count: config.vcpus,
                mem_size_mib: config.memory_mib,
            }),
            network_interfaces: config
                .devices
                .iter()
                .filter_map(|d| match d {
                    DeviceConfig::Net(n) => Some(n),
                    DeviceConfig::Block(_) => None,
                })
                .map(|n| NetworkInterface {
                    iface_id: n.id.clone(),
                    host_dev_name: match &n.backend {
                        NetBackendConfig::Tap { ifname } => Some(ifname.clone()),
                        NetBackendConfig::Virtual { .. } => None,
                    },
                    switch: match &n.backend {
                        NetBackendConfig::Virtual { switch } => Some(switch.clone()),
                        NetBackendConfig::Tap { .. } => None,
                    },
                    guest_mac: n.mac,
                })
                .collect(),
            drives: config
                .devices
                .iter()
                .filter_map(|d| match d {
                    DeviceConfig::Block(b) => Some(b.clone()),
                    DeviceConfig::Net(_) => None,
                })
                .collect(),
            arch: Some(config.arch),
            gdb: config.gdb.clone(),
        }
    }
}

/// Parses and validates a `PUT /vms/{id}` body (the fuzzed entry point).
pub fn parse_vm_spec(body: &[u8]) -> Result<VmConfig, ApiError> {
    let spec: VmSpec = super::body::parse_json(body)?;
    spec.to_config()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_vm_spec(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn firecracker_shaped_body_maps_to_config() {
        let config = parse_vm_spec(
            br#"{"boot-source": {"kernel_image_path": "/k", "boot_args": "console=ttyS0"},
                 "machine-config": {"vcpu_count": 2, "mem_size_mib": 64},
                 "network-interfaces": [{"iface_id": "eth0", "switch": "lan", "guest_mac": "02:00:00:00:00:01"}]}"#,
        )
        .unwrap();
        assert_eq!((config.vcpus, config.memory_mib), (2, 64));
        assert_eq!(config.kernel, Some(PathBuf::from("/k")));
        assert_eq!(config.cmdline, "console=ttyS0");
        assert_eq!(config.devices.len(), 1);
        assert_eq!(VmSpec::from_config(&config).to_config().unwrap(), config);
        // Empty body object: the built-in guest with defaults.
        assert_eq!(parse_vm_spec(b"{}").unwrap().kernel, None);
    }

    #[test]
    fn errors_name_the_api_field() {
        assert!(
            err(r#"{"machine-config": {"vcpu_count": 0}}"#).contains("machine-config.vcpu_count")
        );
        assert!(err(r#"{"machine-config": {"mem_size_mib": 0}}"#)
            .contains("machine-config.mem_size_mib"));
        assert!(
            err(r#"{"network-interfaces": [{"iface_id": "a b", "switch": "s"}]}"#)
                .contains("network-interfaces[0].iface_id")
        );
        assert!(err(
            r#"{"network-interfaces": [{"iface_id": "a", "host_dev_name": "waytoolongifname0"}]}"#
        )
        .contains("network-interfaces[0].host_dev_name"));
        assert!(
            err(r#"{"network-interfaces": [{"iface_id": "a"}]}"#).contains("needs host_dev_name")
        );
        assert!(err(r#"{"machine-config": {"vcpu_count": "2"}}"#).contains("invalid type"));
        assert!(err(r#"{"machine-config": {"smt": true}}"#).contains("unknown field `smt`"));
        assert!(err(r#"{"boot-sauce": {}}"#).contains("unknown field `boot-sauce`"));
        assert!(err(r#"{"machine-config": "#).contains("EOF"));
        assert!(err(r#"{"arch": "sparc"}"#).contains("sparc"));
    }

    #[test]
    fn drives_follow_the_nics_and_errors_name_them() {
        let config = parse_vm_spec(
            br#"{"network-interfaces": [{"iface_id": "eth0", "switch": "lan"}],
                 "drives": [{"drive_id": "rootfs", "path_on_host": "/r.ext4", "is_root_device": true},
                            {"drive_id": "data", "path_on_host": "/d.img", "is_read_only": true}]}"#,
        )
        .unwrap();
        let ids: Vec<&str> = config.devices.iter().map(DeviceConfig::id).collect();
        assert_eq!(ids, ["eth0", "rootfs", "data"]);
        let spec = VmSpec::from_config(&config);
        assert_eq!(spec.drives.len(), 2);
        assert!(spec.drives[0].is_root_device && spec.drives[1].is_read_only);
        assert_eq!(spec.to_config().unwrap(), config);
        // Shown back with every field, defaults included.
        let shown = serde_json::to_value(&spec).unwrap();
        assert_eq!(shown["drives"][1]["is_root_device"], false);
        assert_eq!(shown["drives"][1]["path_on_host"], "/d.img");

        let two_roots = r#"{"drives": [
            {"drive_id": "a", "path_on_host": "/a", "is_root_device": true},
            {"drive_id": "b", "path_on_host": "/b", "is_root_device": true}]}"#;
        assert!(err(two_roots).contains("invalid drives[1].is_root_device"));
        let same_id = r#"{"network-interfaces": [{"iface_id": "x", "switch": "s"}],
                          "drives": [{"drive_id": "x", "path_on_host": "/a"}]}"#;
        assert!(err(same_id).contains("invalid drives[0].drive_id"));
        assert!(
            err(r#"{"drives": [{"drive_id": "a b", "path_on_host": "/a"}]}"#)
                .contains("invalid drives[0].drive_id")
        );
        assert!(
            err(r#"{"drives": [{"drive_id": "a", "path_on_host": ""}]}"#)
                .contains("invalid drives[0].path_on_host")
        );
        assert!(err(
            r#"{"drives": [{"drive_id": "a", "path_on_host": "/a", "cache_type": "Writeback"}]}"#
        )
        .contains("unknown field `cache_type`"));
        assert!(err(r#"{"drives": [{"path_on_host": "/a"}]}"#).contains("drive_id"));
        assert_eq!(
            api_field("devices[3].mac", 4),
            "network-interfaces[3].guest_mac"
        );
        assert_eq!(
            api_field("devices[4].path_on_host", 4),
            "drives[0].path_on_host"
        );
        assert_eq!(api_field("memory_mib", 0), "machine-config.mem_size_mib");
    }

    #[test]
    fn drive_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::write(&image, [0u8; 512]).unwrap();
        let spec = |path: &std::path::Path, ro: bool| VmSpec {
            drives: vec![
                BlockConfig {
                    drive_id: "ok".into(),
                    path_on_host: image.clone(),
                    is_root_device: false,
                    is_read_only: false,
                },
                BlockConfig {
                    drive_id: "d".into(),
                    path_on_host: path.into(),
                    is_root_device: false,
                    is_read_only: ro,
                },
            ],
            ..VmSpec::default()
        };
        spec(&image, true).check_drive_files().unwrap();
        let missing = dir.path().join("missing.img");
        let e = spec(&missing, true).check_drive_files().unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("invalid drives[1].path_on_host: ")
                && e.message.contains(&missing.display().to_string())
                && e.message.contains("No such file"),
            "{}",
            e.message
        );
        let e = spec(dir.path(), false).check_drive_files().unwrap_err();
        assert!(e.message.contains("is not a regular file"), "{}", e.message);
        let e = spec(std::path::Path::new("/dev/null"), true)
            .check_drive_files()
            .unwrap_err();
        assert!(e.message.contains("is not a regular file"), "{}", e.message);
    }
}
