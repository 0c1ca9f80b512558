//! The daemon's VMs: lifecycle actions, each journaled before it is
//! acknowledged, and the state `GET /vms` reports.
//!
//! Every VM has an operation lock (one lifecycle change at a time, including
//! the bookkeeping after its process exits on its own) and a view that reads
//! take without waiting for operations.
//!
//! **Cancellation.** Each create, action and delete runs as its own task
//! that the caller only awaits ([`detached`]): the decision, the journal
//! append and the change in memory complete together even if the client
//! hangs up and its HTTP handler is dropped. Otherwise the journal could get
//! ahead of memory (a VM journaled but unknown, a stream one event ahead)
//! and a half-done start could leave its VMM process behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vm_core::config::VmConfig;
use vm_core::{EventKind, StopReason, Transition, VmEvent, VmId};
use vm_core::{VmRegistry, VmState};

mod error;
mod snapshot;

pub use error::VmsError;
use snapshot::snapshot;
pub use snapshot::{ProcessInfo, VmSnapshot};

use super::journal::Journal;
use super::process::{ProcessExit, SpawnError, VmProcess};
use super::protocol::VmmCommand;
use super::serial_log::SerialLog;
use crate::ExecutorKind;

/// How the daemon runs VMs.
#[derive(Debug, Clone)]
pub struct VmsConfig {
    /// The `vm-service` binary to run as `vmm` (normally the daemon's own).
    pub exe: PathBuf,
    /// Executor strategy of every VM.
    pub executor: ExecutorKind,
    /// How long a VM process gets to report its boot.
    pub boot_timeout: Duration,
    /// How long a command to a VM process may take.
    pub command_timeout: Duration,
    /// How long a stopping VM gets before it is killed.
    pub grace_period: Duration,
    /// Log filter for VM processes (their `VM_SERVICE_LOG`).
    pub log_filter: String,
    /// Where VM processes join cross-process switch segments, so `switch`
    /// NICs of different VMs share a switch by name (`None`: each VM's
    /// switches stay inside its own process).
    pub switch_dir: Option<PathBuf>,
    /// Most VMs defined at once; creates beyond it are refused.
    pub max_vms: usize,
    /// Most guest memory, in MiB, summed over every defined VM; creates
    /// beyond it are refused.
    pub max_memory_mib: u64,
    /// How each VM process confines itself: its seccomp level and the
    /// unprivileged uid/gid it drops to (README: "Sandbox").
    pub sandbox: crate::sandbox::SandboxConfig,
}

/// Longest a VMM process may take to write a snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_mins(5);

/// A lifecycle request from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Boot the VM (again, if it stopped).
    #[serde(alias = "InstanceStart")]
    Start,
    /// Park its vCPUs.
    Pause,
    /// Unpark them.
    Resume,
    /// Stop it.
    Stop,
    /// Send Ctrl-Alt-Del (here: a clean stop; see the crate docs).
    #[serde(alias = "SendCtrlAltDel")]
    CtrlAltDel,
}

#[derive(Debug)]
struct View {
    config: VmConfig,
    state: VmState,
    sequence: u64,
    stop_reason: Option<String>,
    error: Option<String>,
    started: Option<Instant>,
    process: Option<Arc<VmProcess>>,
    generation: u64,
    last_exit: Option<ProcessExit>,
}

#[derive(Debug)]
struct Slot {
    id: VmId,
    op: tokio::sync::Mutex<()>,
    view: Mutex<View>,
    serial: Arc<SerialLog>,
}

impl Slot {
    fn view(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counters for `GET /metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// VM boots that succeeded.
    pub boots: AtomicU64,
    /// VM boots that failed.
    pub boot_failures: AtomicU64,
    /// VM processes reaped.
    pub processes_reaped: AtomicU64,
    /// Events journaled by this daemon.
    pub journal_appends: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    config: VmsConfig,
    journal: Journal,
    slots: Mutex<BTreeMap<VmId, Arc<Slot>>>,
    /// Serializes creates and deletes (which change the set of ids).
    membership: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
    counters: Counters,
}

/// Every VM of the daemon. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Vms {
    inner: Arc<Inner>,
}

/// Runs `op` as a task of its own and waits for it: once begun, the
/// operation runs to its end even if the caller's future is dropped.
async fn detached<T: Send + 'static>(
    op: impl Future<Output = Result<T, VmsError>> + Send + 'static,
) -> Result<T, VmsError> {
    tokio::spawn(op)
        .await
        .map_err(|e| VmsError::Task(e.to_string()))?
}

impl Vms {
    /// Rebuilds the VMs from the replayed journal. VMs that were running or
    /// paused lost their process with the previous daemon: each is journaled
    /// `stopped` (reason `daemon_restarted`) and keeps its config.
    pub fn recover(
        config: VmsConfig,
        journal: Journal,
        registry: &VmRegistry,
    ) -> Result<Self, VmsError> {
        let mut orphaned = Vec::new();
        let mut slots = BTreeMap::new();
        for rec in registry.iter() {
            let mut view = View {
                config: rec.config.clone(),
                state: rec.state,
                sequence: rec.last_sequence,
                stop_reason: rec.stop_reason.as_ref().map(StopReason::to_string),
                error: rec.error.clone(),
                started: None,
                process: None,
                generation: 0,
                last_exit: None,
            };
            if matches!(rec.state, VmState::Running | VmState::Paused) {
                view.sequence += 1;
                view.state = VmState::Stopped;
                view.stop_reason = Some(StopReason::DaemonRestarted.to_string());
                orphaned.push(VmEvent::new(
                    rec.id.clone(),
                    view.sequence,
                    EventKind::Stopped {
                        reason: StopReason::DaemonRestarted,
                    },
                ));
            }
            let slot = Slot {
                id: rec.id.clone(),
                op: tokio::sync::Mutex::new(()),
                view: Mutex::new(view),
                serial: Arc::new(SerialLog::new()),
            };
            slots.insert(rec.id.clone(), Arc::new(slot));
        }
        if !orphaned.is_empty() {
            tracing::warn!(
                count = orphaned.len(),
                "VMs were live when the previous daemon ended; recorded them as stopped"
            );
            journal.append_batch_blocking(&orphaned)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                journal,
                slots: Mutex::new(slots),
                membership: tokio::sync::Mutex::new(()),
                shutting_down: AtomicBool::new(false),
                counters: Counters::default(),
            }),
        })
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<VmId, Arc<Slot>>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot(&self, id: &VmId) -> Result<Arc<Slot>, VmsError> {
        self.slots()
            .get(id)
            .cloned()
            .ok_or_else(|| VmsError::NotFound(id.to_string()))
    }

    fn check_open(&self) -> Result<(), VmsError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(VmsError::ShuttingDown);
        }
        Ok(())
    }

    async fn journal(&self, id: &VmId, sequence: u64, kind: EventKind) -> Result<(), VmsError> {
        self.inner.journal.append(id, sequence, kind).await?;
        self.inner
            .counters
            .journal_appends
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Metrics counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Events in the journal.
    pub fn journal_head(&self) -> u64 {
        self.inner.journal.head()
    }

    /// Defines a VM (journaled before returning). `config` must be valid.
    /// Returns the VM and whether it was created now: a VM that already
    /// exists with the same config is returned as it is (a retried create),
    /// one with another config is [`VmsError::Exists`].
    pub async fn create(&self, id: VmId, config: VmConfig) -> Result<(VmSnapshot, bool), VmsError> {
        let vms = self.clone();
        detached(async move { vms.create_now(id, config).await }).await
    }

    async fn create_now(&self, id: VmId, config: VmConfig) -> Result<(VmSnapshot, bool), VmsError> {
        self.check_open()?;
        let _membership = self.inner.membership.lock().await;
        let existing = self.slots().get(&id).cloned();
        if let Some(slot) = existing {
            if slot.view().config == config {
                return Ok((snapshot(&slot, None), false));
            }
            return Err(VmsError::Exists(id.to_string()));
        }
        self.admit(&config)?;
        self.check_gdb_address(&config)?;
        // A deleted VM's stream continues: the store keeps its head.
        let sequence = self.inner.journal.stream_head(&id) + 1;
        self.journal(&id, sequence, EventKind::created(config.clone()))
            .await?;
        let slot = Arc::new(Slot {
            id: id.clone(),
            op: tokio::sync::Mutex::new(()),
            view: Mutex::new(View {
                config,
                state: VmState::Created,
                sequence,
                stop_reason: None,
                error: None,
                started: None,
                process: None,
                generation: 0,
                last_exit: None,
            }),
            serial: Arc::new(SerialLog::new()),
        });
        self.slots().insert(id.clone(), slot.clone());
        tracing::info!(vm_id = %id, "VM created");
        Ok((snapshot(&slot, None), true))
    }

    /// Admission control: refuses a VM beyond the configured count or
    /// total guest memory. Called with the membership lock held.
    fn admit(&self, config: &VmConfig) -> Result<(), VmsError> {
        let cfg = &self.inner.config;
        let slots = self.slots();
        if slots.len() >= cfg.max_vms {
            return Err(VmsError::TooManyVms { max: cfg.max_vms });
        }
        let committed: u64 = slots.values().map(|s| s.view().config.memory_mib).sum();
        if committed.saturating_add(config.memory_mib) > cfg.max_memory_mib {
            return Err(VmsError::OutOfMemory {
                requested_mib: config.memory_mib,
                committed_mib: committed,
                limit_mib: cfg.max_memory_mib,
            });
        }
        Ok(())
    }

    /// Refuses a gdb address another VM has: its stub would replace the
    /// other's socket. Called with the membership lock held.
    fn check_gdb_address(&self, config: &VmConfig) -> Result<(), VmsError> {
        let Some(addr) = config.gdb.as_ref().and_then(|g| g.addr().ok()) else {
            return Ok(());
        };
        let slots = self.slots();
        let taken = slots.iter().find(|(_, slot)| {
            let view = slot.view();
            view.config
                .gdb
                .as_ref()
                .and_then(|g| g.addr().ok())
                .as_ref()
                == Some(&addr)
        });
        match taken {
            Some((by, _)) => Err(VmsError::GdbAddressInUse {
                address: addr.to_string(),
                by: by.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Removes a VM that is not running (journaled before returning).
    pub async fn delete(&self, id: &VmId) -> Result<(), VmsError> {
        let (vms, id) = (self.clone(), id.clone());
        detached(async move { vms.delete_now(&id).await }).await
    }

    async fn delete_now(&self, id: &VmId) -> Result<(), VmsError> {
        self.check_open()?;
        let slot = self.slot(id)?;
        // The VM's own lock first, without the membership lock: a VM stuck in
        // a long operation delays only its own delete, not every create.
        let _op = slot.op.lock().await;
        self.check_current(&slot)?;
        let (state, sequence) = {
            let v = slot.view();
            (v.state, v.sequence)
        };
        if matches!(state, VmState::Running | VmState::Paused) {
            return Err(VmsError::Busy {
                id: id.to_string(),
                state,
                what: "stop it before deleting it",
            });
        }
        let _membership = self.inner.membership.lock().await;
        self.journal(id, sequence + 1, EventKind::Deleted).await?;
        self.slots().remove(id);
        tracing::info!(vm_id = %id, "VM deleted");
        Ok(())
    }

    /// Fails with [`VmsError::NotFound`] if `slot` was deleted while its
    /// caller waited for its lock.
    fn check_current(&self, slot: &Arc<Slot>) -> Result<(), VmsError> {
        match self.slots().get(&slot.id) {
            Some(s) if Arc::ptr_eq(s, slot) => Ok(()),
            _ => Err(VmsError::NotFound(slot.id.to_string())),
        }
    }

    /// Ids of every VM.
    pub fn ids(&self) -> Vec<VmId> {
        self.slots().keys().cloned().collect()
    }

    /// Number of VMs in each state.
    pub fn state_counts(&self) -> BTreeMap<&'static str, usize> {
        let slots: Vec<_> = self.slots().values().cloned().collect();
        let mut counts = BTreeMap::new();
        for s in [
            VmState::Created,
            VmState::Running,
            VmState::Paused,
            VmState::Stopped,
            VmState::Failed,
        ] {
            counts.insert(s.as_str(), 0);
        }
        for slot in slots {
            *counts.entry(slot.view().state.as_str()).or_default() += 1;
        }
        counts
    }

    /// The VM's state; asks a live VM's process for its exit counts.
    pub async fn get(&self, id: &VmId) -> Result<VmSnapshot, VmsError> {
        let slot = self.slot(id)?;
        let process = slot.view().process.clone();
        let status = match process {
            Some(p) => p
                .command(VmmCommand::Status, Duration::from_secs(1))
                .await
                .ok(),
            None => None,
        };
        Ok(snapshot(&slot, status))
    }

    /// Snapshots (without asking processes for exit counts) of at most
    /// `limit` VMs whose ids sort after `after`, in id order, and whether
    /// more follow.
    pub fn list_page(&self, after: Option<&str>, limit: usize) -> (Vec<VmSnapshot>, bool) {
        let slots: Vec<_> = {
            let all = self.slots();
            let rest = all
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a));
            rest.take(limit.saturating_add(1))
                .map(|(_, s)| s.clone())
                .collect()
        };
        let more = slots.len() > limit;
        let page = slots
            .iter()
            .take(limit)
            .map(|s| snapshot(s, None))
            .collect();
        (page, more)
    }

    /// The VM's serial console log.
    pub fn serial(&self, id: &VmId) -> Result<Arc<SerialLog>, VmsError> {
        Ok(self.slot(id)?.serial.clone())
    }

    /// Carries out `action`; returns once it is done and journaled.
    pub async fn act(&self, id: &VmId, action: Action) -> Result<VmSnapshot, VmsError> {
        let (vms, id) = (self.clone(), id.clone());
        detached(async move { vms.act_now(&id, action).await }).await
    }

    async fn act_now(&self, id: &VmId, action: Action) -> Result<VmSnapshot, VmsError> {
        self.check_open()?;
        let slot = self.slot(id)?;
        let op = slot.op.lock().await;
        self.check_current(&slot)?;
        let state = slot.view().state;
        match action {
            Action::Start => {
                state.apply(Transition::Start)?;
                self.start_locked(&slot).await?;
            }
            Action::Pause | Action::Resume => {
                let (transition, command, event) = if action == Action::Pause {
                    (Transition::Pause, VmmCommand::Pause, EventKind::Paused)
                } else {
                    (Transition::Resume, VmmCommand::Resume, EventKind::Resumed)
                };
                let next = state.apply(transition)?;
                let (process, sequence) = live(&slot);
                if let Some(process) = process {
                    process
                        .command(command, self.inner.config.command_timeout)
                        .await
                        .map_err(|source| VmsError::Command {
                            id: id.to_string(),
                            source,
                        })?;
                }
                self.journal(id, sequence + 1, event).await?;
                let mut v = slot.view();
                v.state = next;
                v.sequence = sequence + 1;
            }
            Action::Stop | Action::CtrlAltDel => {
                state.apply(Transition::Stop)?;
                let (process, sequence) = live(&slot);
                match process {
                    Some(process) => {
                        let command = if action == Action::Stop {
                            VmmCommand::Stop
                        } else {
                            VmmCommand::CtrlAltDel
                        };
                        let exit = self.stop_process(&process, command).await;
                        self.finish_locked(&slot, exit).await?;
                    }
                    None if action == Action::Stop => {
                        let reason = StopReason::Requested;
                        let text = reason.to_string();
                        self.journal(id, sequence + 1, EventKind::Stopped { reason })
                            .await?;
                        let mut v = slot.view();
                        v.state = VmState::Stopped;
                        v.sequence = sequence + 1;
                        v.stop_reason = Some(text);
                    }
                    None => {
                        return Err(VmsError::Busy {
                            id: id.to_string(),
                            state,
                            what: "ctrl-alt-del needs a running VM",
                        })
                    }
                }
            }
        }
        drop(op);
        self.get(id).await
    }

    /// Writes a snapshot of paused VM `id`: the state file to `snapshot_path`,
    /// guest memory to `mem_file_path` (both written by the VM's process).
    /// A VM that is not paused is refused ([`VmsError::Busy`]).
    pub async fn snapshot(
        &self,
        id: &VmId,
        snapshot_path: std::path::PathBuf,
        mem_file_path: std::path::PathBuf,
    ) -> Result<VmSnapshot, VmsError> {
        let (vms, id) = (self.clone(), id.clone());
        detached(async move {
            vms.check_open()?;
            let slot = vms.slot(&id)?;
            let op = slot.op.lock().await;
            vms.check_current(&slot)?;
            let state = slot.view().state;
            let busy = VmsError::Busy {
                id: id.to_string(),
                state,
                what: "pause it before taking a snapshot",
            };
            if state != VmState::Paused {
                return Err(busy);
            }
            let (Some(process), _) = live(&slot) else {
                return Err(busy);
            };
            // Writing guest memory takes longer than a lifecycle command.
            let timeout = vms.inner.config.command_timeout.max(SNAPSHOT_TIMEOUT);
            process
                .command(
                    VmmCommand::Snapshot {
                        snapshot_path,
                        mem_file_path,
                    },
                    timeout,
                )
                .await
                .map_err(|source| VmsError::Command {
                    id: id.to_string(),
                    source,
                })?;
            drop(op);
            vms.get(&id).await
        })
        .await
    }

    /// Asks the process to stop (or ctrl-alt-del) and waits for it, killing it
    /// after the grace period.
    async fn stop_process(&self, process: &VmProcess, command: VmmCommand) -> ProcessExit {
        let grace = self.inner.config.grace_period;
        // One deadline for the request and the exit: a hung VMM is killed
        // after the grace period, not after twice it.
        let deadline = tokio::time::Instant::now() + grace;
        if let Err(e) = process.command(command, grace).await {
            tracing::warn!(pid = process.pid(), error = %e, "stop request not acknowledged");
        }
        if let Ok(exit) = tokio::time::timeout_at(deadline, process.wait_exit()).await {
            return exit;
        }
        tracing::warn!(
            pid = process.pid(),
            ?grace,
            "VM did not stop in time; killing it"
        );
        process.kill();
        let mut exit = process.wait_exit().await;
        if exit.reason.is_none() {
            // It was asked to stop and now has: a stop, forced.
            exit.reason = Some(StopReason::Requested);
            exit.message = format!("killed after the {grace:?} grace period");
        }
        exit
    }

    async fn start_locked(&self, slot: &Arc<Slot>) -> Result<(), VmsError> {
        let (config, sequence) = {
            let v = slot.view();
            (v.config.clone(), v.sequence)
        };
        let cfg = &self.inner.config;
        slot.serial.open_live();
        let spawned = VmProcess::spawn(cfg, &slot.id, &config, slot.serial.clone()).await;
        let process = match spawned {
            Ok(p) => Arc::new(p),
            Err(source) => {
                slot.serial.close_live();
                self.inner
                    .counters
                    .boot_failures
                    .fetch_add(1, Ordering::Relaxed);
                let error = source.to_string();
                // An OS failure to spawn is the daemon's problem, not the VM's.
                if matches!(source, SpawnError::Boot(_) | SpawnError::DiedDuringBoot(_)) {
                    // A start that failed, journaled as one: `failed` alone
                    // would not replay after `stopped` or `failed`.
                    let failed = EventKind::Failed {
                        error: error.clone(),
                    };
                    self.inner
                        .journal
                        .append_events(vec![
                            VmEvent::new(slot.id.clone(), sequence + 1, EventKind::Started),
                            VmEvent::new(slot.id.clone(), sequence + 2, failed),
                        ])
                        .await?;
                    self.inner
                        .counters
                        .journal_appends
                        .fetch_add(2, Ordering::Relaxed);
                    let mut v = slot.view();
                    v.state = VmState::Failed;
                    v.sequence = sequence + 2;
                    v.error = Some(error);
                }
                return Err(VmsError::Boot {
                    id: slot.id.to_string(),
                    source,
                });
            }
        };
        if let Err(e) = self
            .journal(&slot.id, sequence + 1, EventKind::Started)
            .await
        {
            // Not recorded, so it must not run.
            process.kill();
            process.wait_exit().await;
            slot.serial.close_live();
            return Err(e);
        }
        self.inner.counters.boots.fetch_add(1, Ordering::Relaxed);
        let generation = {
            let mut v = slot.view();
            v.state = VmState::Running;
            v.sequence = sequence + 1;
            v.started = Some(Instant::now());
            v.process = Some(process.clone());
            v.generation += 1;
            v.stop_reason = None;
            v.error = None;
            v.generation
        };
        tracing::info!(vm_id = %slot.id, pid = process.pid(), "VM started");
        // Bookkeeping for a VM that stops on its own (guest reset, crash).
        let (vms, slot) = (self.clone(), slot.clone());
        tokio::spawn(async move {
            let exit = process.wait_exit().await;
            vms.inner
                .counters
                .processes_reaped
                .fetch_add(1, Ordering::Relaxed);
            let _op = slot.op.lock().await;
            if slot.view().generation == generation && slot.view().process.is_some() {
                if let Err(e) = vms.finish_locked(&slot, exit).await {
                    tracing::error!(vm_id = %slot.id, error = %e, "could not journal the VM's end");
                }
            }
        });
        Ok(())
    }

    /// Journals how the VM's process ended and clears it. Holds the op lock.
    async fn finish_locked(&self, slot: &Slot, exit: ProcessExit) -> Result<(), VmsError> {
        let sequence = slot.view().sequence + 1;
        let shutting_down = self.inner.shutting_down.load(Ordering::Acquire);
        let kind = match &exit.reason {
            Some(StopReason::Requested) if shutting_down => EventKind::Stopped {
                reason: StopReason::HostShutdown,
            },
            Some(reason) if reason.is_clean() => EventKind::Stopped {
                reason: reason.clone(),
            },
            // A failure, or an end the VMM did not report.
            Some(_) | None => EventKind::Failed {
                error: exit.message.clone(),
            },
        };
        self.journal(&slot.id, sequence, kind.clone()).await?;
        slot.serial.close_live();
        let mut v = slot.view();
        v.sequence = sequence;
        v.process = None;
        v.started = None;
        if let EventKind::Failed { error } = kind {
            v.state = VmState::Failed;
            v.error = Some(error);
        } else {
            v.state = VmState::Stopped;
            v.stop_reason = Some(exit.message.clone());
        }
        tracing::info!(vm_id = %slot.id, state = %v.state, status = %exit.status, "VM ended");
        v.last_exit = Some(exit);
        Ok(())
    }

    /// Stops accepting operations and stops every live VM (each within the
    /// grace period, then killed), journaling each stop.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let slots: Vec<_> = self.slots().values().cloned().collect();
        let mut tasks = Vec::new();
        for slot in slots {
            let vms = self.clone();
            tasks.push(tokio::spawn(async move {
                let _op = slot.op.lock().await;
                let process = slot.view().process.clone();
                if let Some(process) = process {
                    let exit = vms.stop_process(&process, VmmCommand::Stop).await;
                    if let Err(e) = vms.finish_locked(&slot, exit).await {
                        tracing::error!(vm_id = %slot.id, error = %e, "could not journal the stop");
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn live(slot: &Slot) -> (Option<Arc<VmProcess>>, u64) {
    let v = slot.view();
    (v.process.clone(), v.sequence)
}
