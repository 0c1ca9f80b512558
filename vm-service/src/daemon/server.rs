//! The daemon's main loop: bind the API socket (mode 0600), serve HTTP/1.1
//! connections, and on SIGTERM or SIGINT stop accepting, remove the socket,
//! and stop every VM within the grace period (journaling each stop).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

use super::journal::{Journal, JournalError};
use super::vms::{Vms, VmsConfig, VmsError};
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

/// The connection's socket, noting whether a request has begun arriving
/// since the last answer was written: a header timeout then means a slow
/// client (answered 408), not an idle keep-alive connection (just closed).
struct TrackedIo {
    inner: UnixStream,
    mid_request: Arc<AtomicBool>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.mid_request.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.mid_request.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.mid_request.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Body of the answer to a client whose request headers never completed.
const HEADER_TIMEOUT_BODY: &str =
    r#"{"code":"request_timeout","fault_message":"request headers did not arrive in time"}"#;

async fn serve_connection(stream: UnixStream, app: Router, header_timeout: Duration) {
    // A second handle on the socket answers 408 if hyper gives up on the headers.
    let split = stream.into_std().and_then(|s| {
        let dup = s.try_clone()?;
        Ok((UnixStream::from_std(s)?, UnixStream::from_std(dup)?))
    });
    let (stream, mut spare) = match split {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up an API connection");
            return;
        }
    };
    let mid_request = Arc::new(AtomicBool::new(false));
    let io = TrackedIo {
        inner: stream,
        mid_request: mid_request.clone(),
    };
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
        .await;
    if let Err(e) = result {
        if e.is_timeout() && mid_request.load(Ordering::Relaxed) {
            let answer = format!(
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{HEADER_TIMEOUT_BODY}",
                HEADER_TIMEOUT_BODY.len()
            );
            let _ = spare.write_all(answer.as_bytes()).await;
            let _ = spare.shutdown().await;
        } else {
            tracing::debug!(error = %e, "API connection ended with an error");
        }
    }
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
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, app.clone(), opts.limits.body_timeout));
                }
                Err(e) => {
                    // Out of fds, typically: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
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
