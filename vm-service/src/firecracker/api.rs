//! Firecracker's REST API over the process's one microVM.
//!
//! | Method and path | here |
//! |---|---|
//! | `GET /` | instance info: `id`, `state`, `vmm_version`, `app_name` |
//! | `GET /version` | `{"firecracker_version"}` |
//! | `PUT /boot-source` | kernel, initrd, command line (pre-boot) |
//! | `GET`/`PUT`/`PATCH /machine-config` | vCPUs, memory; `smt`/`track_dirty_pages` false, `cpu_template`/`huge_pages` "None" (pre-boot) |
//! | `PUT /drives/{id}` | a virtio-blk drive (pre-boot); `PATCH` post-boot, no changes supported |
//! | `PUT /network-interfaces/{id}` | a TAP-backed virtio-net NIC (pre-boot); `PATCH` post-boot, empty limiters only |
//! | `PUT /actions` | `InstanceStart`, `SendCtrlAltDel`, `FlushMetrics` |
//! | `PATCH /vm` | `Paused`, `Resumed` |
//! | `GET /vm/config` | every resource |
//! | `PUT /logger`, `PUT /metrics` | log and metrics files (pre-boot) |
//! | `PUT /snapshot/create` | a full snapshot of the paused microVM (`snapshot_path`, `mem_file_path`); 400 unless paused |
//! | `PUT /snapshot/load` | a fresh process's microVM from a snapshot (`snapshot_path`, `mem_backend` of type `File` or `mem_file_path`, `resume_vm`) |
//! | `/mmds*`, `/vsock`, `/balloon*`, `/entropy`, `/cpu-config`, `/serial`, `/hotplug*`, `/pmem*` | 400: not supported, with the reason |
//!
//! Every successful `PUT`/`PATCH` answers 204 with an empty body; every
//! error a JSON `{"fault_message"}`: 400 for bad requests and unknown
//! routes (never a bare 404), 413 for bodies over
//! `--http-api-max-payload-size`, 408 for clients that do not send their
//! request in time.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use super::instance::{Instance, InstanceError, FIRECRACKER_API_VERSION};
use super::metrics::FcMetrics;
use super::model::{
    Action, ActionType, BootSource, Drive, DrivePatch, Logger, MachineConfig, MachineConfigPatch,
    Metrics, NetworkInterface, NetworkInterfacePatch, VmState, VmStateRequest,
};
use super::snapshot::{SnapshotCreateParams, SnapshotLoadParams};
use crate::api::body::{parse_json, read_body};
use crate::api::error::ApiError;
use crate::api::Limits;

/// An error answer: a status and Firecracker's `{"fault_message"}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP status (400 unless the body was too large or too slow).
    pub status: StatusCode,
    /// What was wrong.
    pub message: String,
}

impl Fault {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<InstanceError> for Fault {
    fn from(e: InstanceError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<ApiError> for Fault {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            message: e.message,
        }
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "fault_message": self.message })),
        )
            .into_response()
    }
}

/// What the handler reaches.
#[derive(Debug, Clone)]
pub struct FcState {
    /// The microVM.
    pub instance: Arc<Mutex<Instance>>,
    /// Body size and time limits.
    pub limits: Limits,
    /// The process's metrics (API request counters).
    pub metrics: FcMetrics,
}

/// Routes Firecracker has that this VMM does not implement, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "mmds",
        "MMDS (the microVM metadata service) is not supported by this VMM",
    ),
    ("vsock", "vsock devices are not supported by this VMM"),
    ("balloon", "balloon devices are not supported by this VMM"),
    (
        "entropy",
        "entropy (virtio-rng) devices are not supported by this VMM",
    ),
    (
        "cpu-config",
        "custom CPU templates are not supported by this VMM",
    ),
    (
        "serial",
        "serial output redirection is not supported by this VMM: the console goes to stdout",
    ),
    ("hotplug", "memory hot-plug is not supported by this VMM"),
    ("pmem", "pmem devices are not supported by this VMM"),
];

/// The API's routes over `state`.
pub fn router(state: FcState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(s): State<FcState>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match dispatch(&s, &method, &path, req).await {
        Ok(r) => r,
        Err(fault) => fault.into_response(),
    };
    let status = response.status().as_u16();
    s.metrics.record_request(method.as_str(), &path, status);
    if status >= 400 {
        tracing::warn!(%method, %path, status, "API request failed");
    } else {
        tracing::info!(%method, %path, status, "API request");
    }
    response
}

async fn body<T: DeserializeOwned>(s: &FcState, req: Request) -> Result<T, Fault> {
    let bytes = read_body(req, s.limits.max_body_bytes, s.limits.body_timeout).await?;
    Ok(parse_json(&bytes)?)
}

/// Runs `f` on the microVM off the async threads (starting and pausing block).
async fn with_instance<T: Send + 'static>(
    s: &FcState,
    f: impl FnOnce(&mut Instance) -> Result<T, InstanceError> + Send + 'static,
) -> Result<T, Fault> {
    let instance = Arc::clone(&s.instance);
    tokio::task::spawn_blocking(move || {
        let mut guard = instance.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    })
    .await
    .map_err(|e| Fault {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("the request's worker failed: {e}"),
    })?
    .map_err(Fault::from)
}

fn no_content(result: ()) -> Response {
    let () = result;
    StatusCode::NO_CONTENT.into_response()
}

fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    Json(value).into_response()
}

async fn dispatch(
    s: &FcState,
    method: &Method,
    path: &str,
    req: Request,
) -> Result<Response, Fault> {
    let segments: Vec<&str> = path.trim_start_matches('/').split_terminator('/').collect();
    let (get, put, patch) = (
        method == Method::GET,
        method == Method::PUT,
        method == Method::PATCH,
    );
    match segments.as_slice() {
        [] if get => with_instance(s, |i| Ok(i.info()))
            .await
            .map(|v| ok_json(&v)),
        ["version"] if get => Ok(ok_json(
            &serde_json::json!({ "firecracker_version": FIRECRACKER_API_VERSION }),
        )),
        ["machine-config"] if get => with_instance(s, |i| Ok(i.machine_config()))
            .await
            .map(|v| ok_json(&v)),
        ["vm", "config"] if get => with_instance(s, |i| Ok(i.full_config()))
            .await
            .map(|v| ok_json(&v)),
        ["boot-source"] if put => {
            let b: BootSource = body(s, req).await?;
            with_instance(s, move |i| i.put_boot_source(b))
                .await
                .map(no_content)
        }
        ["machine-config"] if put => {
            let m: MachineConfig = body(s, req).await?;
            with_instance(s, move |i| i.put_machine_config(m))
                .await
                .map(no_content)
        }
        ["machine-config"] if patch => {
            let m: MachineConfigPatch = body(s, req).await?;
            with_instance(s, move |i| i.patch_machine_config(&m))
                .await
                .map(no_content)
        }
        ["drives", id] if put => {
            let (id, d): (String, Drive) = ((*id).to_string(), body(s, req).await?);
            with_instance(s, move |i| i.put_drive(&id, d))
                .await
                .map(no_content)
        }
        ["drives", id] if patch => {
            let (id, d): (String, DrivePatch) = ((*id).to_string(), body(s, req).await?);
            with_instance(s, move |i| i.patch_drive(&id, &d))
                .await
                .map(no_content)
        }
        ["network-interfaces", id] if put => {
            let (id, n): (String, NetworkInterface) = ((*id).to_string(), body(s, req).await?);
            with_instance(s, move |i| i.put_net(&id, n))
                .await
                .map(no_content)
        }
        ["network-interfaces", id] if patch => {
            let (id, n): (String, NetworkInterfacePatch) = ((*id).to_string(), body(s, req).await?);
            with_instance(s, move |i| i.patch_net(&id, &n))
                .await
                .map(no_content)
        }
        ["drives" | "network-interfaces"] if put || patch => Err(Fault::bad_request(format!(
            "{method} {path}: the id is missing from the path"
        ))),
        ["actions"] if put => {
            let a: Action = body(s, req).await?;
            with_instance(s, move |i| match a.action_type {
                ActionType::InstanceStart => i.start(),
                ActionType::SendCtrlAltDel => i.ctrl_alt_del(),
                ActionType::FlushMetrics => i.flush_metrics(),
            })
            .await
            .map(no_content)
        }
        ["vm"] if patch => {
            let v: VmState = body(s, req).await?;
            with_instance(s, move |i| match v.state {
                VmStateRequest::Paused => i.pause(),
                VmStateRequest::Resumed => i.resume(),
            })
            .await
            .map(no_content)
        }
        ["logger"] if put => {
            let l: Logger = body(s, req).await?;
            with_instance(s, move |i| i.put_logger(l))
                .await
                .map(no_content)
        }
        ["metrics"] if put => {
            let m: Metrics = body(s, req).await?;
            with_instance(s, move |i| i.put_metrics(&m))
                .await
                .map(no_content)
        }
        ["snapshot", "create"] if put => {
            let p: SnapshotCreateParams = body(s, req).await?;
            with_instance(s, move |i| i.snapshot_create(&p))
                .await
                .map(no_content)
        }
        ["snapshot", "load"] if put => {
            let p: SnapshotLoadParams = body(s, req).await?;
            with_instance(s, move |i| i.snapshot_load(&p))
                .await
                .map(no_content)
        }
        [first, ..] => match UNSUPPORTED.iter().find(|(route, _)| route == first) {
            Some((_, why)) => Err(Fault::bad_request(format!("{method} {path}: {why}"))),
            None => Err(invalid_route(method, path)),
        },
        [] => Err(invalid_route(method, path)),
    }
}

fn invalid_route(method: &Method, path: &str) -> Fault {
    Fault::bad_request(format!(
        "invalid request method and/or path: {method} {path} (see the Firecracker API)"
    ))
}
