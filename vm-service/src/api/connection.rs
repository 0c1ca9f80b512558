//! Serving an API over a Unix socket, for the daemon and the
//! Firecracker-compatible mode alike: [`bind`] the socket (mode 0600), then
//! [`serve`] its connections. Connections are bounded: at most
//! `max_connections` are served (more wait in the backlog), a request's
//! headers must arrive within the request timeout (a client that began a
//! request is answered 408; an idle keep-alive connection just closes), and
//! an answer the client does not read within the write timeout ends the
//! connection. Accept failures (out of fds) back off up to a second. The
//! error answers hyper writes by itself get a JSON body; only its shape
//! ([`ErrorShape`]) differs between the two APIs.

use std::convert::Infallible;
use std::future::Future;
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
use tokio::sync::Semaphore;

use super::error::{error_answer, hyper_error_as_json, ErrorShape};
use super::Limits;

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
    #[error("API socket {0}: another process is already listening on it")]
    InUse(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Binds `path` (mode 0600 from the start), replacing a stale socket nobody
/// answers on.
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
        // A stale socket of a process that died.
        std::fs::remove_file(path).map_err(io_err(path))?;
    }
    // SAFETY: umask only changes this process's file-creation mask, and it
    // is restored right after bind; a file another thread creates meanwhile
    // gets at most mode 0600, never more.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    Ok(listener)
}

/// The connection's socket, noting whether a request has begun arriving
/// since the last answer was written: a header timeout then means a slow
/// client (answered 408), not an idle keep-alive connection (just closed).
/// A write that cannot make progress for `write_timeout` (a client that
/// sends requests but never reads the answers) fails, ending the connection.
/// An error answer hyper writes by itself gets a JSON body
/// ([`hyper_error_as_json`]).
struct TrackedIo {
    inner: UnixStream,
    mid_request: Arc<AtomicBool>,
    write_timeout: Duration,
    write_stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    shape: ErrorShape,
    /// A replacement being written, and how much of it is.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl TrackedIo {
    /// Passes a write's result through, failing it once the socket has
    /// refused writes for `write_timeout`.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.write_stalled = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .write_stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            tracing::debug!(
                ?timeout,
                "API client stopped reading; closing its connection"
            );
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?}"),
            )));
        }
        Poll::Pending
    }

    /// Writes the replacement in `rewrite`; reports `consumed` bytes of the
    /// caller's buffer written once all of it is.
    fn poll_rewrite(
        &mut self,
        cx: &mut Context<'_>,
        consumed: usize,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let Some((bytes, done)) = self.rewrite.as_mut() else {
                return Poll::Ready(Ok(consumed));
            };
            if *done == bytes.len() {
                self.rewrite = None;
                return Poll::Ready(Ok(consumed));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.deadline(cx, Poll::Pending),
            }
        }
    }

    /// Starts replacing `buf` if it is an error answer of hyper's own.
    fn check_hyper_error(&mut self, buf: &[u8]) -> bool {
        if self.rewrite.is_none() {
            self.rewrite = hyper_error_as_json(buf, self.shape).map(|json| (json, 0));
        }
        self.rewrite.is_some()
    }
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
        if self.check_hyper_error(buf) {
            return self.poll_rewrite(cx, buf.len());
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.mid_request.store(false, Ordering::Relaxed);
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if self.check_hyper_error(first) {
                return self.poll_rewrite(cx, first.len());
            }
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadline(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one HTTP/1.1 connection until the client closes it or a limit ends it.
/// `spare` is a second handle on the same socket: it answers 408 if hyper
/// gives up on the headers.
async fn serve_connection(
    stream: UnixStream,
    mut spare: UnixStream,
    app: Router,
    limits: Limits,
    shape: ErrorShape,
) {
    let mid_request = Arc::new(AtomicBool::new(false));
    let io = TrackedIo {
        inner: stream,
        mid_request: Arc::clone(&mid_request),
        write_timeout: limits.write_timeout,
        write_stalled: None,
        shape,
        rewrite: None,
    };
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.body_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
        .await;
    if let Err(e) = result {
        if e.is_timeout() && mid_request.load(Ordering::Relaxed) {
            let answer = error_answer(
                "HTTP/1.1 408 Request Timeout",
                shape,
                "request_timeout",
                "the request headers did not arrive in time",
            );
            // Bounded too: this client may not read either.
            let _ = tokio::time::timeout(limits.write_timeout, async {
                let _ = spare.write_all(&answer).await;
                let _ = spare.shutdown().await;
            })
            .await;
        } else {
            tracing::debug!(error = %e, "API connection ended with an error");
        }
    }
}

/// The shortest time between two "accept failed" warnings.
const ACCEPT_WARNING_PERIOD: Duration = Duration::from_secs(10);

/// Two handles on one accepted socket: one for hyper, one to answer 408.
fn split(stream: UnixStream) -> std::io::Result<(UnixStream, UnixStream)> {
    let s = stream.into_std()?;
    let dup = s.try_clone()?;
    Ok((UnixStream::from_std(s)?, UnixStream::from_std(dup)?))
}

/// Accepts and serves connections on `listener` with `app`, within
/// `limits`, until the future is dropped (connections being served go on).
pub async fn serve(
    listener: &UnixListener,
    app: Router,
    limits: Limits,
    shape: ErrorShape,
) -> Infallible {
    // One permit per connection: at the cap, clients wait in the backlog.
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::ZERO;
    // Failures come in bursts (a freed fd lets one accept through, then
    // the next fails again): one warning per quiet period, with a count.
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut unreported = 0u64;
    loop {
        let accepted = match Arc::clone(&connections).acquire_owned().await {
            Ok(permit) => listener
                .accept()
                .await
                .and_then(|(stream, _)| split(stream))
                .map(|pair| (pair, permit)),
            Err(closed) => Err(std::io::Error::other(closed)),
        };
        match accepted {
            Ok(((stream, spare), permit)) => {
                backoff = Duration::ZERO;
                let app = app.clone();
                tokio::spawn(async move {
                    serve_connection(stream, spare, app, limits, shape).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of fds, typically (for the accept or for the second
                // handle, whose failure closes the accepted socket and so
                // frees an fd for the next accept): back off (up to a
                // second) instead of spinning, and say so once per quiet
                // period.
                unreported += 1;
                if last_warning.is_none_or(|at| at.elapsed() >= ACCEPT_WARNING_PERIOD) {
                    tracing::warn!(error = %e, failures = unreported, "accept failed; backing off");
                    last_warning = Some(tokio::time::Instant::now());
                    unreported = 0;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
