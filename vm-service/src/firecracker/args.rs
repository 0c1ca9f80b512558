//! Firecracker's command-line flags, as `vm-service firecracker` and a
//! binary named `firecracker` take them.
//!
//! Flags we implement do what Firecracker's do. Of the others, those whose
//! absence cannot change what the guest sees or weaken isolation that a
//! caller relies on are accepted and logged ([`FirecrackerArgs::ignored`]);
//! the rest are refused with a message saying why
//! ([`FirecrackerArgs::refusal`]).

use std::path::PathBuf;

/// Firecracker's default API socket path.
pub const DEFAULT_API_SOCK: &str = "/run/firecracker.socket";
/// Firecracker's default instance id.
pub const DEFAULT_ID: &str = "anonymous-instance";
/// Firecracker's default largest API request body, in bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 51_200;

/// `vm-service firecracker [flags]` (or `firecracker [flags]`).
#[derive(Debug, Clone, clap::Args)]
#[allow(clippy::struct_excessive_bools)] // one per Firecracker switch
pub struct FirecrackerArgs {
    /// Path of the API socket.
    #[arg(long, default_value = DEFAULT_API_SOCK)]
    pub api_sock: PathBuf,
    /// MicroVM id, reported by `GET /`.
    #[arg(long, default_value = DEFAULT_ID)]
    pub id: String,
    /// A Firecracker JSON config file: the VM boots from it at once.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Serve no API (needs --config-file).
    #[arg(long, requires = "config_file")]
    pub no_api: bool,
    /// Log file (or named pipe); default stderr.
    #[arg(long)]
    pub log_path: Option<PathBuf>,
    /// Log level: Error, Warning, Info, Debug, Trace or Off.
    #[arg(long)]
    pub level: Option<String>,
    /// Only log this module (accepted and ignored).
    #[arg(long)]
    pub module: Option<String>,
    /// Print each log line's level.
    #[arg(long)]
    pub show_level: bool,
    /// Print each log line's source file and line.
    #[arg(long)]
    pub show_log_origin: bool,
    /// Metrics file (or named pipe): a JSON object per line.
    #[arg(long)]
    pub metrics_path: Option<PathBuf>,
    /// Log when the guest reaches user space (accepted and ignored: no boot-timer device).
    #[arg(long)]
    pub boot_timer: bool,
    /// Largest API request body, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD)]
    pub http_api_max_payload_size: usize,
    /// Seconds a client gets to send a request's headers and body (ours).
    #[arg(long, default_value_t = 5.0)]
    pub api_request_timeout: f64,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Run without this VMM's seccomp filters (README: "Sandbox").
    #[arg(long)]
    pub no_seccomp: bool,
    /// This VMM's seccomp filters: 0 off, 1 log the forbidden syscall and
    /// exit (status 159), 2 kill (default). `--no-seccomp` means 0.
    #[arg(long, default_value = "2", env = "VM_SERVICE_SECCOMP_LEVEL")]
    pub seccomp_level: crate::sandbox::SeccompLevel,
    /// A seccomp filter to install (refused: this VMM installs its own).
    #[arg(long)]
    pub seccomp_filter: Option<PathBuf>,
    /// MMDS data store limit (accepted and ignored: no MMDS).
    #[arg(long)]
    pub mmds_size_limit: Option<u64>,
    /// MMDS contents at start (refused: no MMDS).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// The jailer's start time (accepted and ignored).
    #[arg(long)]
    pub start_time_us: Option<u64>,
    /// The jailer's start CPU time (accepted and ignored).
    #[arg(long)]
    pub start_time_cpu_us: Option<u64>,
    /// The jailer's parent CPU time (accepted and ignored).
    #[arg(long)]
    pub parent_cpu_time_us: Option<u64>,
    /// Print a snapshot's version (refused: no snapshots).
    #[arg(long)]
    pub describe_snapshot: Option<PathBuf>,
    /// Expose devices over PCI (refused: virtio-mmio only).
    #[arg(long)]
    pub enable_pci: bool,
}

impl FirecrackerArgs {
    /// Why these flags cannot be honoured, if one cannot.
    pub fn refusal(&self) -> Option<String> {
        if self.seccomp_filter.is_some() {
            return Some(
                "--seccomp-filter is not supported: this VMM installs its own seccomp \
                 filters per thread kind (--no-seccomp turns them off)"
                    .into(),
            );
        }
        if self.metadata.is_some() {
            return Some("--metadata is not supported: there is no MMDS".into());
        }
        if self.describe_snapshot.is_some() {
            return Some(
                "--describe-snapshot is not supported: snapshots are not supported yet".into(),
            );
        }
        if self.enable_pci {
            return Some("--enable-pci is not supported: devices are on virtio-mmio only".into());
        }
        if self.http_api_max_payload_size == 0 {
            return Some("--http-api-max-payload-size must be at least 1 byte".into());
        }
        if self.no_api && self.config_file.is_none() {
            return Some("--no-api needs --config-file".into());
        }
        None
    }

    /// The flags given that are accepted and ignored, for the log.
    pub fn ignored(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (given, flag) in [
            (self.boot_timer, "--boot-timer"),
            (self.module.is_some(), "--module"),
            (self.mmds_size_limit.is_some(), "--mmds-size-limit"),
            (self.start_time_us.is_some(), "--start-time-us"),
            (self.start_time_cpu_us.is_some(), "--start-time-cpu-us"),
            (self.parent_cpu_time_us.is_some(), "--parent-cpu-time-us"),
        ] {
            if given {
                out.push(flag);
            }
        }
        out
    }
}
