//! `cargo xtask e2e --arch x86_64`: boot a stock Linux guest with the release
//! `vm-service` and follow it to userspace.
//!
//! With `--nested-tcg` ([`nested_tcg`]) the VMM runs instead inside a QEMU
//! TCG machine whose emulated CPU offers SVM, on that machine's standard KVM
//! (what `cargo xtask ci` runs); the rest of this page is the run on this
//! host's own `/dev/kvm`.
//!
//! The guest comes from `cargo xtask guest --arch ARCH` (kernel and initrd in
//! `target/guest/ARCH/`), unless `--kernel`/`--initrd` name them. The serial
//! console is streamed to `target/e2e/ARCH-serial.log` (the VMM's log to
//! `ARCH-vmm.log`), each line stamped with the wall-clock time and the
//! seconds since launch. Progress is printed every minute. The run succeeds
//! when the guest's `/init` prints [`READY_MARKER`]; at the timeout it stops
//! the VMM and reports how far the guest got: the last lines, the elapsed
//! time, vCPU exits and the instruction-fallback emulations per mnemonic.
//!
//! Not part of the default test run: on a nested paravirtual KVM (kvm_pvm)
//! this takes tens of minutes and stock x86 user space cannot run there.

mod nested_tcg;

pub use nested_tcg::{
    run as run_nested_tcg, ONE_GUEST as NESTED_TCG_ONE_GUEST, TWO_GUESTS as NESTED_TCG_TWO_GUESTS,
};

/// How long `cargo xtask ci` gives the nested-TCG e2e (about a minute when
/// well; the two-guest round takes 2-3 min on a busy 2-core machine).
pub const NESTED_TCG_TIMEOUT: Duration = Duration::from_mins(5);

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// What the guest's `/init` prints once userspace runs.
pub const READY_MARKER: &str = "VM-GUEST-READY";
/// The base command line; the host profile's additions and `--append` follow.
const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
const PROGRESS_EVERY: Duration = Duration::from_mins(1);
const TAIL_LINES: usize = 15;

/// Options of `cargo xtask e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Guest architecture (only x86_64 boots a stock kernel here so far).
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Boot inside a QEMU TCG machine on its standard KVM (see [`nested_tcg`]).
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "append"])]
    nested_tcg: bool,
    /// With --nested-tcg: two inner VMs at once on one virtual switch, one
    /// with a disk root, then a third boot reading that disk.
    #[arg(long, requires = "nested_tcg")]
    two_guests: bool,
    /// Minutes before the run is stopped and reported (default: 60; 5 with
    /// --nested-tcg).
    #[arg(long)]
    timeout: Option<u64>,
    /// Extra kernel command-line arguments (e.g. `initcall_debug`).
    #[arg(long, default_value = "")]
    append: String,
    /// Kernel to boot instead of `cargo xtask guest`'s.
    #[arg(long, requires = "initrd")]
    kernel: Option<PathBuf>,
    /// Initrd to boot instead of `cargo xtask guest`'s.
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Serial,
    Vmm,
}

/// What the VMM's log said, gathered while streaming it.
#[derive(Debug, Default)]
struct VmmLog {
    /// Latest emulation count logged per mnemonic (a lower bound).
    emulations: BTreeMap<String, u64>,
    /// The latest `vCPU exit counts` line.
    exits: Option<String>,
    /// The VMM's final status line.
    last_status: Option<String>,
}

impl VmmLog {
    fn observe(&mut self, line: &str) {
        if line.contains("instruction fallback: emulated") {
            if let (Some(m), Some(n)) = (field(line, "mnemonic"), field(line, "count")) {
                if let Ok(n) = n.parse::<u64>() {
                    let e = self.emulations.entry(m.to_lowercase()).or_insert(0);
                    *e = (*e).max(n);
                }
            }
        } else if line.contains("instruction fallback: totals") {
            if let Some(start) = line.find("emulated=") {
                for pair in line[start + 9..].trim_matches('"').split_whitespace() {
                    if let Some((m, n)) = pair.trim_matches('"').split_once('=') {
                        if let Ok(n) = n.parse() {
                            self.emulations.insert(m.to_string(), n);
                        }
                    }
                }
            }
        } else if line.contains("vCPU exit counts") {
            self.exits = field(line, "exits").map(str::to_string);
        } else if line.starts_with("vm-service: ") {
            self.last_status = Some(line.to_string());
        }
    }

    fn emulation_summary(&self) -> String {
        if self.emulations.is_empty() {
            return "none logged".into();
        }
        self.emulations
            .iter()
            .map(|(m, n)| format!("{m}>={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The value of `name=value` in a tracing fmt line (value up to whitespace).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    if let Some(stripped) = rest.strip_prefix('[') {
        return stripped.find(']').map(|end| &rest[..end + 2]);
    }
    rest.split_whitespace().next()
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `HH:MM:SS` UTC of now.
fn wall_clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    which: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_ansi(&String::from_utf8_lossy(&buf));
                    let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                    if tx.send((which, line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

fn guest_files(root: &Path, args: &E2eArgs) -> Result<(PathBuf, PathBuf)> {
    if let (Some(k), Some(i)) = (&args.kernel, &args.initrd) {
        return Ok((k.clone(), i.clone()));
    }
    crate::cmd::cargo(root, &["xtask", "guest", "--arch", &args.arch])
        .context("building the guest with `cargo xtask guest` (or pass --kernel and --initrd)")?;
    let dir = root.join("target/guest").join(&args.arch);
    Ok((dir.join("kernel"), dir.join("initrd.cpio.gz")))
}

/// Runs the e2e boot.
pub fn run(root: &Path, args: &E2eArgs) -> Result<()> {
    if args.nested_tcg {
        let timeout = args.timeout.map_or(NESTED_TCG_TIMEOUT, Duration::from_mins);
        let (name, vms) = if args.two_guests {
            ("two-guests", nested_tcg::TWO_GUESTS)
        } else {
            ("one-guest", nested_tcg::ONE_GUEST)
        };
        return nested_tcg::run(root, timeout, name, vms);
    }
    if args.arch != "x86_64" {
        bail!(
            "e2e boots x86_64 guests only so far (got --arch {})",
            args.arch
        );
    }
    let (kernel, initrd) = guest_files(root, args)?;
    for f in [&kernel, &initrd] {
        if !f.is_file() {
            bail!("guest file {} does not exist", f.display());
        }
    }
    crate::cmd::cargo(root, &["build", "--release", "-p", "vm-service"])?;
    let exe = root.join("target/release/vm-service");
    let out_dir = root.join("target/e2e");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let serial_path = out_dir.join(format!("{}-serial.log", args.arch));
    let vmm_path = out_dir.join(format!("{}-vmm.log", args.arch));
    let mut serial_log = File::create(&serial_path)
        .with_context(|| format!("creating {}", serial_path.display()))?;
    let mut vmm_log =
        File::create(&vmm_path).with_context(|| format!("creating {}", vmm_path.display()))?;

    let cmdline = format!("{BASE_CMDLINE} {}", args.append).trim().to_string();
    let memory = args.memory.to_string();
    let argv = [
        "run",
        "--kernel",
        &kernel.to_string_lossy(),
        "--initrd",
        &initrd.to_string_lossy(),
        "--cmdline",
        &cmdline,
        "--memory",
        &memory,
        "--net",
        "none",
        "--log-level",
        "info",
    ]
    .map(str::to_string);
    eprintln!("$ {} {}", exe.display(), argv.join(" "));
    eprintln!(
        "e2e: serial console -> {}, VMM log -> {} (timeout {} min)",
        serial_path.display(),
        vmm_path.display(),
        args.timeout.unwrap_or(60)
    );
    let mut child = Command::new(&exe)
        .args(&argv)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    spawn_reader(
        child.stdout.take().context("child stdout")?,
        Stream::Serial,
        tx.clone(),
    );
    spawn_reader(
        child.stderr.take().context("child stderr")?,
        Stream::Vmm,
        tx,
    );

    let timeout = Duration::from_mins(args.timeout.unwrap_or(60));
    let mut tail: Vec<String> = Vec::new();
    let mut log = VmmLog::default();
    let mut next_progress = PROGRESS_EVERY;
    let outcome = loop {
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            break Outcome::Timeout;
        }
        let wait = next_progress
            .min(timeout)
            .saturating_sub(elapsed)
            .max(Duration::from_millis(10));
        match rx.recv_timeout(wait) {
            Ok((which, line)) => {
                let stamp = format!(
                    "[{} +{:9.3}s]",
                    wall_clock(),
                    started.elapsed().as_secs_f64()
                );
                match which {
                    Stream::Serial => {
                        writeln!(serial_log, "{stamp} {line}")?;
                        if line.contains(READY_MARKER) {
                            tail.push(line.clone());
                            break Outcome::Ready(line);
                        }
                        tail.push(line);
                        if tail.len() > TAIL_LINES {
                            tail.remove(0);
                        }
                    }
                    Stream::Vmm => {
                        writeln!(vmm_log, "{stamp} {line}")?;
                        log.observe(&line);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() >= next_progress {
                    next_progress += PROGRESS_EVERY;
                    eprintln!(
                        "e2e: {:.1} min: {}",
                        started.elapsed().as_secs_f64() / 60.0,
                        tail.last()
                            .map_or("(no console output yet)", String::as_str)
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Outcome::Exited,
        }
    };
    let elapsed = started.elapsed();
    let status = finish(&mut child, &outcome)?;
    // Pick up what the VMM logged as it stopped (totals, its status line).
    while let Ok((which, line)) = rx.recv_timeout(Duration::from_millis(500)) {
        if which == Stream::Vmm {
            writeln!(vmm_log, "[{}] {line}", wall_clock())?;
            log.observe(&line);
        }
    }
    report(&outcome, elapsed, &tail, &log, &status);
    match outcome {
        Outcome::Ready(_) => Ok(()),
        Outcome::Timeout => bail!(
            "the guest did not reach {READY_MARKER} within {} min",
            args.timeout.unwrap_or(60)
        ),
        Outcome::Exited => bail!("the VMM exited before the guest reached {READY_MARKER}"),
    }
}

#[derive(Debug)]
enum Outcome {
    Ready(String),
    Timeout,
    Exited,
}

/// Stops the VMM unless it already exited; returns its exit status as text.
fn finish(child: &mut Child, outcome: &Outcome) -> Result<String> {
    if !matches!(outcome, Outcome::Exited) {
        // The guest powers off after the marker; give it a moment, then stop it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().context("stopping vm-service")?;
    }
    Ok(child.wait().context("waiting for vm-service")?.to_string())
}

fn report(outcome: &Outcome, elapsed: Duration, tail: &[String], log: &VmmLog, status: &str) {
    let secs = elapsed.as_secs_f64();
    println!("e2e report ({}):", wall_clock());
    match outcome {
        Outcome::Ready(line) => println!("  READY after {secs:.1} s wall: {line}"),
        Outcome::Timeout => println!("  TIMEOUT after {secs:.1} s wall"),
        Outcome::Exited => println!("  VMM EXITED after {secs:.1} s wall"),
    }
    println!("  vm-service exit status: {status}");
    if let Some(s) = &log.last_status {
        println!("  {s}");
    }
    println!(
        "  vCPU exits: {}",
        log.exits
            .as_deref()
            .unwrap_or("not logged yet (under a minute)")
    );
    println!("  fallback emulations: {}", log.emulation_summary());
    println!("  last console lines:");
    for line in tail {
        println!("    {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmm_log_lines_are_parsed() {
        let mut log = VmmLog::default();
        log.observe("INFO vm_accel: instruction fallback: emulated mnemonic=Popcnt count=8");
        log.observe("INFO vm_accel: instruction fallback: emulated mnemonic=Popcnt count=4");
        log.observe("INFO vm_service: vCPU exit counts exits=[12, 3]");
        assert_eq!(log.emulations["popcnt"], 8);
        assert_eq!(log.exits.as_deref(), Some("[12, 3]"));
        log.observe("INFO vm_accel: instruction fallback: totals profile=kvm-pvm emulated=\"popcnt=9 clac=2\"");
        assert_eq!(log.emulation_summary(), "clac>=2 popcnt>=9");
        log.observe("vm-service: guest powered off");
        assert!(log.last_status.is_some());
    }

    #[test]
    fn ansi_escapes_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[3mmnemonic\u{1b}[0m\u{1b}[2m=\u{1b}[0mPopcnt"),
            "mnemonic=Popcnt"
        );
        assert_eq!(strip_ansi("plain \u{1b}"), "plain ");
    }

    #[test]
    fn field_handles_missing_and_lists() {
        assert_eq!(field("a=1 b=2", "b"), Some("2"));
        assert_eq!(field("a=1", "c"), None);
        assert_eq!(field("x exits=[1, 2] y", "exits"), Some("[1, 2]"));
    }
}
