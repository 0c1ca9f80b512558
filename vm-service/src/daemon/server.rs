//! The daemon's main loop: bind the API socket (mode 0600), serve HTTP/1.1
//! connections, and on SIGTERM or SIGINT stop accepting, remove the socket,
//! and stop every VM within the grace period (journaling each stop).
//! Connections are served, within the API's limits, by [`connection::serve`].

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use super::journal::{Journal, JournalError};
use super::vms::{Vms, VmsConfig, VmsError};
use crate::api::connection::{self, SocketError};
use crate::api::error::ErrorShape;
use crate::api::{self, ApiState, Limits};

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
    /// The API socket could not be set up.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// SIGTERM or SIGINT could not be caught.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<(), DaemonError> {
    let (journal, registry) = Journal::open(&opts.state_dir)?;
    let vms = Vms::recover(opts.vms.clone(), journal, &registry)?;
    let listener = connection::bind(&opts.api_sock)?;
    let sig = |kind| signal(kind).map_err(DaemonError::Signals);
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
