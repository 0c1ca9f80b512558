//! `vm-service run --profile FILE --profile-symbols ELF` on a riscv64 Image
//! with a hot and a cold loop (`tests/profile/hot.S`): the flat profile names
//! the hot function first.

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

mod riscv_image;

#[test]
fn the_profile_names_the_hot_function() {
    for tier in ["translate", "interpret"] {
        profile_names_the_hot_function(tier);
    }
}

/// In execution tier `tier` (`--riscv-tier`): samples land where the
/// guest's time goes whether its code runs translated or interpreted.
fn profile_names_the_hot_function(tier: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((elf, bin)) = riscv_image::build_image(dir.path(), "profile/hot.S") else {
        return;
    };
    let profile = dir.path().join("profile.txt");
    let out = Command::cargo_bin("vm-service")
        .expect("binary")
        .args([
            "run", "--arch", "riscv64", "--memory", "64", "--net", "none",
        ])
        .args(["--riscv-tier", tier])
        .arg("--kernel")
        .arg(&bin)
        .arg("--profile")
        .arg(&profile)
        .arg("--profile-symbols")
        .arg(&elf)
        .output()
        .expect("run vm-service");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{tier}: {stderr}");
    let text = std::fs::read_to_string(&profile).expect("profile written");
    let rows: Vec<(u64, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let n = f.next()?.parse().ok()?;
            Some((n, f.nth(1)?))
        })
        .collect();
    // 600,000 instructions in hot_loop at one sample per 10,000: about 60.
    assert_eq!(
        rows.first().map(|r| r.1),
        Some("hot_loop"),
        "{tier}: {text}"
    );
    assert!(rows[0].0 >= 30, "{tier}: {text}");
    let cold = rows.iter().find(|r| r.1 == "cold_loop").map_or(0, |r| r.0);
    assert!(cold < rows[0].0 / 10, "{tier}: {text}");
}

#[test]
fn bad_profile_symbols_are_refused_before_the_guest_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not an elf").expect("write");
    let out = Command::cargo_bin("vm-service")
        .expect("binary")
        .args(["run", "--arch", "riscv64", "--net", "none", "--kernel"])
        .arg(&junk)
        .arg("--profile")
        .arg(dir.path().join("p.txt"))
        .arg("--profile-symbols")
        .arg(&junk)
        .output()
        .expect("run vm-service");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("not a 64-bit little-endian ELF"),
        "{stderr}"
    );
}
