//! The outer machine's console of `cargo xtask e2e --nested-tcg`, read line
//! by line: the outer `/init`'s markers, and each inner VM's lines (its
//! guest's serial console and `vm-service`'s messages), which the outer
//! `/init` tags `TAG| ` so that two VMs running at once can be told apart.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::{bail, Result};

use super::super::{wall_clock, READY_MARKER};
use super::{
    checksum, nested_paging, InnerVm, Snapshot, DISK_WROTE, DONE, OUTER_READY, RESULT, ROUND,
};

/// The guest's `/init` prints this with its command's status.
const GUEST_EXIT: &str = "VM-GUEST-EXIT";
/// What `vm-service` prints when the guest powered off (ACPI S5).
const POWERED_OFF: &str = "vm-service: guest powered off";
/// What `vm-service` prints once `--snapshot-on-output` wrote the snapshot.
const SNAPSHOT_WRITTEN: &str = "vm-service: snapshot written to";
/// What the checksum loop prints at its end, before the sum.
const SUM: &str = "SUM ";
/// What the guest kernel prints when it finds no CMOS RTC (after a stall of seconds).
const NO_RTC: &str = "rtc_cmos: broken or not accessible";
/// The guest kernel line after which a VMM without a CMOS RTC stalls.
const BEFORE_RTC: &str = "i8042: ";
/// Longest pause (guest seconds) allowed after [`BEFORE_RTC`]: without an
/// RTC it is 4-9 s, with one a few hundredths.
const MAX_RTC_PAUSE: f64 = 2.0;
/// Lines of console shown when the run fails.
const TAIL_LINES: usize = 40;

/// The value after `key=` up to whitespace.
fn value_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].strip_prefix('=')?.split_whitespace().next()
}

/// The printk stamp of a kernel console line (`[    1.234567] ...`) and the text after it.
fn printk_stamp(line: &str) -> Option<(f64, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, text) = rest.split_once(']')?;
    Some((stamp.trim().parse().ok()?, text.trim_start()))
}

/// One inner VM's lines, gathered as they come.
#[derive(Debug, Default)]
pub struct GuestLog {
    /// Every line, without the tag and without a printk stamp.
    lines: Vec<String>,
    /// Wall seconds at the guest's ready marker, and the guest's uptime then.
    ready: Option<(f64, String)>,
    /// The status of the guest's command (its `/init` says).
    exit: Option<String>,
    /// `vm-service`'s exit status (the outer `/init` says).
    result: Option<String>,
    /// Wall seconds at the result line.
    finished_at: Option<f64>,
    /// `uname -a`'s line, when the guest ran it.
    uname: Option<String>,
    /// `vm-service` said the guest powered off.
    powered_off: bool,
    /// `vm-service` said it wrote a snapshot.
    snapshot_written: bool,
    /// The guest kernel found no CMOS RTC.
    no_rtc: bool,
    /// The guest kernel's printk stamps before its ready marker: (seconds, line), in order.
    stamps: Vec<(f64, String)>,
}

impl GuestLog {
    fn observe(&mut self, line: &str, wall: f64) {
        self.powered_off |= line.contains(POWERED_OFF);
        self.snapshot_written |= line.contains(SNAPSHOT_WRITTEN);
        self.no_rtc |= line.contains(NO_RTC);
        // A marker can follow console output that ended without a newline.
        let marked = |marker: &str, key: &str| {
            let at = line.find(marker)?;
            Some(value_after(&line[at..], key).unwrap_or("?").to_string())
        };
        let stamp = printk_stamp(line);
        if let Some(up) = marked(READY_MARKER, "uptime") {
            self.ready = Some((wall, up));
        } else if let Some(status) = marked(GUEST_EXIT, "status") {
            self.exit = Some(status);
        } else if let Some(status) = marked(RESULT, "status") {
            self.result = Some(status);
            self.finished_at = Some(wall);
        } else if self.ready.is_some() && self.uname.is_none() && line.starts_with("Linux ") {
            self.uname = Some(line.to_string());
        } else if let (None, Some((t, _))) = (&self.ready, stamp) {
            self.stamps.push((t, line.to_string()));
        }
        let text = stamp.map_or(line, |(_, text)| text);
        self.lines.push(text.trim().to_string());
    }

    /// The first line (stamp and tag removed) that starts with `prefix`.
    fn line_starting(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .find(|l| l.starts_with(prefix))
    }

    /// The longest pause between two consecutive guest kernel lines: (seconds, the line after it).
    fn longest_pause(&self) -> Option<(f64, &str)> {
        self.stamps
            .windows(2)
            .map(|w| (w[1].0 - w[0].0, w[1].1.as_str()))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// The pause between the last guest kernel line containing `needle` and the next one.
    fn pause_after(&self, needle: &str) -> Option<f64> {
        let i = self.stamps.iter().rposition(|(_, l)| l.contains(needle))?;
        Some(self.stamps.get(i + 1)?.0 - self.stamps[i].0)
    }

    /// Whether this VM did all that `vm` asks of it (the disk read-back aside).
    fn verdict(&self, vm: &InnerVm) -> Result<()> {
        let tag = vm.tag;
        let restored = matches!(vm.snapshot, Snapshot::RestoreOf(_));
        match (&self.ready, restored) {
            (None, false) => bail!("inner VM {tag}: the guest never reached {READY_MARKER}"),
            (Some(_), true) => {
                bail!("inner VM {tag}: the restored guest booted again (it printed {READY_MARKER})")
            }
            _ => {}
        }
        if self.result.as_deref() != Some("0") {
            bail!(
                "inner VM {tag}: vm-service exited with {:?}, not 0",
                self.result
            );
        }
        let sum = self.line_starting(SUM);
        if let Snapshot::At(text) = vm.snapshot {
            if !self.snapshot_written {
                bail!("inner VM {tag}: no snapshot written (no `{SNAPSHOT_WRITTEN}`) at {text:?}");
            }
            if self.exit.is_some() || sum.is_some() {
                bail!("inner VM {tag}: the guest's command finished: the snapshot came too late");
            }
        } else {
            if self.exit.as_deref() != Some("0") {
                bail!(
                    "inner VM {tag}: the guest's command ended with {:?}, not 0",
                    self.exit
                );
            }
            if !self.powered_off {
                bail!("inner VM {tag}: the guest did not power off (no `{POWERED_OFF}`): ACPI S5");
            }
        }
        if restored {
            let want = format!("{SUM}{}", checksum());
            if sum != Some(want.as_str()) {
                bail!("inner VM {tag}: the restored guest printed {sum:?}, not {want:?}");
            }
        }
        if self.no_rtc {
            bail!("inner VM {tag}: the guest kernel found no CMOS RTC (`{NO_RTC}`)");
        }
        if let Some(pause) = self.pause_after(BEFORE_RTC).filter(|p| *p > MAX_RTC_PAUSE) {
            bail!(
                "inner VM {tag}: the guest kernel paused {pause:.2} s after its `{BEFORE_RTC}` \
                 line (the stall of a missing RTC)"
            );
        }
        if vm.uname {
            match &self.uname {
                Some(u) if u.contains("x86_64") => {}
                other => bail!(
                    "inner VM {tag}: the guest's `uname -a` printed no x86_64 Linux line (got {other:?})"
                ),
            }
        }
        for expected in vm.expect {
            if self.line_starting(expected).is_none() {
                bail!("inner VM {tag}: no console line starts with {expected:?}");
            }
        }
        Ok(())
    }
}

/// What the console showed, gathered line by line.
#[derive(Debug)]
pub struct Console {
    /// The inner VMs of the run.
    vms: &'static [InnerVm],
    /// The last lines, as they came (tags included).
    pub tail: VecDeque<String>,
    /// Wall seconds at the outer marker, and the outer kernel's uptime then.
    outer_ready: Option<(f64, String)>,
    /// The outer `kvm_amd`'s `npt` parameter (`Y` or `N`) as it reported it.
    outer_npt: Option<String>,
    /// Wall seconds at each round's start, by round number.
    rounds: BTreeMap<u32, f64>,
    /// Wall seconds at the outer `/init`'s last marker.
    pub done: Option<f64>,
    /// Each inner VM's lines, by tag.
    guests: BTreeMap<&'static str, GuestLog>,
}

impl Console {
    /// An empty console of a run of `vms`.
    pub fn new(vms: &'static [InnerVm]) -> Self {
        Self {
            vms,
            tail: VecDeque::new(),
            outer_ready: None,
            outer_npt: None,
            rounds: BTreeMap::new(),
            done: None,
            guests: BTreeMap::new(),
        }
    }

    /// Takes one console line seen `wall` seconds after QEMU started.
    pub fn observe(&mut self, line: &str, wall: f64) {
        self.tail.push_back(line.to_string());
        if self.tail.len() > TAIL_LINES {
            self.tail.pop_front();
        }
        let tagged = line.split_once("| ").and_then(|(tag, rest)| {
            let vm = self.vms.iter().find(|vm| vm.tag == tag)?;
            Some((vm.tag, rest))
        });
        if let Some((tag, rest)) = tagged {
            self.guests.entry(tag).or_default().observe(rest, wall);
        } else if let Some(at) = line.find(OUTER_READY) {
            let up = value_after(&line[at..], "uptime").unwrap_or("?");
            self.outer_ready = Some((wall, up.to_string()));
            self.outer_npt = value_after(&line[at..], "npt").map(str::to_string);
        } else if let Some(round) = line.strip_prefix(ROUND).and_then(|r| r.trim().parse().ok()) {
            self.rounds.insert(round, wall);
        } else if line.starts_with(DONE) {
            self.done = Some(wall);
        }
    }

    /// Whether the run did all it should: `Ok` or the first thing missing.
    pub fn verdict(&self, finished: bool, elapsed: Duration, timeout: Duration) -> Result<()> {
        if self.outer_ready.is_none() {
            bail!("the outer machine never reported {OUTER_READY} (KVM modules, initramfs)");
        }
        let npt = if nested_paging(self.vms) { "Y" } else { "N" };
        if self.outer_npt.as_deref() != Some(npt) {
            bail!(
                "the outer kvm_amd reported npt={:?}, the run asked for {npt}",
                self.outer_npt
            );
        }
        if !finished || self.done.is_none() {
            bail!(
                "the nested-TCG e2e did not finish within {timeout:.0?} (stopped after {elapsed:.1?})"
            );
        }
        for vm in self.vms {
            let Some(log) = self.guests.get(vm.tag) else {
                bail!("inner VM {}: printed nothing", vm.tag);
            };
            log.verdict(vm)?;
            if let Some(writer) = vm.reads_disk_of {
                let wrote = self
                    .guests
                    .get(writer)
                    .and_then(|w| w.line_starting(DISK_WROTE))
                    .and_then(|l| l.split_whitespace().nth(1));
                let Some(wrote) = wrote else {
                    bail!("inner VM {writer}: no `{DISK_WROTE} ID` line");
                };
                if !log.lines.iter().any(|l| l == wrote) {
                    bail!(
                        "inner VM {}: did not read back {wrote:?}, which VM {writer} wrote to the same disk",
                        vm.tag
                    );
                }
            }
        }
        Ok(())
    }

    /// Prints the times and what each inner VM did.
    pub fn report(&self, elapsed: Duration, qemu_status: &str) {
        println!("e2e --nested-tcg report ({}):", wall_clock());
        println!(
            "  wall time: {:.1} s (QEMU {qemu_status})",
            elapsed.as_secs_f64()
        );
        if let Some((wall, up)) = &self.outer_ready {
            println!("  outer machine up with KVM: {wall:.1} s wall (outer uptime {up} s)");
        }
        let ends: Vec<f64> = self
            .rounds
            .values()
            .skip(1)
            .copied()
            .chain(self.done)
            .collect();
        for ((round, start), end) in self.rounds.iter().zip(ends) {
            println!("  round {round}: {:.1} s", end - start);
        }
        for vm in self.vms {
            let Some(log) = self.guests.get(vm.tag) else {
                println!("  VM {}: no output", vm.tag);
                continue;
            };
            let start = self.rounds.get(&vm.round).copied().unwrap_or(0.0);
            print!("  VM {} ({}):", vm.tag, vm.what);
            if let Some((wall, up)) = &log.ready {
                print!(
                    " {READY_MARKER} {:.1} s after its round began (guest uptime {up} s);",
                    wall - start
                );
            }
            if let Some(end) = log.finished_at {
                print!(" done after {:.1} s;", end - start);
            }
            if log.snapshot_written {
                print!(" snapshot written;");
            }
            println!(
                " command status {}, vm-service status {}",
                log.exit.as_deref().unwrap_or("(none)"),
                log.result.as_deref().unwrap_or("(none)")
            );
            if let Some((pause, line)) = log.longest_pause() {
                println!("    longest pause in the guest's boot log: {pause:.2} s, before: {line}");
            }
            if let Some(pause) = log.pause_after(BEFORE_RTC) {
                println!(
                    "    pause after the i8042 probe (where a missing RTC stalls): {pause:.2} s"
                );
            }
            if let Some(u) = &log.uname {
                println!("    uname: {u}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::nested_tcg::{ONE_GUEST, TWO_GUESTS};

    /// What a good run of every inner VM prints, tagged.
    fn good_run() -> Vec<String> {
        let mut lines = vec![
            "Probing EDD (edd=off to disable)... okVM-E2E-OUTER-READY uptime=4.20 npt=N"
                .to_string(),
            format!("{ROUND} 1"),
        ];
        let id = "0b6f1b8e-7d4e-4a8e-9f62-2c1a4f1f0c11";
        for vm in TWO_GUESTS {
            let tag = vm.tag;
            if vm.round == 2 {
                lines.push(format!("{ROUND} 2"));
            }
            lines.extend(
                [
                    "[    0.000000] Command line: console=ttyS0 -- sh -c E2E-DISK-WROTE $id",
                    "[    1.000000] i8042: PNP: No PS/2 controller found.",
                    "[    1.020000] rtc_cmos 00:00: registered as rtc0",
                    "VM-GUEST-READY uptime=12.5",
                ]
                .map(|l| format!("{tag}| {l}")),
            );
            for e in vm.expect {
                lines.push(format!("{tag}| {e} and the rest"));
            }
            if vm.tag == "A" {
                lines.push(format!("{tag}| {DISK_WROTE} {id}"));
            }
            if vm.reads_disk_of.is_some() {
                lines.push(format!("{tag}| {id}"));
            }
            lines.extend(
                [
                    "Linux (none) 6.1.0-50-cloud-amd64 #1 SMP x86_64 GNU/Linux",
                    "VM-GUEST-EXIT status=0",
                    "vm-service: guest powered off (vCPU exits: [1, 2])",
                    "VM-E2E-RESULT status=0",
                ]
                .map(|l| format!("{tag}| {l}")),
            );
        }
        lines.push(DONE.to_string());
        lines
    }

    fn console_of(lines: &[String]) -> Console {
        let mut c = Console::new(TWO_GUESTS);
        for (wall, line) in lines.iter().enumerate() {
            c.observe(line, f64::from(u32::try_from(wall).unwrap()));
        }
        c
    }

    fn verdict(c: &Console) -> Result<()> {
        c.verdict(true, Duration::ZERO, Duration::ZERO)
    }

    #[test]
    fn a_good_run_passes_and_is_parsed_per_vm() {
        let c = console_of(&good_run());
        verdict(&c).unwrap();
        assert_eq!(c.outer_ready.as_ref().map(|o| o.1.as_str()), Some("4.20"));
        assert_eq!(c.rounds.len(), 2);
        let a = &c.guests["A"];
        assert_eq!(a.ready.as_ref().map(|r| r.1.as_str()), Some("12.5"));
        assert!(a.uname.as_deref().unwrap().contains("x86_64"));
        assert_eq!(a.stamps.len(), 3, "stamps before the ready marker only");
        assert!((a.pause_after(BEFORE_RTC).unwrap() - 0.02).abs() < 1e-9);
        // The command line echoes the script: it is no proof of a write.
        assert_eq!(
            a.line_starting(DISK_WROTE),
            Some("E2E-DISK-WROTE 0b6f1b8e-7d4e-4a8e-9f62-2c1a4f1f0c11")
        );
        assert!(c.verdict(false, Duration::ZERO, Duration::ZERO).is_err());
    }

    #[test]
    fn each_missing_piece_fails() {
        let good = good_run();
        let without = |needle: &str, tag: &str| -> Vec<String> {
            good.iter()
                .filter(|l| !(l.starts_with(&format!("{tag}| ")) && l.contains(needle)))
                .cloned()
                .collect()
        };
        for vm in TWO_GUESTS {
            for needle in [
                "VM-GUEST-READY",
                "VM-GUEST-EXIT",
                "VM-E2E-RESULT",
                "powered off",
            ]
            .iter()
            .chain(vm.expect)
            {
                let err = verdict(&console_of(&without(needle, vm.tag))).unwrap_err();
                assert!(err.to_string().contains(vm.tag), "{needle}: {err}");
            }
        }
        assert!(verdict(&console_of(&without("Linux (none)", "A"))).is_err());
        // B prints no uname line and needs none.
        verdict(&console_of(&without("Linux (none)", "B"))).unwrap();
        // The disk's read-back must be the very id the writer printed.
        let reader = TWO_GUESTS
            .iter()
            .find(|v| v.reads_disk_of.is_some())
            .unwrap();
        let err = verdict(&console_of(&without("0b6f1b8e", reader.tag))).unwrap_err();
        assert!(err.to_string().contains("read back"), "{err}");
        assert!(verdict(&console_of(&without(DISK_WROTE, "A"))).is_err());
        let mut unfinished = good.clone();
        assert_eq!(unfinished.pop().as_deref(), Some(DONE));
        let err = verdict(&console_of(&unfinished)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[test]
    fn failures_of_status_and_rtc_are_named() {
        let good = good_run();
        let with = |from: &str, to: &str| -> Vec<String> {
            good.iter()
                .map(|l| {
                    if l.starts_with("B| ") {
                        l.replace(from, to)
                    } else {
                        l.clone()
                    }
                })
                .collect()
        };
        for (from, to, says) in [
            (
                "VM-GUEST-EXIT status=0",
                "VM-GUEST-EXIT status=4",
                "command",
            ),
            (
                "VM-E2E-RESULT status=0",
                "VM-E2E-RESULT status=1",
                "vm-service exited",
            ),
            (
                "[    1.020000] rtc_cmos",
                "[    8.500000] rtc_cmos",
                "paused 7.50 s",
            ),
            (
                "rtc_cmos 00:00: registered as rtc0",
                "rtc_cmos rtc_cmos: broken or not accessible",
                "no CMOS RTC",
            ),
        ] {
            let err = verdict(&console_of(&with(from, to))).unwrap_err();
            assert!(err.to_string().contains(says), "{from}: {err}");
            assert!(err.to_string().contains("VM B"), "{from}: {err}");
        }
    }

    /// What a good run of [`ONE_GUEST`] prints: A snapshotted, R restored.
    fn good_snapshot_run() -> Vec<String> {
        let mut lines = vec![
            "VM-E2E-OUTER-READY uptime=4.20 npt=Y".to_string(),
            format!("{ROUND} 1"),
        ];
        lines.extend(
            [
                "[    1.000000] i8042: PNP: No PS/2 controller found.",
                "[    1.020000] rtc_cmos 00:00: registered as rtc0",
                "[    1.500000] smp: Brought up 1 node, 2 CPUs",
                "VM-GUEST-READY uptime=12.5",
                "Linux (none) 6.1.0-50-cloud-amd64 #1 SMP x86_64 GNU/Linux",
                "COUNT 100",
                "COUNT 500",
                "vm-service: snapshot written to /run/snapshots/A/state.snap and /run/snapshots/A/memory.snap",
                "VM-E2E-RESULT status=0",
            ]
            .map(|l| format!("A| {l}")),
        );
        lines.push(format!("{ROUND} 2"));
        let sum = format!("R| SUM {}", checksum());
        lines.extend(["R| COUNT 600".to_string(), "R| COUNT 1500".to_string(), sum]);
        lines.extend(
            [
                "VM-GUEST-EXIT status=0",
                "vm-service: guest powered off (vCPU exits: [1, 2])",
                "VM-E2E-RESULT status=0",
            ]
            .map(|l| format!("R| {l}")),
        );
        lines.push(DONE.to_string());
        lines
    }

    fn snapshot_verdict(lines: &[String]) -> Result<()> {
        let mut c = Console::new(ONE_GUEST);
        for (wall, line) in lines.iter().enumerate() {
            c.observe(line, f64::from(u32::try_from(wall).unwrap()));
        }
        c.verdict(true, Duration::ZERO, Duration::ZERO)
    }

    #[test]
    fn a_snapshot_round_trip_passes_and_each_flaw_is_named() {
        let good = good_snapshot_run();
        snapshot_verdict(&good).unwrap();
        let without = |needle: &str| -> Vec<String> {
            good.iter()
                .filter(|l| !l.contains(needle))
                .cloned()
                .collect()
        };
        let with = |extra: &str| -> Vec<String> {
            let mut lines = good.clone();
            let done = lines.pop().unwrap();
            lines.extend([extra.to_string(), done]);
            lines
        };
        for (lines, says) in [
            (without("snapshot written"), "no snapshot written"),
            (without("R| SUM"), "the restored guest printed None"),
            (
                without("R| VM-GUEST-EXIT"),
                "VM R: the guest's command ended",
            ),
            (
                without("R| vm-service: guest powered off"),
                "VM R: the guest did not power off",
            ),
            (
                without("COUNT 1500"),
                "VM R: no console line starts with \"COUNT 1500\"",
            ),
            (with("A| SUM 1"), "VM A: the guest's command finished"),
            (
                with("A| VM-GUEST-EXIT status=0"),
                "VM A: the guest's command finished",
            ),
            (
                with("R| VM-GUEST-READY uptime=1.0"),
                "VM R: the restored guest booted again",
            ),
        ] {
            let err = snapshot_verdict(&lines).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
        let mut shadow = good.clone();
        shadow[0] = shadow[0].replace("npt=Y", "npt=N");
        let err = snapshot_verdict(&shadow).unwrap_err().to_string();
        assert!(err.contains("asked for Y"), "{err}");
        let wrong_sum: Vec<String> = good
            .iter()
            .map(|l| {
                if l.starts_with("R| SUM ") {
                    "R| SUM 42".to_string()
                } else {
                    l.clone()
                }
            })
            .collect();
        let err = snapshot_verdict(&wrong_sum).unwrap_err().to_string();
        assert!(err.contains("\"SUM 42\""), "{err}");
    }

    #[test]
    fn untagged_and_unknown_tags_stay_outer() {
        let mut c = Console::new(TWO_GUESTS);
        c.observe("Z| VM-GUEST-READY uptime=1", 1.0);
        c.observe("no tag here | VM-GUEST-READY uptime=1", 1.0);
        assert!(c.guests.is_empty());
        assert_eq!(c.tail.len(), 2);
        assert_eq!(printk_stamp("[ 2.5] x: y"), Some((2.5, "x: y")));
        assert_eq!(printk_stamp("2.5] x"), None);
    }
}
