//! The REST API of the `vm-service` daemon (HTTP/1.1 over a Unix socket).
//!
//! | Method and path            | What it does                                      |
//! |----------------------------|---------------------------------------------------|
//! | `GET /openapi.json`        | this API's OpenAPI 3 document                     |
//! | `GET /vms`                 | VMs in id order, 100 a page (`?after=ID&limit=N`) |
//! | `PUT /vms/{id}`            | create a VM ([`spec::VmSpec`], Firecracker names) |
//! | `GET /vms/{id}`            | state, config, uptime, exit counts, serial tail   |
//! | `PUT /vms/{id}/actions`    | `start`, `pause`, `resume`, `stop`, `ctrl-alt-del`|
//! | `PUT /vms/{id}/snapshot`   | snapshot a paused VM (`snapshot_path`, `mem_file_path`; 409 unless paused) |
//! | `PUT /vms/{id}/snapshot/load` | create a VM from a snapshot (`snapshot_path`, `mem_file_path`); every start restores it |
//! | `DELETE /vms/{id}`         | delete a VM that is not running                   |
//! | `GET /vms/{id}/serial`     | the serial console: tail, then live until it stops|
//! | `GET /metrics`             | Prometheus text format                            |
//!
//! Every error is a 4xx/5xx with a JSON body `{"code", "fault_message"}`.

pub mod body;
pub mod client;
pub mod connection;
pub mod error;
pub mod metrics;
pub mod spec;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use vm_core::config::{SnapshotSource, VmConfig};
use vm_core::VmId;

use crate::daemon::vms::{Action, VmSnapshot, Vms};
use body::ApiJson;
use error::ApiError;
use spec::VmSpec;

/// The OpenAPI document served at `GET /openapi.json` (checked in as `vm-service/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Limits on what clients may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a client may take to send its body (and its headers).
    pub body_timeout: Duration,
    /// How long an answer may wait for the client to read it.
    pub write_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The daemon's VMs.
    pub vms: Vms,
    /// Request limits.
    pub limits: Limits,
    /// Response counters.
    pub counters: Arc<metrics::ApiCounters>,
}

/// A VM as the API returns it: the daemon's snapshot plus its config in API form.
#[derive(Debug, Clone, Serialize)]
pub struct VmResource {
    /// State, uptime, exit counts, serial tail, ...
    #[serde(flatten)]
    pub vm: VmSnapshot,
    /// The config with Firecracker's names.
    pub spec: VmSpec,
}

impl From<VmSnapshot> for VmResource {
    fn from(vm: VmSnapshot) -> Self {
        let spec = VmSpec::from_config(&vm.config);
        Self { vm, spec }
    }
}

/// Body of `PUT /vms/{id}/actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// The action; Firecracker's `InstanceStart` and `SendCtrlAltDel` are accepted too.
    pub action_type: Action,
}

/// Body of `PUT /vms/{id}/snapshot` (Firecracker's `PUT /snapshot/create` fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Where the state file goes (written by the VM's process).
    pub snapshot_path: std::path::PathBuf,
    /// Where the memory file goes.
    pub mem_file_path: std::path::PathBuf,
    /// Firecracker's snapshot type: only `Full` exists here.
    #[serde(default)]
    pub snapshot_type: Option<String>,
}

fn vm_id(path: Result<Path<String>, PathRejection>) -> Result<VmId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    VmId::new(&raw).map_err(|e| ApiError::bad_request("invalid_vm_id", e.to_string()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Query of `GET /vms`: a page of VMs in id order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only VMs whose id sorts after this one (the last id of the previous page).
    pub after: Option<String>,
    /// Most VMs in the page (default and maximum [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

/// Most VMs `GET /vms` returns at once.
pub const MAX_PAGE: usize = 100;

async fn list(
    State(s): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit {limit} is outside 1..={MAX_PAGE}"),
        ));
    }
    let (page, more) = s.vms.list_page(q.after.as_deref(), limit);
    let next = more.then(|| page.last().map(|v| v.id.clone())).flatten();
    let body: Vec<VmResource> = page.into_iter().map(VmResource::from).collect();
    let mut response = Json(body).into_response();
    if let Some(Ok(value)) = next.map(|id| header::HeaderValue::from_str(&id)) {
        // The id to pass as `after` for the next page.
        response.headers_mut().insert("x-next-after", value);
    }
    Ok(response)
}

async fn create(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(spec): ApiJson<VmSpec>,
) -> Result<(StatusCode, Json<VmResource>), ApiError> {
    let id = vm_id(path)?;
    let config = spec.to_config()?;
    check_debuggable(&config)?;
    spec.check_drive_files()?;
    check_bootable(&config)?;
    let (vm, created) = s.vms.create(id, config).await?;
    // A retried create of the same VM is answered 200 with the VM as it is.
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(vm.into())))
}

/// Rejects, at create, a `gdb` section this daemon's VMM cannot serve (a
/// build without the `gdb` feature, a guest the stub cannot debug, a
/// relative socket path, which would name a file in the VMM's directory).
fn check_debuggable(config: &VmConfig) -> Result<(), ApiError> {
    let Some(gdb) = &config.gdb else {
        return Ok(());
    };
    crate::gdb::check_supported(config.arch)
        .map_err(|e| ApiError::bad_request("invalid_config", format!("invalid gdb: {e}")))?;
    match gdb.addr() {
        Ok(crate::gdb::GdbAddr::Unix(path)) if !path.is_absolute() => Err(ApiError::bad_request(
            "invalid_config",
            format!(
                "invalid gdb.address: {} is relative; give an absolute path",
                path.display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::bad_request("invalid_config", e.to_string())),
    }
}

/// Rejects, at create, a config that could never boot on this daemon:
/// kernel and initrd must be absolute paths of regular files that fit in
/// guest memory (like Firecracker's `PUT /boot-source`, a bad kernel is
/// reported now, not at start; the VMM process checks the opened files again
/// at every start), an architecture without a kernel needs a built-in guest,
/// and the vCPU and NIC counts must fit the architecture's layout.
fn check_bootable(config: &VmConfig) -> Result<(), ApiError> {
    let invalid = |field: &str, why: String| {
        ApiError::bad_request("invalid_config", format!("invalid {field}: {why}"))
    };
    for (field, path) in [
        ("boot-source.kernel_image_path", config.kernel.as_ref()),
        ("boot-source.initrd_path", config.initrd.as_ref()),
    ] {
        let Some(p) = path else { continue };
        if !p.is_absolute() {
            return Err(invalid(
                field,
                format!("{} is relative; give an absolute path", p.display()),
            ));
        }
        if let Err(e) = crate::vmm::open_boot_file(p, config.memory_bytes()) {
            return Err(invalid(field, format!("{}: {e}", p.display())));
        }
    }
    if config.kernel.is_none() {
        crate::guest::builtin(config.arch).map_err(|e| {
            invalid(
                "boot-source",
                format!("{e} (boot-source.kernel_image_path)"),
            )
        })?;
    }
    check_final_cmdline(config)?;
    let map = vm_cross_arch::platform::MachineSize {
        vcpus: config.vcpus,
        mem_size: config.memory_bytes(),
        virtio_devices: u32::try_from(config.devices.len()).unwrap_or(u32::MAX),
    };
    vm_cross_arch::platform::for_arch(config.arch)
        .memory_map(&map)
        .map_err(|e| invalid("machine-config or devices", e.to_string()))?;
    Ok(())
}

/// Refuses `boot_args` that fit the API's limit but not the kernel's once
/// the VMM has added its part: `root=/dev/vda rw|ro` for a root drive and,
/// for an x86_64 guest on KVM, the host profile's parameters. The kernel
/// takes 2047 bytes (its 2048-byte `COMMAND_LINE_SIZE` holds the NUL; the
/// device-tree platforms allow no more).
fn check_final_cmdline(config: &VmConfig) -> Result<(), ApiError> {
    if config.kernel.is_none() {
        return Ok(());
    }
    // A guest of the host's architecture runs on the hardware accelerator;
    // host profiles exist for KVM only, so on other hosts none is selected.
    let accel = if vm_core::config::GuestArch::host() == Some(config.arch) {
        vm_accel::AcceleratorKind::Kvm
    } else {
        vm_accel::AcceleratorKind::Software
    };
    // A host profile that cannot be chosen is the daemon's problem, not the
    // request's: the start reports it.
    let Ok(cmdline) = crate::vmm::linux_cmdline(accel, config) else {
        return Ok(());
    };
    let max = vm_cross_arch::platform::for_arch(config.arch)
        .max_cmdline_len()
        .min(vm_core::config::MAX_CMDLINE_LEN - 1);
    if cmdline.len() > max {
        return Err(ApiError::bad_request(
            "invalid_config",
            format!(
                "invalid boot-source.boot_args: {} bytes, {} once the VMM adds its parameters \
                 (root drive, host profile); the kernel takes at most {max}",
                config.cmdline.len(),
                cmdline.len()
            ),
        ));
    }
    Ok(())
}

async fn show(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<VmResource>, ApiError> {
    let id = vm_id(path)?;
    Ok(Json(s.vms.get(&id).await?.into()))
}

async fn act(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<ActionRequest>,
) -> Result<Json<VmResource>, ApiError> {
    let id = vm_id(path)?;
    Ok(Json(s.vms.act(&id, req.action_type).await?.into()))
}

async fn snapshot(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> Result<Json<VmResource>, ApiError> {
    let id = vm_id(path)?;
    if let Some(kind) = req.snapshot_type.as_deref().filter(|k| *k != "Full") {
        return Err(ApiError::bad_request(
            "invalid_snapshot_type",
            format!("snapshot_type {kind:?}: only \"Full\" snapshots exist"),
        ));
    }
    Ok(Json(
        s.vms
            .snapshot(&id, req.snapshot_path, req.mem_file_path)
            .await?
            .into(),
    ))
}

/// Creates a VM whose source is a snapshot: the state file is read and
/// checked now (a bad one is a 400 naming what is wrong), the memory file's
/// size too, and the VM gets the snapshot's configuration, journaled like
/// any create; each start restores the snapshot in a new VMM process.
async fn load_snapshot(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(source): ApiJson<SnapshotSource>,
) -> Result<(StatusCode, Json<VmResource>), ApiError> {
    let id = vm_id(path)?;
    for (field, p) in [
        ("snapshot_path", &source.snapshot_path),
        ("mem_file_path", &source.mem_file_path),
    ] {
        if !p.is_absolute() {
            return Err(ApiError::bad_request(
                "invalid_snapshot",
                format!("{field} {} is relative; give an absolute path", p.display()),
            ));
        }
    }
    let checked = source.clone();
    let state = tokio::task::spawn_blocking(move || {
        let state = crate::snapshot::VmState::read(&checked.snapshot_path)?;
        let memory = std::fs::File::open(&checked.mem_file_path).map_err(|e| {
            crate::snapshot::SnapshotError::Io {
                what: "memory file",
                path: checked.mem_file_path.clone(),
                source: e,
            }
        })?;
        crate::snapshot::format::check_memory_file(
            &checked.mem_file_path,
            &memory,
            state.memory_file_len,
        )?;
        Ok::<_, crate::snapshot::SnapshotError>(state)
    })
    .await
    .map_err(|e| ApiError::bad_request("invalid_snapshot", e.to_string()))?
    .map_err(|e| ApiError::bad_request("invalid_snapshot", crate::daemon::error_chain(&e)))?;
    let mut config = state.config;
    config.restore = Some(source);
    config
        .validate()
        .map_err(|e| ApiError::bad_request("invalid_snapshot", e.to_string()))?;
    let (vm, created) = s.vms.create(id, config).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(vm.into())))
}

async fn delete(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = vm_id(path)?;
    s.vms.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn serial(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = vm_id(path)?;
    let (tail, live) = s.vms.serial(&id)?.subscribe();
    let head = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(tail)) });
    let body = match live {
        Some(rx) => {
            let follow = futures_util::stream::unfold(rx, |mut rx| async move {
                use tokio::sync::broadcast::error::RecvError;
                match rx.recv().await {
                    Ok(chunk) => Some((Ok(chunk), rx)),
                    Err(RecvError::Lagged(n)) => Some((
                        Ok(Bytes::from(format!(
                            "\n[vm-service: {n} serial chunks dropped: reader too slow]\n"
                        ))),
                        rx,
                    )),
                    Err(RecvError::Closed) => None,
                }
            });
            Body::from_stream(head.chain(follow))
        }
        None => Body::from_stream(head),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&s.vms, &s.counters),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn count(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    s.counters.record(response.status().as_u16());
    response
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/vms", get(list))
        .route("/vms/{id}", put(create).get(show).delete(delete))
        .route("/vms/{id}/actions", put(act))
        .route("/vms/{id}/snapshot", put(snapshot))
        .route("/vms/{id}/snapshot/load", put(load_snapshot))
        .route("/vms/{id}/serial", get(serial))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}
