//! Firecracker-compatible mode: `vm-service firecracker [flags]`, or this
//! binary run under the name `firecracker` (a symlink), behaves like a
//! Firecracker process, so unmodified Firecracker clients drive it.
//!
//! One microVM per process and API socket, as in Firecracker. The process
//! serves Firecracker's REST API ([`api`]) on `--api-sock`, or boots
//! straight from `--config-file` ([`config_file`]; `--no-api` serves no
//! socket). `InstanceStart` builds the VM with [`crate::VmmBuilder`], the
//! same path as `vm-service run`; the guest's serial console goes to
//! stdout. When the guest stops, the process ends: status 0 when the guest
//! powered off or was stopped (`SendCtrlAltDel`), 1 when it failed.
//!
//! - [`args`]: the flags, which are honoured, ignored or refused.
//! - [`model`]: request and config-file bodies.
//! - [`resources`]: what clients configure, and its translation to a `VmConfig`.
//! - [`instance`]: the microVM's lifecycle.
//! - [`jailer`]: Firecracker's jailer flags (`vm-service jailer`).
//! - [`kernel_arch`]: the guest architecture, read from the kernel image.
//! - [`logger`], [`metrics`]: Firecracker's log and metrics files.
//! - the API socket and its connections: [`crate::api::connection`], as the daemon's.

pub mod api;
pub mod args;
pub mod config_file;
pub mod instance;
pub mod jailer;
pub mod kernel_arch;
pub mod logger;
pub mod metrics;
pub mod model;
pub mod resources;
pub mod snapshot;

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

pub use args::FirecrackerArgs;
use instance::{Instance, FIRECRACKER_API_VERSION};
use logger::LogControl;
use metrics::FcMetrics;
use model::Logger;

use crate::api::error::ErrorShape;
use crate::api::{connection, Limits};
use crate::daemon::error_chain;
use crate::sandbox::{SandboxConfig, SeccompLevel};
use crate::StopReason;
// The exit status when the process could not start or the VM failed.
use vm_core::stop::EXIT_FAILED;

/// How long answers in flight get once the VM has stopped.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(200);

fn fail(message: &str) -> ExitCode {
    eprintln!("firecracker (vm-service): error: {message}");
    ExitCode::from(EXIT_FAILED)
}

/// The version lines `--version` prints: Firecracker's form first.
pub fn version_text() -> String {
    format!(
        "Firecracker v{FIRECRACKER_API_VERSION}\nvm-service {} (Firecracker-compatible mode)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs a Firecracker-mode process until its VM stops or it is signalled.
pub fn run(args: &FirecrackerArgs) -> ExitCode {
    if args.version {
        print!("{}", version_text());
        return ExitCode::SUCCESS;
    }
    if let Some(why) = args.refusal() {
        return fail(&why);
    }
    let sandbox = SandboxConfig {
        seccomp: if args.no_seccomp {
            SeccompLevel::Off
        } else {
            args.seccomp_level
        },
        ..SandboxConfig::default()
    };
    if let Err(e) = crate::sandbox::enter_process(&sandbox) {
        return fail(&e.to_string());
    }
    let log_config = Logger {
        log_path: args.log_path.clone(),
        level: args.level.clone(),
        show_level: Some(args.show_level),
        show_log_origin: Some(args.show_log_origin),
        module: args.module.clone(),
    };
    let log = match LogControl::install(&log_config) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string()),
    };
    for flag in args.ignored() {
        tracing::warn!(flag, "accepted and ignored: this VMM has no use for it");
    }
    let timeout = match Duration::try_from_secs_f64(args.api_request_timeout) {
        Ok(t) => t,
        Err(e) => {
            return fail(&format!(
                "invalid --api-request-timeout {}: {e}",
                args.api_request_timeout
            ))
        }
    };
    let metrics = FcMetrics::default();
    if let Some(path) = &args.metrics_path {
        if let Err(e) = metrics.configure(path) {
            return fail(&e.to_string());
        }
    }
    let (stopped_tx, stopped_rx) = mpsc::unbounded_channel();
    let on_stop = Box::new(move |reason: StopReason| {
        let _ = stopped_tx.send(reason);
    });
    let mut instance = Instance::new(&args.id, metrics.clone(), Some(log), on_stop);
    if let Some(path) = &args.config_file {
        let applied =
            config_file::ConfigFile::read(path).and_then(|c| c.apply(path, &mut instance));
        if let Err(e) = applied {
            return fail(&error_chain(&e));
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("starting the runtime: {e}")),
    };
    let state = api::FcState {
        instance: Arc::new(Mutex::new(instance)),
        limits: Limits {
            max_body_bytes: args.http_api_max_payload_size,
            body_timeout: timeout,
            ..Limits::default()
        },
        metrics,
    };
    let api_sock = (!args.no_api).then(|| args.api_sock.clone());
    let reason = runtime.block_on(serve(state.clone(), api_sock.as_deref(), stopped_rx));
    // Firecracker writes a last metrics line on the way out.
    if state.metrics.path().is_some() {
        if let Err(e) = state.metrics.flush() {
            tracing::warn!(error = %e, "final metrics flush failed");
        }
    }
    match reason {
        Ok(Some(r)) => {
            tracing::info!(reason = %r, "the microVM stopped; exiting");
            if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!("firecracker (vm-service): the microVM stopped: {r}");
                ExitCode::from(EXIT_FAILED)
            }
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Serves the API (when `api_sock` is given) until the VM stops (its reason)
/// or a signal arrives (`None`, after stopping the VM).
async fn serve(
    state: api::FcState,
    api_sock: Option<&std::path::Path>,
    mut stopped: mpsc::UnboundedReceiver<StopReason>,
) -> Result<Option<StopReason>, String> {
    let listener = match api_sock {
        Some(path) => Some(connection::bind(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => return Err(format!("installing signal handlers: {e}")),
    };
    if let Some(path) = api_sock {
        tracing::info!(socket = %path.display(), "Firecracker API listening");
    }
    let app = api::router(state.clone());
    let mut serving = std::pin::pin!(async {
        match &listener {
            Some(l) => connection::serve(l, app, state.limits, ErrorShape::MessageOnly).await,
            None => std::future::pending().await,
        }
    });
    let mut flush = tokio::time::interval(metrics::FLUSH_INTERVAL);
    flush.tick().await;
    let result = loop {
        tokio::select! {
            never = &mut serving => match never {},
            reason = stopped.recv() => break Ok(reason),
            _ = flush.tick() => {
                if state.metrics.path().is_some() {
                    if let Err(e) = state.metrics.flush() {
                        tracing::warn!(error = %e, "periodic metrics flush failed");
                    }
                }
            }
            _ = sigterm.recv() => break Ok(None),
            _ = sigint.recv() => break Ok(None),
        }
    };
    if matches!(result, Ok(Some(_))) {
        // The request that stopped the VM (SendCtrlAltDel) is still being
        // answered: give in-flight answers a moment before the runtime goes.
        tokio::time::sleep(IN_FLIGHT_GRACE).await;
    }
    if matches!(result, Ok(None)) {
        tracing::info!("signalled: stopping the microVM");
        let instance = Arc::clone(&state.instance);
        let _ = tokio::task::spawn_blocking(move || {
            let guard = instance.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = guard.ctrl_alt_del();
        })
        .await;
    }
    if let Some(path) = api_sock {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(error = %e, "could not remove the API socket");
        }
    }
    result
}
