//! `--config-file`: Firecracker's JSON description of a whole microVM
//! (`boot-source`, `machine-config`, `drives`, `network-interfaces`,
//! `logger`, `metrics`), applied as the matching API calls would be, then
//! `InstanceStart`. Sections for devices this VMM does not have (`balloon`,
//! `vsock`, `mmds-config`, `entropy`, `cpu-config`, ...) are refused when
//! set, so a VM never boots without something its owner asked for.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::instance::{Instance, InstanceError};
use super::model::{BootSource, Drive, Logger, MachineConfig, Metrics, NetworkInterface};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// A section names a device this VMM does not have.
    #[error("config file {path}: section {section:?} is not supported: {why}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The section.
        section: &'static str,
        /// Why.
        why: &'static str,
    },
    /// A resource was refused, or the VM could not start.
    #[error("config file {path}: {source}")]
    Instance {
        /// The file.
        path: PathBuf,
        /// What the microVM said.
        #[source]
        source: InstanceError,
    },
}

/// A Firecracker config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The kernel (required).
    #[serde(rename = "boot-source")]
    pub boot_source: BootSource,
    /// vCPUs and memory.
    #[serde(rename = "machine-config", default)]
    pub machine_config: Option<MachineConfig>,
    /// Block devices.
    #[serde(default)]
    pub drives: Vec<Drive>,
    /// Network interfaces.
    #[serde(rename = "network-interfaces", default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// The logger.
    #[serde(default)]
    pub logger: Option<Logger>,
    /// The metrics file.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// Refused when set.
    #[serde(default)]
    pub balloon: Option<serde_json::Value>,
    /// Refused when set.
    #[serde(default)]
    pub vsock: Option<serde_json::Value>,
    /// Refused when set.
    #[serde(rename = "mmds-config", default)]
    pub mmds_config: Option<serde_json::Value>,
    /// Refused when set.
    #[serde(default)]
    pub entropy: Option<serde_json::Value>,
    /// Refused when set.
    #[serde(rename = "cpu-config", default)]
    pub cpu_config: Option<serde_json::Value>,
    /// Refused when set.
    #[serde(default)]
    pub pmem: Option<serde_json::Value>,
    /// Refused when set.
    #[serde(rename = "memory-hotplug", default)]
    pub memory_hotplug: Option<serde_json::Value>,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ConfigFileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The first section set that this VMM cannot honour, with the reason.
    fn unsupported(&self) -> Option<(&'static str, &'static str)> {
        let set = |v: &Option<serde_json::Value>| v.as_ref().is_some_and(|v| !v.is_null());
        [
            (set(&self.balloon), "balloon", "no balloon device"),
            (set(&self.vsock), "vsock", "no vsock device"),
            (set(&self.mmds_config), "mmds-config", "no MMDS"),
            (set(&self.entropy), "entropy", "no entropy device"),
            (
                set(&self.cpu_config),
                "cpu-config",
                "no custom CPU templates",
            ),
            (set(&self.pmem), "pmem", "no pmem devices"),
            (
                set(&self.memory_hotplug),
                "memory-hotplug",
                "no memory hot-plug",
            ),
        ]
        .into_iter()
        .find(|(given, _, _)| *given)
        .map(|(_, section, why)| (section, why))
    }

    /// Configures `instance` from this file and starts it.
    pub fn apply(self, path: &Path, instance: &mut Instance) -> Result<(), ConfigFileError> {
        if let Some((section, why)) = self.unsupported() {
            return Err(ConfigFileError::Unsupported {
                path: path.to_owned(),
                section,
                why,
            });
        }
        let wrap = |source| ConfigFileError::Instance {
            path: path.to_owned(),
            source,
        };
        if let Some(logger) = self.logger {
            instance.put_logger(logger).map_err(wrap)?;
        }
        if let Some(metrics) = &self.metrics {
            instance.put_metrics(metrics).map_err(wrap)?;
        }
        if let Some(machine) = self.machine_config {
            instance.put_machine_config(machine).map_err(wrap)?;
        }
        instance.put_boot_source(self.boot_source).map_err(wrap)?;
        for drive in self.drives {
            let id = drive.drive_id.clone();
            instance.put_drive(&id, drive).map_err(wrap)?;
        }
        for nic in self.network_interfaces {
            let id = nic.iface_id.clone();
            instance.put_net(&id, nic).map_err(wrap)?;
        }
        instance.start().map_err(wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_firecracker_config_and_refuses_missing_devices() {
        let full: ConfigFile = serde_json::from_str(
            r#"{"boot-source": {"kernel_image_path": "/k", "boot_args": "console=ttyS0"},
                "drives": [{"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": true, "is_read_only": false}],
                "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false},
                "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}],
                "logger": {"log_path": "/tmp/l", "level": "Info"},
                "metrics": {"metrics_path": "/tmp/m"},
                "balloon": null}"#,
        )
        .expect("config file");
        assert_eq!(full.drives.len(), 1);
        assert!(full.unsupported().is_none());
        let vsock: ConfigFile = serde_json::from_str(
            r#"{"boot-source": {"kernel_image_path": "/k"}, "vsock": {"guest_cid": 3, "uds_path": "/v"}}"#,
        )
        .expect("vsock config");
        assert_eq!(vsock.unsupported().map(|(s, _)| s), Some("vsock"));
        assert!(serde_json::from_str::<ConfigFile>(
            r#"{"boot-source": {"kernel_image_path": "/k"}, "bogus": 1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ConfigFile>(
            r#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 1}}"#
        )
        .is_err());
    }
}
