//! `vm-service run --gdb` driven by a real `gdb-multiarch` in batch mode on a
//! small riscv64 kernel Image (`tests/gdb/image.S`, built with the riscv64
//! cross gcc; GDB reads its symbols from the ELF), on a small x86_64 guest on
//! KVM (`tests/gdb/x86_64.S`, built with binutils) and on the riscv64 Debian
//! guest (`cargo xtask guest`; ignored by default, it boots Linux), and a
//! hostile packet stream that must not take the VMM down. Built with the
//! `gdb` feature only.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

mod gdb_support;
mod riscv_image;

use gdb_support::{packet, printed_values, run_gdb, text};

/// The test Image: (ELF with symbols, flat Image for the VMM).
fn build_image(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    riscv_image::build_image(dir, "gdb/image.S")
}

/// Starts the VM under the stub, held until a debugger attaches.
fn start_vm(image: &Path, socket: &Path) -> Child {
    let mut cmd = Command::cargo_bin("vm-service").expect("binary");
    // Two harts: the second stays stopped (nothing starts it), a second GDB thread.
    cmd.args(["run", "--arch", "riscv64", "--memory", "64", "--vcpus", "2"])
        .args(["--net", "none", "--kernel"])
        .arg(image);
    start_vm_with(cmd, socket, &[])
}

/// Adds the stub's arguments, then `guest_command` (after `--`), to a
/// `vm-service run` command and starts it.
fn start_vm_with(mut cmd: Command, socket: &Path, guest_command: &[&str]) -> Child {
    cmd.arg("--gdb")
        .arg(format!("unix:{}", socket.display()))
        .arg("--gdb-wait");
    if !guest_command.is_empty() {
        cmd.arg("--").args(guest_command);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vm-service");
    // The socket appears once the VMM listens (it binds before building the VM).
    for _ in 0..6000 {
        if socket.exists() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("wait");
    panic!(
        "the gdb socket never appeared: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a GDB batch session against a VM printed.
struct Session {
    gdb_stdout: String,
    vm_stdout: String,
    vm_status: Option<i32>,
    /// Everything, for assertion messages.
    all: String,
}

/// Runs GDB with `commands` against `vm`, then waits for the VM to end.
fn run_session(gdb: &Path, commands: &[String], vm: Child) -> Session {
    let gdb_out = run_gdb(gdb, commands);
    let (gdb_stdout, gdb_stderr) = text(&gdb_out);
    let vm_out = vm.wait_with_output().expect("wait for vm-service");
    let (vm_stdout, vm_stderr) = text(&vm_out);
    let all = format!("gdb:\n{gdb_stdout}\n{gdb_stderr}\nvm-service:\n{vm_stdout}\n{vm_stderr}");
    Session {
        gdb_stdout,
        vm_stdout,
        vm_status: vm_out.status.code(),
        all,
    }
}

/// The test guests print `gdb-test-done` and end cleanly once continued.
fn assert_ran_to_end(gdb_stdout: &str, vm_stdout: &str, vm_status: Option<i32>, all: &str) {
    assert!(
        gdb_stdout.contains("exited normally"),
        "the guest did not run to its end under gdb: {all}"
    );
    assert_eq!(vm_status, Some(0), "{all}");
    assert!(vm_stdout.contains("gdb-test-done"), "{all}");
}

#[test]
fn gdb_breaks_steps_watches_reads_and_writes_then_the_guest_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((elf, bin)) = build_image(dir.path()) else {
        return;
    };
    let Some(gdb) = test_prerequisites::tool("gdb-multiarch", "gdb-multiarch") else {
        return;
    };
    let socket = dir.path().join("gdb.sock");
    let vm = start_vm(&bin, &socket);
    let commands = [
        "set architecture riscv:rv64".to_string(),
        format!("file {}", elf.display()),
        format!("target remote {}", socket.display()),
        "info threads".into(),
        "break *add_one".into(),
        "continue".into(),
        "p $pc == &add_one".into(),
        "p/d $s1".into(),
        "p/d $s0".into(),
        "thread 2".into(),
        "p/x $mhartid".into(),
        "thread 1".into(),
        "stepi".into(),
        "p/d $s0".into(),
        "p/x *(long *)&magic_word".into(),
        "set {long}&magic_word = 0x55aa".into(),
        "p/x *(long *)&magic_word".into(),
        "set $a5 = 77".into(),
        "p/d $a5".into(),
        "p $priv".into(),
        "p/x $mhartid".into(),
        "p/x $fcsr".into(),
        "p $ft0".into(),
        "delete".into(),
        "hbreak *add_one".into(),
        "continue".into(),
        "p/d $s1".into(),
        "delete".into(),
        "watch *(long *)&result".into(),
        "rwatch *(long *)&magic_word".into(),
        "continue".into(),
        "info symbol $pc".into(),
        "continue".into(),
        "info symbol $pc".into(),
        "p/x $t2".into(),
        "delete".into(),
        "continue".into(),
    ];
    let Session {
        gdb_stdout,
        vm_stdout,
        vm_status,
        all,
    } = run_session(&gdb, &commands, vm);

    // A thread per hart.
    assert!(gdb_stdout.contains("Thread 1.1"), "{all}");
    assert!(gdb_stdout.contains("Thread 1.2"), "{all}");
    // Breakpoint at the symbol, registers at that point.
    assert!(gdb_stdout.contains("Breakpoint 1, 0x"), "{all}");
    assert!(gdb_stdout.contains("in add_one ()"), "{all}");
    assert_eq!(
        printed_values(&gdb_stdout),
        [
            "1",                  // pc == &add_one
            "5",                  // s1 on the first call
            "0",                  // s0 before add_one's addi
            "0x1",                // the second hart's mhartid
            "1",                  // s0 after one step
            "0x1122334455667788", // memory read
            "0x55aa",             // memory write, read back
            "77",                 // register write, read back
            "1 '\\001'",          // S-mode
            "0x0",                // mhartid
            "0x0",                // fcsr
            "{float = 0, double = 0}",
            "4",      // hardware breakpoint: the second call
            "0x55aa", // t2 after the watched load
        ],
        "{all}"
    );
    assert!(
        gdb_stdout.contains("Hardware assisted breakpoint 2"),
        "{all}"
    );
    // GDB compares the watched value itself: the stop after the store.
    assert!(gdb_stdout.contains("Hardware watchpoint 3"), "{all}");
    assert!(gdb_stdout.contains("New value = 5"), "{all}");
    // GDB steps over the access itself: it reports each stop just after it.
    assert!(gdb_stdout.contains("\nstored in section .text"), "{all}");
    assert!(gdb_stdout.contains("\nloaded in section .text"), "{all}");
    assert!(gdb_stdout.contains("Hardware read watchpoint 4"), "{all}");
    assert_ran_to_end(&gdb_stdout, &vm_stdout, vm_status, &all);
}

/// The x86_64 test guest, an ELF with symbols that the VMM loads as a vmlinux.
fn build_x86_64_guest(dir: &Path) -> Option<PathBuf> {
    let assembler = test_prerequisites::tool("as", "binutils")?;
    let linker = test_prerequisites::tool("ld", "binutils")?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gdb");
    let object = dir.join("x86_64.o");
    let ok = Command::new(assembler)
        .arg("--64")
        .arg("-o")
        .arg(&object)
        .arg(src.join("x86_64.S"))
        .status()
        .expect("running as");
    assert!(ok.success(), "assembling the x86_64 guest failed");
    let elf = dir.join("x86_64.elf");
    let ok = Command::new(linker)
        .args([
            "-m",
            "elf_x86_64",
            "-nostdlib",
            "-static",
            "-N",
            "--build-id=none",
        ])
        .arg("-T")
        .arg(src.join("x86_64.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(&object)
        .status()
        .expect("running ld");
    assert!(ok.success(), "linking the x86_64 guest failed");
    Some(elf)
}

/// On KVM, every breakpoint is a hardware one (debug registers): `break`
/// and `hbreak` stop at the symbol, a single step runs one instruction,
/// registers and memory (through the guest's page tables) read and write,
/// and the guest then runs to its end.
#[test]
fn gdb_debugs_an_x86_64_guest_on_kvm() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let Some(gdb) = test_prerequisites::tool("gdb-multiarch", "gdb-multiarch") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(elf) = build_x86_64_guest(dir.path()) else {
        return;
    };
    let socket = dir.path().join("gdb.sock");
    let mut cmd = Command::cargo_bin("vm-service").expect("binary");
    cmd.args(["run", "--arch", "x86_64", "--memory", "64", "--vcpus", "1"])
        .args(["--net", "none", "--kernel"])
        .arg(&elf);
    let vm = start_vm_with(cmd, &socket, &[]);
    let commands = [
        "set architecture i386:x86-64".to_string(),
        format!("file {}", elf.display()),
        format!("target remote {}", socket.display()),
        "break *add_one".into(),
        "continue".into(),
        "p $pc == &add_one".into(),
        "p/d $r12".into(),
        "p/d $rbx".into(),
        "stepi".into(),
        "p/d $rbx".into(),
        "p/x *(long *)&magic_word".into(),
        "set {long}&magic_word = 0x55aa".into(),
        "p/x *(long *)&magic_word".into(),
        "set $rax = 77".into(),
        "p/d $rax".into(),
        "p/x $cs".into(),
        "delete".into(),
        "hbreak *add_one".into(),
        "continue".into(),
        "p/d $r12".into(),
        "delete".into(),
        "continue".into(),
    ];
    let Session {
        gdb_stdout,
        vm_stdout,
        vm_status,
        all,
    } = run_session(&gdb, &commands, vm);
    assert!(gdb_stdout.contains("Breakpoint 1, 0x"), "{all}");
    assert!(gdb_stdout.contains("in add_one ()"), "{all}");
    assert_eq!(
        printed_values(&gdb_stdout),
        [
            "1",                  // pc == &add_one
            "5",                  // r12 on the first call
            "0",                  // rbx before add_one's inc
            "1",                  // rbx after one step
            "0x1122334455667788", // memory read
            "0x55aa",             // memory write, read back
            "77",                 // register write, read back
            "0x8",                // the boot GDT's code segment
            "4",                  // hardware breakpoint: the second call
        ],
        "{all}"
    );
    assert!(
        gdb_stdout.contains("Hardware assisted breakpoint 2"),
        "{all}"
    );
    assert_ran_to_end(&gdb_stdout, &vm_stdout, vm_status, &all);
}

#[test]
fn a_hostile_packet_stream_does_not_crash_the_vmm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_, bin)) = build_image(dir.path()) else {
        return;
    };
    let socket = dir.path().join("gdb.sock");
    let vm = start_vm(&bin, &socket);
    let mut s = UnixStream::connect(&socket).expect("connect");
    let mut stream = Vec::new();
    // Noise, a packet with a bad checksum, then well-formed packets with hostile contents.
    stream.extend_from_slice(b"\x00\xff\x03garbage}}}#$#$##");
    stream.extend_from_slice(b"$g#00");
    for body in [
        &b"qSupported:multiprocess+;swbreak+;hwbreak+"[..],
        b"m0,ffffffffffffffff",
        b"mffffffffffffffff,10",
        b"M80200000,4:zz",
        b"M80200000,ffff:00",
        b"X80200000,8:\x7d\x5d",
        b"G00",
        b"p99999",
        b"Pffff=00",
        b"Hgfffffff",
        b"Hg-5",
        b"Z0,,",
        b"Z1,80200000,4",
        b"z9,0,0",
        b"vCont;s",
        b"vCont;x:1",
        b"qXfer:features:read:target.xml:ffffffff,ffffffff",
        b"qXfer:features:read:../../etc/passwd:0,100",
        b"qRcmd,zz",
        b"T-1",
    ] {
        stream.extend_from_slice(&packet(body));
        stream.push(b'+');
    }
    // An oversized packet, then one cut off by the connection closing.
    stream.push(b'$');
    stream.extend(std::iter::repeat_n(b'A', 1 << 20));
    stream.extend_from_slice(b"#00");
    stream.extend_from_slice(b"$qSupported:multipr");
    // The stub may close the connection early (a protocol error ends the
    // session): a failed write is fine, the VMM must survive it.
    let _ = s.write_all(&stream);
    drop(s);
    let out = vm.wait_with_output().expect("wait for vm-service");
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the VM did not end cleanly after the hostile stream:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("gdb-test-done"),
        "the guest did not run to its end:\n{stdout}\n{stderr}"
    );
}

/// The built riscv64 Debian guest's directory, or `None` (reported missing).
fn guest_dir() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("guest");
    if dir.join("riscv64/kernel").is_file() && dir.join("riscv64/initrd.cpio.gz").is_file() {
        Some(dir)
    } else {
        test_prerequisites::prerequisite_missing(format_args!(
            "no riscv64 Debian guest in {}: run `cargo xtask guest --arch riscv64`",
            dir.display()
        ));
        None
    }
}

/// On Debian's riscv64 kernel: Ctrl-C (SIGINT to gdb, which sends the
/// remote interrupt) stops the running kernel, a breakpoint on the trap
/// vector it installed (`stvec`, a virtual address) is hit, the code there
/// is read through the kernel's page tables, and the guest then boots on to
/// its ready marker and runs its command.
#[test]
#[ignore = "boots Linux on the interpreter (minutes); `cargo xtask ci` runs it"]
fn gdb_interrupts_and_breaks_in_the_riscv64_debian_kernel() {
    let Some(dir) = guest_dir() else { return };
    let Some(gdb) = test_prerequisites::tool("gdb-multiarch", "gdb-multiarch") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("gdb.sock");
    let mut cmd = Command::cargo_bin("vm-service").expect("binary");
    cmd.args([
        "run", "--guest", "debian", "--arch", "riscv64", "--memory", "256",
    ])
    .args(["--net", "none", "--guest-dir"])
    .arg(&dir);
    let mut vm = start_vm_with(cmd, &socket, &["echo", "hello-from-gdb-test"]);
    // The console, read as it comes: the interrupt waits for the kernel's
    // first line, printed once it runs with its MMU on.
    let mut console = vm.stdout.take().expect("piped stdout");
    let (booting_tx, booting) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut told = false;
        while let Ok(n @ 1..) = std::io::Read::read(&mut console, &mut buf) {
            seen.extend_from_slice(&buf[..n]);
            if !told && seen.windows(13).any(|w| w == b"Booting Linux") {
                told = true;
                let _ = booting_tx.send(());
            }
        }
        seen
    });
    let mut gdb_cmd = Command::new(gdb);
    gdb_cmd.args(["-batch", "-nx"]);
    for c in [
        "set architecture riscv:rv64".to_string(),
        format!("target remote {}", socket.display()),
        "p/x $pc".into(),
        "continue".into(),
        "p $satp != 0".into(),
        "break *$stvec".into(),
        "continue".into(),
        "p $pc == $stvec".into(),
        "x/i $pc".into(),
        "delete".into(),
        "continue".into(),
    ] {
        gdb_cmd.arg("-ex").arg(c);
    }
    let gdb_child = gdb_cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gdb-multiarch");
    // Let the kernel run (and turn its MMU on), then press Ctrl-C. The
    // bound only keeps a broken boot from hanging the test.
    let booted = booting.recv_timeout(Duration::from_mins(10)).is_ok();
    let pid = i32::try_from(gdb_child.id()).expect("pid");
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let gdb_out = gdb_child.wait_with_output().expect("wait for gdb");
    let vm_out = vm.wait_with_output().expect("wait for vm-service");
    let (gdb_stdout, gdb_stderr) = text(&gdb_out);
    let vm_stdout = String::from_utf8_lossy(&reader.join().expect("console reader")).into_owned();
    let (_, vm_stderr) = text(&vm_out);
    let all = format!("gdb:\n{gdb_stdout}\n{gdb_stderr}\nvm-service:\n{vm_stdout}\n{vm_stderr}");
    assert!(booted, "the kernel never printed its first line: {all}");
    assert!(gdb_stdout.contains("$1 = 0x80200000"), "{all}");
    assert!(gdb_stdout.contains("received signal SIGINT"), "{all}");
    assert!(
        gdb_stdout.contains("$2 = 1"),
        "MMU not on at the interrupt: {all}"
    );
    assert!(gdb_stdout.contains("Breakpoint 1, 0xffffffff"), "{all}");
    assert!(gdb_stdout.contains("$3 = 1"), "{all}");
    // Linux's trap entry (handle_exception) starts by swapping tp with sscratch.
    assert!(gdb_stdout.contains("csrrw\ttp,sscratch,tp"), "{all}");
    assert!(gdb_stdout.contains("exited normally"), "{all}");
    assert!(vm_stdout.contains("VM-GUEST-READY"), "{all}");
    assert!(vm_stdout.contains("hello-from-gdb-test"), "{all}");
    assert_eq!(vm_out.status.code(), Some(0), "{all}");
}
