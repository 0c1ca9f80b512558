//! The VMM process sandboxes itself: a VMM runs code written by whoever
//! controls the guest, so once it is set up it keeps only what it needs.
//!
//! - [`enter_process`] (the binary calls it for `run`, `vmm` and Firecracker
//!   mode, before any thread exists): closes inherited descriptors, drops to
//!   `--uid`/`--gid` with no capabilities (when started as root), sets
//!   `PR_SET_NO_NEW_PRIVS`, and installs the *VMM* seccomp filter, which every
//!   thread created afterwards inherits.
//! - [`enter_thread`] (a vCPU thread before its first guest instruction, a
//!   device I/O thread before its first poll): stacks the tighter filter of
//!   that thread's kind. Seccomp filters only add up: a syscall must pass every
//!   filter of its thread.
//!
//! - [`jail::enter_jail`] (optional, before [`enter_process`]): a mount
//!   namespace whose root holds only the VM's files, network and PID
//!   namespaces, cgroup limits, the drop to the jail's user
//!   (`vm-service jailer`, and the daemon's `--jail-dir`).
//!
//! A library embedder that never calls [`enter_process`] gets no filters.
//! The allow lists live in `linux/filters.rs`; the README's "Sandbox" section
//! describes them. Only Linux has seccomp: elsewhere [`enter_process`] refuses
//! any level but [`SeccompLevel::Off`] and privilege changes.

pub mod jail;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as imp;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use vm_core::thread_role::ThreadRole;

/// What a seccomp filter does to a syscall outside its thread's allow list
/// (Firecracker's `--seccomp-level` scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompLevel {
    /// `0`: no filters.
    Off,
    /// `1`: `SIGSYS`; a handler writes the thread's name and the syscall's
    /// number to stderr and ends the process with status 159 (128 + SIGSYS).
    Log,
    /// `2` (default): `SECCOMP_RET_KILL_PROCESS`, the process dies of SIGSYS.
    #[default]
    Kill,
}

impl SeccompLevel {
    fn code(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::Log => 1,
            Self::Kill => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Off,
            1 => Self::Log,
            _ => Self::Kill,
        }
    }
}

impl fmt::Display for SeccompLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl FromStr for SeccompLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Self::Off),
            "1" => Ok(Self::Log),
            "2" => Ok(Self::Kill),
            other => Err(format!(
                "invalid seccomp level `{other}` (expected 0 off, 1 log and exit, 2 kill)"
            )),
        }
    }
}

/// The kinds of thread a VMM process has; each gets its own allow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread and every thread without a kind of its own (tokio
    /// runtime threads: Firecracker mode's API; `vm-wait`; the exit-count
    /// logger). Its filter is installed for the whole process and inherited
    /// by all threads.
    Vmm,
    /// A vCPU thread (sync executor thread or async blocking-pool thread).
    Vcpu,
    /// A vCPU thread whose engine translates guest code to host code (the
    /// riscv64 engine with its `jit` tier): a vCPU that may also map and
    /// protect memory executable (never writable and executable at once).
    TranslatingVcpu,
    /// A device I/O thread (`net-rx`, `blk-io`).
    DeviceIo,
    /// An irqfd relay (`irqfd-<line>`): waits on an eventfd, raises a line.
    IrqRelay,
    /// A virtual switch's bridge to its cross-process segment
    /// (`switch-<name>`): datagrams to and from the members' sockets, and
    /// listing the segment's directory.
    SwitchBridge,
    /// Console input into the serial port (`serial-input`).
    SerialInput,
    /// The daemon's VMM child talking to the daemon (`vmm-frames`,
    /// `vmm-commands`): frames on the inherited control socket.
    Control,
}

impl ThreadKind {
    /// Every kind, in the README's order.
    pub const ALL: [Self; 8] = [
        Self::Vmm,
        Self::Vcpu,
        Self::DeviceIo,
        Self::IrqRelay,
        Self::SwitchBridge,
        Self::SerialInput,
        Self::Control,
        Self::TranslatingVcpu,
    ];

    /// The name `--seccomp-probe` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vmm => "main",
            Self::Vcpu => "vcpu",
            Self::DeviceIo => "io",
            Self::IrqRelay => "irqfd",
            Self::SwitchBridge => "switch",
            Self::SerialInput => "serial",
            Self::Control => "control",
            Self::TranslatingVcpu => "vcpu-jit",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Vmm => 1,
            Self::Vcpu => 2,
            Self::DeviceIo => 3,
            Self::IrqRelay => 4,
            Self::SwitchBridge => 5,
            Self::SerialInput => 6,
            Self::Control => 7,
            Self::TranslatingVcpu => 8,
        }
    }

    /// The kind of a thread the library crates start.
    fn of_role(role: ThreadRole) -> Self {
        match role {
            ThreadRole::IrqRelay => Self::IrqRelay,
            ThreadRole::SwitchBridge => Self::SwitchBridge,
            ThreadRole::SerialInput => Self::SerialInput,
        }
    }
}

impl FromStr for ThreadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown thread kind `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// How a VMM process confines itself.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// What the seccomp filters do on a forbidden syscall.
    pub seccomp: SeccompLevel,
    /// Run as this user id (needs root); supplementary groups are dropped.
    pub uid: Option<u32>,
    /// Run as this group id (needs root).
    pub gid: Option<u32>,
    /// Descriptors above stderr to keep open (e.g. the daemon's control socket).
    pub keep_fds: Vec<i32>,
    /// Tests only: the thread of this kind makes a forbidden syscall right
    /// after its filter is installed.
    pub probe: Option<ThreadKind>,
    /// The daemon's VMM processes: jail each below this directory (needs
    /// `uid` and `gid`; see [`jail::JailConfig::for_vm`]).
    pub jail_dir: Option<std::path::PathBuf>,
}

impl SandboxConfig {
    /// The `vm-service vmm` flags that give a child VMM process this
    /// confinement (the daemon's VMM processes): the level, `--uid`/`--gid`,
    /// the test probe and `--jail-dir` (the caller adds the VM's
    /// `--jail-id`). `keep_fds` is the child's own business.
    pub fn vmm_args(&self) -> Vec<String> {
        let mut args = vec!["--seccomp-level".to_string(), self.seccomp.to_string()];
        for (flag, id) in [("--uid", self.uid), ("--gid", self.gid)] {
            if let Some(id) = id {
                args.extend([flag.to_string(), id.to_string()]);
            }
        }
        if let Some(kind) = self.probe {
            args.extend(["--seccomp-probe".to_string(), kind.name().to_string()]);
        }
        if let Some(dir) = &self.jail_dir {
            args.extend(["--jail-dir".to_string(), dir.display().to_string()]);
        }
        args
    }
}

/// Why the sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call of the set-up failed.
    #[error("sandbox: {what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A seccomp filter could not be compiled or installed.
    #[error("sandbox: seccomp filter for {kind:?} threads: {message}")]
    Seccomp {
        /// The thread kind whose filter failed.
        kind: ThreadKind,
        /// seccompiler's error.
        message: String,
    },
    /// `--uid`/`--gid` without being root.
    #[error("sandbox: --uid/--gid need root (running as uid {euid})")]
    NotRoot {
        /// The effective uid.
        euid: u32,
    },
    /// After the drop, `/proc/self/status` does not show what was asked.
    #[error("sandbox: after dropping privileges /proc/self/status shows {line:?}")]
    NotDropped {
        /// The line that is wrong.
        line: String,
    },
    /// This OS has no seccomp or the asked privilege change.
    #[error("sandbox: {0} is only available on Linux")]
    Unsupported(&'static str),
}

/// The process's seccomp level, set once by [`enter_process`]: 0 until then.
static LEVEL: AtomicU8 = AtomicU8::new(0);
/// The thread kind that makes a forbidden syscall (0: none).
static PROBE: AtomicU8 = AtomicU8::new(0);

/// Confines this process; call before it starts any thread. See the module docs.
pub fn enter_process(config: &SandboxConfig) -> Result<(), SandboxError> {
    imp::enter_process(config)?;
    PROBE.store(config.probe.map_or(0, ThreadKind::code), Ordering::Release);
    LEVEL.store(config.seccomp.code(), Ordering::Release);
    // Threads the library crates start (irqfd relays, switch bridges, serial
    // input) stack their kind's filter through this hook.
    vm_core::thread_role::set_hook(|role| {
        enter_thread(ThreadKind::of_role(role)).map_err(|e| e.to_string())
    });
    tracing::info!(seccomp = %config.seccomp, uid = ?config.uid, gid = ?config.gid, "sandbox entered");
    probe(ThreadKind::Vmm);
    Ok(())
}

/// The level [`enter_process`] installed ([`SeccompLevel::Off`] before it).
pub fn process_level() -> SeccompLevel {
    SeccompLevel::from_code(LEVEL.load(Ordering::Acquire))
}

/// Stacks the filter of `kind` on the calling thread when the process is
/// sandboxed (a no-op otherwise). Call before the thread does its work.
pub fn enter_thread(kind: ThreadKind) -> Result<(), SandboxError> {
    let level = SeccompLevel::from_code(LEVEL.load(Ordering::Acquire));
    if level == SeccompLevel::Off {
        return Ok(());
    }
    imp::install_thread_filter(kind, level)?;
    probe(kind);
    Ok(())
}

/// Stacks the filters of `kinds`, in order, on the calling thread only, at
/// `level`, whether or not the process is sandboxed (no privilege change, no
/// other thread affected). For measuring what the filters cost: a bench runs
/// the same work on a thread confined as a vCPU (`[Vmm, Vcpu]`) and on one
/// without filters. Irreversible for the thread, as every filter is.
pub fn filter_current_thread(
    kinds: &[ThreadKind],
    level: SeccompLevel,
) -> Result<(), SandboxError> {
    if level == SeccompLevel::Off {
        return Ok(());
    }
    for &kind in kinds {
        imp::install_thread_filter(kind, level)?;
    }
    Ok(())
}

/// Names the calling thread (at most 15 bytes are kept), so that logs and the
/// level-1 SIGSYS line name it: tokio's blocking-pool threads that host vCPUs
/// take their vCPU's name. Best effort; a no-op outside Linux.
pub fn name_current_thread(name: &str) {
    imp::name_current_thread(name);
}

/// The test hook: the thread of the chosen kind makes a syscall its filter forbids.
fn probe(kind: ThreadKind) {
    if PROBE.load(Ordering::Acquire) == kind.code() {
        tracing::warn!(?kind, "seccomp probe: making a forbidden syscall");
        imp::forbidden_syscall(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_kinds_parse_as_documented() {
        assert_eq!("0".parse(), Ok(SeccompLevel::Off));
        assert_eq!("1".parse(), Ok(SeccompLevel::Log));
        assert_eq!("2".parse(), Ok(SeccompLevel::Kill));
        assert!("3".parse::<SeccompLevel>().is_err());
        assert_eq!(SeccompLevel::default(), SeccompLevel::Kill);
        for level in [SeccompLevel::Off, SeccompLevel::Log, SeccompLevel::Kill] {
            assert_eq!(SeccompLevel::from_code(level.code()), level);
            assert_eq!(level.to_string().parse(), Ok(level));
        }
        assert_eq!("vcpu".parse(), Ok(ThreadKind::Vcpu));
        assert_eq!("io".parse(), Ok(ThreadKind::DeviceIo));
        assert_eq!("main".parse(), Ok(ThreadKind::Vmm));
        assert!("gpu".parse::<ThreadKind>().is_err());
        for kind in ThreadKind::ALL {
            assert_eq!(kind.name().parse(), Ok(kind));
            assert_eq!(ThreadKind::ALL[usize::from(kind.code()) - 1], kind);
        }
    }

    #[test]
    fn a_child_vmm_gets_the_level_ids_and_probe_as_flags() {
        assert_eq!(
            SandboxConfig::default().vmm_args(),
            ["--seccomp-level", "2"]
        );
        let config = SandboxConfig {
            seccomp: SeccompLevel::Log,
            uid: Some(65534),
            gid: Some(65533),
            keep_fds: vec![3],
            probe: Some(ThreadKind::Vcpu),
            jail_dir: Some("/srv/j".into()),
        };
        assert_eq!(
            config.vmm_args(),
            [
                "--seccomp-level",
                "1",
                "--uid",
                "65534",
                "--gid",
                "65533",
                "--seccomp-probe",
                "vcpu",
                "--jail-dir",
                "/srv/j"
            ]
        );
    }

    #[test]
    fn threads_of_an_unsandboxed_process_get_no_filter() {
        // Library use: enter_process was never called, so this is a no-op.
        assert!(enter_thread(ThreadKind::Vcpu).is_ok());
    }
}
