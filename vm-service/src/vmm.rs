//! The VMM builder: from a [`VmConfig`] to running vCPUs.
//!
//! Building a VM is a fixed sequence, each step traced with its duration:
//! choose an engine for the guest architecture, lay out guest memory through
//! the platform, create the VM and map memory, load the kernel (or the
//! built-in guest) and write the boot data, attach devices, create vCPUs in
//! their boot state. [`Vmm::start`] then hands the vCPUs to an executor.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vm_accel::{AccelError, Accelerator, AcceleratorKind, IrqLine, VcpuId, Vm};
use vm_core::config::{DeviceConfig, GuestArch, SerialMode, VmConfig};
use vm_core::ConfigError;
use vm_cross_arch::interp::riscv64::{RiscvVcpu, Tier};
use vm_cross_arch::platform::{self, BootInfo, MachineSize, MemoryMap, PlatformError, SerialPort};
use vm_device::interrupt::{CallbackInterrupt, CountingInterrupt, Interrupt};
use vm_device::legacy::serial::{spawn_input_forwarder, CaptureBuffer, Serial};
use vm_device::virtio::mmio::MmioTransport;
use vm_device::{Bus, BusError};
use vm_memory::GuestMemoryMmap;

use crate::block;
use crate::dispatch::DeviceExits;
use crate::executor::{ExecutorControl, ExecutorKind, MultiVcpuExecutor, StopReason};
use crate::guest;
use crate::net::{self, SwitchRegistry};
use crate::poller::{self, Poller};
use crate::snapshot::{self, SnapshotError, SnapshotPaths, VmState};

/// Why a VM could not be built or started. Each variant names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file named in the configuration could not be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        /// `kernel` or `initrd`.
        what: &'static str,
        /// The path given.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// There is no built-in guest for this architecture.
    #[error("there is no built-in {arch} guest yet; pass --kernel")]
    NoBuiltinGuest {
        /// The guest architecture asked for.
        arch: GuestArch,
    },
    /// No engine can run this guest architecture on this host.
    #[error("no engine can run a {arch} guest on this {host} host: {reason}")]
    NoEngine {
        /// The guest architecture asked for.
        arch: GuestArch,
        /// The host architecture.
        host: &'static str,
        /// Why each candidate was rejected.
        reason: String,
    },
    /// More vCPUs than the accelerator allows.
    #[error("{requested} vCPUs requested, but {accel} allows at most {max} on this host")]
    TooManyVcpus {
        /// vCPUs asked for.
        requested: u32,
        /// The accelerator's limit.
        max: u32,
        /// The accelerator.
        accel: String,
    },
    /// The platform rejected the layout, the kernel, the initrd or the command line.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The accelerator failed.
    #[error("{step}: {source}")]
    Accel {
        /// The build step that failed.
        step: &'static str,
        /// What the accelerator reported.
        #[source]
        source: AccelError,
    },
    /// A device could not be attached.
    #[error("attaching {device}: {source}")]
    Device {
        /// The device.
        device: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A snapshot could not be read or did not fit.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// An instruction limit was asked of an engine that does not count instructions.
    #[error("an instruction limit needs the riscv64 interpreter; {engine} runs this guest")]
    InstructionLimit {
        /// The engine chosen.
        engine: String,
    },
    /// An execution tier was asked of an engine that has none.
    #[error("an execution tier needs the riscv64 software engine; {engine} runs this guest")]
    Tier {
        /// The engine chosen.
        engine: String,
    },
    /// Starting the executor failed.
    #[error("starting the {kind} executor: {source}")]
    Executor {
        /// The strategy.
        kind: ExecutorKind,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn accel_err(step: &'static str) -> impl FnOnce(AccelError) -> VmmError {
    move |source| VmmError::Accel { step, source }
}

fn device_err(device: &str, e: impl std::error::Error + Send + Sync + 'static) -> VmmError {
    VmmError::Device {
        device: device.to_string(),
        source: Box::new(e),
    }
}

/// Builds a [`Vmm`] from a configuration; the way embedders create VMs.
///
/// ```no_run
/// use vm_core::config::VmConfig;
/// use vm_service::{ExecutorKind, VmmBuilder};
///
/// let config = VmConfig { vcpus: 2, memory_mib: 64, ..VmConfig::default() };
/// let vmm = VmmBuilder::new(config)
///     .executor(ExecutorKind::Async)
///     .serial_output(Box::new(std::io::stdout()))
///     .build()?;                       // built-in guest: no kernel given
/// let reason = vmm.start()?.wait();    // until the guest asks to stop
/// println!("{reason}");
/// # Ok::<(), vm_service::VmmError>(())
/// ```
pub struct VmmBuilder {
    config: VmConfig,
    executor: ExecutorKind,
    serial_out: Option<Box<dyn Write + Send>>,
    serial_in: Option<Box<dyn Read + Send>>,
    switches: SwitchRegistry,
    /// Set by [`VmmBuilder::restore`]: the VM comes from this snapshot.
    restore: Option<(VmState, SnapshotPaths)>,
    /// Set by [`VmmBuilder::instruction_limit`].
    instruction_limit: Option<u64>,
    /// Set by [`VmmBuilder::riscv_tier`].
    riscv_tier: Option<Tier>,
}

impl std::fmt::Debug for VmmBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmmBuilder")
            .field("config", &self.config)
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

/// What was built, for banners, the API and tests.
#[derive(Debug, Clone)]
pub struct VmmInfo {
    /// The engine running the vCPUs, e.g. `KVM`.
    pub engine: String,
    /// Why that engine was chosen.
    pub engine_reason: String,
    /// Guest architecture.
    pub arch: GuestArch,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// The kernel: a path, or `built-in guest`.
    pub kernel: String,
}

impl VmmBuilder {
    /// A builder for `config`, with the sync executor and the serial mode the
    /// configuration names.
    pub fn new(config: VmConfig) -> Self {
        Self {
            config,
            executor: ExecutorKind::default(),
            serial_out: None,
            serial_in: None,
            switches: SwitchRegistry::new(),
            restore: None,
            instruction_limit: None,
            riscv_tier: None,
        }
    }

    /// A builder that restores the snapshot in `dir` (`state.snap` and
    /// `memory.snap`, see [`crate::snapshot`]): the configuration comes from
    /// the state file; [`VmmBuilder::build`] then maps the memory file instead
    /// of loading a kernel, reattaches TAP devices and switch ports by name and
    /// reopens disks by path, and restores every vCPU and device. A snapshot
    /// that is corrupt or does not fit is refused here or in `build`, before
    /// any vCPU exists.
    pub fn restore(dir: &Path) -> Result<Self, VmmError> {
        Self::restore_from(SnapshotPaths::in_dir(dir))
    }

    /// The configuration this builder builds (from the snapshot when restoring).
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// [`VmmBuilder::restore`] with the two files named separately.
    pub fn restore_from(paths: SnapshotPaths) -> Result<Self, VmmError> {
        let state = VmState::read(&paths.state)?;
        let mut builder = Self::new(state.config.clone());
        builder.restore = Some((state, paths));
        Ok(builder)
    }

    /// Plugs `virtual` NICs into the switches of `registry`, so VMs built with
    /// the same registry share switches by name (default: a private registry).
    #[must_use]
    pub fn switches(mut self, registry: SwitchRegistry) -> Self {
        self.switches = registry;
        self
    }

    /// Chooses the executor strategy.
    #[must_use]
    pub fn executor(mut self, kind: ExecutorKind) -> Self {
        self.executor = kind;
        self
    }

    /// Sends the serial console's output to `out` (overrides the config's mode).
    #[must_use]
    pub fn serial_output(mut self, out: Box<dyn Write + Send>) -> Self {
        self.serial_out = Some(out);
        self
    }

    /// Ends each vCPU's run with an error once it has run `limit`
    /// instructions (`vm-service run --max-instructions`, for riscv64 test
    /// programs). Only the riscv64 interpreter counts instructions: `build`
    /// refuses the limit for any other engine.
    #[must_use]
    pub fn instruction_limit(mut self, limit: u64) -> Self {
        self.instruction_limit = Some(limit);
        self
    }

    /// Runs the riscv64 software engine's harts in `tier` (`vm-service run
    /// --riscv-tier`; default: hot blocks translated where the host has a
    /// code generator). `build` refuses it for any other engine.
    #[must_use]
    pub fn riscv_tier(mut self, tier: Tier) -> Self {
        self.riscv_tier = Some(tier);
        self
    }

    /// Feeds the serial console from `input` (e.g. stdin) on a helper thread.
    #[must_use]
    pub fn serial_input(mut self, input: Box<dyn Read + Send>) -> Self {
        self.serial_in = Some(input);
        self
    }

    /// Builds the VM: memory, kernel, devices, vCPUs. Nothing runs yet.
    pub fn build(self) -> Result<Vmm, VmmError> {
        let started = Instant::now();
        self.config.validate()?;
        let config = &self.config;
        let _span =
            tracing::info_span!("build", arch = %config.arch, vcpus = config.vcpus).entered();

        // Files first: a wrong path is the most common mistake, report it at once.
        let restoring = self.restore.as_ref();
        if restoring.is_none() && config.restore.is_some() {
            return Err(SnapshotError::Mismatch(
                "the configuration names a snapshot to restore: build it with VmmBuilder::restore_from"
                    .into(),
            )
            .into());
        }
        let (kernel, kernel_name) = match &config.kernel {
            _ if restoring.is_some() => (
                Vec::new(),
                restoring.map_or_else(String::new, |(_, p)| {
                    format!("snapshot {}", p.state.display())
                }),
            ),
            Some(path) => (
                read_file("kernel", path, config.memory_bytes())?,
                path.display().to_string(),
            ),
            None => (
                guest::builtin(config.arch)?.to_vec(),
                "built-in guest".to_string(),
            ),
        };
        let initrd = config
            .initrd
            .as_deref()
            .filter(|_| restoring.is_none())
            .map(|p| read_file("initrd", p, config.memory_bytes()))
            .transpose()?;
        let (accel, engine_reason) = choose_engine(config.arch)?;
        if config.vcpus > accel.max_vcpus() {
            return Err(VmmError::TooManyVcpus {
                requested: config.vcpus,
                max: accel.max_vcpus(),
                accel: accel.kind().to_string(),
            });
        }

        let phase = Instant::now();
        let platform = platform::for_arch(config.arch);
        let map = platform.memory_map(&MachineSize {
            vcpus: config.vcpus,
            mem_size: config.memory_bytes(),
            virtio_devices: config.devices.len() as u32,
        })?;
        let memory = match restoring {
            Some((state, paths)) => restored_memory(&map, state, paths)?,
            None => map.create_guest_memory()?,
        };
        let vm = accel
            .create_vm(&vm_accel::VmOptions {
                vcpu_count: config.vcpus,
                ..Default::default()
            })
            .map_err(accel_err("creating the VM"))?;
        vm.map_memory(&memory)
            .map_err(accel_err("mapping guest memory"))?;
        tracing::info!(
            elapsed_us = phase.elapsed().as_micros() as u64,
            bytes = map.ram_size(),
            "guest memory set up"
        );

        let boot = if restoring.is_some() {
            None
        } else {
            let phase = Instant::now();
            let cmdline = linux_cmdline(accel.kind(), config)?;
            let boot = platform.boot(&memory, &map, &kernel, initrd.as_deref(), &cmdline)?;
            tracing::info!(elapsed_us = phase.elapsed().as_micros() as u64, kernel = %kernel_name, "kernel loaded");
            Some(boot)
        };

        let (reset, poweroff) = (
            Arc::new(CountingInterrupt::new()),
            Arc::new(CountingInterrupt::new()),
        );
        let serial_out = match self.serial_out {
            Some(out) => out,
            None => serial_writer(&config.serial)?,
        };
        let (pio, mut mmio, serial, rtc) = attach_devices(
            vm.as_ref(),
            &map,
            serial_out,
            restoring.and_then(|(s, _)| s.devices.serial.as_ref()),
            reset.clone(),
            poweroff.clone(),
        )?;
        let (pollers, transports) = attach_virtio(
            vm.as_ref(),
            &map,
            config,
            &memory,
            &mut mmio,
            &self.switches,
        )?;
        if let (Some(input), Some(serial)) = (self.serial_in, serial.clone()) {
            spawn_input_forwarder(serial, input)
                .map_err(|e| device_err("the serial console input", e))?;
        }

        let mut vcpus = match (&boot, restoring) {
            (Some(boot), _) => create_vcpus(vm.as_ref(), platform, &map, boot)?,
            (None, Some((state, _))) => {
                restore_devices(&transports, rtc.as_ref(), state)?;
                if let Some(saved) = &state.vm {
                    vm.restore_state(saved)
                        .map_err(|source| SnapshotError::Engine {
                            what: "restoring the VM's hypervisor state".into(),
                            source,
                        })?;
                }
                restore_vcpus(vm.as_ref(), &map, state)?
            }
            (None, None) => unreachable!("a VM is either booted or restored"),
        };
        if let Some(limit) = self.instruction_limit {
            for vcpu in &mut vcpus {
                let any: &mut dyn std::any::Any = vcpu.as_mut();
                let Some(hart) = any.downcast_mut::<RiscvVcpu>() else {
                    return Err(VmmError::InstructionLimit {
                        engine: accel.kind().to_string(),
                    });
                };
                hart.set_instruction_limit(limit);
            }
        }
        if let Some(tier) = self.riscv_tier {
            for vcpu in &mut vcpus {
                let any: &mut dyn std::any::Any = vcpu.as_mut();
                let Some(hart) = any.downcast_mut::<RiscvVcpu>() else {
                    return Err(VmmError::Tier {
                        engine: accel.kind().to_string(),
                    });
                };
                hart.hart_mut().set_tier(tier);
            }
        }
        tracing::info!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "VM built"
        );
        let info = VmmInfo {
            engine: accel.kind().to_string(),
            engine_reason,
            arch: config.arch,
            vcpus: config.vcpus,
            memory_bytes: map.ram_size(),
            kernel: kernel_name,
        };
        Ok(Vmm {
            config: self.config.clone(),
            serial,
            rtc,
            transports,
            vm,
            memory,
            vcpus,
            handler: Arc::new(DeviceExits::new(pio, mmio, reset, poweroff)),
            executor: self.executor,
            info,
            pollers,
            switches: self.switches,
            profile: None,
        })
    }
}

/// A built VM whose vCPUs have not started.
pub struct Vmm {
    config: VmConfig,
    serial: Option<SharedSerial>,
    rtc: Option<SharedRtc>,
    /// The virtio-mmio transports, in slot order.
    transports: Vec<SharedTransport>,
    vm: Arc<dyn Vm>,
    memory: GuestMemoryMmap,
    vcpus: Vec<Box<dyn vm_accel::Vcpu>>,
    handler: Arc<DeviceExits>,
    executor: ExecutorKind,
    info: VmmInfo,
    /// The threads doing device work off the vCPUs (stopped when dropped).
    pollers: Vec<Poller>,
    /// Keeps the switches (and their segment memberships) as long as the VM.
    switches: SwitchRegistry,
    /// Where guest PC samples go, when profiled.
    profile: Option<Arc<crate::profile::Profile>>,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Vmm {
    /// What was built.
    pub fn info(&self) -> &VmmInfo {
        &self.info
    }

    /// Guest memory (for embedders that inspect or seed it).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Profiles the guest once started (see [`crate::profile`]): interpreted
    /// harts then run `period` instructions per `run()` and are sampled
    /// after each; other engines are sampled at every exit. Returns the
    /// profile, complete once the VM has stopped.
    pub fn profile(&mut self, period: u64) -> Arc<crate::profile::Profile> {
        let mut interpreted = false;
        for vcpu in &mut self.vcpus {
            let any: &mut dyn std::any::Any = vcpu.as_mut();
            if let Some(hart) = any.downcast_mut::<vm_cross_arch::interp::riscv64::RiscvVcpu>() {
                hart.set_budget(period);
                interpreted = true;
            }
        }
        let profile = crate::profile::Profile::new(period, !interpreted);
        self.profile = Some(profile.clone());
        profile
    }

    /// Starts every vCPU on the configured executor.
    pub fn start(self) -> Result<RunningVmm, VmmError> {
        self.start_with(false)
    }

    /// Starts the vCPU threads with every vCPU parked before its first
    /// instruction (e.g. a restored VM that stays paused until resumed).
    pub fn start_paused(self) -> Result<RunningVmm, VmmError> {
        self.start_with(true)
    }

    fn start_with(self, paused: bool) -> Result<RunningVmm, VmmError> {
        let handler: Arc<dyn crate::executor::ExitHandler> = self.handler;
        let first_entry = Instant::now();
        let executor = MultiVcpuExecutor::start_with(
            self.executor,
            self.vcpus,
            &handler,
            self.profile.as_ref(),
            paused,
        )
        .map_err(|source| VmmError::Executor {
            kind: self.executor,
            source,
        })?;
        tracing::info!(
            elapsed_us = first_entry.elapsed().as_micros() as u64,
            "vCPUs entered"
        );
        let snapshotter = Snapshotter {
            control: executor.control(),
            vm: self.vm,
            memory: self.memory,
            info: self.info.clone(),
            config: self.config,
            serial: self.serial,
            rtc: self.rtc,
            transports: self.transports,
        };
        Ok(RunningVmm {
            executor,
            _pollers: self.pollers,
            _switches: self.switches,
            info: self.info,
            snapshotter,
        })
    }
}

/// A built VM taken apart for a caller that drives the vCPUs itself instead
/// of an executor (the gdb stub). `keep_alive` holds the VM, its memory and
/// device threads: drop it only after the vCPUs.
pub struct VmmParts {
    /// The vCPUs, in id order.
    pub vcpus: Vec<Box<dyn vm_accel::Vcpu>>,
    /// Where their exits go.
    pub handler: Arc<dyn crate::executor::ExitHandler>,
    /// What was built.
    pub info: VmmInfo,
    /// Everything the vCPUs need to outlive.
    pub keep_alive: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for VmmParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmmParts")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Vmm {
    /// Takes the VM apart (see [`VmmParts`]).
    pub fn into_parts(self) -> VmmParts {
        VmmParts {
            vcpus: self.vcpus,
            handler: self.handler,
            info: self.info,
            keep_alive: Box::new((self.pollers, self.switches, self.vm, self.memory)),
        }
    }
}

/// A VM whose vCPUs are running.
#[derive(Debug)]
pub struct RunningVmm {
    executor: MultiVcpuExecutor,
    _pollers: Vec<Poller>,
    _switches: SwitchRegistry,
    info: VmmInfo,
    // Holds the VM and its memory, which must outlive the vCPUs the executor
    // owns.
    snapshotter: Snapshotter,
}

/// Takes snapshots of one running VM; cloneable, usable from any thread
/// (the REST API's and the CLI's snapshot requests go through it).
#[derive(Clone)]
pub struct Snapshotter {
    control: ExecutorControl,
    vm: Arc<dyn Vm>,
    memory: GuestMemoryMmap,
    info: VmmInfo,
    config: VmConfig,
    serial: Option<SharedSerial>,
    rtc: Option<SharedRtc>,
    transports: Vec<SharedTransport>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Snapshotter {
    /// The configuration with each NIC's MAC made explicit: a NIC without
    /// one got a generated MAC, which the restored NIC must keep (the guest
    /// and its peers know it).
    fn config_with_macs(
        &self,
        transports: &[std::sync::MutexGuard<'_, MmioTransport>],
    ) -> VmConfig {
        let mut config = self.config.clone();
        // The snapshot is the VM's source from now on, not the one it came from.
        config.restore = None;
        let mut macs = Vec::new();
        for (device, transport) in block::slot_order(&self.config.devices)
            .into_iter()
            .zip(transports)
        {
            if let DeviceConfig::Net(net) = device {
                if net.mac.is_none() {
                    let mut mac = [0u8; 6];
                    transport.device().read_config(0, &mut mac);
                    macs.push((net.id.clone(), mac));
                }
            }
        }
        for device in &mut config.devices {
            if let DeviceConfig::Net(net) = device {
                if let Some((_, mac)) = macs.iter().find(|(id, _)| *id == net.id) {
                    net.mac = Some(vm_core::config::MacAddr(*mac));
                }
            }
        }
        config
    }

    /// Writes a snapshot of this paused VM to `dir` (created if missing):
    /// `state.snap` and `memory.snap`. The VM stays paused; resume or stop it
    /// afterwards. Fails with [`SnapshotError::NotPaused`] unless every vCPU is
    /// parked by [`ExecutorControl::pause`], and with
    /// [`SnapshotError::UnsupportedEngine`] for an engine without state
    /// capture; no file is written then.
    pub fn snapshot(&self, dir: &Path) -> Result<SnapshotPaths, SnapshotError> {
        std::fs::create_dir_all(dir).map_err(|source| SnapshotError::Io {
            what: "snapshot directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let paths = SnapshotPaths::in_dir(dir);
        self.snapshot_to(&paths)?;
        Ok(paths)
    }

    /// [`RunningVmm::snapshot`] with the two files named separately.
    pub fn snapshot_to(&self, paths: &SnapshotPaths) -> Result<(), SnapshotError> {
        let started = Instant::now();
        let control = &self.control;
        let state = control.state();
        if state != crate::executor::RunState::Paused {
            return Err(SnapshotError::NotPaused {
                state: format!("{state:?}").to_lowercase(),
            });
        }
        let captured = control
            .with_parked_vcpus(snapshot::capture_vcpu)
            .map_err(|e| SnapshotError::NotPaused {
                state: e.to_string(),
            })?;
        let mut vcpus = Vec::with_capacity(captured.len());
        let mut riscv = None;
        for c in captured {
            let (vcpu, machine) = c.map_err(|e| match e {
                SnapshotError::UnsupportedEngine { .. } => SnapshotError::UnsupportedEngine {
                    engine: self.info.engine.clone(),
                },
                other => other,
            })?;
            vcpus.push(vcpu);
            riscv = riscv.or(machine);
        }
        // Every vCPU is parked: the hypervisor's VM state holds still.
        let vm = match self.vm.save_state() {
            Ok(s) => Some(s),
            Err(AccelError::StateUnsupported { .. }) => None,
            Err(source) => {
                return Err(SnapshotError::Engine {
                    what: "saving the VM's hypervisor state".into(),
                    source,
                })
            }
        };
        // Device threads wait on these locks until memory is written.
        let serial = SnapshotSerial(
            self.serial
                .as_ref()
                .map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        );
        let rtc = self
            .rtc
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let transports: Vec<_> = self
            .transports
            .iter()
            .map(|t| t.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .collect();
        let regions: Vec<(u64, u64)> = {
            use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
            self.memory
                .iter()
                .map(|r| (r.start_addr().0, r.len()))
                .collect()
        };
        let (offsets, memory_file_len) =
            snapshot::format::region_offsets(&regions.iter().map(|r| r.1).collect::<Vec<_>>());
        let vm_state = VmState {
            config: self.config_with_macs(&transports),
            memory: regions
                .iter()
                .zip(&offsets)
                .map(|(&(base, size), &offset)| snapshot::MemoryRegionState { base, size, offset })
                .collect(),
            memory_file_len,
            vcpus,
            vm,
            devices: snapshot::DevicesState {
                serial: serial.0.as_ref().map(|s| s.state()),
                rtc: rtc.as_ref().map(|r| r.state()),
                riscv,
                virtio: transports.iter().map(|t| t.state()).collect(),
                disks: snapshot::disk_states(&self.config, transports.iter().map(|t| &**t)),
            },
        };
        let bytes = vm_state.to_file_bytes()?;
        snapshot::format::write_atomically("memory file", &paths.memory, |file| {
            use std::io::{Seek, SeekFrom};
            use vm_memory::GuestMemoryBackend;
            for (region, &offset) in self.memory.iter().zip(&offsets) {
                file.seek(SeekFrom::Start(offset))?;
                write_region(region, file)?;
            }
            file.set_len(memory_file_len)
        })?;
        snapshot::format::write_atomically("state file", &paths.state, |file| {
            file.write_all(&bytes)
        })?;
        drop(transports);
        drop(rtc);
        drop(serial);
        tracing::info!(
            elapsed_us = started.elapsed().as_micros() as u64,
            memory_bytes = memory_file_len,
            state_bytes = bytes.len(),
            dir = %paths.state.display(),
            "snapshot written"
        );
        Ok(())
    }
}

/// Locks every device while a snapshot is taken, so device threads cannot
/// change device state or guest memory under it.
struct SnapshotSerial<'a>(Option<std::sync::MutexGuard<'a, Serial>>);

impl RunningVmm {
    /// Pause/resume/stop from any thread; per-vCPU exit counts.
    pub fn control(&self) -> ExecutorControl {
        self.executor.control()
    }

    /// What was built.
    pub fn info(&self) -> &VmmInfo {
        &self.info
    }

    /// Writes a snapshot of this paused VM to `dir` (see [`Snapshotter::snapshot`]).
    pub fn snapshot(&self, dir: &Path) -> Result<SnapshotPaths, SnapshotError> {
        self.snapshotter.snapshot(dir)
    }

    /// A handle that takes snapshots of this VM from any thread.
    pub fn snapshotter(&self) -> Snapshotter {
        self.snapshotter.clone()
    }

    /// Waits until the VM stops and says why.
    pub fn wait(self) -> StopReason {
        self.executor.wait()
    }
}

/// The kernel command line: for a Linux kernel, `root=/dev/vda` when a drive
/// is the root device, and the host profile's additions when an x86_64 kernel
/// boots on an accelerator that has a profile for this host.
pub(crate) fn linux_cmdline(accel: AcceleratorKind, config: &VmConfig) -> Result<String, VmmError> {
    if config.kernel.is_none() {
        return Ok(config.cmdline.clone());
    }
    let cmdline = block::with_root_param(&config.cmdline, &config.devices);
    if config.arch != GuestArch::X86_64 {
        return Ok(cmdline);
    }
    match vm_accel::HostProfile::select(accel) {
        Ok(Some(profile)) => {
            tracing::info!(profile = %profile.name, additions = %profile.linux_cmdline, "host profile");
            Ok(profile.extend_linux_cmdline(&cmdline))
        }
        Ok(None) => {
            tracing::info!(accelerator = %accel, "host profile: none");
            Ok(cmdline)
        }
        Err(e) => Err(VmmError::Accel {
            step: "choosing the host profile",
            source: AccelError::InvalidConfig {
                reason: e.to_string(),
            },
        }),
    }
}

/// Opens a kernel or initrd: once, without blocking (a FIFO must not hang
/// the caller), and checks the opened file itself, so a path swapped after a
/// check cannot slip a device or FIFO in. The file must be regular and at
/// most `limit` bytes (what guest memory can hold); returns it and its size.
pub(crate) fn open_boot_file(path: &Path, limit: u64) -> std::io::Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    // What visibly is no file is refused unopened (opening a device can act).
    check_boot_file(&std::fs::metadata(path)?, limit)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    check_boot_file(&meta, limit)?;
    Ok((file, meta.len()))
}

fn check_boot_file(meta: &std::fs::Metadata, limit: u64) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("not a regular file ({kind})"),
        ));
    }
    if meta.len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} bytes, more than the {limit} bytes of guest memory",
                meta.len()
            ),
        ));
    }
    Ok(())
}

/// Reads a kernel or initrd of at most `limit` bytes (see [`open_boot_file`]).
fn read_file(what: &'static str, path: &Path, limit: u64) -> Result<Vec<u8>, VmmError> {
    let err = |source| VmmError::ReadFile {
        what,
        path: path.display().to_string(),
        source,
    };
    let (file, len) = open_boot_file(path, limit).map_err(err)?;
    // The size may change after fstat: read at most `limit` + 1 bytes to tell.
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(err)?;
    if data.len() as u64 > limit {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("grew past the {limit} bytes of guest memory while being read"),
        )));
    }
    Ok(data)
}

/// Picks the accelerator for `arch`, or says why none fits.
fn choose_engine(arch: GuestArch) -> Result<(Arc<dyn Accelerator>, String), VmmError> {
    let host = std::env::consts::ARCH;
    if GuestArch::host() != Some(arch) {
        // A guest of another architecture runs on the software engine, if there is one for it.
        if arch == GuestArch::Riscv64 {
            return Ok((
                Arc::new(vm_cross_arch::interp::riscv64::SoftwareAccelerator),
                format!("the riscv64 interpreter runs {arch} guests on this {host} host"),
            ));
        }
        return Err(VmmError::NoEngine {
            arch,
            host,
            reason: "hardware acceleration needs the guest and host architectures to match, \
                     and there is no software engine for this architecture yet"
                .into(),
        });
    }
    match vm_accel::detect() {
        Ok(found) => {
            let mut reason = format!(
                "{} runs {arch} guests on this host",
                found.accelerator.kind()
            );
            for skipped in &found.unavailable {
                reason.push_str("; ");
                reason.push_str(&skipped.to_string());
            }
            Ok((found.accelerator, reason))
        }
        Err(e) => Err(VmmError::NoEngine {
            arch,
            host,
            reason: e.to_string(),
        }),
    }
}

fn serial_writer(mode: &SerialMode) -> Result<Box<dyn Write + Send>, VmmError> {
    Ok(match mode {
        SerialMode::Off => Box::new(std::io::sink()),
        SerialMode::Stdout => Box::new(std::io::stdout()),
        SerialMode::Capture => Box::new(CaptureBuffer::new()),
        SerialMode::File { path } => {
            Box::new(
                std::fs::File::create(path).map_err(|source| VmmError::ReadFile {
                    what: "serial output file",
                    path: path.display().to_string(),
                    source,
                })?,
            )
        }
    })
}

/// An interrupt line wired to the VM: an irqfd where the backend has one.
fn irq(vm: &dyn Vm, line: u32) -> Result<Arc<dyn Interrupt>, VmmError> {
    let notifier =
        vm_accel::EventNotifier::new().map_err(|e| device_err(&format!("irq {line}"), e))?;
    vm.register_irqfd(&notifier, IrqLine(line))
        .map_err(accel_err("registering an irqfd"))?;
    Ok(Arc::new(CallbackInterrupt::new(move || notifier.notify())))
}

type SharedSerial = Arc<Mutex<Serial>>;
type SharedTransport = Arc<Mutex<MmioTransport>>;
type SharedRtc = Arc<Mutex<vm_device::legacy::CmosRtc>>;

fn new_serial(
    line: u32,
    vm: &dyn Vm,
    out: Box<dyn Write + Send>,
    state: Option<&vm_device::legacy::serial::SerialState>,
) -> Result<SharedSerial, VmmError> {
    let irq = irq(vm, line)?;
    let serial = match state {
        Some(state) => {
            Serial::from_state(state, irq, out).map_err(|source| SnapshotError::State {
                what: "the serial port".into(),
                source,
            })?
        }
        None => Serial::new(irq, out),
    };
    Ok(Arc::new(Mutex::new(serial)))
}

fn attach_devices(
    vm: &dyn Vm,
    map: &MemoryMap,
    serial_out: Box<dyn Write + Send>,
    serial_state: Option<&vm_device::legacy::serial::SerialState>,
    reset: Arc<CountingInterrupt>,
    poweroff: Arc<CountingInterrupt>,
) -> Result<(Bus, Bus, Option<SharedSerial>, Option<SharedRtc>), VmmError> {
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let bus_err = |device: &'static str| move |e: BusError| device_err(device, e);
    let serial = match map.serial {
        SerialPort::Pio {
            base,
            len,
            irq: line,
        } => {
            let serial = new_serial(line.0, vm, serial_out, serial_state)?;
            pio.insert(serial.clone(), u64::from(base), u64::from(len))
                .map_err(bus_err("serial"))?;
            Some(serial)
        }
        SerialPort::Mmio(slot) => {
            let serial = new_serial(slot.irq.0, vm, serial_out, serial_state)?;
            mmio.insert(serial.clone(), slot.mmio.start.0, slot.mmio.size)
                .map_err(bus_err("serial"))?;
            Some(serial)
        }
    };
    let rtc = if map.arch == GuestArch::X86_64 {
        Some(
            vm_device::legacy::insert_pc_devices(&mut pio, reset, poweroff)
                .map_err(bus_err("the PC platform devices"))?,
        )
    } else {
        None
    };
    Ok((pio, mmio, serial, rtc))
}

/// Puts every virtio device on its slot (see [`block::slot_order`]) and starts
/// the threads that work for them off the vCPUs: `net-rx` for the NICs,
/// `blk-io` for the drives.
fn attach_virtio(
    vm: &dyn Vm,
    map: &MemoryMap,
    config: &VmConfig,
    memory: &GuestMemoryMmap,
    mmio: &mut Bus,
    switches: &SwitchRegistry,
) -> Result<(Vec<Poller>, Vec<SharedTransport>), VmmError> {
    let mut transports = Vec::new();
    let mut nics = Vec::new();
    let mut drives = Vec::new();
    for (device, slot) in block::slot_order(&config.devices)
        .into_iter()
        .zip(&map.virtio)
    {
        let interrupt = irq(vm, slot.irq.0)?;
        let (name, attached) = match device {
            DeviceConfig::Net(net_config) => (
                format!("virtio-net {:?}", net_config.id),
                net::attach(net_config, memory.clone(), interrupt, switches),
            ),
            DeviceConfig::Block(drive) => (
                format!(
                    "drive {:?} ({})",
                    drive.drive_id,
                    drive.path_on_host.display()
                ),
                block::attach(drive, memory.clone(), interrupt),
            ),
        };
        let attached = attached.map_err(|source| VmmError::Device {
            device: name.clone(),
            source,
        })?;
        mmio.insert(
            attached.transport.clone(),
            slot.mmio.start.0,
            slot.mmio.size,
        )
        .map_err(|e| device_err(&name, e))?;
        transports.push(attached.transport.clone());
        match device {
            DeviceConfig::Net(_) => nics.push(attached),
            DeviceConfig::Block(_) => drives.push(attached),
        }
    }
    let mut pollers = Vec::new();
    for (thread, devices, what) in [
        ("net-rx", nics, "the network receive thread"),
        ("blk-io", drives, "the block I/O thread"),
    ] {
        pollers.extend(poller::spawn(thread, devices).map_err(|e| device_err(what, e))?);
    }
    Ok((pollers, transports))
}

/// Writes one RAM region's bytes to `file` at its current position.
fn write_region(
    region: &vm_memory::GuestRegionMmap,
    file: &mut std::fs::File,
) -> std::io::Result<()> {
    use vm_memory::{Bytes, GuestMemoryRegion, MemoryRegionAddress};
    let len = usize::try_from(region.len()).map_err(std::io::Error::other)?;
    region
        .write_all_volatile_to(MemoryRegionAddress(0), file, len)
        .map_err(std::io::Error::other)
}

/// Guest memory for a restored VM: the memory file mapped `MAP_PRIVATE`, so
/// pages load lazily on first touch and guest writes never reach the file.
/// The regions must be the ones the platform lays out for the snapshot's
/// configuration, and the file exactly their size.
fn restored_memory(
    map: &MemoryMap,
    state: &VmState,
    paths: &SnapshotPaths,
) -> Result<GuestMemoryMmap, VmmError> {
    use vm_memory::mmap::MmapRegionBuilder;
    use vm_memory::{FileOffset, GuestRegionMmap};
    let layout: Vec<(u64, u64)> = map.ram.iter().map(|r| (r.start.0, r.size)).collect();
    let saved: Vec<(u64, u64)> = state.memory.iter().map(|r| (r.base, r.size)).collect();
    if layout != saved {
        return Err(SnapshotError::Mismatch(format!(
            "the snapshot's RAM regions {saved:x?} are not this platform's layout {layout:x?}"
        ))
        .into());
    }
    let io = |source| SnapshotError::Io {
        what: "memory file",
        path: paths.memory.clone(),
        source,
    };
    let file = std::fs::File::open(&paths.memory).map_err(io)?;
    snapshot::format::check_memory_file(&paths.memory, &file, state.memory_file_len)?;
    let file = Arc::new(file);
    let mut regions = Vec::with_capacity(state.memory.len());
    for r in &state.memory {
        let size = usize::try_from(r.size).map_err(|e| io(std::io::Error::other(e)))?;
        let mapping = MmapRegionBuilder::new(size)
            .with_file_offset(FileOffset::from_arc(file.clone(), r.offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| io(std::io::Error::other(e)))?;
        let region =
            GuestRegionMmap::new(mapping, vm_memory::GuestAddress(r.base)).ok_or_else(|| {
                SnapshotError::Mismatch(format!("RAM region at {:#x} overflows", r.base))
            })?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions)
        .map_err(|e| SnapshotError::Mismatch(format!("RAM regions: {e}")).into())
}

/// Restores the RTC and every virtio transport's state (in slot order) and
/// gives each virtio device one poll, so work the guest queued before the
/// snapshot is picked up.
fn restore_devices(
    transports: &[SharedTransport],
    rtc: Option<&SharedRtc>,
    state: &VmState,
) -> Result<(), VmmError> {
    match (rtc, &state.devices.rtc) {
        (Some(rtc), Some(s)) => rtc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .restore(s)
            .map_err(|source| SnapshotError::State {
                what: "the CMOS RTC".into(),
                source,
            })?,
        (None, None) => {}
        (have, _) => {
            return Err(SnapshotError::Mismatch(format!(
                "the VM {} a CMOS RTC, the snapshot {}",
                if have.is_some() { "has" } else { "has no" },
                if have.is_some() {
                    "has none"
                } else {
                    "has one"
                },
            ))
            .into())
        }
    }
    let locked: Vec<_> = transports
        .iter()
        .map(|t| t.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
        .collect();
    snapshot::check_disks(
        &state.devices.disks,
        &state.config,
        locked.iter().map(|t| &**t),
    )?;
    drop(locked);
    for (i, (t, s)) in transports.iter().zip(&state.devices.virtio).enumerate() {
        let mut t = t.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.restore(s).map_err(|source| SnapshotError::State {
            what: format!("virtio device {i}"),
            source,
        })?;
        t.poll();
    }
    Ok(())
}

/// Creates the vCPUs of a restored VM and gives each its saved state.
fn restore_vcpus(
    vm: &dyn Vm,
    map: &MemoryMap,
    state: &VmState,
) -> Result<Vec<Box<dyn vm_accel::Vcpu>>, VmmError> {
    let mut vcpus = Vec::with_capacity(map.vcpus as usize);
    for (index, saved) in (0..map.vcpus).zip(&state.vcpus) {
        let mut vcpu = vm
            .create_vcpu(VcpuId(index))
            .map_err(accel_err("creating a vCPU"))?;
        let machine = state.devices.riscv.as_ref().filter(|_| index == 0);
        snapshot::restore_vcpu(vcpu.as_mut(), saved, machine)?;
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

fn create_vcpus(
    vm: &dyn Vm,
    platform: &dyn platform::PlatformTraits,
    map: &MemoryMap,
    boot: &BootInfo,
) -> Result<Vec<Box<dyn vm_accel::Vcpu>>, VmmError> {
    let mut vcpus = Vec::with_capacity(map.vcpus as usize);
    for index in 0..map.vcpus {
        let mut vcpu = vm
            .create_vcpu(VcpuId(index))
            .map_err(accel_err("creating a vCPU"))?;
        let state = platform.vcpu_start(map, boot, index)?;
        vcpu.apply_boot_state(&state)
            .map_err(accel_err("setting the boot state"))?;
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}
