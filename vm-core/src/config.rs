//! `VmConfig`: what the VMM and the daemon need to build a VM, with validation that
//! names the offending field.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod gdb;
pub use gdb::{GdbAddr, GdbAddrError, GdbConfig};

/// Most vCPUs a config may ask for.
pub const MAX_VCPUS: u32 = 254;
/// Largest guest memory a config may ask for, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// Longest kernel command line accepted, in bytes (Linux's `COMMAND_LINE_SIZE` on x86).
pub const MAX_CMDLINE_LEN: usize = 2048;
/// Longest host network interface name (Linux `IFNAMSIZ` minus the NUL).
pub const MAX_IFNAME_LEN: usize = 15;
/// Longest device id or switch name.
pub const MAX_NAME_LEN: usize = 64;

/// A config value that failed validation; `field` is a path such as `devices[1].mac`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// Path of the offending field, e.g. `memory_mib` or `devices[0].backend.ifname`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Architecture of the guest (a runtime value: the software engine runs any guest anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestArch {
    /// 64-bit x86.
    X86_64,
    /// 64-bit Arm (AArch64).
    Arm64,
    /// 64-bit RISC-V (RV64GC).
    Riscv64,
}

impl GuestArch {
    /// All supported guest architectures.
    pub const ALL: [GuestArch; 3] = [GuestArch::X86_64, GuestArch::Arm64, GuestArch::Riscv64];

    /// The architecture of the host this binary was built for, if it is a supported guest arch.
    pub fn host() -> Option<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Self::X86_64),
            "aarch64" => Some(Self::Arm64),
            "riscv64" => Some(Self::Riscv64),
            _ => None,
        }
    }

    /// Canonical lower-case name (`x86_64`, `arm64`, `riscv64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
            Self::Riscv64 => "riscv64",
        }
    }
}

impl fmt::Display for GuestArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GuestArch {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" | "x86-64" => Ok(Self::X86_64),
            "arm64" | "aarch64" => Ok(Self::Arm64),
            "riscv64" | "riscv64gc" => Ok(Self::Riscv64),
            other => Err(ConfigError::new(
                "arch",
                format!("unknown architecture {other:?}; expected x86_64, arm64 or riscv64"),
            )),
        }
    }
}

/// A 48-bit Ethernet MAC address; (de)serialized as `"52:54:00:12:34:56"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True if the group (multicast) bit is set, which a NIC's own address must not have.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::new("mac", format!("{s:?} is not six ':'-separated hex octets"));
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a virtual NIC's frames go on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetBackendConfig {
    /// A virtual switch (no privileges needed): shared by name by the VMs of one
    /// process, and across processes that join its segment (the daemon's VMs,
    /// `vm-service run --net virtual:NAME`).
    Virtual {
        /// Name of the switch; VMs on the same switch see each other's frames.
        switch: String,
    },
    /// A host TAP interface (needs CAP_NET_ADMIN or a pre-created persistent tap).
    Tap {
        /// Host interface name, at most 15 bytes.
        ifname: String,
    },
}

/// A virtio-net interface of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetConfig {
    /// Device id, unique within the VM (used to detach it).
    pub id: String,
    /// Host side of the interface.
    pub backend: NetBackendConfig,
    /// Guest MAC address; the VMM picks a locally administered one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

/// A virtio-blk disk of the guest, backed by a raw image file on the host.
/// Field names follow Firecracker's `drives` objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Device id, unique within the VM; the guest reads it as the disk's serial.
    pub drive_id: String,
    /// Raw image file on the host.
    pub path_on_host: PathBuf,
    /// The guest boots from this disk: the VMM adds `root=/dev/vda` to the
    /// kernel command line. At most one drive may be the root device.
    #[serde(default)]
    pub is_root_device: bool,
    /// The guest sees a read-only disk (`VIRTIO_BLK_F_RO`); the file is opened read-only.
    #[serde(default)]
    pub is_read_only: bool,
}

/// A device attached to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceConfig {
    /// A virtio-net interface.
    Net(NetConfig),
    /// A virtio-blk disk.
    Block(BlockConfig),
}

impl DeviceConfig {
    /// The device's id, unique within its VM.
    pub fn id(&self) -> &str {
        match self {
            Self::Net(n) => &n.id,
            Self::Block(b) => &b.drive_id,
        }
    }

    /// Checks the device on its own; `field` is its path in the enclosing config.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        match self {
            Self::Net(n) => {
                check_name(&format!("{field}.id"), &n.id, MAX_NAME_LEN)?;
                match &n.backend {
                    NetBackendConfig::Virtual { switch } => {
                        check_name(&format!("{field}.backend.switch"), switch, MAX_NAME_LEN)?;
                    }
                    NetBackendConfig::Tap { ifname } => {
                        check_name(&format!("{field}.backend.ifname"), ifname, MAX_IFNAME_LEN)?;
                    }
                }
                if let Some(mac) = n.mac {
                    if mac.is_multicast() {
                        return Err(ConfigError::new(
                            format!("{field}.mac"),
                            format!("{mac} is a multicast address"),
                        ));
                    }
                    if mac.0 == [0; 6] {
                        return Err(ConfigError::new(format!("{field}.mac"), "all-zero address"));
                    }
                }
                Ok(())
            }
            Self::Block(b) => {
                check_name(&format!("{field}.drive_id"), &b.drive_id, MAX_NAME_LEN)?;
                check_path(&format!("{field}.path_on_host"), &b.path_on_host)
            }
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SerialMode {
    /// No serial port output is kept.
    Off,
    /// Written to the VMM process's stdout.
    Stdout,
    /// Appended to a host file.
    File {
        /// Path of the log file.
        path: PathBuf,
    },
    /// Kept in a bounded in-memory buffer that the daemon's API can read.
    #[default]
    Capture,
}

fn default_vcpus() -> u32 {
    1
}

fn default_memory_mib() -> u64 {
    128
}

fn default_arch() -> GuestArch {
    GuestArch::host().unwrap_or(GuestArch::X86_64)
}

/// Everything needed to build a VM. Deserializes from JSON/TOML with defaults for the
/// optional parts; call [`VmConfig::validate`] before using a config from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Number of vCPUs, 1 to [`MAX_VCPUS`].
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Guest RAM in MiB, 1 to [`MAX_MEMORY_MIB`].
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Guest architecture; defaults to the host's.
    #[serde(default = "default_arch")]
    pub arch: GuestArch,
    /// Kernel image; when absent the VMM runs its built-in test guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk; only meaningful with a kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// Devices attached at boot.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Serial console routing.
    #[serde(default)]
    pub serial: SerialMode,
    /// Where the VM comes from when it is not booted: a snapshot, restored
    /// at every start (the other fields are the snapshot's configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<SnapshotSource>,
    /// Run the VM under a GDB stub (`{"address": "unix:PATH", "wait": false}`);
    /// absent: the VM runs on its executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gdb: Option<GdbConfig>,
}

/// A snapshot's two files (see the VMM's snapshot module for their format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSource {
    /// The state file.
    pub snapshot_path: PathBuf,
    /// The memory file.
    pub mem_file_path: PathBuf,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            vcpus: default_vcpus(),
            memory_mib: default_memory_mib(),
            arch: default_arch(),
            kernel: None,
            initrd: None,
            cmdline: String::new(),
            devices: Vec::new(),
            serial: SerialMode::default(),
            restore: None,
            gdb: None,
        }
    }
}

impl VmConfig {
    /// Guest memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }

    /// Checks every field; the error names the first offending one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::new(
                "vcpus",
                format!("{} is outside 1..={MAX_VCPUS}", self.vcpus),
            ));
        }
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            return Err(ConfigError::new(
                "memory_mib",
                format!("{} is outside 1..={MAX_MEMORY_MIB}", self.memory_mib),
            ));
        }
        if let Some(k) = &self.kernel {
            check_path("kernel", k)?;
        }
        if let Some(i) = &self.initrd {
            check_path("initrd", i)?;
            if self.kernel.is_none() {
                return Err(ConfigError::new(
                    "initrd",
                    "an initrd needs a kernel; the built-in guest takes none",
                ));
            }
        }
        if self.cmdline.len() > MAX_CMDLINE_LEN {
            return Err(ConfigError::new(
                "cmdline",
                format!(
                    "{} bytes, the limit is {MAX_CMDLINE_LEN}",
                    self.cmdline.len()
                ),
            ));
        }
        if let Some(pos) = self.cmdline.find(|c: char| c == '\0' || c.is_control()) {
            return Err(ConfigError::new(
                "cmdline",
                format!("control character at byte {pos}"),
            ));
        }
        let mut ids = HashSet::new();
        let mut macs = HashSet::new();
        let mut root: Option<&str> = None;
        for (i, dev) in self.devices.iter().enumerate() {
            let field = format!("devices[{i}]");
            dev.validate(&field)?;
            if !ids.insert(dev.id()) {
                return Err(ConfigError::new(
                    format!("{field}.id"),
                    format!("duplicate device id {:?}", dev.id()),
                ));
            }
            match dev {
                DeviceConfig::Net(net) => {
                    if let Some(mac) = net.mac {
                        if !macs.insert(mac) {
                            return Err(ConfigError::new(
                                format!("{field}.mac"),
                                format!("{mac} is used by another device"),
                            ));
                        }
                    }
                }
                DeviceConfig::Block(b) if b.is_root_device => {
                    if let Some(other) = root.replace(&b.drive_id) {
                        return Err(ConfigError::new(
                            format!("{field}.is_root_device"),
                            format!("drive {other:?} is already the root device"),
                        ));
                    }
                }
                DeviceConfig::Block(_) => {}
            }
        }
        if let SerialMode::File { path } = &self.serial {
            check_path("serial.path", path)?;
        }
        if let Some(gdb) = &self.gdb {
            gdb.addr()?;
        }
        Ok(())
    }
}

fn check_path(field: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new(field, "empty path"));
    }
    Ok(())
}

fn check_name(field: &str, name: &str, max: usize) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(field, "empty"));
    }
    if name.len() > max {
        return Err(ConfigError::new(
            field,
            format!("{:?} is {} bytes, the limit is {max}", name, name.len()),
        ));
    }
    // Names become file names (a switch's segment directory): never `.` or `..`.
    if matches!(name, "." | "..") {
        return Err(ConfigError::new(
            field,
            format!("{name:?} is not a usable name (it means a directory)"),
        ));
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ConfigError::new(
            field,
            format!(
                "{name:?} has {c:?} at byte {i}; allowed are ASCII letters, digits, '-', '_', '.'"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, backend: NetBackendConfig, mac: Option<&str>) -> DeviceConfig {
        DeviceConfig::Net(NetConfig {
            id: id.into(),
            backend,
            mac: mac.map(|m| m.parse().unwrap()),
        })
    }

    fn tap(name: &str) -> NetBackendConfig {
        NetBackendConfig::Tap {
            ifname: name.into(),
        }
    }

    fn field_of(cfg: &VmConfig) -> String {
        cfg.validate().unwrap_err().field
    }

    #[test]
    fn default_is_valid() {
        VmConfig::default().validate().unwrap();
    }

    #[test]
    fn json_round_trip_and_defaults() {
        let cfg: VmConfig = serde_json::from_str(
            r#"{"vcpus":2,"memory_mib":512,"arch":"riscv64","kernel":"/k","cmdline":"console=ttyS0",
                "devices":[{"type":"net","id":"eth0","backend":{"kind":"virtual","switch":"br0"},
                            "mac":"52:54:00:00:00:01"}],
                "serial":{"mode":"file","path":"/tmp/s.log"}}"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.arch, GuestArch::Riscv64);
        assert_eq!(cfg.memory_bytes(), 512 << 20);
        let back: VmConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        let minimal: VmConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(minimal, VmConfig::default());
        assert!(serde_json::from_str::<VmConfig>(r#"{"vcpu":2}"#).is_err());
    }

    fn drive(id: &str, root: bool) -> DeviceConfig {
        DeviceConfig::Block(BlockConfig {
            drive_id: id.into(),
            path_on_host: format!("/images/{id}.ext4").into(),
            is_root_device: root,
            is_read_only: false,
        })
    }

    #[test]
    fn drives_round_trip_and_validate() {
        let cfg: VmConfig = serde_json::from_str(
            r#"{"devices":[{"type":"block","drive_id":"rootfs","path_on_host":"/r.ext4",
                            "is_root_device":true},
                           {"type":"block","drive_id":"data","path_on_host":"/d.img",
                            "is_read_only":true}]}"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let DeviceConfig::Block(data) = &cfg.devices[1] else {
            panic!("not a drive: {:?}", cfg.devices[1]);
        };
        assert!(data.is_read_only && !data.is_root_device);
        let back: VmConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(serde_json::from_str::<VmConfig>(
            r#"{"devices":[{"type":"block","drive_id":"a","path_on_host":"/a","readonly":true}]}"#
        )
        .is_err());

        let two_roots = VmConfig {
            devices: vec![drive("a", true), drive("b", true)],
            ..VmConfig::default()
        };
        assert_eq!(field_of(&two_roots), "devices[1].is_root_device");
        let same_id = VmConfig {
            devices: vec![drive("a", false), drive("a", false)],
            ..VmConfig::default()
        };
        assert_eq!(field_of(&same_id), "devices[1].id");
        let mut no_path = drive("a", false);
        if let DeviceConfig::Block(b) = &mut no_path {
            b.path_on_host = PathBuf::new();
        }
        let no_path = VmConfig {
            devices: vec![no_path],
            ..VmConfig::default()
        };
        assert_eq!(field_of(&no_path), "devices[0].path_on_host");
        let bad_id = VmConfig {
            devices: vec![drive("a/b", false)],
            ..VmConfig::default()
        };
        assert_eq!(field_of(&bad_id), "devices[0].drive_id");
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = VmConfig::default();
        let cases: Vec<(VmConfig, &str)> = vec![
            (
                VmConfig {
                    vcpus: 0,
                    ..base.clone()
                },
                "vcpus",
            ),
            (
                VmConfig {
                    vcpus: 255,
                    ..base.clone()
                },
                "vcpus",
            ),
            (
                VmConfig {
                    memory_mib: 0,
                    ..base.clone()
                },
                "memory_mib",
            ),
            (
                VmConfig {
                    memory_mib: MAX_MEMORY_MIB + 1,
                    ..base.clone()
                },
                "memory_mib",
            ),
            (
                VmConfig {
                    kernel: Some(PathBuf::new()),
                    ..base.clone()
                },
                "kernel",
            ),
            (
                VmConfig {
                    initrd: Some("/i".into()),
                    ..base.clone()
                },
                "initrd",
            ),
            (
                VmConfig {
                    cmdline: "x".repeat(2049),
                    ..base.clone()
                },
                "cmdline",
            ),
            (
                VmConfig {
                    cmdline: "a\nb".into(),
                    ..base.clone()
                },
                "cmdline",
            ),
            (
                VmConfig {
                    devices: vec![net("", tap("t0"), None)],
                    ..base.clone()
                },
                "devices[0].id",
            ),
            (
                VmConfig {
                    devices: vec![net("e", tap("sixteen-chars-xx"), None)],
                    ..base.clone()
                },
                "devices[0].backend.ifname",
            ),
            (
                VmConfig {
                    devices: vec![net(
                        "e",
                        NetBackendConfig::Virtual {
                            switch: "a b".into(),
                        },
                        None,
                    )],
                    ..base.clone()
                },
                "devices[0].backend.switch",
            ),
            (
                VmConfig {
                    devices: vec![net("e", tap("t0"), Some("01:00:5e:00:00:01"))],
                    ..base.clone()
                },
                "devices[0].mac",
            ),
            (
                VmConfig {
                    devices: vec![net("e", tap("t0"), None), net("e", tap("t1"), None)],
                    ..base.clone()
                },
                "devices[1].id",
            ),
            (
                VmConfig {
                    devices: vec![
                        net("a", tap("t0"), Some("52:54:00:00:00:01")),
                        net("b", tap("t1"), Some("52:54:00:00:00:01")),
                    ],
                    ..base.clone()
                },
                "devices[1].mac",
            ),
            (
                VmConfig {
                    serial: SerialMode::File {
                        path: PathBuf::new(),
                    },
                    ..base
                },
                "serial.path",
            ),
        ];
        for (cfg, field) in cases {
            assert_eq!(field_of(&cfg), field, "{cfg:?}");
        }
    }

    #[test]
    fn mac_parsing() {
        let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn arch_names() {
        for arch in GuestArch::ALL {
            assert_eq!(arch.as_str().parse::<GuestArch>().unwrap(), arch);
            assert_eq!(serde_json::to_string(&arch).unwrap(), format!("\"{arch}\""));
        }
        assert_eq!("aarch64".parse::<GuestArch>().unwrap(), GuestArch::Arm64);
        assert_eq!("mips".parse::<GuestArch>().unwrap_err().field, "arch");
    }
}
