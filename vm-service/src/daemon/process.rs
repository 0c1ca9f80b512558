//! The daemon's handle on one VM process: spawning `vm-service vmm` with one
//! end of a socketpair as fd 3, sending it commands, and reaping it.
//!
//! A task per process reads its frames (serial bytes, replies, the final
//! `exited`), then reaps the child and records how it ended: the reason the
//! VMM reported, and the process's own exit status or signal. A process that
//! dies without reporting (a VMM crash, `kill -9`) is still reaped and
//! described; it never takes the daemon down with it.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{oneshot, watch};
use vm_core::config::VmConfig;
use vm_core::StopReason;

use super::protocol::{self, BootReport, FromVmm, ProtocolError, ToVmm, VmmCommand, VmmStatus};
use super::serial_log::SerialLog;
use super::vms::VmsConfig;

/// The fd number the VMM process finds its control socket on.
pub const CONTROL_FD: i32 = 3;

/// Why a VM process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The OS could not create the socket or the process.
    #[error("cannot start the VMM process {exe}: {source}")]
    Os {
        /// The executable.
        exe: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The control socket failed during boot.
    #[error("VMM process control socket: {0}")]
    Protocol(#[from] ProtocolError),
    /// The VMM reported that the VM could not be built or started.
    #[error("{0}")]
    Boot(String),
    /// The VMM process ended before reporting a boot result.
    #[error("the VMM process ended during boot ({0})")]
    DiedDuringBoot(String),
    /// No boot result arrived in time; the process was killed.
    #[error("the VMM process did not report a boot result within {0:?}; killed it")]
    BootTimeout(Duration),
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The process has exited (or exits while the command is pending).
    #[error("the VMM process has exited")]
    Gone,
    /// No reply arrived in time.
    #[error("the VMM process did not answer {command:?} within {timeout:?}")]
    Timeout {
        /// The command.
        command: VmmCommand,
        /// How long we waited.
        timeout: Duration,
    },
    /// The VMM refused the command.
    #[error("{0}")]
    Rejected(String),
}

/// How a VM process ended. Shown by the API as `kind` (the reason's
/// [`StopReason::kind`] name, `null` when the VMM did not say), `message`
/// and `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessExit {
    /// Why the VM stopped, if the VMM said so before exiting.
    #[serde(rename = "kind", serialize_with = "reason_kind")]
    pub reason: Option<StopReason>,
    /// The VMM's description, or what the daemon saw.
    pub message: String,
    /// The process's end: `exit status 0`, `killed by signal 9`.
    pub status: String,
}

// The signature `serialize_with` requires.
#[allow(clippy::ref_option)]
fn reason_kind<S: serde::Serializer>(reason: &Option<StopReason>, s: S) -> Result<S::Ok, S::Error> {
    match reason {
        Some(r) => s.serialize_str(r.kind()),
        None => s.serialize_none(),
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<VmmStatus, String>>>>>;

/// A running VM process.
#[derive(Debug)]
pub struct VmProcess {
    pid: u32,
    report: BootReport,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    exit: watch::Receiver<Option<ProcessExit>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

fn describe_status(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => s.to_string(),
        },
        Err(e) => format!("could not be reaped: {e}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl VmProcess {
    /// Starts `vms.exe vmm` for VM `id`'s `config` and waits for its boot
    /// report. The child confines itself as `vms.sandbox` says (README:
    /// "Sandbox"); a jailed one's jail is removed once it has been reaped.
    pub async fn spawn(
        vms: &VmsConfig,
        id: &vm_core::VmId,
        config: &VmConfig,
        serial: Arc<SerialLog>,
    ) -> Result<Self, SpawnError> {
        let exe = vms.exe.as_path();
        let (executor, boot_timeout) = (vms.executor, vms.boot_timeout);
        let switch_dir = vms.switch_dir.as_deref();
        let os_err = |source| SpawnError::Os {
            exe: exe.display().to_string(),
            source,
        };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(os_err)?;
        let fd = theirs.as_raw_fd();
        // Declared before the child: dropped (the jail removed) after it is reaped.
        let jail = vms.sandbox.jail_dir.clone().map(|dir| JailCleanup {
            dir,
            id: id.to_string(),
        });
        if let Some(jail) = &jail {
            // Left over by a daemon that did not see its VMM end.
            jail.remove();
        }
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("vmm")
            .arg("--fd")
            .arg(CONTROL_FD.to_string())
            .args(vms.sandbox.vmm_args())
            .args(jail.iter().flat_map(|_| ["--jail-id", id.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env("VM_SERVICE_LOG", &vms.log_filter)
            // Terminal signals (Ctrl-C) go to the daemon, which stops VMs in order.
            .process_group(0)
            // Dropped before it is reaped (a boot given up on): it must not linger.
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between fork and exec and only
        // makes system calls (dup2, fcntl, close_range, close), which are
        // async-signal-safe; `fd` is open in the parent (owned by `theirs`,
        // alive until after spawn) so it is in the child.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 clears close-on-exec on the copy; if the fd already is
                // CONTROL_FD, dup2 is a no-op and the flag must be cleared by hand.
                let rc = if fd == CONTROL_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, CONTROL_FD)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing else reaches the VMM: not the daemon's sockets, not
                // fds the daemon inherited without close-on-exec.
                let first = libc::c_uint::try_from(CONTROL_FD + 1).unwrap_or(4);
                if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) != 0 {
                    // Kernels before 5.9: close them one by one.
                    for other in CONTROL_FD + 1..65_536 {
                        libc::close(other);
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(os_err)?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        ours.set_nonblocking(true).map_err(os_err)?;
        let stream = tokio::net::UnixStream::from_std(ours).map_err(os_err)?;
        let (mut reader, mut writer) = stream.into_split();

        let boot = ToVmm::Boot {
            config: config.clone(),
            executor,
            switch_dir: switch_dir.map(Path::to_owned),
        };
        let first = async {
            protocol::write_frame_async(&mut writer, &boot).await?;
            loop {
                match protocol::read_frame_async::<FromVmm>(&mut reader).await? {
                    // Early console output belongs to the log.
                    Some(FromVmm::Serial { data }) => serial.push(&data),
                    other => return Ok::<_, ProtocolError>(other),
                }
            }
        };
        let report = match tokio::time::timeout(boot_timeout, first).await {
            Ok(Ok(Some(FromVmm::Booted { report }))) => report,
            Ok(Ok(Some(FromVmm::BootFailed { error }))) => {
                let _ = child.wait().await;
                return Err(SpawnError::Boot(error));
            }
            Ok(Ok(other)) => {
                let _ = child.start_kill();
                let status = describe_status(&child.wait().await);
                let what = other.map_or("no boot report".to_string(), |m| format!("{m:?}"));
                return Err(SpawnError::DiedDuringBoot(format!("{what}; {status}")));
            }
            Ok(Err(e)) => {
                let _ = child.start_kill();
                let status = describe_status(&child.wait().await);
                return Err(SpawnError::DiedDuringBoot(format!("{e}; {status}")));
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(SpawnError::BootTimeout(boot_timeout));
            }
        };

        let pending: Pending = Arc::default();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel();
        tokio::spawn(monitor(
            (pid, jail),
            child,
            reader,
            serial,
            pending.clone(),
            kill_rx,
            exit_tx,
        ));
        tracing::info!(pid, engine = %report.engine, "VMM process booted");
        Ok(Self {
            pid,
            report,
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            exit: exit_rx,
            kill: Mutex::new(Some(kill_tx)),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the VMM built.
    pub fn report(&self) -> &BootReport {
        &self.report
    }

    /// Sends `command` and waits up to `timeout` for the reply.
    pub async fn command(
        &self,
        command: VmmCommand,
        timeout: Duration,
    ) -> Result<VmmStatus, CommandError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let frame = ToVmm::Command {
            id,
            command: command.clone(),
        };
        let exchange = async {
            protocol::write_frame_async(&mut *self.writer.lock().await, &frame)
                .await
                .map_err(|_| CommandError::Gone)?;
            rx.await
                .map_err(|_| CommandError::Gone)?
                .map_err(CommandError::Rejected)
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(CommandError::Timeout { command, timeout }));
        lock(&self.pending).remove(&id);
        result
    }

    /// Waits until the process has ended and been reaped.
    pub async fn wait_exit(&self) -> ProcessExit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The monitor always sends before it ends; be safe anyway.
                return rx.borrow().clone().unwrap_or(ProcessExit {
                    reason: None,
                    message: "the process monitor ended".into(),
                    status: "unknown".into(),
                });
            }
        }
    }

    /// How the process ended, if it has.
    pub fn exit(&self) -> Option<ProcessExit> {
        self.exit.borrow().clone()
    }

    /// Sends SIGKILL (once); [`Self::wait_exit`] then returns.
    pub fn kill(&self) {
        if let Some(tx) = lock(&self.kill).take() {
            let _ = tx.send(());
        }
    }
}

/// The jail of a daemon VM, removed on drop (once its process has been reaped).
struct JailCleanup {
    dir: std::path::PathBuf,
    id: String,
}

impl JailCleanup {
    fn remove(&self) {
        crate::sandbox::jail::remove_daemon_jail(&self.dir, &self.id);
    }
}

impl Drop for JailCleanup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Forwards the process's frames until it ends, reaps it (then removes its
/// jail, if it has one) and publishes how it ended.
async fn monitor(
    (pid, jail): (u32, Option<JailCleanup>),
    mut child: tokio::process::Child,
    mut reader: tokio::net::unix::OwnedReadHalf,
    serial: Arc<SerialLog>,
    pending: Pending,
    mut kill_rx: oneshot::Receiver<()>,
    exit_tx: watch::Sender<Option<ProcessExit>>,
) {
    let mut reported: Option<StopReason> = None;
    loop {
        tokio::select! {
            frame = protocol::read_frame_async::<FromVmm>(&mut reader) => match frame {
                Ok(Some(FromVmm::Serial { data })) => serial.push(&data),
                Ok(Some(FromVmm::Reply { id, result })) => {
                    if let Some(tx) = lock(&pending).remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Ok(Some(FromVmm::Exited { reason })) => reported = Some(reason),
                Ok(Some(other)) => tracing::warn!(pid, ?other, "unexpected frame from VMM process"),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(pid, error = %e, "VMM process control socket failed; killing it");
                    let _ = child.start_kill();
                    break;
                }
            },
            // Once: the loop ends right after.
            _ = &mut kill_rx => {
                tracing::warn!(pid, "killing VMM process");
                let _ = child.start_kill();
                break;
            }
        }
    }
    // Waiters on replies learn the process is gone.
    lock(&pending).clear();
    let status = describe_status(&child.wait().await);
    let exit = match reported {
        Some(reason) => ProcessExit {
            message: reason.to_string(),
            reason: Some(reason),
            status,
        },
        None => ProcessExit {
            reason: None,
            message: format!("the VMM process ended without reporting why ({status})"),
            status,
        },
    };
    tracing::info!(pid, status = %exit.status, message = %exit.message, "VMM process reaped");
    drop(jail);
    let _ = exit_tx.send(Some(exit));
}
