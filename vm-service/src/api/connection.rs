//! Serving one API connection over a Unix socket, with a header deadline
//! that answers 408 to a client that began a request and stalled (hyper
//! alone would just close the connection), while idle keep-alive
//! connections close quietly. Used by the Firecracker-compatible mode; the
//! daemon has its own copy of this in `daemon/server.rs`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

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

/// Serves one HTTP/1.1 connection until the client closes it. A client that
/// starts a request and does not finish its headers within `header_timeout`
/// gets a 408 with `timeout_body` (JSON); an idle keep-alive connection is
/// just closed.
pub async fn serve(stream: UnixStream, app: Router, header_timeout: Duration, timeout_body: &str) {
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
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{timeout_body}",
                timeout_body.len()
            );
            let _ = spare.write_all(answer.as_bytes()).await;
            let _ = spare.shutdown().await;
        } else {
            tracing::debug!(error = %e, "API connection ended with an error");
        }
    }
}
