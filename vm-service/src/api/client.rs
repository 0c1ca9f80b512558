//! A small HTTP/1.1 client for the daemon's Unix socket (used by `vm-service
//! ctl`, the tests and the benches).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// A request that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The answer was not the JSON expected.
    #[error("unexpected answer ({status}): {source}")]
    Json {
        /// HTTP status.
        status: u16,
        /// Parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// An answer of the daemon.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

impl ApiResponse {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::Json {
            status: self.status,
            source,
        })
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Client for the daemon listening on a Unix socket.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
}

/// One keep-alive connection to the daemon.
#[derive(Debug)]
pub struct ApiConnection {
    sender: SendRequest<Full<Bytes>>,
}

impl ApiClient {
    /// A client for the daemon at `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_owned(),
        }
    }

    /// Opens a connection that can carry many requests.
    pub async fn connect(&self) -> Result<ApiConnection, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "API client connection ended");
            }
        });
        Ok(ApiConnection { sender })
    }

    /// Sends one request on a fresh connection.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<ApiResponse, ClientError> {
        self.connect().await?.request(method, path, body).await
    }

    /// Sends `GET path` and hands each body chunk to `on_chunk` as it arrives
    /// (for `/vms/{id}/serial`); returns the status.
    pub async fn stream(
        &self,
        path: &str,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<u16, ClientError> {
        let mut conn = self.connect().await?;
        conn.sender.ready().await?;
        let response = conn.sender.send_request(build("GET", path, None)?).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                on_chunk(data);
            }
        }
        Ok(status)
    }
}

fn build(
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Request<Full<Bytes>>, ClientError> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost");
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    Ok(req.body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))?)
}

impl ApiConnection {
    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<ApiResponse, ClientError> {
        self.sender.ready().await?;
        let response = self.sender.send_request(build(method, path, body)?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(ApiResponse { status, body })
    }
}
