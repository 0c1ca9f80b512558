//! Snapshots: a paused VM saved to a directory and restored, in this process
//! or another one.
//!
//! A snapshot is two files (see [`format`]): `state.snap`, a versioned,
//! checksummed [`VmState`] (the VM's configuration, each vCPU's state, the
//! state the hypervisor keeps for the VM and every device's state), and
//! `memory.snap`, guest RAM written once, each region page-aligned.
//! [`crate::RunningVmm::snapshot`] writes them; [`crate::VmmBuilder::restore`]
//! builds a VM from them.
//!
//! Engines: vCPU state is `vm_accel`'s [`VcpuState`], which each engine
//! saves and restores through [`Vcpu::save_state`] and
//! [`Vcpu::restore_state`]: the riscv64 interpreter
//! ([`VcpuState::Riscv64Interp`], its CLINT and PLIC with the devices) and
//! KVM on x86_64 ([`VcpuState::X86_64Kvm`], with the in-kernel irqchip, PIT
//! and clock as [`vm_accel::VmState`]). Other engines (HVF, WHPX, KVM on
//! other architectures) have no state capture: a snapshot of such a VM
//! fails with [`SnapshotError::UnsupportedEngine`] before any file is
//! written.

pub mod format;

use std::path::{Path, PathBuf};

use vm_accel::{AccelError, Vcpu, VcpuState};
use vm_core::config::{DeviceConfig, VmConfig};
use vm_cross_arch::interp::riscv64::state::MachineState;
use vm_cross_arch::interp::riscv64::RiscvVcpu;
use vm_device::legacy::cmos_rtc::RtcState;
use vm_device::legacy::serial::SerialState;
use vm_device::virtio::mmio::{MmioTransport, MmioTransportState};

pub use format::SnapshotError;

/// Name of the state file inside a snapshot directory.
pub const STATE_FILE: &str = "state.snap";
/// Name of the memory file inside a snapshot directory.
pub const MEMORY_FILE: &str = "memory.snap";

/// Where a snapshot's two files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    /// The state file.
    pub state: PathBuf,
    /// The memory file.
    pub memory: PathBuf,
}

impl SnapshotPaths {
    /// `state.snap` and `memory.snap` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            state: dir.join(STATE_FILE),
            memory: dir.join(MEMORY_FILE),
        }
    }
}

/// One RAM region and where its bytes are in the memory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryRegionState {
    /// Guest physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Offset in the memory file (page-aligned).
    pub offset: u64,
}

/// Device state, in the order the VMM attaches devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DevicesState {
    /// The serial console.
    pub serial: Option<SerialState>,
    /// The x86 CMOS RTC.
    pub rtc: Option<RtcState>,
    /// The riscv64 interpreter's CLINT and PLIC.
    pub riscv: Option<MachineState>,
    /// Each virtio-mmio transport, in slot order.
    pub virtio: Vec<MmioTransportState>,
    /// Each drive's size when the snapshot was taken, in slot order: the
    /// disk is reopened by path on restore and must still have it.
    pub disks: Vec<DiskState>,
}

/// A drive in a snapshot (its contents stay in its image file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskState {
    /// The drive's id.
    pub drive_id: String,
    /// The image's path.
    pub path: PathBuf,
    /// Its capacity in 512-byte sectors, as the guest saw it.
    pub sectors: u64,
}

/// The capacity a virtio-blk device reports (its config space's first field).
fn capacity_sectors(transport: &MmioTransport) -> u64 {
    let mut capacity = [0u8; 8];
    transport.device().read_config(0, &mut capacity);
    u64::from_le_bytes(capacity)
}

/// The drives of `config` with the capacity their transports report
/// (`transports` in slot order).
pub(crate) fn disk_states<'a>(
    config: &VmConfig,
    transports: impl IntoIterator<Item = &'a MmioTransport>,
) -> Vec<DiskState> {
    crate::block::slot_order(&config.devices)
        .into_iter()
        .zip(transports)
        .filter_map(|(device, transport)| match device {
            DeviceConfig::Block(drive) => Some(DiskState {
                drive_id: drive.drive_id.clone(),
                path: drive.path_on_host.clone(),
                sectors: capacity_sectors(transport),
            }),
            DeviceConfig::Net(_) => None,
        })
        .collect()
}

/// Refuses a restore whose reopened drives differ in size from the
/// snapshot's: the guest's file systems and caches describe the old disk.
pub(crate) fn check_disks<'a>(
    saved: &[DiskState],
    config: &VmConfig,
    transports: impl IntoIterator<Item = &'a MmioTransport>,
) -> Result<(), SnapshotError> {
    let now = disk_states(config, transports);
    if now.len() != saved.len() {
        return Err(SnapshotError::Mismatch(format!(
            "the snapshot has {} drive states for {} configured drives",
            saved.len(),
            now.len()
        )));
    }
    for (was, is) in saved.iter().zip(&now) {
        if was.sectors != is.sectors {
            return Err(SnapshotError::Mismatch(format!(
                "drive {:?} ({}) has {} sectors, {} when the snapshot was taken: the disk image changed",
                is.drive_id,
                is.path.display(),
                is.sectors,
                was.sectors
            )));
        }
    }
    Ok(())
}

/// Everything in a state file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VmState {
    /// The VM's configuration (devices reattach by TAP name, switch name and
    /// disk path from it).
    pub config: VmConfig,
    /// RAM regions and their place in the memory file.
    pub memory: Vec<MemoryRegionState>,
    /// Size the memory file must have.
    pub memory_file_len: u64,
    /// Each vCPU, in id order.
    pub vcpus: Vec<VcpuState>,
    /// The state the hypervisor keeps for the VM (KVM x86_64: irqchip, PIT,
    /// clock); none for the interpreter.
    pub vm: Option<vm_accel::VmState>,
    /// The devices.
    pub devices: DevicesState,
}

impl VmState {
    /// Serialises to a state file's bytes.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let body = serde_json::to_vec(self).map_err(|e| SnapshotError::Decode {
            path: PathBuf::from(STATE_FILE),
            reason: e.to_string(),
        })?;
        Ok(format::encode(&body))
    }

    /// Reads and checks the state file at `path`.
    pub fn read(path: &Path) -> Result<Self, SnapshotError> {
        let body = format::read_state_file(path)?;
        let state: Self = serde_json::from_slice(&body).map_err(|e| SnapshotError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        state.check()?;
        Ok(state)
    }

    /// Consistency of the parts with each other (the devices and vCPUs check
    /// their own contents when restored).
    fn check(&self) -> Result<(), SnapshotError> {
        let mismatch = |m: String| Err(SnapshotError::Mismatch(m));
        if self.vcpus.len() != self.config.vcpus as usize {
            return mismatch(format!(
                "{} vCPU states for a {}-vCPU configuration",
                self.vcpus.len(),
                self.config.vcpus
            ));
        }
        if self.devices.virtio.len() != self.config.devices.len() {
            return mismatch(format!(
                "{} virtio device states for {} configured devices",
                self.devices.virtio.len(),
                self.config.devices.len()
            ));
        }
        let first = self.vcpus.first().map_or("no", VcpuState::engine);
        if let Some(other) = self.vcpus.iter().find(|v| v.engine() != first) {
            return mismatch(format!(
                "the vCPU states come from two engines ({first} and {})",
                other.engine()
            ));
        }
        if let Some(other) = self.vcpus.iter().find(|v| v.arch() != self.config.arch) {
            return mismatch(format!(
                "the configuration is for a {} guest, the vCPU states are {} ones from {}",
                self.config.arch,
                other.arch(),
                other.engine()
            ));
        }
        let kvm_x86 = matches!(self.vcpus.first(), Some(VcpuState::X86_64Kvm(_)));
        if kvm_x86 != self.vm.is_some() {
            return mismatch(format!(
                "{first} vCPU states {} the VM state of the hypervisor",
                if self.vm.is_some() { "with" } else { "without" }
            ));
        }
        let interp = matches!(self.vcpus.first(), Some(VcpuState::Riscv64Interp(_)));
        if interp != self.devices.riscv.is_some() {
            return mismatch(format!(
                "{first} vCPU states {} the CLINT and PLIC",
                if interp { "without" } else { "with" }
            ));
        }
        let sizes: Vec<u64> = self.memory.iter().map(|r| r.size).collect();
        let (offsets, total) = format::region_offsets(&sizes);
        if offsets
            .iter()
            .zip(&self.memory)
            .any(|(o, r)| *o != r.offset)
            || total != self.memory_file_len
        {
            return mismatch(
                "the memory regions' file offsets are not the page-aligned layout".into(),
            );
        }
        let ram: u64 = sizes.iter().sum();
        if ram != self.config.memory_bytes() {
            return mismatch(format!(
                "the memory regions hold {ram} bytes, the configuration {} bytes",
                self.config.memory_bytes()
            ));
        }
        Ok(())
    }
}

fn engine_error(what: String, e: AccelError) -> SnapshotError {
    match e {
        AccelError::StateUnsupported { engine, .. } => SnapshotError::UnsupportedEngine { engine },
        source => SnapshotError::Engine { what, source },
    }
}

/// What a running vCPU gives a snapshot: its state, and (from vCPU 0 of the
/// riscv64 interpreter) the CLINT and PLIC it shares with the other harts.
pub(crate) fn capture_vcpu(
    vcpu: &mut dyn Vcpu,
) -> Result<(VcpuState, Option<MachineState>), SnapshotError> {
    let id = vcpu.id();
    let state = vcpu
        .save_state()
        .map_err(|e| engine_error(format!("saving vCPU {}", id.0), e))?;
    let any: &mut dyn std::any::Any = &mut *vcpu;
    let machine = any
        .downcast_mut::<RiscvVcpu>()
        .filter(|_| id.0 == 0)
        .map(|hart| hart.machine().state());
    Ok((state, machine))
}

/// Restores `state` into a freshly created vCPU (and, for vCPU 0 of the
/// riscv64 interpreter, the CLINT and PLIC).
pub(crate) fn restore_vcpu(
    vcpu: &mut dyn Vcpu,
    state: &VcpuState,
    machine: Option<&MachineState>,
) -> Result<(), SnapshotError> {
    let id = vcpu.id();
    if let Some(machine) = machine {
        let any: &mut dyn std::any::Any = &mut *vcpu;
        let Some(hart) = any.downcast_mut::<RiscvVcpu>() else {
            return Err(SnapshotError::Mismatch(
                "the snapshot has the riscv64 interpreter's CLINT and PLIC, the VM another engine"
                    .into(),
            ));
        };
        hart.machine()
            .restore(machine)
            .map_err(|source| SnapshotError::State {
                what: "the interrupt controllers".into(),
                source,
            })?;
    }
    vcpu.restore_state(state)
        .map_err(|e| engine_error(format!("restoring vCPU {}", id.0), e))
}
