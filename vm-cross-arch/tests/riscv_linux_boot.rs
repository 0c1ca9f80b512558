//! Boots the riscv64 guest `cargo xtask guest --arch riscv64` builds (Debian
//! sid's stock kernel, a busybox initramfs) on the software engine with a
//! command after ` -- `, on one and two harts, in the default tier (hot
//! blocks translated) and on the interpreter alone: the console must show
//! the guest's ready marker, the command's output and its exit status, and
//! the guest must power off. A guest that has not been built is a missing
//! prerequisite (`test_prerequisites`).
//!
//! Ignored by default: each boot executes billions of guest instructions
//! (seconds translated, tens of seconds interpreted, in test builds, which
//! optimise the engine); `cargo xtask ci` runs them. By hand:
//! `cargo test -p vm-cross-arch --test riscv_linux_boot -- --ignored --nocapture`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::guest_file;
use vm_accel::{SystemEvent, Vcpu, VcpuExit, VcpuId, Vm};
use vm_cross_arch::interp::riscv64::{RiscvVm, Tier};
use vm_cross_arch::platform::{for_arch, GuestArch, MachineSize, SerialPort};
use vm_device::interrupt::CallbackInterrupt;
use vm_device::legacy::serial::{CaptureBuffer, Serial};
use vm_device::Bus;

/// What the guest's `/init` prints once userspace is up.
const READY: &str = "VM-GUEST-READY uptime=";
/// Printed by the command the test runs.
const HELLO: &str = "hello-from-the-riscv64-guest";
/// Upper bound on `run()` calls (each runs at most ~2M instructions or
/// idles ~10 ms), so a broken boot ends instead of hanging.
const MAX_RUNS: u64 = 200_000;

fn boot(vcpus: u32, tier: Tier) {
    let Some(kernel) = guest_file("riscv64", "kernel") else {
        return;
    };
    let Some(initrd) = guest_file("riscv64", "initrd.cpio.gz") else {
        return;
    };
    let cmdline = format!("console=ttyS0 panic=-1 -- echo {HELLO}");

    let platform = for_arch(GuestArch::Riscv64);
    let map = platform
        .memory_map(&MachineSize {
            vcpus,
            mem_size: 256 << 20,
            virtio_devices: 0,
        })
        .expect("layout");
    let mem = map.create_guest_memory().expect("memory");
    let vm = Arc::new(RiscvVm::new(vcpus).expect("vm"));
    vm.map_memory(&mem).expect("map");
    let boot = platform
        .boot(&mem, &map, &kernel, Some(&initrd), &cmdline)
        .expect("boot data");

    let SerialPort::Mmio(uart) = map.serial else {
        panic!("riscv64 has an MMIO UART")
    };
    let out = CaptureBuffer::new();
    let plic_vm = vm.clone();
    let line = uart.irq.0;
    let irq = Arc::new(CallbackInterrupt::new(move || {
        plic_vm.machine().plic.raise(line);
        Ok(())
    }));
    let serial = Arc::new(Mutex::new(Serial::new(irq, Box::new(out.clone()))));
    let mut bus = Bus::new();
    bus.insert(serial.clone(), uart.mmio.start.0, uart.mmio.size)
        .expect("uart");
    let bus = Arc::new(bus);

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut kicks = Vec::new();
    let threads: Vec<_> = (0..vcpus)
        .map(|i| {
            let mut vcpu = vm.create_riscv_vcpu(VcpuId(i)).expect("vcpu");
            vcpu.hart_mut().set_tier(tier);
            vcpu.apply_boot_state(&platform.vcpu_start(&map, &boot, i).expect("state"))
                .expect("apply");
            kicks.push(vcpu.kick_handle());
            let bus = bus.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for _ in 0..MAX_RUNS {
                    if stop.load(Ordering::Acquire) {
                        return None;
                    }
                    match vcpu.run().expect("run") {
                        VcpuExit::MmioWrite { addr, data } => {
                            let _ = bus.write(addr, data);
                        }
                        VcpuExit::MmioRead { addr, data } => {
                            if bus.read(addr, data).is_err() {
                                data.fill(0xff);
                            }
                        }
                        VcpuExit::SystemEvent(e) => return Some(e),
                        VcpuExit::Interrupted => {}
                        other => panic!("unexpected exit {other:?}"),
                    }
                }
                None
            })
        })
        .collect();
    // The hart that powers the machine off ends the run; stop the others.
    let mut event = None;
    let mut handles: Vec<_> = threads.into_iter().map(Some).collect();
    while event.is_none() && handles.iter().any(Option::is_some) {
        for slot in &mut handles {
            if slot
                .as_ref()
                .is_some_and(std::thread::JoinHandle::is_finished)
            {
                event = slot.take().and_then(|h| h.join().ok()).flatten().or(event);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Release);
    kicks.iter().for_each(vm_accel::KickHandle::kick);
    for h in handles.into_iter().flatten() {
        let _ = h.join();
    }
    let elapsed = started.elapsed();
    let console = String::from_utf8_lossy(&out.contents()).into_owned();
    let tail: String = console
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    // The interrupt path's state, for a console that stopped short.
    let tail = format!(
        "{tail}\nUART {:?}\nPLIC {:?}",
        serial.lock().map(|s| s.state()),
        vm.machine().plic.state()
    );
    assert_eq!(
        console.matches(READY).count(),
        1,
        "one ready marker; event {event:?}; console tail:\n{tail}"
    );
    let after_ready = &console[console.find(READY).unwrap_or(0)..];
    assert!(
        after_ready.contains(HELLO) && after_ready.contains("VM-GUEST-EXIT status=0"),
        "the command ran and exited 0; console tail:\n{tail}"
    );
    assert_eq!(event, Some(SystemEvent::Shutdown), "console tail:\n{tail}");
    eprintln!(
        "riscv64 Linux ({vcpus} hart(s), {tier:?}) ran a command in userspace and powered off in {elapsed:?}"
    );
}

#[test]
#[ignore = "boots Linux (billions of instructions); cargo xtask ci runs it"]
fn debian_kernel_reaches_userspace() {
    boot(1, Tier::Translate);
}

#[test]
#[ignore = "boots Linux on two harts (SBI HSM start); cargo xtask ci runs it"]
fn debian_kernel_reaches_userspace_on_two_harts() {
    boot(2, Tier::Translate);
}

#[test]
#[ignore = "boots Linux on the interpreter alone; cargo xtask ci runs it"]
fn debian_kernel_reaches_userspace_interpreted() {
    boot(1, Tier::Interpret);
}

#[test]
#[ignore = "boots Linux on two harts on the interpreter alone; cargo xtask ci runs it"]
fn debian_kernel_reaches_userspace_on_two_harts_interpreted() {
    boot(2, Tier::Interpret);
}
