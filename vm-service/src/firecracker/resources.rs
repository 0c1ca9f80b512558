//! The resources a Firecracker client configures before `InstanceStart`
//! (`boot-source`, `machine-config`, `drives`, `network-interfaces`) and
//! their translation to the [`VmConfig`] the VMM builds from, with
//! validation errors renamed to Firecracker's fields
//! (`machine-config.vcpu_count`, `drives[rootfs].path_on_host`, ...).
//!
//! | Firecracker | `VmConfig` |
//! |---|---|
//! | `boot-source.kernel_image_path`, `initrd_path`, `boot_args` | `kernel`, `initrd`, `cmdline` (default [`DEFAULT_BOOT_ARGS`]) |
//! | the kernel file's header ([`kernel_arch`]) | `arch` |
//! | `machine-config.vcpu_count`, `mem_size_mib` | `vcpus`, `memory_mib` |
//! | `drives[]` (root drive first) | `devices[i]` = `DeviceConfig::Block` |
//! | `network-interfaces[]` (`host_dev_name`) | `devices[i]` = `DeviceConfig::Net`, TAP backend |

use vm_core::config::{
    BlockConfig, ConfigError, DeviceConfig, NetBackendConfig, NetConfig, SerialMode, VmConfig,
};

use super::instance::InstanceError;
use super::kernel_arch;
use super::model::{BootSource, Drive, MachineConfig, NetworkInterface};

/// Kernel command line when `boot_args` is absent (Firecracker's default
/// turns the serial port off; ours keeps the console on it).
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1";

/// What the API (or a config file) has configured so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `PUT /boot-source`.
    pub boot_source: Option<BootSource>,
    /// `PUT`/`PATCH /machine-config`.
    pub machine: MachineConfig,
    /// `PUT /drives/{id}`, in the order given.
    pub drives: Vec<Drive>,
    /// `PUT /network-interfaces/{id}`, in the order given.
    pub nets: Vec<NetworkInterface>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InstanceError {
    InstanceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Resources {
    /// The resources as a [`VmConfig`], validated; `need_kernel` for `InstanceStart`.
    pub fn vm_config(&self, need_kernel: bool) -> Result<VmConfig, InstanceError> {
        let mut config = VmConfig {
            vcpus: self.machine.vcpu_count,
            memory_mib: self.machine.mem_size_mib,
            serial: SerialMode::Stdout,
            ..VmConfig::default()
        };
        match &self.boot_source {
            Some(boot) => {
                config.kernel = Some(boot.kernel_image_path.clone());
                config.initrd.clone_from(&boot.initrd_path);
                config.cmdline = boot
                    .boot_args
                    .clone()
                    .unwrap_or_else(|| DEFAULT_BOOT_ARGS.into());
                if need_kernel {
                    config.arch = kernel_arch::of_kernel(&boot.kernel_image_path)
                        .map_err(|e| invalid("boot-source.kernel_image_path", e.to_string()))?;
                }
            }
            None if need_kernel => return Err(InstanceError::NoBootSource),
            None => {}
        }
        // The root drive first: it is the guest's /dev/vda.
        let drives = self
            .drives
            .iter()
            .filter(|d| d.is_root_device)
            .chain(self.drives.iter().filter(|d| !d.is_root_device));
        for d in drives {
            config.devices.push(DeviceConfig::Block(BlockConfig {
                drive_id: d.drive_id.clone(),
                path_on_host: d.path_on_host.clone().unwrap_or_default(),
                is_root_device: d.is_root_device,
                is_read_only: d.is_read_only,
            }));
        }
        for n in &self.nets {
            config.devices.push(DeviceConfig::Net(NetConfig {
                id: n.iface_id.clone(),
                backend: NetBackendConfig::Tap {
                    ifname: n.host_dev_name.clone(),
                },
                mac: n.guest_mac,
            }));
        }
        config
            .validate()
            .map_err(|e| invalid(firecracker_field(&config, &e), e.reason))?;
        Ok(config)
    }
}

/// Renames a `VmConfig` field path to Firecracker's name for it.
fn firecracker_field(config: &VmConfig, e: &ConfigError) -> String {
    let simple = match e.field.as_str() {
        "vcpus" => Some("machine-config.vcpu_count"),
        "memory_mib" => Some("machine-config.mem_size_mib"),
        "kernel" => Some("boot-source.kernel_image_path"),
        "initrd" => Some("boot-source.initrd_path"),
        "cmdline" => Some("boot-source.boot_args"),
        _ => None,
    };
    if let Some(s) = simple {
        return s.to_string();
    }
    let Some(rest) = e.field.strip_prefix("devices[") else {
        return e.field.clone();
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return e.field.clone();
    };
    let device = index
        .parse::<usize>()
        .ok()
        .and_then(|i| config.devices.get(i));
    match device {
        Some(DeviceConfig::Block(b)) => {
            let tail = tail.replace(".id", ".drive_id");
            format!("drives[{}]{tail}", b.drive_id)
        }
        Some(DeviceConfig::Net(n)) => {
            let tail = tail
                .replace(".backend.ifname", ".host_dev_name")
                .replace(".id", ".iface_id")
                .replace(".mac", ".guest_mac");
            format!("network-interfaces[{}]{tail}", n.id)
        }
        None => e.field.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_core::config::GuestArch;

    fn drive(id: &str, root: bool) -> Drive {
        Drive {
            drive_id: id.into(),
            path_on_host: Some(format!("/images/{id}").into()),
            is_root_device: root,
            is_read_only: false,
            partuuid: None,
            cache_type: None,
            rate_limiter: None,
            io_engine: None,
            socket: None,
        }
    }

    #[test]
    fn maps_to_a_vm_config_root_drive_first_arch_from_the_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("Image");
        let mut image = vec![0u8; 64];
        image[56..60].copy_from_slice(b"RSC\x05");
        std::fs::write(&kernel, image).expect("kernel");
        let res = Resources {
            boot_source: Some(BootSource {
                kernel_image_path: kernel,
                initrd_path: None,
                boot_args: None,
            }),
            machine: MachineConfig {
                vcpu_count: 2,
                mem_size_mib: 64,
                ..MachineConfig::default()
            },
            drives: vec![drive("data", false), drive("rootfs", true)],
            nets: vec![NetworkInterface {
                iface_id: "eth0".into(),
                host_dev_name: "tap0".into(),
                guest_mac: None,
                rx_rate_limiter: None,
                tx_rate_limiter: None,
            }],
        };
        let config = res.vm_config(true).expect("valid");
        assert_eq!(config.arch, GuestArch::Riscv64);
        assert_eq!((config.vcpus, config.memory_mib), (2, 64));
        assert_eq!(config.cmdline, DEFAULT_BOOT_ARGS);
        let ids: Vec<&str> = config.devices.iter().map(DeviceConfig::id).collect();
        assert_eq!(ids, ["rootfs", "data", "eth0"]);

        let mut bad = res.clone();
        bad.drives[0].drive_id = "a b".into();
        let e = bad.vm_config(false).expect_err("bad id");
        assert!(e.to_string().contains("drives[a b].drive_id"), "{e}");
        assert!(matches!(
            Resources::default().vm_config(true),
            Err(InstanceError::NoBootSource)
        ));
        Resources::default()
            .vm_config(false)
            .expect("nothing configured is valid before the start");
    }
}
