//! The VMM side of a daemon-managed VM: the `vm-service vmm` process.
//!
//! It reads a `boot` frame from its control socket, builds and starts the VM,
//! then serves commands until the VM stops. Serial output is forwarded as
//! frames. If the daemon goes away (end of stream on the socket) the VM is
//! stopped: a VM never outlives the daemon that can account for it.
//!
//! A VM whose configuration has a `gdb` section runs under the GDB stub
//! (`crate::gdb`) on this process's main thread instead of on an executor;
//! its socket is bound as soon as the boot frame is read (a jailed VMM
//! binds it before it confines itself; an unjailed one, under its process
//! filter, takes Unix sockets only). Pause, resume and stop reach it through a
//! [`GdbControl`]; snapshots are refused.

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use super::protocol::{self, BootReport, FromVmm, ProtocolError, ToVmm, VmmCommand, VmmStatus};
use crate::executor::{ExecutorControl, RunState};
use crate::gdb::{GdbControl, GdbListener};
use crate::net::SwitchRegistry;
use crate::{StopReason, VmmBuilder};

/// Why the VMM process could not serve its VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmProcessError {
    /// The control socket failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The daemon closed the socket before sending `boot`.
    #[error("the daemon closed the control socket before sending a boot frame")]
    NoBoot,
    /// The first frame was not `boot`.
    #[error("expected a boot frame first, got a command")]
    UnexpectedCommand,
    /// The VM could not be built or started (already reported to the daemon).
    #[error("boot failed: {0}")]
    Boot(String),
    /// The control socket fd is not open.
    #[error("--fd {0} is not an open file descriptor")]
    BadFd(i32),
}

/// The control socket the daemon handed over as `fd`.
fn control_socket(fd: i32) -> Result<UnixStream, VmmProcessError> {
    // SAFETY: F_GETFD only queries the descriptor's flags; it fails on a closed fd.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(VmmProcessError::BadFd(fd));
    }
    // SAFETY: the fd is open (checked above) and was handed to this process by
    // the daemon for this purpose alone; nothing else in the process uses it.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// Serves one VM over the inherited control socket `fd` (the `vmm`
/// subcommand; also usable by any binary the daemon is told to run).
pub fn serve_fd(fd: i32) -> Result<(), VmmProcessError> {
    serve(control_socket(fd)?)
}

/// [`serve_fd`] for a VMM that must see its VM's configuration before it
/// confines itself (a jailed one: the jail holds the VM's files): reads the
/// boot frame, binds the socket of its `gdb` section (before the jail and
/// the filters, so a `tcp:` address works too), and calls `prepare` with the
/// boot frame and the descriptors it must keep open, before any thread
/// starts. An error from
/// either is reported to the daemon as the boot's failure.
pub fn serve_fd_with(
    fd: i32,
    prepare: impl FnOnce(&Boot, &[RawFd]) -> Result<(), String>,
) -> Result<(), VmmProcessError> {
    let mut sock = control_socket(fd)?;
    let boot = read_boot(&mut sock)?;
    let prepared = bind_gdb(&boot.config).and_then(|gdb| {
        let keep: Vec<RawFd> = gdb.iter().map(GdbListener::as_raw_fd).collect();
        prepare(&boot, &keep).map(|()| gdb)
    });
    match prepared {
        Ok(gdb) => serve_with(sock, Some(boot), gdb),
        Err(error) => {
            let _ = protocol::write_frame(
                &mut sock,
                &FromVmm::BootFailed {
                    error: error.clone(),
                },
            );
            Err(VmmProcessError::Boot(error))
        }
    }
}

/// Binds the socket of `config`'s gdb section, if it has one.
fn bind_gdb(config: &vm_core::config::VmConfig) -> Result<Option<GdbListener>, String> {
    let Some(gdb) = &config.gdb else {
        return Ok(None);
    };
    let addr = gdb.addr().map_err(|e| e.to_string())?;
    crate::gdb::check_supported(config.arch).map_err(|e| e.to_string())?;
    // The process filter allows Unix sockets only: creating any other kills
    // the process. A jailed VMM binds before its filter, an unjailed one after.
    let confined = crate::sandbox::process_level() != crate::sandbox::SeccompLevel::Off;
    if confined && matches!(addr, crate::gdb::GdbAddr::Tcp(_)) {
        return Err(format!(
            "gdb.address {addr}: this VMM runs under its seccomp filter, which allows \
             Unix sockets only; give unix:PATH (or run the daemon with --jail-dir \
             or --seccomp-level 0)"
        ));
    }
    GdbListener::bind(&addr)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The daemon's `boot` frame: what to run.
#[derive(Debug)]
pub struct Boot {
    /// The VM's configuration.
    pub config: vm_core::config::VmConfig,
    /// How its vCPUs get threads.
    pub executor: crate::ExecutorKind,
    /// Where its switches meet other processes' (absent: private switches).
    pub switch_dir: Option<std::path::PathBuf>,
}

fn read_boot(sock: &mut UnixStream) -> Result<Boot, VmmProcessError> {
    match protocol::read_frame::<ToVmm>(sock)? {
        Some(ToVmm::Boot {
            config,
            executor,
            switch_dir,
        }) => Ok(Boot {
            config,
            executor,
            switch_dir,
        }),
        Some(ToVmm::Command { .. }) => Err(VmmProcessError::UnexpectedCommand),
        None => Err(VmmProcessError::NoBoot),
    }
}

/// Frames waiting for the writer thread. Bounded, so a guest that floods its
/// console while the daemon reads slowly is slowed down (like a real UART)
/// instead of growing this process's memory.
const OUTBOX_FRAMES: usize = 4096;

/// Forwards serial bytes to the frame writer thread.
struct SerialForwarder(mpsc::SyncSender<FromVmm>);

impl Write for SerialForwarder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A closed channel means the process is ending; the bytes have nowhere to go.
        let _ = self.0.send(FromVmm::Serial { data: buf.to_vec() });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stacks the control-socket filter on this thread (README: "Sandbox").
fn confine_control_thread() -> bool {
    match crate::sandbox::enter_thread(crate::sandbox::ThreadKind::Control) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "control thread not confined; it stops");
            false
        }
    }
}

/// Writes every outgoing frame, merging runs of serial bytes into one frame;
/// returns after the last frame (`exited` or `boot_failed`).
fn frame_writer(mut sock: UnixStream, rx: &mpsc::Receiver<FromVmm>) {
    if !confine_control_thread() {
        return;
    }
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let mut serial: Vec<u8> = Vec::new();
        for msg in pending {
            match msg {
                FromVmm::Serial { data } if serial.len() + data.len() < protocol::MAX_FRAME / 8 => {
                    serial.extend_from_slice(&data);
                }
                other => {
                    if !serial.is_empty() {
                        let data = std::mem::take(&mut serial);
                        if protocol::write_frame(&mut sock, &FromVmm::Serial { data }).is_err() {
                            return;
                        }
                    }
                    let last = matches!(other, FromVmm::Exited { .. } | FromVmm::BootFailed { .. });
                    if protocol::write_frame(&mut sock, &other).is_err() || last {
                        return;
                    }
                }
            }
        }
        if !serial.is_empty()
            && protocol::write_frame(&mut sock, &FromVmm::Serial { data: serial }).is_err()
        {
            return;
        }
    }
}

fn run_state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Pausing => "pausing",
        RunState::Paused => "paused",
        RunState::Stopping => "stopping",
        RunState::Stopped => "stopped",
    }
}

/// What runs the VM's vCPUs: an executor, or the gdb stub's thread.
#[derive(Clone)]
enum VmControl {
    Executor(ExecutorControl),
    Gdb(GdbControl),
}

impl VmControl {
    fn pause(&self) -> Result<(), String> {
        match self {
            Self::Executor(c) => c.pause(),
            Self::Gdb(c) => c.pause(),
        }
        .map_err(|e| e.to_string())
    }

    fn resume(&self) -> Result<(), String> {
        match self {
            Self::Executor(c) => c.resume(),
            Self::Gdb(c) => c.resume(),
        }
        .map_err(|e| e.to_string())
    }

    fn stop_with(&self, reason: StopReason) {
        match self {
            Self::Executor(c) => c.stop_with(reason),
            Self::Gdb(c) => c.stop_with(reason),
        }
    }

    fn stop(&self) {
        self.stop_with(StopReason::Requested);
    }
}

fn status(control: &VmControl) -> VmmStatus {
    let (state, exit_counts) = match control {
        VmControl::Executor(c) => (c.state(), c.exit_counts()),
        // The stub's thread keeps no per-vCPU exit counts.
        VmControl::Gdb(c) => (c.state(), Vec::new()),
    };
    VmmStatus {
        run_state: run_state_name(state).to_string(),
        exit_counts,
    }
}

/// A snapshot request for the snapshot thread, and where its result goes.
type SnapshotJob = (
    crate::snapshot::SnapshotPaths,
    mpsc::Sender<Result<(), String>>,
);

/// Starts the thread that writes snapshots. It keeps this (the VMM) thread's
/// filter, under which files can be created, synced and renamed; the command
/// thread's own filter allows none of that, so it hands snapshots over here.
fn snapshot_thread(snapshotter: crate::Snapshotter) -> std::io::Result<mpsc::Sender<SnapshotJob>> {
    let (jobs, rx) = mpsc::channel::<SnapshotJob>();
    std::thread::Builder::new()
        .name("vmm-snapshots".into())
        .spawn(move || {
            for (paths, reply) in rx {
                let result = snapshotter
                    .snapshot_to(&paths)
                    .map_err(|e| super::error_chain(&e));
                let _ = reply.send(result);
            }
        })?;
    Ok(jobs)
}

fn execute(
    control: &VmControl,
    snapshots: Option<&mpsc::Sender<SnapshotJob>>,
    command: VmmCommand,
) -> Result<VmmStatus, String> {
    match command {
        VmmCommand::Snapshot {
            snapshot_path,
            mem_file_path,
        } => {
            let snapshots =
                snapshots.ok_or("a VM running under the gdb stub cannot be snapshotted")?;
            let paths = crate::snapshot::SnapshotPaths {
                state: snapshot_path,
                memory: mem_file_path,
            };
            let (reply, result) = mpsc::channel();
            snapshots
                .send((paths, reply))
                .map_err(|_| "the snapshot thread is gone".to_string())?;
            result
                .recv()
                .map_err(|_| "the snapshot thread is gone".to_string())??;
        }
        VmmCommand::Pause => control.pause()?,
        VmmCommand::Resume => control.resume()?,
        VmmCommand::Stop => control.stop(),
        VmmCommand::CtrlAltDel => {
            // The i8042 model has no keyboard buffer or IRQ 1 to deliver the
            // key sequence through, so the guest cannot react to it; what a
            // Linux guest does on Ctrl-Alt-Del with `reboot=k` is a reset,
            // which this VMM treats as a stop. Do that directly.
            control.stop_with(StopReason::CtrlAltDel);
        }
        VmmCommand::Status => {}
    }
    Ok(status(control))
}

/// Serves one VM over the control socket `sock` until it stops.
pub fn serve(sock: UnixStream) -> Result<(), VmmProcessError> {
    serve_with(sock, None, None)
}

/// Starts the frame writer, reads the boot frame unless it was read already,
/// builds and runs the VM (under the gdb stub on `gdb`, bound already, or
/// bound here when the configuration asks for one).
fn serve_with(
    sock: UnixStream,
    boot: Option<Boot>,
    gdb: Option<GdbListener>,
) -> Result<(), VmmProcessError> {
    let mut reader = sock.try_clone().map_err(ProtocolError::Io)?;
    let (tx, rx) = mpsc::sync_channel::<FromVmm>(OUTBOX_FRAMES);
    let writer = std::thread::Builder::new()
        .name("vmm-frames".into())
        .spawn(move || frame_writer(sock, &rx))
        .map_err(ProtocolError::Io)?;
    let boot_failed = |error: String| {
        let _ = tx.send(FromVmm::BootFailed {
            error: error.clone(),
        });
        VmmProcessError::Boot(error)
    };

    let Boot {
        config,
        executor,
        switch_dir,
    } = match boot {
        Some(boot) => boot,
        None => read_boot(&mut reader)?,
    };
    let gdb = match gdb {
        Some(listener) => Some(listener),
        None => match bind_gdb(&config) {
            Ok(listener) => listener,
            Err(error) => return finish(boot_failed(error), tx, writer),
        },
    };
    let wait = config.gdb.as_ref().is_some_and(|g| g.wait);
    let switches = switch_dir.map_or_else(SwitchRegistry::new, SwitchRegistry::with_segment_dir);
    // A VM created from a snapshot restores it at every start.
    let builder = match &config.restore {
        Some(source) => VmmBuilder::restore_from(crate::snapshot::SnapshotPaths {
            state: source.snapshot_path.clone(),
            memory: source.mem_file_path.clone(),
        }),
        None => Ok(VmmBuilder::new(config)),
    };
    let built = builder.and_then(|b| {
        b.executor(executor)
            .switches(switches)
            .serial_output(Box::new(SerialForwarder(tx.clone())))
            .build()
    });
    let vmm = match built {
        Ok(vmm) => vmm,
        Err(e) => return finish(boot_failed(super::error_chain(&e)), tx, writer),
    };
    let report = |info: &crate::VmmInfo| BootReport {
        engine: info.engine.clone(),
        engine_reason: info.engine_reason.clone(),
        vcpus: info.vcpus,
        memory_bytes: info.memory_bytes,
        kernel: info.kernel.clone(),
    };
    let reason = if let Some(listener) = gdb {
        let report = report(vmm.info());
        let control = GdbControl::new();
        let _ = tx.send(FromVmm::Booted { report });
        serve_commands(reader, VmControl::Gdb(control.clone()), None, tx.clone())?;
        tracing::info!(wait, "the VM runs under the gdb stub");
        crate::gdb::run_with(vmm, listener, wait, &control).unwrap_or_else(|e| StopReason::Failed {
            vcpu: None,
            message: e.to_string(),
        })
    } else {
        let running = match vmm.start() {
            Ok(r) => r,
            Err(e) => return finish(boot_failed(super::error_chain(&e)), tx, writer),
        };
        let _ = tx.send(FromVmm::Booted {
            report: report(running.info()),
        });
        let snapshots = snapshot_thread(running.snapshotter()).map_err(ProtocolError::Io)?;
        let control = VmControl::Executor(running.control());
        serve_commands(reader, control, Some(snapshots), tx.clone())?;
        running.wait()
    };
    let _ = tx.send(FromVmm::Exited { reason });
    drop(tx);
    let _ = writer.join();
    Ok(())
}

/// Ends a boot that failed: lets the writer send the last frame, returns `error`.
fn finish(
    error: VmmProcessError,
    tx: mpsc::SyncSender<FromVmm>,
    writer: std::thread::JoinHandle<()>,
) -> Result<(), VmmProcessError> {
    drop(tx);
    let _ = writer.join();
    Err(error)
}

/// Starts the thread that serves the daemon's commands for a running VM.
fn serve_commands(
    mut reader: UnixStream,
    control: VmControl,
    snapshots: Option<mpsc::Sender<SnapshotJob>>,
    tx: mpsc::SyncSender<FromVmm>,
) -> Result<(), VmmProcessError> {
    // Not joined: once the VM has stopped, the process ends and takes it along.
    std::thread::Builder::new()
        .name("vmm-commands".into())
        .spawn(move || {
            if !confine_control_thread() {
                control.stop();
                return;
            }
            loop {
                match protocol::read_frame::<ToVmm>(&mut reader) {
                    Ok(Some(ToVmm::Command { id, command })) => {
                        let result = execute(&control, snapshots.as_ref(), command);
                        let _ = tx.send(FromVmm::Reply { id, result });
                    }
                    Ok(Some(ToVmm::Boot { .. })) => {
                        tracing::warn!("ignoring a second boot frame");
                    }
                    Ok(None) | Err(_) => {
                        tracing::info!("daemon gone: stopping the VM");
                        control.stop();
                        return;
                    }
                }
            }
        })
        .map_err(ProtocolError::Io)?;
    Ok(())
}
