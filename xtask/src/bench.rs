//! `cargo xtask bench [--quick] [AREA...]`: one performance report with peers
//! side by side.
//!
//! Runs the criterion benches of each area (`benches/benches/<area>.rs`), times
//! the peers criterion cannot host (whole processes such as QEMU) in
//! alternation with ours, pairs every measure with its peer as
//! `xtask/bench.toml` says, and writes `target/bench/report.json` and
//! `target/bench/report.md`. A peer that is missing is installed (Debian
//! package) or reported as missing, never silently dropped.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cmd::{cargo, output_of};

/// One pairing rule from `xtask/bench.toml`.
#[derive(Debug, Clone)]
struct Pair {
    area: String,
    name: String,
    ours: String,
    peer: String,
    peer_name: String,
    goal: Option<String>,
}

/// A measured value: a median time per iteration, and what one iteration is.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Median nanoseconds per iteration.
    pub median_ns: f64,
    /// Elements (packets, events) per iteration, when the bench declares them.
    pub elements: Option<f64>,
    /// Bytes per iteration, when the bench declares them.
    pub bytes: Option<f64>,
    /// Number of samples behind the median.
    pub runs: usize,
}

impl Measure {
    /// The unit and value a reader wants: a rate when the bench has a
    /// throughput, a time otherwise.
    /// The unit this measure reads best in, and its value in it.
    fn display(&self) -> (String, f64) {
        let unit = if self.elements.is_some() {
            "elements/s"
        } else if self.bytes.is_some() {
            "MiB/s"
        } else if self.median_ns >= 1e6 {
            "ms"
        } else if self.median_ns >= 1e3 {
            "µs"
        } else {
            "ns"
        };
        (unit.into(), self.value_in(unit))
    }

    /// The value in `unit` (a peer is shown in its pair's unit, ours).
    fn value_in(&self, unit: &str) -> f64 {
        let secs = self.median_ns * 1e-9;
        match unit {
            "elements/s" => self.elements.unwrap_or(0.0) / secs,
            "MiB/s" => self.bytes.unwrap_or(0.0) / secs / (1024.0 * 1024.0),
            "ms" => self.median_ns / 1e6,
            "µs" => self.median_ns / 1e3,
            _ => self.median_ns,
        }
    }
}

fn parse_pairs(text: &str) -> Result<Vec<Pair>> {
    let doc: toml::Table = toml::from_str(text).context("xtask/bench.toml is not valid TOML")?;
    let mut out = Vec::new();
    for (i, p) in doc
        .get("pair")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = |k: &str| -> Result<String> {
            p.get(k)
                .and_then(toml::Value::as_str)
                .map(String::from)
                .with_context(|| format!("bench.toml: pair #{} has no `{k}`", i + 1))
        };
        out.push(Pair {
            area: field("area")?,
            name: field("name")?,
            ours: field("ours")?,
            peer: field("peer")?,
            peer_name: field("peer_name")?,
            goal: p
                .get("goal")
                .and_then(toml::Value::as_str)
                .map(String::from),
        });
    }
    Ok(out)
}

/// Reads every criterion result under `dir` (`target/criterion`), keyed by full id.
pub fn criterion_results(
    dir: &Path,
    since: std::time::SystemTime,
) -> Result<Vec<(String, Measure)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    let fresh = std::fs::metadata(path.join("benchmark.json"))
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t >= since);
                    if !fresh {
                        continue;
                    }
                    if let Some(m) = read_measure(&path)? {
                        out.push(m);
                    }
                } else if path.file_name().is_none_or(|n| n != "report") {
                    stack.push(path);
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn read_measure(new_dir: &Path) -> Result<Option<(String, Measure)>> {
    let bench = new_dir.join("benchmark.json");
    if !bench.exists() {
        return Ok(None);
    }
    let bench = read_json(&bench)?;
    let estimates = read_json(&new_dir.join("estimates.json"))?;
    let sample = read_json(&new_dir.join("sample.json")).unwrap_or(Value::Null);
    let id = bench["full_id"]
        .as_str()
        .context("benchmark.json without full_id")?
        .to_string();
    let median_ns = estimates["median"]["point_estimate"]
        .as_f64()
        .context("estimates.json without a median")?;
    let throughput = &bench["throughput"];
    Ok(Some((
        id,
        Measure {
            median_ns,
            elements: throughput["Elements"].as_f64(),
            bytes: throughput["Bytes"]
                .as_f64()
                .or_else(|| throughput["BytesDecimal"].as_f64()),
            runs: sample["iters"].as_array().map_or(0, Vec::len),
        },
    )))
}

/// The areas: one per `benches/benches/*.rs`.
fn all_areas(root: &Path) -> Result<Vec<String>> {
    let mut areas: Vec<String> = std::fs::read_dir(root.join("benches/benches"))
        .context("listing benches/benches")?
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? == "rs" {
                Some(p.file_stem()?.to_string_lossy().into_owned())
            } else {
                None
            }
        })
        .collect();
    areas.sort();
    Ok(areas)
}

/// A process peer: how to run it and how to tell it did the work.
struct ProcessPeer {
    command: Vec<String>,
    /// Text its output must contain for a run to count.
    expect: &'static str,
}

fn time_process(peer: &ProcessPeer) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(&peer.command[0])
        .args(&peer.command[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", peer.command[0]))?;
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    if !text.contains(peer.expect) {
        bail!(
            "`{}` did not print {:?} (exit {}); output: {}",
            peer.command.join(" "),
            peer.expect,
            out.status,
            text.chars().take(400).collect::<String>()
        );
    }
    Ok(elapsed)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// Makes sure `program` exists, installing `package` if needed.
fn ensure_tool(program: &str, package: &str) -> Result<(), String> {
    let found = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
    };
    if found(program).is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("bench: {program} missing; installing Debian package {package}");
    crate::setup::install(&[package])
        .map_err(|e| format!("{package} could not be installed: {e}"))?;
    if found(program).is_ok_and(|o| o.status.success()) {
        Ok(())
    } else {
        Err(format!(
            "{program} is still missing after installing {package}"
        ))
    }
}

/// Times ours and the peer in alternation (ours, peer, ours, peer, ...).
fn process_pair(
    ours: &ProcessPeer,
    peer: &ProcessPeer,
    runs: usize,
) -> (Result<Measure>, Result<Measure>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut a_err = None;
    let mut b_err = None;
    for _ in 0..runs {
        match time_process(ours) {
            Ok(d) => a.push(d.as_secs_f64() * 1e9),
            Err(e) => a_err = Some(e),
        }
        match time_process(peer) {
            Ok(d) => b.push(d.as_secs_f64() * 1e9),
            Err(e) => b_err = Some(e),
        }
        if a_err.is_some() && b_err.is_some() {
            break;
        }
    }
    let to_measure = |v: Vec<f64>, err: Option<anyhow::Error>| match err {
        Some(e) if v.is_empty() => Err(e),
        _ => Ok(Measure {
            runs: v.len(),
            median_ns: median(v),
            elements: None,
            bytes: None,
        }),
    };
    (to_measure(a, a_err), to_measure(b, b_err))
}

/// Process measures for the `boot` area: `vm-service run` and QEMU's microvm
/// booting the same built-in guest (QEMU enters it through its PVH note).
fn boot_processes(root: &Path, runs: usize) -> Vec<(String, Result<Measure>)> {
    if let Err(e) = cargo(root, &["build", "--release", "--quiet", "-p", "vm-service"]) {
        return vec![("process:vm-service-run".into(), Err(e))];
    }
    let guest = root
        .join("vm-service/guest/builtin-x86_64.elf")
        .to_string_lossy()
        .into_owned();
    let ours = ProcessPeer {
        command: vec![
            root.join("target/release/vm-service")
                .to_string_lossy()
                .into_owned(),
            "run".into(),
            "--net".into(),
            "none".into(),
        ],
        expect: "guest: requesting shutdown",
    };
    let qemu = ProcessPeer {
        command: [
            "qemu-system-x86_64",
            "-M",
            "microvm,acpi=on,isa-serial=on,pit=on,pic=off,rtc=off",
            "-enable-kvm",
            // `-cpu host` trips over an MSR the nested KVM here refuses; the
            // default model boots the guest on every host.
            "-m",
            "128",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
            &guest,
        ]
        .iter()
        .map(ToString::to_string)
        .collect(),
        expect: "guest: requesting shutdown",
    };
    if let Err(reason) = ensure_tool("qemu-system-x86_64", "qemu-system-x86") {
        let ours = (0..runs)
            .map(|_| time_process(&ours))
            .collect::<Result<Vec<_>>>()
            .map(|v| {
                let runs = v.len();
                Measure {
                    median_ns: median(v.iter().map(|d| d.as_secs_f64() * 1e9).collect()),
                    elements: None,
                    bytes: None,
                    runs,
                }
            });
        return vec![
            ("process:vm-service-run".into(), ours),
            ("process:qemu-microvm".into(), Err(anyhow::anyhow!(reason))),
        ];
    }
    let (a, b) = process_pair(&ours, &qemu, runs);
    vec![
        ("process:vm-service-run".into(), a),
        ("process:qemu-microvm".into(), b),
    ]
}

/// The riscv64 area's peers and inputs: the cross compiler, QEMU (user and
/// system, with OpenSBI), the riscv64 Debian guest (`cargo xtask guest`), and a release
/// `vm-service`. Returns what could not be set up; those parts of the bench
/// then report themselves as skipped.
fn prepare_riscv(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (program, package) in [
        ("riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf"),
        ("qemu-riscv64", "qemu-user"),
        ("qemu-system-riscv64", "qemu-system-misc"),
    ] {
        if let Err(e) = ensure_tool(program, package) {
            problems.push(format!("riscv_mips peer missing: {e}"));
        }
    }
    if !Path::new("/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin").exists()
        && !Path::new("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin").exists()
    {
        if let Err(e) = crate::setup::install(&["opensbi"]) {
            problems.push(format!("riscv_mips: opensbi could not be installed: {e}"));
        }
    }
    if let Err(e) = crate::guest::run(root, Some(crate::guest::Arch::Riscv64), false) {
        problems.push(format!(
            "riscv_mips: building the riscv64 guest failed (no Linux boot measure): {e:#}"
        ));
    }
    if let Err(e) = cargo(root, &["build", "--release", "--quiet", "-p", "vm-service"]) {
        problems.push(format!("riscv_mips: building vm-service: {e}"));
    }
    problems
}

fn host_info() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(String::from)
        })
        .map_or_else(
            || "unknown".into(),
            |l| l.split(':').nth(1).unwrap_or("").trim().to_string(),
        );
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = output_of("uname", &["-sr"]).unwrap_or_default();
    let nested = std::fs::read_to_string("/proc/modules")
        .is_ok_and(|m| m.lines().any(|l| l.starts_with("kvm_pvm ")));
    format!(
        "{cpu}, {cores} cores, {}{}",
        kernel.trim(),
        if nested {
            ", nested KVM (kvm_pvm): guest code runs far slower than native"
        } else {
            ""
        }
    )
}

/// Runs the task.
pub fn run(root: &Path, quick: bool, areas: &[String]) -> Result<()> {
    let available = all_areas(root)?;
    let selected: Vec<String> = if areas.is_empty() {
        available.clone()
    } else {
        areas.to_vec()
    };
    for a in &selected {
        if !available.contains(a) {
            bail!(
                "unknown bench area `{a}`; areas here: {}",
                available.join(", ")
            );
        }
    }
    let pairs = parse_pairs(
        &std::fs::read_to_string(root.join("xtask/bench.toml"))
            .context("reading xtask/bench.toml")?,
    )?;
    let criterion_dir = root.join("target/criterion");
    // Only results written by this run count (criterion keeps older ones).
    let started = std::time::SystemTime::now();
    let mut failures = Vec::new();
    if selected.iter().any(|a| a == "riscv_mips") {
        failures.extend(prepare_riscv(root));
    }
    for area in &selected {
        println!("bench: {area}");
        let mut args = vec!["bench", "-p", "benches", "--bench", area.as_str(), "--"];
        if quick {
            args.extend([
                "--warm-up-time",
                "0.5",
                "--measurement-time",
                "1",
                "--sample-size",
                "10",
            ]);
        }
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command.args(&args).current_dir(root);
        if quick {
            command
                .env("VM_BENCH_QUICK", "1")
                .env("RISCV_BOOT_ROUNDS", "1");
        }
        eprintln!("$ cargo {}", args.join(" "));
        match command.status() {
            Ok(s) if s.success() => {}
            Ok(s) => failures.push(format!("{area}: cargo bench failed ({s})")),
            Err(e) => failures.push(format!("{area}: cargo bench could not start: {e}")),
        }
    }
    let mut measures: Vec<(String, Result<Measure>)> = criterion_results(&criterion_dir, started)?
        .into_iter()
        .map(|(id, m)| (id, Ok(m)))
        .collect();
    if selected.iter().any(|a| a == "boot") {
        measures.extend(boot_processes(root, if quick { 5 } else { 15 }));
    }
    let extras = extra_results(&root.join("target/bench/extra"), started, &selected)?;
    write_report(
        root, &selected, &pairs, &measures, &extras, quick, &failures,
    )
}

/// A measure a bench timed itself (too slow or too external for criterion),
/// written as `target/bench/extra/<name>.json`.
#[derive(Debug, Clone)]
struct Extra {
    area: String,
    name: String,
    ours_ns: f64,
    peer_name: String,
    peer_ns: Option<f64>,
    runs: usize,
    goal: Option<String>,
}

fn extra_results(dir: &Path, since: std::time::SystemTime, areas: &[String]) -> Result<Vec<Extra>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let fresh = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh || path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v = read_json(&path)?;
        let text = |k: &str| v[k].as_str().map(String::from);
        let (Some(area), Some(name), Some(ours_ns)) =
            (text("area"), text("name"), v["ours_ns"].as_f64())
        else {
            bail!("{}: needs area, name and ours_ns", path.display());
        };
        if !areas.contains(&area) {
            continue;
        }
        out.push(Extra {
            area,
            name,
            ours_ns,
            peer_name: text("peer_name").unwrap_or_default(),
            peer_ns: v["peer_ns"].as_f64(),
            runs: v["runs"].as_u64().map_or(0, |r| r as usize),
            goal: text("goal"),
        });
    }
    Ok(out)
}

fn find<'a>(measures: &'a [(String, Result<Measure>)], id: &str) -> Option<&'a Result<Measure>> {
    measures.iter().find(|(i, _)| i == id).map(|(_, m)| m)
}

fn write_report(
    root: &Path,
    areas: &[String],
    pairs: &[Pair],
    measures: &[(String, Result<Measure>)],
    extras: &[Extra],
    quick: bool,
    failures: &[String],
) -> Result<()> {
    let mut entries = Vec::new();
    let mut md = String::new();
    let _ = writeln!(md, "# Performance report\n");
    let _ = writeln!(md, "Host: {}  ", host_info());
    let _ = writeln!(
        md,
        "Mode: {}  ",
        if quick {
            "quick (short measurements)"
        } else {
            "full"
        }
    );
    let _ = writeln!(
        md,
        "Ratio: our time ÷ the peer's time for the same work (for rates: the peer's rate ÷ ours); \
         below 1.00 means we are faster. Medians; ours and the peer were measured in the same run.\n"
    );
    let _ = writeln!(
        md,
        "| area | measure | unit | ours | peer | peer median | ratio | runs | goal |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut paired_ids = Vec::new();
    for pair in pairs.iter().filter(|p| areas.contains(&p.area)) {
        paired_ids.push(pair.ours.clone());
        paired_ids.push(pair.peer.clone());
        let ours = find(measures, &pair.ours);
        let peer = find(measures, &pair.peer);
        let describe = |m: Option<&Result<Measure>>| match m {
            Some(Ok(m)) => {
                let (unit, v) = m.display();
                (Some(m.clone()), format!("{v:.3}"), unit)
            }
            Some(Err(e)) => (None, format!("failed: {e}"), String::new()),
            None => (
                None,
                "missing (bench did not produce it)".into(),
                String::new(),
            ),
        };
        let (om, ov, unit) = describe(ours);
        let (pm, mut pv, _) = describe(peer);
        // The peer in ours' unit: a pair's two medians side by side.
        if let (Some(_), Some(p)) = (&om, &pm) {
            pv = format!("{:.3}", p.value_in(&unit));
        }
        // Both sides do the same work per iteration, so ours_time / peer_time
        // is also peer_rate / ours_rate.
        let ratio = match (&om, &pm) {
            (Some(o), Some(p)) => Some(o.median_ns / p.median_ns),
            _ => None,
        };
        let runs = om.as_ref().map_or(0, |m| m.runs);
        let ratio_text = ratio.map_or("—".into(), |r| format!("{r:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            pair.area,
            pair.name,
            unit,
            ov,
            pair.peer_name,
            pv,
            ratio_text,
            runs,
            pair.goal.as_deref().unwrap_or("")
        );
        entries.push(json!({
            "area": pair.area,
            "name": pair.name,
            "unit": unit,
            "ours_id": pair.ours,
            "ours_median": om.as_ref().map(|m| m.display().1),
            "ours_median_ns": om.as_ref().map(|m| m.median_ns),
            "peer_name": pair.peer_name,
            "peer_id": pair.peer,
            "peer_median": pm.as_ref().map(|m| if om.is_some() { m.value_in(&unit) } else { m.display().1 }),
            "peer_median_ns": pm.as_ref().map(|m| m.median_ns),
            "peer_error": match peer { Some(Err(e)) => Some(e.to_string()), None => Some("missing".to_string()), _ => None },
            "ratio": ratio,
            "runs": runs,
            "goal": pair.goal,
        }));
    }
    for x in extras {
        let as_measure = |ns: f64| Measure {
            median_ns: ns,
            elements: None,
            bytes: None,
            runs: x.runs,
        };
        let (unit, ours) = as_measure(x.ours_ns).display();
        let peer = x.peer_ns.map(|p| as_measure(p).value_in(&unit));
        let ratio = x.peer_ns.map(|p| x.ours_ns / p);
        let _ = writeln!(
            md,
            "| {} | {} | {unit} | {ours:.3} | {} | {} | {} | {} | {} |",
            x.area,
            x.name,
            x.peer_name,
            peer.map_or("missing".into(), |p| format!("{p:.3}")),
            ratio.map_or("—".into(), |r| format!("{r:.2}")),
            x.runs,
            x.goal.as_deref().unwrap_or("")
        );
        entries.push(json!({
            "area": x.area, "name": x.name, "unit": unit, "ours_median": ours,
            "ours_median_ns": x.ours_ns, "peer_name": x.peer_name, "peer_median": peer,
            "peer_median_ns": x.peer_ns, "ratio": ratio, "runs": x.runs, "goal": x.goal,
        }));
    }
    let unpaired: Vec<_> = measures
        .iter()
        .filter(|(id, _)| !paired_ids.contains(id))
        .collect();
    if !unpaired.is_empty() {
        let _ = writeln!(md, "\n## Other measures (no peer)\n");
        let _ = writeln!(md, "| measure | unit | median | runs |");
        let _ = writeln!(md, "|---|---|---|---|");
        for (id, m) in unpaired {
            if let Ok(m) = m {
                let (unit, v) = m.display();
                let _ = writeln!(md, "| {id} | {unit} | {v:.3} | {} |", m.runs);
                entries.push(json!({
                    "name": id, "unit": unit, "ours_median": v, "ours_median_ns": m.median_ns,
                    "peer_name": null, "peer_median": null, "ratio": null, "runs": m.runs,
                }));
            }
        }
    }
    let memory_files = [
        ("boot", "Built-in guest run", "boot_memory.json"),
        (
            "snapshot",
            "Snapshot of a 256 MiB guest",
            "snapshot_memory.json",
        ),
    ];
    let mut memory_section = false;
    for (area, what, file) in memory_files {
        if !areas.iter().any(|a| a == area) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(root.join("target/bench").join(file)) {
            if !memory_section {
                let _ = writeln!(md, "\n## Memory\n");
                memory_section = true;
            }
            let _ = writeln!(md, "- {what} (`target/bench/{file}`): `{}`", text.trim());
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(md, "\n## Failures\n");
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    let _ = writeln!(
        md,
        "\nCriterion's plots: [target/criterion/report/index.html](../criterion/report/index.html)"
    );
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let report = json!({ "host": host_info(), "quick": quick, "areas": areas, "measures": entries, "failures": failures });
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out_dir.join("report.md"), &md)?;
    println!("{md}");
    println!(
        "bench: wrote {} and {}",
        out_dir.join("report.json").display(),
        out_dir.join("report.md").display()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{} bench area(s) failed", failures.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_shown_in_its_pairs_unit() {
        let m = |ns: f64| Measure {
            median_ns: ns,
            elements: None,
            bytes: None,
            runs: 1,
        };
        // 1.09 ms against 0.60 ms: without a common unit the peer would
        // read as 602.8 (µs) beside 1.089 (ms).
        let (unit, ours) = m(1_088_716.0).display();
        assert_eq!(unit, "ms");
        assert!((ours - 1.088_716).abs() < 1e-9);
        assert!((m(602_777.0).value_in(&unit) - 0.602_777).abs() < 1e-9);
        let rate = Measure {
            elements: Some(32.0),
            ..m(1e6)
        };
        assert!((rate.value_in("elements/s") - 32_000.0).abs() < 1e-6);
    }

    fn write_result(dir: &Path, id: &str, median: f64, throughput: &Value) {
        let d = dir.join(id).join("new");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("benchmark.json"),
            json!({"full_id": id, "throughput": throughput}).to_string(),
        )
        .unwrap();
        std::fs::write(
            d.join("estimates.json"),
            json!({"median": {"point_estimate": median}}).to_string(),
        )
        .unwrap();
        std::fs::write(
            d.join("sample.json"),
            json!({"iters": [1.0, 1.0, 1.0]}).to_string(),
        )
        .unwrap();
    }

    #[test]
    fn reads_criterion_results_with_throughput() {
        let dir = tempfile::tempdir().unwrap();
        write_result(dir.path(), "g/ours", 2000.0, &Value::Null);
        write_result(dir.path(), "g/peer/64", 1000.0, &json!({"Elements": 10}));
        let results = criterion_results(dir.path(), std::time::UNIX_EPOCH).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].0, "g/ours");
        assert_eq!(results[0].1.runs, 3);
        assert_eq!(results[1].1.elements, Some(10.0));
        let (unit, rate) = results[1].1.display();
        assert_eq!(unit, "elements/s");
        assert!((rate - 1e7).abs() < 1.0);
    }

    #[test]
    fn pairs_parse_and_name_missing_fields() {
        let ok =
            parse_pairs("[[pair]]\narea='a'\nname='n'\nours='x/y'\npeer='x/z'\npeer_name='raw'\n")
                .unwrap();
        assert_eq!(ok[0].peer_name, "raw");
        let err = parse_pairs("[[pair]]\narea='a'\nname='n'\nours='x'\n").unwrap_err();
        assert!(err.to_string().contains("`peer`"), "{err}");
    }

    #[test]
    fn median_of_even_and_odd() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(vec![4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(vec![]).is_nan());
    }
}
