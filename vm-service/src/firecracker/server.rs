//! The API socket of a Firecracker-mode process: bind it, serve HTTP/1.1
//! connections under a header deadline (a client that starts a request and
//! does not finish its headers in time gets a 408 with a fault message; an
//! idle keep-alive connection is just closed).

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

/// The API socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Binding or preparing the path failed.
    #[error("API socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process answers on the socket.
    #[error("API socket {0}: another process is listening on it")]
    InUse(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Binds `path` (mode 0600), replacing a stale socket nobody answers on.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io_err(path)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    Ok(listener)
}

/// The connection's socket, noting whether a request has begun arriving
/// since the last answer was written.
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to a client whose request headers never completed.
const HEADER_TIMEOUT_BODY: &str =
    r#"{"fault_message":"the request headers did not arrive in time"}"#;

/// Serves one connection until the client closes it.
pub async fn serve_connection(stream: UnixStream, app: Router, header_timeout: Duration) {
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
        mid_request: Arc::clone(&mid_request),
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
