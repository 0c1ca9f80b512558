//! `vm-service`: launch a guest from the command line, or run the daemon.
//!
//! `vm-service run` with no arguments boots the built-in guest; `--kernel`
//! boots a Linux kernel, `--guest debian` the guest `cargo xtask guest` built
//! (and exits with the status of the command given after `--`); `--drive`
//! attaches disks, `--rootfs` boots the built guest from its disk image.
//! `vm-service daemon` serves the REST API (see `vm_service::api`), and
//! `vm-service ctl` drives it. `vm-service firecracker` (or this binary named
//! `firecracker`) serves Firecracker's API for one VM. The serial console is
//! attached to the terminal, and the exit status says how the guest ended: 0
//! when it asked to stop, 1 when the VM could not be built or failed, 2 when a
//! vCPU triple-faulted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vm_core::config::{
    DeviceConfig, GuestArch, MacAddr, NetBackendConfig, NetConfig, SerialMode, VmConfig,
};
use vm_core::stop::EXIT_FAILED;
use vm_service::api::Limits;
use vm_service::daemon::server::DaemonOptions;
use vm_service::daemon::vms::VmsConfig;
use vm_service::net::{default_switch_dir, SwitchRegistry};
use vm_service::profile::Symbols;
use vm_service::sandbox::jail::{self, JailConfig};
use vm_service::sandbox::{SandboxConfig, SeccompLevel, ThreadKind};
use vm_service::{drive_arg, guest, ExecutorKind, StopReason, VmmBuilder};

#[derive(Debug, Parser)]
#[command(
    name = "vm-service",
    version,
    about = "Launch and manage virtual machines"
)]
struct Cli {
    /// Log filter: error, warn, info, debug, trace, or a tracing directive
    /// such as `vm_service=debug`. Logs go to stderr.
    #[arg(long, global = true, default_value = "warn", env = "VM_SERVICE_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a guest and attach its serial console to this terminal.
    ///
    /// With no --kernel, boots the built-in guest: it prints what it sees
    /// (memory, vCPUs, the first virtio-mmio device) and asks to stop.
    Run(RunArgs),
    /// Serve the REST API on a Unix socket and run VMs, one process each.
    Daemon(DaemonArgs),
    /// Drive a running daemon.
    Ctl(vm_service::daemon::ctl::CtlArgs),
    /// Behave like a Firecracker process: one VM behind Firecracker's API on
    /// --api-sock, or booted from --config-file. Also what this binary does
    /// when it is run under the name `firecracker` (a symlink).
    Firecracker(vm_service::firecracker::FirecrackerArgs),
    /// Internal: run one VM for the daemon, controlled over an inherited socket.
    #[command(hide = true)]
    Vmm {
        /// The control socket's file descriptor.
        #[arg(long)]
        fd: i32,
        #[command(flatten)]
        sandbox: SandboxArgs,
        /// Jail the VMM below this directory (see `daemon --jail-dir`).
        #[arg(long, requires = "jail_id")]
        jail_dir: Option<PathBuf>,
        /// The VM's id, naming its jail.
        #[arg(long, requires = "jail_dir")]
        jail_id: Option<String>,
    },
    /// Firecracker's jailer: confine a VMM in a jail (a private root under
    /// --chroot-base-dir, cgroups, namespaces, --uid/--gid), then run it in
    /// this same process: Firecracker mode when --exec-file's name contains
    /// `firecracker`, else the vm-service command after `--`.
    Jailer(vm_service::firecracker::jailer::JailerArgs),
}

#[derive(Debug, clap::Args)]
struct DaemonArgs {
    /// Path of the API socket (created with mode 0600).
    #[arg(long)]
    api_sock: PathBuf,
    /// Directory for the journal, and (in `switches/`) where the VMs'
    /// `switch` NICs meet: VMs naming the same switch share it.
    #[arg(long)]
    state_dir: PathBuf,
    /// Seconds a VM gets to stop before it is killed (on `stop` and on SIGTERM).
    #[arg(long, default_value_t = 10.0)]
    grace_period: f64,
    /// Seconds a client gets to send a request's headers and body.
    #[arg(long, default_value_t = 5.0)]
    request_timeout: f64,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// How the VMs' vCPUs get host threads: `sync` or `async`.
    #[arg(long, default_value = "sync")]
    executor: ExecutorKind,
    /// Most VMs defined at once (creates beyond it: 409 `too_many_vms`).
    #[arg(long, default_value_t = 256)]
    max_vms: usize,
    /// Most guest memory in MiB over every defined VM (creates beyond it:
    /// 507 `out_of_memory`). Default: the host's physical memory.
    #[arg(long)]
    max_memory_mib: Option<u64>,
    /// Most API connections served at once; further clients wait in the
    /// socket's backlog.
    #[arg(long, default_value_t = 128)]
    max_connections: usize,
    /// Seconds an answer may wait for a client to read it before the
    /// connection is closed.
    #[arg(long, default_value_t = 10.0)]
    write_timeout: f64,
    /// How each VM process confines itself: `--seccomp-level`, `--uid` and
    /// `--gid` here apply to the VMM processes (the daemon itself keeps its
    /// privileges to start them). A VMM with `--uid` must be able to open
    /// what its VM uses (/dev/kvm, TAP devices, disks, the state directory's
    /// `switches/`).
    #[command(flatten)]
    vmm_sandbox: SandboxArgs,
    /// Jail each VMM below this directory (`DIR/vm-service/<vm id>/root`):
    /// a private, read-only root with only the VM's files, a new network
    /// namespace unless a NIC is a TAP device, cgroup limits from the VM's
    /// memory and vCPUs (README: "Sandbox"). Needs --uid and --gid.
    #[arg(long, requires_all = ["uid", "gid"])]
    jail_dir: Option<PathBuf>,
}

/// How a VMM process confines itself (README: "Sandbox").
#[derive(Debug, clap::Args)]
struct SandboxArgs {
    /// Seccomp filters: 0 off, 1 a forbidden syscall is logged (thread and
    /// syscall number on stderr) and the process exits with status 159,
    /// 2 the process is killed by SIGSYS.
    #[arg(long, default_value = "2", env = "VM_SERVICE_SECCOMP_LEVEL")]
    seccomp_level: SeccompLevel,
    /// No seccomp filters (the same as --seccomp-level 0).
    #[arg(long)]
    no_seccomp: bool,
    /// Run as this user id once started (needs root; all capabilities are
    /// dropped). /dev/kvm, TAP devices and disk images must be usable by it.
    #[arg(long)]
    uid: Option<u32>,
    /// Run as this group id once started (needs root; supplementary groups
    /// are dropped).
    #[arg(long)]
    gid: Option<u32>,
    /// Tests: the thread of this kind (main, vcpu, io) makes a forbidden syscall.
    #[arg(long, hide = true)]
    seccomp_probe: Option<ThreadKind>,
}

impl SandboxArgs {
    fn config(&self, keep_fds: Vec<i32>) -> SandboxConfig {
        SandboxConfig {
            seccomp: if self.no_seccomp {
                SeccompLevel::Off
            } else {
                self.seccomp_level
            },
            uid: self.uid,
            gid: self.gid,
            keep_fds,
            probe: self.seccomp_probe,
            jail_dir: None,
        }
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Kernel image to boot (x86_64: bzImage or ELF vmlinux). Default: the built-in guest.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Boot a guest built by `cargo xtask guest` (`debian`: Debian's stock
    /// kernel and a busybox initramfs) for --arch, instead of --kernel/--initrd.
    #[arg(long, value_parser = ["debian"], conflicts_with_all = ["kernel", "initrd"])]
    guest: Option<String>,
    /// Where `cargo xtask guest` put its guests. Default: `target/guest` beside
    /// this executable's directory, else under the current directory.
    #[arg(long, env = "VM_GUEST_DIR", requires = "guest")]
    guest_dir: Option<PathBuf>,
    /// Boot the --guest from its root disk image, `<guest dir>/<arch>/rootfs.ext4`
    /// (read-write: the guest's writes go to that file; copy it first to keep
    /// it pristine, and pass the copy with `--drive COPY,root` instead).
    /// The initramfs mounts it (`root=/dev/vda`) and runs its `/init`.
    #[arg(long, requires = "guest")]
    rootfs: bool,
    /// A virtio-blk disk backed by a raw image file, e.g.
    /// `--drive data.img,ro`. Repeatable. Options after commas: `ro` (the guest
    /// sees a read-only disk; the file is opened read-only), `root` (boot from
    /// it: the kernel gets `root=/dev/vda`; at most one), `id=NAME` (default
    /// `drive<N>` for the N-th --drive, from 0). The root drive is `/dev/vda`,
    /// the others follow in order. The file must exist; a path cannot hold `,`.
    #[arg(long = "drive", value_name = "PATH[,ro][,root][,id=NAME]")]
    drives: Vec<String>,
    /// Address of the guest's eth0 as ADDR/PREFIX (a built guest's /init sets it up).
    #[arg(long, requires = "guest")]
    ip: Option<String>,
    /// A command for the guest's init to run (after `--`), e.g.
    /// `-- ping -c 3 10.0.0.2`. A --guest exits with the command's status.
    #[arg(last = true)]
    command: Vec<String>,
    /// Initial ramdisk to load with the kernel (needs --kernel).
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line. Default for a kernel: `console=ttyS0 reboot=k panic=1`;
    /// for --guest: `console=ttyS0 reboot=k panic=-1 cryptomgr.notests=1`.
    #[arg(long)]
    cmdline: Option<String>,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u64,
    /// Network interface: `virtual:NAME` (virtual switch NAME, shared with
    /// every process that joins NAME in --switch-dir: other `vm-service run`
    /// and the daemon's VMs; no host set-up, no root), `virtual` (a switch
    /// private to this process, where frames go nowhere), `tap:NAME` (an
    /// existing or new TAP device), or `none`.
    #[arg(long, default_value = "virtual")]
    net: String,
    /// The NIC's MAC address, e.g. `52:54:00:12:34:56`. Default: a locally
    /// administered address made from this process's id.
    #[arg(long)]
    mac: Option<MacAddr>,
    /// Directory where `virtual:NAME` switches meet (one Unix socket per
    /// member under `DIR/NAME/`). Default: `$XDG_RUNTIME_DIR/vm-service/switches`,
    /// else `/tmp/vm-service-<uid>/switches`; created with mode 0700.
    #[arg(long)]
    switch_dir: Option<PathBuf>,
    /// How vCPUs get host threads: `sync` (a thread each) or `async` (tokio).
    #[arg(long, default_value = "sync")]
    executor: ExecutorKind,
    /// Guest architecture: x86_64, arm64 or riscv64. Default: the host's.
    #[arg(long)]
    arch: Option<String>,
    /// riscv64 test programs (an ELF --kernel): stop after this many instructions.
    #[arg(long, default_value_t = 1_000_000_000)]
    max_instructions: u64,
    /// riscv64 guests on the software engine: `translate` (hot blocks
    /// become host code where the host has a code generator; the default)
    /// or `interpret` (the interpreter runs everything).
    #[arg(long, value_name = "TIER", value_parser = parse_tier)]
    riscv_tier: Option<vm_cross_arch::interp::riscv64::Tier>,
    /// Serve the GDB remote protocol here (`unix:PATH` or `tcp:127.0.0.1:PORT`);
    /// needs the `gdb` feature. The vCPUs then run in turn on one thread.
    #[arg(long, value_name = "ADDR")]
    gdb: Option<String>,
    /// With --gdb: run no guest instruction before a debugger attaches.
    #[arg(long, requires = "gdb")]
    gdb_wait: bool,
    /// Profile the guest: sample each vCPU's guest PC (the interpreter every
    /// 10000 instructions, KVM at each exit) and write a flat profile to FILE
    /// when the VM stops.
    #[arg(long, value_name = "FILE", conflicts_with = "gdb")]
    profile: Option<PathBuf>,
    /// With --profile: name samples by the functions of this guest ELF
    /// (`vmlinux`, a test program's ELF) or kernel `System.map` instead of
    /// by address.
    #[arg(long, value_name = "ELF", requires = "profile")]
    profile_symbols: Option<PathBuf>,
    /// Restore the VM saved in PATH instead of booting one: a directory
    /// holding `state.snap` and `memory.snap`, or a state file whose memory
    /// file --restore-mem-file names. Its configuration, disks (reopened by path) and NICs
    /// (TAP devices and virtual switches reattached by name; a switch other
    /// than the private `default` one is joined in --switch-dir) come from the
    /// snapshot.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["kernel", "guest", "initrd", "drives", "rootfs", "cmdline", "vcpus", "memory", "net", "mac", "arch", "ip", "command"]
    )]
    restore: Option<PathBuf>,
    /// The memory file of a --restore state file (e.g. the daemon's
    /// `mem_file_path`).
    #[arg(long, value_name = "FILE", requires = "restore")]
    restore_mem_file: Option<PathBuf>,
    /// When the guest's console prints TEXT, pause the VM, write a snapshot to
    /// --snapshot-dir and stop (exit status 0 once the snapshot is written).
    #[arg(
        long,
        value_name = "TEXT",
        requires = "snapshot_dir",
        conflicts_with = "gdb"
    )]
    snapshot_on_output: Option<String>,
    /// Where --snapshot-on-output writes the snapshot (created if missing).
    #[arg(long, value_name = "DIR", requires = "snapshot_on_output")]
    snapshot_dir: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// Passes console output through and reports, once, when `pattern` appears;
/// the VM is then asked to pause at once (the console is written by the vCPU
/// thread whose exit printed it), so it stops right after that output.
struct OutputTrigger<W> {
    inner: W,
    pattern: Vec<u8>,
    window: Vec<u8>,
    fired: Option<std::sync::mpsc::Sender<()>>,
    pause: PauseOnOutput,
}

impl<W: std::io::Write> std::io::Write for OutputTrigger<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.fired.is_some() && !self.pattern.is_empty() {
            self.window.extend_from_slice(&buf[..n]);
            if self
                .window
                .windows(self.pattern.len())
                .any(|w| w == self.pattern.as_slice())
            {
                if let Some(tx) = self.fired.take() {
                    if let Some(control) = self.pause.get() {
                        control.request_pause();
                    }
                    let _ = tx.send(());
                }
            }
            let keep = self.pattern.len().saturating_sub(1);
            let drop_to = self.window.len().saturating_sub(keep);
            self.window.drain(..drop_to);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where `--snapshot-on-output` finds the running VM's control.
type PauseOnOutput = Arc<std::sync::OnceLock<vm_service::executor::ExecutorControl>>;

/// `--riscv-tier`'s value.
fn parse_tier(s: &str) -> Result<vm_cross_arch::interp::riscv64::Tier, String> {
    use vm_cross_arch::interp::riscv64::Tier;
    match s {
        "translate" => Ok(Tier::Translate),
        "interpret" => Ok(Tier::Interpret),
        _ => Err(format!("`{s}`: the tiers are `translate` and `interpret`")),
    }
}

fn parse_net(spec: &str, mac: Option<MacAddr>) -> Result<Option<DeviceConfig>, String> {
    let backend = match spec {
        "none" => return Ok(None),
        "virtual" => NetBackendConfig::Virtual {
            switch: "default".into(),
        },
        other => match (other.strip_prefix("virtual:"), other.strip_prefix("tap:")) {
            (Some(name), _) if !name.is_empty() => NetBackendConfig::Virtual {
                switch: name.into(),
            },
            (_, Some(name)) if !name.is_empty() => NetBackendConfig::Tap {
                ifname: name.into(),
            },
            _ => {
                return Err(format!(
                "invalid --net {other:?}: expected `virtual`, `virtual:NAME`, `tap:NAME` or `none`"
            ))
            }
        },
    };
    Ok(Some(DeviceConfig::Net(NetConfig {
        id: "net0".into(),
        backend,
        mac,
    })))
}

fn config_from(args: &RunArgs) -> Result<VmConfig, String> {
    let arch = match &args.arch {
        Some(a) => a.parse::<GuestArch>().map_err(|e| e.to_string())?,
        None => VmConfig::default().arch,
    };
    let (kernel, initrd, rootfs) = match &args.guest {
        Some(_) => {
            let dir = args
                .guest_dir
                .clone()
                .unwrap_or_else(guest::default_guest_dir);
            let built = guest::find_built(arch, &dir)?;
            let rootfs = if args.rootfs {
                Some(built.rootfs()?.to_path_buf())
            } else {
                None
            };
            (Some(built.kernel), Some(built.initrd), rootfs)
        }
        None => (args.kernel.clone(), args.initrd.clone(), None),
    };
    let drives = drive_arg::drives(&args.drives, rootfs.as_deref()).map_err(|e| e.to_string())?;
    let base = match (&args.cmdline, &kernel) {
        (Some(c), _) => c.clone(),
        // A built guest: its kernel's crypto self-tests halve the time to
        // userspace on the interpreter and test nothing of ours, so skip them.
        (None, Some(_)) if args.guest.is_some() => {
            "console=ttyS0 reboot=k panic=-1 cryptomgr.notests=1".into()
        }
        (None, Some(_)) => "console=ttyS0 reboot=k panic=1".into(),
        (None, None) if args.command.is_empty() => String::new(),
        (None, None) => {
            return Err("a guest command (after --) needs --guest or --kernel".into());
        }
    };
    let cmdline = guest::guest_cmdline(&base, args.ip.as_deref(), &args.command)?;
    Ok(VmConfig {
        vcpus: args.vcpus,
        memory_mib: args.memory,
        arch,
        kernel,
        initrd,
        cmdline,
        devices: parse_net(&args.net, args.mac)?
            .into_iter()
            .chain(drives.into_iter().map(DeviceConfig::Block))
            .collect(),
        serial: SerialMode::Stdout,
        restore: None,
        gdb: None,
    })
}

/// Whether the riscv64 `--kernel` is a bare-metal test program (an ELF file,
/// not an `Image`), which runs within `--max-instructions`.
fn is_test_program(path: &std::path::Path) -> std::io::Result<bool> {
    let mut magic = Vec::with_capacity(4);
    std::fs::File::open(path)?.take(4).read_to_end(&mut magic)?;
    Ok(vm_cross_arch::platform::riscv64::program::is_elf(&magic))
}

fn run(args: &RunArgs) -> ExitCode {
    // Bound before the sandbox, which allows no new TCP sockets.
    let gdb = match args.gdb.as_deref().map(|a| {
        a.parse::<vm_service::gdb::GdbAddr>()
            .map_err(vm_service::gdb::GdbError::from)
            .and_then(|addr| vm_service::gdb::GdbListener::bind(&addr))
    }) {
        Some(Err(e)) => return fail(&e.to_string()),
        Some(Ok(l)) => Some(l),
        None => None,
    };
    // The profile's file and symbols too: the sandbox allows no file opens later.
    let profile_out = match args.profile.as_deref().map(std::fs::File::create) {
        Some(Err(e)) => return fail(&format!("cannot create the --profile file: {e}")),
        Some(Ok(f)) => Some(f),
        None => None,
    };
    let symbols = match args.profile_symbols.as_deref().map(read_symbols) {
        Some(Err(e)) => return fail(&e),
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let keep_fds = gdb
        .iter()
        .map(vm_service::gdb::GdbListener::as_raw_fd)
        .chain(profile_out.iter().map(std::os::fd::AsRawFd::as_raw_fd))
        .collect();
    if let Err(e) = vm_service::sandbox::enter_process(&args.sandbox.config(keep_fds)) {
        return fail(&e.to_string());
    }
    let restore = match &args.restore {
        Some(path) => match restore_builder(path, args.restore_mem_file.as_deref()) {
            Ok(b) => Some(b),
            Err(e) => return fail(&error_chain(&e)),
        },
        None => None,
    };
    let config = match (&restore, config_from(args)) {
        (Some(b), _) => b.config().clone(),
        (None, Ok(c)) => c,
        (None, Err(e)) => return fail(&e),
    };
    let test_program = match &config.kernel {
        Some(path) if config.arch == GuestArch::Riscv64 && restore.is_none() => {
            match is_test_program(path) {
                Ok(yes) => yes,
                Err(e) => return fail(&format!("cannot read kernel {}: {e}", path.display())),
            }
        }
        _ => false,
    };
    if test_program && gdb.is_some() {
        return fail("--gdb needs a kernel Image; ELF test programs run without it");
    }
    // Only a named switch is shared; plain `virtual` stays private to this process.
    let shared = match &restore {
        Some(_) => config.devices.iter().any(|d| {
            matches!(d, DeviceConfig::Net(n) if matches!(&n.backend,
                NetBackendConfig::Virtual { switch } if switch != "default"))
        }),
        None => args.net.starts_with("virtual:"),
    };
    if args.switch_dir.is_some() && !shared {
        return fail("--switch-dir needs --net virtual:NAME");
    }
    let switches = if shared {
        SwitchRegistry::with_segment_dir(args.switch_dir.clone().unwrap_or_else(default_switch_dir))
    } else {
        SwitchRegistry::new()
    };
    let (snapshot_tx, snapshot_rx) = std::sync::mpsc::channel();
    let pause_on_output = Arc::new(std::sync::OnceLock::new());
    let trigger = OutputTrigger {
        pause: pause_on_output.clone(),
        inner: std::io::stdout(),
        pattern: args
            .snapshot_on_output
            .as_deref()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        window: Vec::new(),
        fired: args.snapshot_on_output.as_ref().map(|_| snapshot_tx),
    };
    let (console, guest_status) = guest::ExitWatch::new(trigger);
    let console_tail = console.tail();
    let builder = restore.unwrap_or_else(|| VmmBuilder::new(config));
    let builder = if test_program {
        builder.instruction_limit(args.max_instructions)
    } else {
        builder
    };
    let builder = match args.riscv_tier {
        Some(tier) => builder.riscv_tier(tier),
        None => builder,
    };
    let builder = builder
        .executor(args.executor)
        .switches(switches)
        .serial_output(Box::new(console))
        .serial_input(Box::new(std::io::stdin()));
    let mut vmm = match builder.build() {
        Ok(v) => v,
        Err(e) => return fail(&error_chain(&e)),
    };
    let profile = profile_out
        .as_ref()
        .map(|_| vmm.profile(vm_service::profile::DEFAULT_PERIOD));
    let info = vmm.info();
    eprintln!(
        "vm-service: {} ({}); booting {} with {} vCPU(s), {} MiB, {} executor",
        info.engine,
        info.engine_reason,
        info.kernel,
        info.vcpus,
        info.memory_bytes >> 20,
        args.executor
    );
    let outcome = if let Some(listener) = gdb {
        eprintln!(
            "vm-service: gdb stub on {}{}",
            args.gdb.as_deref().unwrap_or_default(),
            if args.gdb_wait {
                ", waiting for a debugger"
            } else {
                ""
            }
        );
        match vm_service::gdb::run(vmm, listener, args.gdb_wait) {
            Ok(reason) => {
                eprintln!("vm-service: {reason}");
                (reason, None)
            }
            Err(e) => return fail(&e.to_string()),
        }
    } else {
        let snapshot = args
            .snapshot_dir
            .clone()
            .map(|dir| (dir, snapshot_rx, pause_on_output));
        match run_on_executor(vmm, snapshot) {
            Ok(outcome) => outcome,
            Err(code) => return code,
        }
    };
    let (reason, snapshot_taken) = outcome;
    if let (Some(profile), Some(mut out)) = (profile, profile_out) {
        // The vCPU loops have ended: every sample is merged.
        match profile.write_flat(&mut out, symbols.as_ref()) {
            Ok(()) => eprintln!(
                "vm-service: profile written to {}",
                args.profile.as_deref().unwrap_or(Path::new("")).display()
            ),
            Err(e) => return fail(&format!("cannot write the profile: {e}")),
        }
    }
    if !reason.is_clean() {
        report_console_tail(&console_tail);
    }
    let guest_status = *guest_status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match (snapshot_taken, reason) {
        (Some(true), StopReason::Requested) => ExitCode::SUCCESS,
        (Some(false), _) => ExitCode::from(EXIT_FAILED),
        (_, reason) => exit_status(&reason, guest_status),
    }
}

/// Reads the function symbols of a guest ELF for --profile-symbols.
fn read_symbols(path: &Path) -> Result<Symbols, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read --profile-symbols {}: {e}", path.display()))?;
    Symbols::parse(&bytes).map_err(|e| format!("--profile-symbols {}: {e}", path.display()))
}

/// After a failure or a triple fault: the guest console's last lines on
/// standard error, next to `vm-service`'s own report.
fn report_console_tail(tail: &guest::ConsoleTail) {
    let tail = tail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if tail.is_empty() {
        eprintln!("vm-service: the guest printed no line on its console");
        return;
    }
    eprintln!("vm-service: the guest console's last {} lines:", tail.len());
    for line in tail.iter() {
        eprintln!("vm-service: | {line}");
    }
}

/// Starts the vCPUs on the configured executor and waits for the VM to stop;
/// with `snapshot`, a snapshot is written to its directory when its channel
/// fires (`--snapshot-on-output`, which pauses the VM through the control
/// set here), and the VM then stops. Returns why the VM stopped and whether
/// a snapshot was taken (`None`: none was asked for).
fn run_on_executor(
    vmm: vm_service::Vmm,
    snapshot: Option<(PathBuf, std::sync::mpsc::Receiver<()>, PauseOnOutput)>,
) -> Result<(StopReason, Option<bool>), ExitCode> {
    let running = match vmm.start() {
        Ok(r) => r,
        Err(e) => return Err(fail(&error_chain(&e))),
    };
    let control = running.control();
    let snapshot_result = Arc::new(Mutex::new(None));
    if let Some((dir, snapshot_rx, pause_on_output)) = snapshot {
        let _ = pause_on_output.set(control.clone());
        let (snapshotter, control, result) = (
            running.snapshotter(),
            control.clone(),
            snapshot_result.clone(),
        );
        std::thread::spawn(move || {
            if snapshot_rx.recv().is_err() {
                return;
            }
            let taken = control
                .pause()
                .map_err(|e| e.to_string())
                .and_then(|()| snapshotter.snapshot(&dir).map_err(|e| error_chain(&e)));
            match &taken {
                Ok(paths) => eprintln!(
                    "vm-service: snapshot written to {} and {}",
                    paths.state.display(),
                    paths.memory.display()
                ),
                Err(e) => eprintln!("vm-service: error: snapshot failed: {e}"),
            }
            *result
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(taken.is_ok());
            control.stop();
        });
    }
    // Long boots (nested KVM) are followed through the log: exits once a minute.
    let progress = control.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_mins(1));
        tracing::info!(exits = ?progress.exit_counts(), "vCPU exit counts");
    });
    let reason = running.wait();
    eprintln!(
        "vm-service: {reason} (vCPU exits: {:?})",
        control.exit_counts()
    );
    let snapshot_taken = *snapshot_result
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok((reason, snapshot_taken))
}

/// The builder for `--restore PATH [--restore-mem-file FILE]`.
fn restore_builder(
    path: &std::path::Path,
    memory: Option<&std::path::Path>,
) -> Result<VmmBuilder, vm_service::VmmError> {
    match memory {
        Some(memory) => VmmBuilder::restore_from(vm_service::snapshot::SnapshotPaths {
            state: path.to_path_buf(),
            memory: memory.to_path_buf(),
        }),
        None => VmmBuilder::restore(path),
    }
}

/// The process's exit status: the stop reason's ([`StopReason::exit_code`]),
/// or after a clean stop the status of the guest's command, if its init said.
fn exit_status(reason: &StopReason, guest_status: Option<i32>) -> ExitCode {
    match guest_status {
        Some(status) if reason.is_clean() => {
            ExitCode::from(u8::try_from(status).unwrap_or(EXIT_FAILED))
        }
        _ => ExitCode::from(reason.exit_code()),
    }
}

use vm_service::daemon::error_chain;

fn seconds(what: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid --{what} {secs}: {e}"))
}

fn daemon(args: &DaemonArgs, log_filter: &str) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find this executable: {e}")),
    };
    let (grace, timeout, write_timeout) = match (
        seconds("grace-period", args.grace_period),
        seconds("request-timeout", args.request_timeout),
        seconds("write-timeout", args.write_timeout),
    ) {
        (Ok(g), Ok(t), Ok(w)) => (g, t, w),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(&e),
    };
    if let Some(dir) = &args.jail_dir {
        if let Err(e) = jail::absolute("--jail-dir", dir) {
            return fail(&e.to_string());
        }
    }
    let opts = DaemonOptions {
        api_sock: args.api_sock.clone(),
        state_dir: args.state_dir.clone(),
        vms: VmsConfig {
            exe,
            executor: args.executor,
            boot_timeout: Duration::from_mins(1),
            command_timeout: Duration::from_secs(10),
            grace_period: grace,
            log_filter: log_filter.to_string(),
            switch_dir: Some(args.state_dir.join("switches")),
            max_vms: args.max_vms,
            max_memory_mib: args.max_memory_mib.unwrap_or_else(host_memory_mib),
            sandbox: SandboxConfig {
                jail_dir: args.jail_dir.clone(),
                ..args.vmm_sandbox.config(Vec::new())
            },
        },
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            body_timeout: timeout,
            write_timeout,
            max_connections: args.max_connections.max(1),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("starting the runtime: {e}")),
    };
    match runtime.block_on(vm_service::daemon::server::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&error_chain(&e)),
    }
}

/// The host's physical memory in MiB (`u64::MAX` if the OS does not say).
fn host_memory_mib() -> u64 {
    // SAFETY: sysconf only reads system configuration values.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page)) {
        (Ok(n), Ok(size)) if n > 0 && size > 0 => n.saturating_mul(size) >> 20,
        _ => u64::MAX,
    }
}

fn vmm(fd: i32, sandbox: &SandboxArgs, jailed: Option<(&std::path::Path, &str)>) -> ExitCode {
    let mut config = sandbox.config(vec![fd]);
    let served = match jailed {
        None => match vm_service::sandbox::enter_process(&config) {
            Ok(()) => vm_service::daemon::vmm_process::serve_fd(fd),
            Err(e) => return fail(&e.to_string()),
        },
        // The jail needs the VM's files: it is entered once the boot frame
        // is read, before any thread starts; the filters come after it.
        Some((dir, id)) => vm_service::daemon::vmm_process::serve_fd_with(fd, |boot, keep| {
            let (Some(uid), Some(gid)) = (config.uid, config.gid) else {
                return Err("--jail-dir needs --uid and --gid".to_string());
            };
            let switch_dir = boot.switch_dir.as_deref();
            JailConfig::for_vm(&boot.config, switch_dir, dir, id, uid, gid)
                .and_then(|jail| jail::enter_jail(&jail))
                .map_err(|e| error_chain(&e))?;
            // The jail has dropped to them already.
            (config.uid, config.gid) = (None, None);
            config.keep_fds.extend_from_slice(keep);
            vm_service::sandbox::enter_process(&config).map_err(|e| e.to_string())
        }),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&error_chain(&e)),
    }
}

/// `vm-service jailer`: enters the jail, then runs what it was asked to in
/// this process.
fn jailer(args: &vm_service::firecracker::jailer::JailerArgs) -> ExitCode {
    let inner = match args.inner_command() {
        Ok(i) => i,
        Err(e) => return fail(&e.to_string()),
    };
    // Parsed before the jail is entered, so a bad command changes nothing.
    let command = match &inner {
        vm_service::firecracker::jailer::Inner::Firecracker(argv) => {
            match FirecrackerCli::try_parse_from(argv) {
                Ok(cli) => Ok(cli.args),
                Err(e) => e.exit(),
            }
        }
        vm_service::firecracker::jailer::Inner::VmService(argv) => {
            match Cli::try_parse_from(argv) {
                Ok(cli) if matches!(cli.command, Command::Jailer(_) | Command::Daemon(_)) => {
                    return fail("a jailer runs a VMM (`run`, `vmm`, `firecracker`), not a daemon or another jailer");
                }
                Ok(cli) => Err(cli),
                Err(e) => e.exit(),
            }
        }
    };
    let config = match args.jail_config() {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    if let Err(e) = jail::enter_jail(&config) {
        return fail(&error_chain(&e));
    }
    match command {
        Ok(firecracker) => vm_service::firecracker::run(&firecracker),
        Err(cli) => dispatch(&cli),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("vm-service: error: {message}");
    ExitCode::from(EXIT_FAILED)
}

/// `firecracker [flags]`: this binary under Firecracker's name.
#[derive(Debug, Parser)]
#[command(
    name = "firecracker",
    disable_version_flag = true,
    about = "vm-service in Firecracker-compatible mode"
)]
struct FirecrackerCli {
    #[command(flatten)]
    args: vm_service::firecracker::FirecrackerArgs,
}

/// True when this process was started under the name `firecracker`.
fn invoked_as_firecracker() -> bool {
    std::env::args_os()
        .next()
        .and_then(|argv0| PathBuf::from(argv0).file_name().map(|n| n == "firecracker"))
        .unwrap_or(false)
}

fn main() -> ExitCode {
    if invoked_as_firecracker() {
        return vm_service::firecracker::run(&FirecrackerCli::parse().args);
    }
    dispatch(&Cli::parse())
}

fn dispatch(cli: &Cli) -> ExitCode {
    // Firecracker mode installs its own (reconfigurable) logger; the jailer
    // leaves it to what it runs.
    if !matches!(cli.command, Command::Firecracker(_) | Command::Jailer(_)) {
        let filter = EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    match &cli.command {
        Command::Run(args) => run(args),
        Command::Daemon(args) => daemon(args, &cli.log_level),
        Command::Vmm {
            fd,
            sandbox,
            jail_dir,
            jail_id,
        } => vmm(*fd, sandbox, jail_dir.as_deref().zip(jail_id.as_deref())),
        Command::Firecracker(args) => vm_service::firecracker::run(args),
        Command::Jailer(args) => jailer(args),
        Command::Ctl(args) => match vm_service::daemon::ctl::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&error_chain(&e)),
        },
    }
}
