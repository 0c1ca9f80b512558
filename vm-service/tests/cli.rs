//! `vm-service run` from the outside: bad input gives one line naming the
//! problem and a non-zero exit, never a panic; the built-in guest exits 0.

use assert_cmd::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("vm-service")
        .unwrap()
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean_failure(args: &[&str], needle: &str) {
    let (code, _, err) = run(args);
    assert_eq!(code, 1, "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: stderr does not mention {needle:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{args:?}:\n{err}");
    let error_lines = err.lines().filter(|l| l.contains("error")).count();
    assert_eq!(error_lines, 1, "{args:?}: one error line expected:\n{err}");
}

#[test]
fn missing_kernel_file() {
    assert_clean_failure(
        &["--kernel", "/nonexistent/vmlinux"],
        "/nonexistent/vmlinux",
    );
}

#[test]
fn unreadable_initrd() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("k");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let k = kernel.to_str().unwrap();
    assert_clean_failure(
        &["--kernel", k, "--initrd", "/nonexistent/initrd"],
        "/nonexistent/initrd",
    );
}

#[test]
fn not_a_kernel() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("garbage");
    std::fs::write(&kernel, vec![0x5a; 4096]).unwrap();
    assert_clean_failure(&["--kernel", kernel.to_str().unwrap()], "kernel");
}

#[test]
fn memory_smaller_than_the_layout() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    assert_clean_failure(&["--memory", "1"], "too small");
}

#[test]
fn more_vcpus_than_allowed() {
    // KVM here allows more vCPUs than the x86_64 platform's 254 (xAPIC ids),
    // so the configuration limit is the one a user meets.
    assert_clean_failure(&["--vcpus", "255"], "vcpus");
    assert_clean_failure(&["--vcpus", "0"], "vcpus");
}

#[test]
fn tap_device_that_cannot_be_opened() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    // Interface names cannot contain '/': the kernel refuses to create it.
    assert_clean_failure(&["--net", "tap:bad/name"], "bad/name");
}

#[test]
fn bad_flag_values() {
    assert_clean_failure(&["--net", "wifi"], "--net");
    assert_clean_failure(&["--net", "virtual:"], "--net");
    assert_clean_failure(
        &["--net", "virtual", "--switch-dir", "/tmp"],
        "--switch-dir needs --net virtual:NAME",
    );
    assert_clean_failure(&["--arch", "mips"], "mips");
    // A multicast MAC, which a NIC cannot own (checked with the config).
    assert_clean_failure(&["--mac", "01:00:5e:00:00:01"], "mac");
    // Not a MAC at all: refused by the argument parser (exit 2), naming it.
    let (code, _, err) = run(&["--mac", "52:54:00:12:34"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("52:54:00:12:34"), "{err}");
}

#[test]
fn help_explains_every_flag() {
    let out = Command::cargo_bin("vm-service")
        .unwrap()
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--kernel",
        "--initrd",
        "--cmdline",
        "--vcpus",
        "--memory",
        "--net",
        "virtual:NAME",
        "--switch-dir",
        "--mac",
        "--executor",
        "--arch",
        "--log-level",
        "--drive",
        "PATH[,ro][,root][,id=NAME]",
        "--rootfs",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
}

#[test]
fn builtin_guest_boots_and_exits_zero() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let (code, out, err) = run(&["--vcpus", "2"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(vm_service::guest::BANNER), "stdout:\n{out}");
    assert!(err.contains("KVM"), "the engine is named:\n{err}");
}

#[test]
fn guest_not_built_names_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_clean_failure(
        &["--guest", "debian", "--arch", "riscv64", "--guest-dir", d],
        "cargo xtask guest --arch riscv64",
    );
}

#[test]
fn named_virtual_switch_joins_its_segment_and_leaves_on_exit() {
    use std::os::unix::fs::PermissionsExt;
    if !test_prerequisites::kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let switches = dir.path().join("switches");
    let switch_dir = switches.to_str().unwrap();
    let (code, out, err) = run(&["--net", "virtual:lan", "--switch-dir", switch_dir]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let mode = std::fs::metadata(&switches).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the switch directory is private");
    assert!(
        !switches.join("lan").exists(),
        "the member socket and the empty switch directory are removed"
    );
}

#[test]
fn guest_flags_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("riscv64");
    std::fs::create_dir(&arch).unwrap();
    std::fs::write(arch.join("kernel"), b"k").unwrap();
    std::fs::write(arch.join("initrd.cpio.gz"), b"i").unwrap();
    let d = dir.path().to_str().unwrap();
    let base = ["--guest", "debian", "--arch", "riscv64", "--guest-dir", d];
    let with = |extra: &[&'static str]| -> Vec<&str> { [&base[..], extra].concat() };
    assert_clean_failure(&with(&["--ip", "10.0.0.1"]), "--ip");
    assert_clean_failure(&with(&["--", "echo", "a\"b"]), "quote");
    // A command without a kernel to pass it to.
    assert_clean_failure(&["--", "true"], "needs --guest or --kernel");
    // Unknown guest names are refused by the argument parser (exit 2).
    let (code, _, err) = run(&["--guest", "fedora"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fedora"), "{err}");
}

#[test]
fn drive_flags_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, [0u8; 4096]).unwrap();
    let img = image.to_str().unwrap();
    let missing = dir.path().join("missing.img");
    let missing = missing.to_str().unwrap();
    // Checked before anything is built: the missing file is named.
    assert_clean_failure(&["--drive", missing], missing);
    assert_clean_failure(&["--drive", &format!("{missing},ro")], "No such file");
    assert_clean_failure(&["--drive", ""], "empty path");
    assert_clean_failure(&["--drive", &format!("{img},rw")], "unknown option \"rw\"");
    assert_clean_failure(
        &[
            "--drive",
            &format!("{img},root"),
            "--drive",
            &format!("{img},root,id=b"),
        ],
        "already the root drive",
    );
    let d = dir.path().to_str().unwrap();
    assert_clean_failure(&["--drive", &format!("{d},ro")], "not a regular file");
    // --rootfs of a guest that has no disk image says how to get one.
    let arch = dir.path().join("riscv64");
    std::fs::create_dir(&arch).unwrap();
    std::fs::write(arch.join("kernel"), b"k").unwrap();
    std::fs::write(arch.join("initrd.cpio.gz"), b"i").unwrap();
    assert_clean_failure(
        &[
            "--guest",
            "debian",
            "--arch",
            "riscv64",
            "--guest-dir",
            d,
            "--rootfs",
        ],
        "rootfs.ext4",
    );
    // --rootfs belongs to --guest (the argument parser says so, exit 2).
    let (code, _, err) = run(&["--rootfs"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--guest"), "{err}");
}

#[test]
fn unusable_switch_segments_are_clean_failures() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let file = file.to_str().unwrap();
    assert_clean_failure(&["--net", "virtual:lan", "--switch-dir", file], file);
    let tmp = dir.path().to_str().unwrap();
    assert_clean_failure(
        &["--net", "virtual:..", "--switch-dir", tmp],
        "invalid devices[0].backend.switch",
    );
    let deep = dir.path().join("d".repeat(120));
    assert_clean_failure(
        &[
            "--net",
            "virtual:lan",
            "--switch-dir",
            deep.to_str().unwrap(),
        ],
        "shorter",
    );
}

#[test]
fn unknown_riscv_tier() {
    // A usage error: clap's exit status 2, naming the tiers there are.
    let (code, _, err) = run(&["--riscv-tier", "fast"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`fast`: the tiers are `translate` and `interpret`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_riscv_tier_for_a_kvm_guest() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    assert_clean_failure(
        &["--riscv-tier", "interpret"],
        "needs the riscv64 software engine",
    );
}
