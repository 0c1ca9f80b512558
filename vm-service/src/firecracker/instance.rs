//! The one microVM of a Firecracker-mode process: its resources as the API
//! configured them, and its lifecycle (`Not started` -> `Running` <->
//! `Paused`; when the guest stops, the process ends).
//!
//! `InstanceStart` turns the resources ([`Resources`]) into a
//! [`vm_core::config::VmConfig`] and builds the VM
//! with [`VmmBuilder`], the same path `vm-service run` takes; the serial
//! console goes to stdout. Pre-boot resources are refused once the VM has
//! started, and post-boot operations before, as Firecracker does.

use std::path::Path;

use super::logger::{LogControl, LoggerError};
use super::metrics::{CountingWriter, FcMetrics, MetricsError};
use super::model::{
    BootSource, Drive, DrivePatch, FullVmConfig, InstanceInfo, Logger, MachineConfig,
    MachineConfigPatch, Metrics, NetworkInterface, NetworkInterfacePatch, Unsupported,
};
use super::resources::Resources;
use super::snapshot::{SnapshotCreateParams, SnapshotLoadParams};
use crate::daemon::error_chain;
use crate::executor::{ExecutorControl, RunState};
use crate::{ExecutorKind, Snapshotter, StopReason, VmmBuilder};

/// The Firecracker API version whose paths and bodies this mode follows.
pub const FIRECRACKER_API_VERSION: &str = "1.7.0";
/// `app_name` in `GET /`.
pub const APP_NAME: &str = "Firecracker";

/// Why a request on the microVM failed; every variant is a 400 with this text.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// A value this VMM does not implement.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// A pre-boot resource after `InstanceStart`.
    #[error("the requested operation is not supported after starting the microVM: {what} is pre-boot only")]
    AfterStart {
        /// What was asked.
        what: &'static str,
    },
    /// A post-boot operation before `InstanceStart`.
    #[error("the requested operation is not supported before starting the microVM: {what} needs a started microVM")]
    BeforeStart {
        /// What was asked.
        what: &'static str,
    },
    /// `InstanceStart` without `PUT /boot-source`.
    #[error("cannot start the microVM without a kernel: PUT /boot-source first")]
    NoBootSource,
    /// A value failed validation.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, with Firecracker's names.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The path id and the body id differ.
    #[error("the {what} in the path ({path:?}) does not match the one in the body ({body:?})")]
    IdMismatch {
        /// `drive_id` or `iface_id`.
        what: &'static str,
        /// The path's id.
        path: String,
        /// The body's id.
        body: String,
    },
    /// A device that was never configured.
    #[error("no {what} with id {id:?} is configured")]
    NotFound {
        /// `drive` or `network interface`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The VM could not be built or started.
    #[error("starting the microVM failed: {0}")]
    Start(String),
    /// A snapshot could not be created or loaded.
    #[error("{0}")]
    Snapshot(String),
    /// `PUT /snapshot/load` after other resources were configured.
    #[error("loading a snapshot is only allowed on a fresh microVM: no boot source, machine config, drive or network interface may be configured first")]
    LoadNotFresh,
    /// Pause or resume on a VM that has stopped.
    #[error("the microVM has stopped: {0}")]
    Stopped(String),
    /// Metrics could not be configured or flushed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The logger could not be configured.
    #[error(transparent)]
    Logger(#[from] LoggerError),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InstanceError {
    InstanceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Called once, from a helper thread, when the started VM stops.
pub type OnStop = Box<dyn FnOnce(StopReason) + Send>;

enum Phase {
    NotStarted,
    Started(ExecutorControl, Box<Snapshotter>),
}

/// The microVM and its resources.
pub struct Instance {
    id: String,
    res: Resources,
    logger: Option<Logger>,
    phase: Phase,
    metrics: FcMetrics,
    log: Option<LogControl>,
    on_stop: Option<OnStop>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("state", &self.state_name())
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// A microVM named `id` with default machine config; `on_stop` hears how
    /// it ended once it has started and stopped.
    pub fn new(id: &str, metrics: FcMetrics, log: Option<LogControl>, on_stop: OnStop) -> Self {
        Self {
            id: id.to_string(),
            res: Resources::default(),
            logger: None,
            phase: Phase::NotStarted,
            metrics,
            log,
            on_stop: Some(on_stop),
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &FcMetrics {
        &self.metrics
    }

    fn started(&self) -> bool {
        matches!(self.phase, Phase::Started(..))
    }

    fn pre_boot(&self, what: &'static str) -> Result<(), InstanceError> {
        if self.started() {
            Err(InstanceError::AfterStart { what })
        } else {
            Ok(())
        }
    }

    fn control(&self, what: &'static str) -> Result<&ExecutorControl, InstanceError> {
        match &self.phase {
            Phase::Started(c, _) => Ok(c),
            Phase::NotStarted => Err(InstanceError::BeforeStart { what }),
        }
    }

    fn state_name(&self) -> &'static str {
        match &self.phase {
            Phase::NotStarted => "Not started",
            Phase::Started(c, _) => match c.state() {
                RunState::Paused => "Paused",
                _ => "Running",
            },
        }
    }

    /// `GET /`.
    pub fn info(&self) -> InstanceInfo {
        InstanceInfo {
            id: self.id.clone(),
            state: self.state_name().to_string(),
            vmm_version: FIRECRACKER_API_VERSION.to_string(),
            app_name: APP_NAME.to_string(),
        }
    }

    /// `GET /machine-config`.
    pub fn machine_config(&self) -> MachineConfig {
        self.res.machine.clone()
    }

    /// `GET /vm/config`.
    pub fn full_config(&self) -> FullVmConfig {
        FullVmConfig {
            boot_source: self.res.boot_source.clone(),
            machine_config: self.res.machine.clone(),
            drives: self.res.drives.clone(),
            network_interfaces: self.res.nets.clone(),
            logger: self.logger.clone(),
            metrics: self
                .metrics
                .path()
                .map(|metrics_path| Metrics { metrics_path }),
            balloon: None,
            vsock: None,
            mmds_config: None,
            entropy: None,
        }
    }

    /// Applies `change` to a copy of the resources, validates the result and
    /// keeps it only if it is valid.
    fn update(&mut self, change: impl FnOnce(&mut Resources)) -> Result<(), InstanceError> {
        let saved = self.res.clone();
        change(&mut self.res);
        if let Err(e) = self.res.vm_config(false) {
            self.res = saved;
            return Err(e);
        }
        Ok(())
    }

    /// `PUT /boot-source`.
    pub fn put_boot_source(&mut self, boot: BootSource) -> Result<(), InstanceError> {
        self.pre_boot("boot-source")?;
        check_file("boot-source.kernel_image_path", &boot.kernel_image_path)?;
        if let Some(initrd) = &boot.initrd_path {
            check_file("boot-source.initrd_path", initrd)?;
        }
        self.update(|s| s.boot_source = Some(boot))
    }

    /// `PUT /machine-config`.
    pub fn put_machine_config(&mut self, config: MachineConfig) -> Result<(), InstanceError> {
        self.pre_boot("machine-config")?;
        config.check()?;
        self.update(|s| s.machine = config)
    }

    /// `PATCH /machine-config`.
    pub fn patch_machine_config(
        &mut self,
        patch: &MachineConfigPatch,
    ) -> Result<(), InstanceError> {
        self.pre_boot("machine-config")?;
        let config = self.res.machine.patched(patch);
        config.check()?;
        self.update(|s| s.machine = config)
    }

    /// `PUT /drives/{drive_id}`: adds the drive, or replaces the one with its id.
    pub fn put_drive(&mut self, path_id: &str, drive: Drive) -> Result<(), InstanceError> {
        self.pre_boot("PUT /drives")?;
        same_id("drive_id", path_id, &drive.drive_id)?;
        drive.check()?;
        if let Some(path) = &drive.path_on_host {
            check_file(&format!("drives[{path_id}].path_on_host"), path)?;
        }
        if drive.is_root_device {
            if let Some(other) = self
                .res
                .drives
                .iter()
                .find(|d| d.is_root_device && d.drive_id != drive.drive_id)
            {
                return Err(invalid(
                    format!("drives[{path_id}].is_root_device"),
                    format!("drive {:?} is already the root device", other.drive_id),
                ));
            }
        }
        self.update(
            |s| match s.drives.iter_mut().find(|d| d.drive_id == drive.drive_id) {
                Some(existing) => *existing = drive,
                None => s.drives.push(drive),
            },
        )
    }

    /// `PATCH /drives/{drive_id}`: post-boot only, as in Firecracker. A
    /// running drive cannot be given a new backing file or limiter here.
    pub fn patch_drive(&mut self, path_id: &str, patch: &DrivePatch) -> Result<(), InstanceError> {
        self.control("PATCH /drives")?;
        same_id("drive_id", path_id, &patch.drive_id)?;
        if !self.res.drives.iter().any(|d| d.drive_id == patch.drive_id) {
            return Err(InstanceError::NotFound {
                what: "drive",
                id: patch.drive_id.clone(),
            });
        }
        if patch.path_on_host.is_some() || patch.rate_limiter.is_some() {
            return Err(Unsupported(format!(
                "drives[{path_id}]: changing a running drive's backing file or rate limiter is not supported"
            ))
            .into());
        }
        Ok(())
    }

    /// `PUT /network-interfaces/{iface_id}`: adds the interface, or replaces the one with its id.
    pub fn put_net(&mut self, path_id: &str, nic: NetworkInterface) -> Result<(), InstanceError> {
        self.pre_boot("PUT /network-interfaces")?;
        same_id("iface_id", path_id, &nic.iface_id)?;
        nic.check()?;
        self.update(
            |s| match s.nets.iter_mut().find(|n| n.iface_id == nic.iface_id) {
                Some(existing) => *existing = nic,
                None => s.nets.push(nic),
            },
        )
    }

    /// `PATCH /network-interfaces/{iface_id}`: post-boot only; only an empty
    /// rate-limiter update is accepted (there are no rate limiters).
    pub fn patch_net(
        &mut self,
        path_id: &str,
        patch: &NetworkInterfacePatch,
    ) -> Result<(), InstanceError> {
        self.control("PATCH /network-interfaces")?;
        same_id("iface_id", path_id, &patch.iface_id)?;
        if !self.res.nets.iter().any(|n| n.iface_id == patch.iface_id) {
            return Err(InstanceError::NotFound {
                what: "network interface",
                id: patch.iface_id.clone(),
            });
        }
        if !patch.is_noop() {
            return Err(Unsupported(format!(
                "network-interfaces[{path_id}]: rate limiters are not supported"
            ))
            .into());
        }
        Ok(())
    }

    /// `PUT /logger`.
    pub fn put_logger(&mut self, logger: Logger) -> Result<(), InstanceError> {
        self.pre_boot("logger")?;
        if let Some(log) = &self.log {
            log.apply(&logger)?;
        } else {
            super::logger::parse_level(logger.level.as_deref().unwrap_or("Warning"))?;
        }
        self.logger = Some(logger);
        Ok(())
    }

    /// `PUT /metrics`.
    pub fn put_metrics(&mut self, metrics: &Metrics) -> Result<(), InstanceError> {
        self.pre_boot("metrics")?;
        self.metrics.configure(&metrics.metrics_path)?;
        Ok(())
    }

    /// `FlushMetrics`.
    pub fn flush_metrics(&self) -> Result<(), InstanceError> {
        Ok(self.metrics.flush()?)
    }

    /// `InstanceStart`: builds the VM and starts its vCPUs.
    pub fn start(&mut self) -> Result<(), InstanceError> {
        self.pre_boot("InstanceStart")?;
        let config = self.res.vm_config(true)?;
        tracing::info!(id = %self.id, arch = %config.arch, vcpus = config.vcpus, memory_mib = config.memory_mib, "starting the microVM");
        self.launch(VmmBuilder::new(config), false)
    }

    /// `PUT /snapshot/create`: the microVM must be paused (400 otherwise, as
    /// in Firecracker); it stays paused.
    pub fn snapshot_create(&self, params: &SnapshotCreateParams) -> Result<(), InstanceError> {
        let Phase::Started(_, snapshotter) = &self.phase else {
            return Err(InstanceError::BeforeStart {
                what: "PUT /snapshot/create",
            });
        };
        let paths = params.paths()?;
        snapshotter
            .snapshot_to(&paths)
            .map_err(|e| InstanceError::Snapshot(error_chain(&e)))
    }

    /// `PUT /snapshot/load`: only on a fresh microVM; builds the VM from the
    /// snapshot and leaves it paused unless `resume_vm`.
    pub fn snapshot_load(&mut self, params: &SnapshotLoadParams) -> Result<(), InstanceError> {
        self.pre_boot("PUT /snapshot/load")?;
        if self.res != Resources::default() {
            return Err(InstanceError::LoadNotFresh);
        }
        let paths = params.paths()?;
        let builder = VmmBuilder::restore_from(paths)
            .map_err(|e| InstanceError::Snapshot(error_chain(&e)))?;
        let config = builder.config();
        self.res.machine.vcpu_count = config.vcpus;
        self.res.machine.mem_size_mib = config.memory_mib;
        tracing::info!(id = %self.id, arch = %config.arch, vcpus = config.vcpus, resume = params.resume_vm, "loading the microVM from a snapshot");
        let launched = self.launch(builder, !params.resume_vm);
        if launched.is_err() {
            self.res = Resources::default();
        }
        launched
    }

    /// Builds the VM and starts its vCPUs (parked before their first
    /// instruction when `paused`).
    fn launch(&mut self, builder: VmmBuilder, paused: bool) -> Result<(), InstanceError> {
        let console = CountingWriter::new(std::io::stdout(), self.metrics.serial_bytes());
        let vmm = builder
            .executor(ExecutorKind::Sync)
            .serial_output(Box::new(console))
            .serial_input(Box::new(std::io::stdin()))
            .build()
            .map_err(|e| InstanceError::Start(error_chain(&e)))?;
        let info = vmm.info().clone();
        let running = if paused {
            vmm.start_paused()
        } else {
            vmm.start()
        }
        .map_err(|e| InstanceError::Start(error_chain(&e)))?;
        let control = running.control();
        let snapshotter = running.snapshotter();
        if paused {
            // Returns once every vCPU has parked, before any guest instruction.
            control
                .pause()
                .map_err(|e| InstanceError::Stopped(e.to_string()))?;
        }
        self.metrics.watch_vcpus(control.clone());
        let on_stop = self.on_stop.take();
        std::thread::Builder::new()
            .name("vm-wait".into())
            .spawn(move || {
                let reason = running.wait();
                if let Some(f) = on_stop {
                    f(reason);
                }
            })
            .map_err(|e| InstanceError::Start(format!("cannot start the wait thread: {e}")))?;
        tracing::info!(id = %self.id, engine = %info.engine, reason = %info.engine_reason, "microVM started");
        self.phase = Phase::Started(control, Box::new(snapshotter));
        Ok(())
    }

    /// `PATCH /vm {"state": "Paused"}`: returns once every vCPU is parked.
    pub fn pause(&self) -> Result<(), InstanceError> {
        self.control("PATCH /vm")?
            .pause()
            .map_err(|e| InstanceError::Stopped(e.to_string()))
    }

    /// `PATCH /vm {"state": "Resumed"}`.
    pub fn resume(&self) -> Result<(), InstanceError> {
        self.control("PATCH /vm")?
            .resume()
            .map_err(|e| InstanceError::Stopped(e.to_string()))
    }

    /// `SendCtrlAltDel`: stops the VM (the process then ends), as the
    /// guest's reset would have (see the daemon's notes on Ctrl-Alt-Del).
    pub fn ctrl_alt_del(&self) -> Result<(), InstanceError> {
        self.control("SendCtrlAltDel")?.stop();
        Ok(())
    }
}

/// A file the VM will read must exist and be a regular file (checked at
/// `PUT` time, as Firecracker does, so the mistake is reported early).
fn check_file(field: &str, path: &Path) -> Result<(), InstanceError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(invalid(
            field,
            format!("{} is not a regular file", path.display()),
        )),
        Err(e) => Err(invalid(field, format!("{}: {e}", path.display()))),
    }
}

fn same_id(what: &'static str, path: &str, body: &str) -> Result<(), InstanceError> {
    if path == body {
        Ok(())
    } else {
        Err(InstanceError::IdMismatch {
            what,
            path: path.to_string(),
            body: body.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        Instance::new("t", FcMetrics::default(), None, Box::new(|_| {}))
    }

    #[test]
    fn validation_names_firecracker_fields_and_keeps_the_old_config() {
        let mut vm = instance();
        let bad = MachineConfig {
            vcpu_count: 0,
            ..MachineConfig::default()
        };
        let e = vm.put_machine_config(bad).expect_err("0 vCPUs");
        assert!(e.to_string().contains("machine-config.vcpu_count"), "{e}");
        assert_eq!(vm.machine_config().vcpu_count, 1);

        let nic = |id: &str, tap: &str| NetworkInterface {
            iface_id: id.into(),
            host_dev_name: tap.into(),
            guest_mac: None,
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        };
        vm.put_net("eth0", nic("eth0", "tap0")).expect("nic");
        let e = vm
            .put_net("eth1", nic("eth1", "waytoolongifname0"))
            .expect_err("long ifname");
        assert!(
            e.to_string()
                .contains("network-interfaces[eth1].host_dev_name"),
            "{e}"
        );
        let e = vm
            .put_net("eth2", nic("eth3", "tap1"))
            .expect_err("ids differ");
        assert!(e.to_string().contains("\"eth2\""), "{e}");
        assert_eq!(vm.full_config().network_interfaces.len(), 1);
    }

    #[test]
    fn lifecycle_rules_before_start() {
        let mut vm = instance();
        assert_eq!(vm.info().state, "Not started");
        assert!(matches!(vm.start(), Err(InstanceError::NoBootSource)));
        assert!(matches!(vm.pause(), Err(InstanceError::BeforeStart { .. })));
        assert!(matches!(
            vm.ctrl_alt_del(),
            Err(InstanceError::BeforeStart { .. })
        ));
        let e = vm
            .put_boot_source(BootSource {
                kernel_image_path: "/nonexistent/kernel".into(),
                initrd_path: None,
                boot_args: None,
            })
            .expect_err("missing kernel");
        assert!(e.to_string().contains("kernel_image_path"), "{e}");
    }
}
