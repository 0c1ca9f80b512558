//! The daemon's main loop: bind the API socket (mode 0600), serve HTTP/1.1
//! connections, and on SIGTERM or SIGINT stop accepting, remove the socket,
//! and stop every VM within the grace period (journaling each stop).
//! Connections are served, within the API's limits, by [`connection::serve`].

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use super::journal::{Journal, JournalError};
use super::vms::{Vms, VmsConfig, VmsError};
use crate::api::error::ErrorShape;
use crate::api::{self, connection, ApiState, Limits};

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Path of the API socket.
    pub api_sock: PathBuf,
    /// Directory of the journal.
    pub state_dir: PathBuf,
    /// How VMs are run.
    pub vms: VmsConfig,
    /// Request limits.
    pub limits: Limits,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The journal could not be opened or replayed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Recovery could not journal the VMs it found orphaned.
    #[error("recovering VMs: {0}")]
    Recover(#[from] VmsError),
    /// The socket could not be set up.
    #[error("API socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the socket.
    #[error("another daemon is already listening on {0}")]
    InUse(PathBuf),
}

fn socket_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Socket {
        path: path.to_owned(),
        source,
    }
}

fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(socket_err(path)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::InUse(path.to_owned()));
        }
        // A stale socket of a daemon that died.
        std::fs::remove_file(path).map_err(socket_err(path))?;
    }
    // SAFETY: umask only changes this process's file-creation mask; it is
    // restored right after bind, before any VM process is spawned.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(socket_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_err(path))?;
    Ok(listener)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<(), DaemonError> {
    let (journal, registry) = Journal::open(&opts.state_dir)?;
    let vms = Vms::recover(opts.vms.clone(), journal, &registry)?;
    let listener = bind(&opts.api_sock)?;
    let sig = |kind| signal(kind).map_err(socket_err(&opts.api_sock));
    let (mut sigterm, mut sigint) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    tracing::info!(
        socket = %opts.api_sock.display(),
        state_dir = %opts.state_dir.display(),
        vms = registry.len(),
        "daemon listening"
    );
    let app = api::router(ApiState {
        vms: vms.clone(),
        limits: opts.limits,
        counters: Arc::default(),
    });
    tokio::select! {
        never = connection::serve(&listener, app, opts.limits, ErrorShape::CodeAndMessage) => match never {},
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    tracing::info!("shutting down: stopping VMs");
    drop(listener);
    if let Err(e) = std::fs::remove_file(&opts.api_sock) {
        tracing::warn!(error = %e, "could not remove the API socket");
    }
    vms.shutdown().await;
    tracing::info!("daemon stopped");
    Ok(())
}
