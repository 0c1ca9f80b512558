//! Snapshots: a paused VM saved to a directory and restored, in this process
//! or another one.
//!
//! A snapshot is two files (see [`format`]): `state.snap`, a versioned,
//! checksummed [`VmState`] (the VM's configuration, each vCPU's state, the
//! engine's shared state and every device's state), and `memory.snap`, guest
//! RAM written once, each region page-aligned. [`crate::RunningVmm::snapshot`]
//! writes them; [`crate::VmmBuilder::restore`] builds a VM from them.
//!
//! Engines: the riscv64 interpreter saves and restores everything
//! ([`VcpuState::Riscv64Interp`]). Hardware engines have no state capture
//! yet: a snapshot of such a VM fails with
//! [`SnapshotError::UnsupportedEngine`] before any file is written.

pub mod format;

use std::path::{Path, PathBuf};

use vm_accel::Vcpu;
use vm_core::config::VmConfig;
use vm_cross_arch::interp::riscv64::state::{HartState, MachineState};
use vm_cross_arch::interp::riscv64::RiscvVcpu;
use vm_device::legacy::serial::SerialState;
use vm_device::virtio::mmio::MmioTransportState;

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

/// One vCPU's state, by engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VcpuState {
    /// A hart of the riscv64 interpreter.
    Riscv64Interp(HartState),
}

/// State the engine keeps outside the vCPUs, by engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EngineState {
    /// The riscv64 interpreter's CLINT and PLIC.
    Riscv64Interp(MachineState),
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
    /// Each virtio-mmio transport, in slot order.
    pub virtio: Vec<MmioTransportState>,
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
    /// The engine's shared state.
    pub engine: EngineState,
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

/// What a running vCPU gives a snapshot: its state, and (from vCPU 0) the
/// engine's shared state.
pub(crate) fn capture_vcpu(
    vcpu: &mut dyn Vcpu,
) -> Result<(VcpuState, Option<EngineState>), SnapshotError> {
    let id = vcpu.id();
    let any: &mut dyn std::any::Any = vcpu;
    if let Some(hart) = any.downcast_mut::<RiscvVcpu>() {
        let engine = (id.0 == 0).then(|| EngineState::Riscv64Interp(hart.machine().state()));
        return Ok((VcpuState::Riscv64Interp(hart.state()), engine));
    }
    Err(SnapshotError::UnsupportedEngine {
        engine: format!("{:?}", vcpu.arch()),
    })
}

/// Restores `state` into a freshly created vCPU (and, for vCPU 0, the
/// engine's shared state).
pub(crate) fn restore_vcpu(
    vcpu: &mut dyn Vcpu,
    state: &VcpuState,
    engine: Option<&EngineState>,
) -> Result<(), SnapshotError> {
    let id = vcpu.id();
    let arch = vcpu.arch();
    let any: &mut dyn std::any::Any = vcpu;
    match (any.downcast_mut::<RiscvVcpu>(), state) {
        (Some(hart), VcpuState::Riscv64Interp(s)) => {
            if let Some(EngineState::Riscv64Interp(machine)) = engine {
                hart.machine()
                    .restore(machine)
                    .map_err(|source| SnapshotError::State {
                        what: "the interrupt controllers".into(),
                        source,
                    })?;
            }
            hart.restore(s).map_err(|source| SnapshotError::State {
                what: format!("vCPU {}", id.0),
                source,
            })
        }
        (None, _) => Err(SnapshotError::UnsupportedEngine {
            engine: format!("{arch:?}"),
        }),
    }
}
