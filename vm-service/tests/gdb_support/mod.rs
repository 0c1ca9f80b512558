//! Shared by the tests that drive the gdb stub: `gdb-multiarch` in batch
//! mode, its printed values, raw protocol packets.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `gdb-multiarch -batch` with `commands`; returns its output.
pub fn run_gdb(gdb: &Path, commands: &[String]) -> Output {
    let mut cmd = Command::new(gdb);
    cmd.args(["-batch", "-nx"]);
    for c in commands {
        cmd.arg("-ex").arg(c);
    }
    cmd.output().expect("run gdb-multiarch")
}

/// The values of GDB's `$N = value` lines, in order.
pub fn printed_values(gdb_stdout: &str) -> Vec<&str> {
    gdb_stdout
        .lines()
        .filter_map(|l| l.strip_prefix('$'))
        .filter_map(|l| l.split_once(" = ").map(|(_, v)| v))
        .collect()
}

/// A process's stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A packet with a correct checksum.
pub fn packet(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    let mut p = b"$".to_vec();
    p.extend_from_slice(body);
    p.extend_from_slice(format!("#{sum:02x}").as_bytes());
    p
}
