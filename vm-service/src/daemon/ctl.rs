//! `vm-service ctl`: drive a running daemon from the command line.

use std::io::Write;
use std::path::PathBuf;

use crate::api::client::{ApiClient, ApiResponse, ClientError};
use crate::api::error::ErrorBody;
use crate::api::spec::{BootSource, MachineConfig, NetworkInterface, VmSpec};

/// Arguments of `vm-service ctl`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The daemon's API socket.
    #[arg(
        long,
        env = "VM_SERVICE_API_SOCK",
        default_value = "/run/vm-service.sock"
    )]
    pub api_sock: PathBuf,
    /// Print raw JSON answers instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// A `ctl` subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// List VMs.
    List,
    /// Show one VM.
    Get {
        /// VM id.
        id: String,
    },
    /// Create a VM (no --kernel: the built-in guest).
    Create {
        /// VM id.
        id: String,
        /// Kernel image (boot-source.kernel_image_path).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Initrd (boot-source.initrd_path).
        #[arg(long, requires = "kernel")]
        initrd: Option<PathBuf>,
        /// Kernel command line (boot-source.boot_args).
        #[arg(long, requires = "kernel")]
        boot_args: Option<String>,
        /// vCPUs (machine-config.vcpu_count).
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory in MiB (machine-config.mem_size_mib).
        #[arg(long, default_value_t = 128)]
        memory: u64,
        /// A NIC on this TAP device (repeatable).
        #[arg(long)]
        tap: Vec<String>,
        /// A disk (`drives[i]`): a raw image the daemon opens, with options
        /// `ro`, `root`, `id=NAME` (default `drive<N>`), as for `vm-service run`.
        /// Repeatable.
        #[arg(long = "drive", value_name = "PATH[,ro][,root][,id=NAME]")]
        drives: Vec<crate::drive_arg::DriveArg>,
    },
    /// Boot a VM.
    Start {
        /// VM id.
        id: String,
    },
    /// Pause a running VM.
    Pause {
        /// VM id.
        id: String,
    },
    /// Resume a paused VM.
    Resume {
        /// VM id.
        id: String,
    },
    /// Stop a VM.
    Stop {
        /// VM id.
        id: String,
    },
    /// Send Ctrl-Alt-Del (stops the VM here).
    CtrlAltDel {
        /// VM id.
        id: String,
    },
    /// Delete a VM that is not running.
    Delete {
        /// VM id.
        id: String,
    },
    /// Print the serial console, following it while the VM runs.
    Serial {
        /// VM id.
        id: String,
    },
    /// Print the Prometheus metrics.
    Metrics,
    /// Send any request: `raw PUT /vms/a '{"machine-config": {...}}'`.
    Raw {
        /// HTTP method.
        method: String,
        /// Path.
        path: String,
        /// JSON body.
        body: Option<String>,
    },
}

/// Why a `ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon said no.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// What was wrong.
        message: String,
    },
    /// No async runtime.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

fn check(r: ApiResponse) -> Result<ApiResponse, CtlError> {
    if r.status < 400 {
        return Ok(r);
    }
    Err(match r.json::<ErrorBody>() {
        Ok(e) => CtlError::Api {
            status: r.status,
            code: e.code,
            message: e.fault_message,
        },
        Err(_) => CtlError::Api {
            status: r.status,
            code: "unknown".into(),
            message: r.text(),
        },
    })
}

fn field<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn summary_line(vm: &serde_json::Value) -> String {
    let text = |p: &[&str]| match field(vm, p) {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let uptime = field(vm, &["uptime_secs"])
        .as_f64()
        .map_or("-".to_string(), |s| format!("{s:.1}s"));
    let note = match (vm["error"].as_str(), vm["stop_reason"].as_str()) {
        (Some(e), _) => e.to_string(),
        (None, Some(r)) => r.to_string(),
        _ => String::new(),
    };
    format!(
        "{:<20} {:<8} {:>5} {:>8} {:>9}  {}",
        text(&["id"]),
        text(&["state"]),
        text(&["config", "vcpus"]),
        text(&["config", "memory_mib"]),
        uptime,
        note
    )
}

fn print_vm(vm: &serde_json::Value) {
    println!("{}", summary_line(vm));
    if let Some(counts) = vm["vcpu_exit_counts"].as_array() {
        println!("  vCPU exits: {counts:?}");
    }
    if let Some(pid) = vm["process"]["pid"].as_u64() {
        println!(
            "  process: pid {pid}, {} ({})",
            vm["process"]["engine"].as_str().unwrap_or("?"),
            vm["process"]["kernel"].as_str().unwrap_or("?")
        );
    }
    if let Some(tail) = vm["serial_tail"].as_str().filter(|t| !t.is_empty()) {
        println!("  serial tail:");
        for line in tail
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("    | {line}");
        }
    }
}

/// Prints every VM, fetching `GET /vms` page by page.
async fn list(client: &ApiClient, json: bool) -> Result<(), CtlError> {
    let mut vms: Vec<serde_json::Value> = Vec::new();
    loop {
        let path = match vms.last().and_then(|v| v["id"].as_str()) {
            Some(last) => format!("/vms?after={last}"),
            None => "/vms".to_string(),
        };
        let page: Vec<serde_json::Value> =
            check(client.request("GET", &path, None).await?)?.json()?;
        let full = page.len() >= crate::api::MAX_PAGE;
        vms.extend(page);
        if !full {
            break;
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(vms));
        return Ok(());
    }
    println!("{HEADER}");
    for vm in &vms {
        println!("{}", summary_line(vm));
    }
    Ok(())
}

const HEADER: &str = "ID                   STATE    VCPUS  MEM_MIB    UPTIME  NOTE";

async fn run_async(args: &CtlArgs) -> Result<(), CtlError> {
    let client = ApiClient::new(&args.api_sock);
    let action = |id: &str, action: &str| {
        (
            "PUT",
            format!("/vms/{id}/actions"),
            Some(format!(r#"{{"action_type":"{action}"}}"#)),
        )
    };
    let (method, path, body) = match &args.command {
        CtlCommand::List => return list(&client, args.json).await,
        CtlCommand::Get { id } => ("GET", format!("/vms/{id}"), None),
        CtlCommand::Create {
            id,
            kernel,
            initrd,
            boot_args,
            vcpus,
            memory,
            tap,
            drives,
        } => {
            let spec = VmSpec {
                boot_source: kernel.as_ref().map(|k| BootSource {
                    kernel_image_path: k.clone(),
                    initrd_path: initrd.clone(),
                    boot_args: boot_args.clone(),
                }),
                machine_config: Some(MachineConfig {
                    vcpu_count: *vcpus,
                    mem_size_mib: *memory,
                }),
                network_interfaces: tap
                    .iter()
                    .enumerate()
                    .map(|(i, t)| NetworkInterface {
                        iface_id: format!("eth{i}"),
                        host_dev_name: Some(t.clone()),
                        switch: None,
                        guest_mac: None,
                    })
                    .collect(),
                drives: drives
                    .iter()
                    .enumerate()
                    .map(|(i, d)| vm_core::config::BlockConfig {
                        drive_id: d.id.clone().unwrap_or_else(|| format!("drive{i}")),
                        path_on_host: d.path.clone(),
                        is_root_device: d.root,
                        is_read_only: d.read_only,
                    })
                    .collect(),
                arch: None,
                gdb: None,
            };
            let body = serde_json::to_string(&spec)
                .map_err(|source| ClientError::Json { status: 0, source })?;
            ("PUT", format!("/vms/{id}"), Some(body))
        }
        CtlCommand::Start { id } => action(id, "start"),
        CtlCommand::Pause { id } => action(id, "pause"),
        CtlCommand::Resume { id } => action(id, "resume"),
        CtlCommand::Stop { id } => action(id, "stop"),
        CtlCommand::CtrlAltDel { id } => action(id, "ctrl-alt-del"),
        CtlCommand::Delete { id } => ("DELETE", format!("/vms/{id}"), None),
        CtlCommand::Serial { id } => {
            let mut out = std::io::stdout();
            let status = client
                .stream(&format!("/vms/{id}/serial"), |chunk| {
                    let _ = out.write_all(chunk);
                    let _ = out.flush();
                })
                .await?;
            if status >= 400 {
                return check(client.request("GET", &format!("/vms/{id}"), None).await?)
                    .map(|_| ());
            }
            return Ok(());
        }
        CtlCommand::Metrics => ("GET", "/metrics".to_string(), None),
        CtlCommand::Raw { method, path, body } => (method.as_str(), path.clone(), body.clone()),
    };
    let r = check(
        client
            .request(method, &path, body.as_deref().map(str::as_bytes))
            .await?,
    )?;
    let raw = args.json || matches!(args.command, CtlCommand::Raw { .. } | CtlCommand::Metrics);
    if raw || r.body.is_empty() {
        let text = r.text();
        if !text.is_empty() {
            println!("{}", text.trim_end());
        } else if matches!(args.command, CtlCommand::Delete { .. }) {
            println!("deleted");
        }
        return Ok(());
    }
    let value: serde_json::Value = r.json()?;
    println!("{HEADER}");
    if let Some(vms) = value.as_array() {
        for vm in vms {
            println!("{}", summary_line(vm));
        }
    } else {
        print_vm(&value);
    }
    Ok(())
}

/// Runs a `ctl` command; the error says what the daemon answered.
pub fn run(args: &CtlArgs) -> Result<(), CtlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CtlError::Runtime)?;
    runtime.block_on(run_async(args))
}
