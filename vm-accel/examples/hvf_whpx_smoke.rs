//! Boots a tiny built-in guest on the accelerator `detect()` picks — KVM on
//! Linux, HVF on Apple-silicon macOS, WHPX on Windows — and checks every exit
//! it makes: a write to a device, an MMIO read this program answers, the
//! value written back, and the guest's final halt or power-off.
//!
//! This is what a Mac or Windows user runs to try the HVF and WHPX
//! backends, which were type-checked but not run where they were written:
//!
//! ```text
//! # Windows (with the "Windows Hypervisor Platform" feature enabled):
//! cargo run -p vm-accel --example hvf_whpx_smoke
//! # macOS on Apple silicon: sign with the hypervisor entitlement first.
//! cargo build -p vm-accel --example hvf_whpx_smoke
//! codesign --sign - --entitlements vm-accel/examples/hvf.entitlements --force \
//!     target/debug/examples/hvf_whpx_smoke
//! target/debug/examples/hvf_whpx_smoke
//! ```
//!
//! It prints each exit and `PASS`, or what differed and exits with status 1.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vm_accel::boot::test_support::{long_mode_entry, BOOT_STACK_POINTER, ZERO_PAGE_ADDR};
use vm_accel::{
    detect, AccelError, BootState, GuestAddress, GuestArch, GuestMemoryMmap, SystemEvent, VcpuExit,
    VcpuId, VmOptions,
};
use vm_memory::Bytes;

/// How long the guest may take before the watchdog kicks it out of `run()`.
const WATCHDOG: Duration = Duration::from_mins(1);
/// The value this program returns for the guest's MMIO read.
const READ_VALUE: u32 = 0x1234_5678;
const RAM_SIZE: usize = 2 << 20;

/// One exit as the guest is expected to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    PortOut(u16, Vec<u8>),
    MmioWrite(u64, Vec<u8>),
    MmioRead(u64, usize),
    Halt,
    PowerOff,
}

/// A guest: where RAM goes, its code, how it starts (given its memory), and
/// its expected exits.
struct Guest {
    ram_base: u64,
    code: Vec<u8>,
    code_addr: u64,
    boot: fn(&GuestMemoryMmap) -> Result<BootState, AccelError>,
    expected: Vec<Seen>,
}

fn words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// x86-64, entered in long mode: `out` "OK" to 0x3f8, MMIO read, write it back, `out` a newline.
fn x86_64_guest() -> Result<Guest, Box<dyn std::error::Error>> {
    use iced_x86::code_asm::{al, dword_ptr, dx, eax, CodeAssembler};
    const MMIO: u64 = 0x2000_0000; // inside the boot identity map, outside RAM
    const CODE: u64 = 0x1_0000;
    let mut a = CodeAssembler::new(64)?;
    a.mov(dx, 0x3f8)?;
    a.mov(al, i32::from(b'O'))?;
    a.out(dx, al)?;
    a.mov(al, i32::from(b'K'))?;
    a.out(dx, al)?;
    a.mov(eax, dword_ptr(MMIO))?;
    a.mov(dword_ptr(MMIO + 8), eax)?;
    // KVM's in-kernel local APIC keeps a `hlt` inside the kernel, so the
    // guest reports completion with one more port write before halting.
    a.mov(al, i32::from(b'\n'))?;
    a.out(dx, al)?;
    a.hlt()?;
    Ok(Guest {
        ram_base: 0,
        code: a.assemble(CODE)?,
        code_addr: CODE,
        // Long mode with the tables written into the guest's memory.
        boot: |memory| long_mode_entry(memory, CODE, ZERO_PAGE_ADDR, BOOT_STACK_POINTER),
        expected: vec![
            Seen::PortOut(0x3f8, vec![b'O']),
            Seen::PortOut(0x3f8, vec![b'K']),
            Seen::MmioRead(MMIO, 4),
            Seen::MmioWrite(MMIO + 8, READ_VALUE.to_le_bytes().to_vec()),
            Seen::PortOut(0x3f8, vec![b'\n']),
        ],
    })
}

/// arm64 at EL1: `strb` 'O', MMIO `ldr`, `str` it back, PSCI `SYSTEM_OFF` by `hvc`.
fn arm64_guest() -> Guest {
    const RAM: u64 = 0x4000_0000;
    const MMIO: u64 = 0x0900_0000;
    Guest {
        ram_base: RAM,
        code: words(&[
            0xd2a1_2001, // movz x1, #0x0900, lsl #16
            0x5280_09e2, // movz w2, #'O'
            0x3900_0022, // strb w2, [x1]
            0xb940_0423, // ldr  w3, [x1, #4]
            0xb900_0823, // str  w3, [x1, #8]
            0xd280_0100, // movz x0, #0x0008
            0xf2b0_8000, // movk x0, #0x8400, lsl #16   (PSCI SYSTEM_OFF)
            0xd400_0002, // hvc  #0
            0x1400_0000, // b    .
        ]),
        code_addr: RAM,
        boot: |_| {
            Ok(BootState::Arm64Linux {
                entry: GuestAddress(RAM),
                fdt: GuestAddress(RAM + 0x10_0000),
            })
        },
        expected: vec![
            Seen::MmioWrite(MMIO, vec![b'O']),
            Seen::MmioRead(MMIO + 4, 4),
            Seen::MmioWrite(MMIO + 8, READ_VALUE.to_le_bytes().to_vec()),
            Seen::PowerOff,
        ],
    }
}

/// riscv64 in S-mode: `sb` 'O', MMIO `lw`, `sw` it back, SBI SRST shutdown.
fn riscv64_guest() -> Guest {
    const RAM: u64 = 0x8000_0000;
    const MMIO: u64 = 0x1000_0000;
    Guest {
        ram_base: RAM,
        code: words(&[
            0x1000_05b7, // lui  a1, 0x10000
            0x04f0_0613, // li   a2, 'O'
            0x00c5_8023, // sb   a2, 0(a1)
            0x0045_a683, // lw   a3, 4(a1)
            0x00d5_a423, // sw   a3, 8(a1)
            0x5352_58b7, // lui  a7, 0x53525
            0x3548_8893, // addi a7, a7, 0x354   (SBI SRST)
            0x0000_0813, // li   a6, 0           (system_reset)
            0x0000_0513, // li   a0, 0           (shutdown)
            0x0000_0593, // li   a1, 0
            0x0000_0073, // ecall
            0x0000_006f, // j    .
        ]),
        code_addr: RAM,
        boot: |_| {
            Ok(BootState::Riscv64 {
                entry: GuestAddress(RAM),
                hart_id: 0,
                fdt: GuestAddress(RAM + 0x10_0000),
            })
        },
        expected: vec![
            Seen::MmioWrite(MMIO, vec![b'O']),
            Seen::MmioRead(MMIO + 4, 4),
            Seen::MmioWrite(MMIO + 8, READ_VALUE.to_le_bytes().to_vec()),
            Seen::PowerOff,
        ],
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let found = detect()?;
    for skipped in &found.unavailable {
        println!("skipped: {skipped}");
    }
    let accel = found.accelerator;
    println!("accelerator: {} ({})", accel.kind(), accel.guest_arch());
    let guest = match accel.guest_arch() {
        GuestArch::X86_64 => x86_64_guest()?,
        GuestArch::Arm64 => arm64_guest(),
        GuestArch::Riscv64 => riscv64_guest(),
    };
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(guest.ram_base), RAM_SIZE)])?;
    memory.write_slice(&guest.code, GuestAddress(guest.code_addr))?;
    let vm = accel.create_vm(&VmOptions::default())?;
    vm.map_memory(&memory)?;
    let mut vcpu = vm.create_vcpu(VcpuId(0))?;
    vcpu.apply_boot_state(&(guest.boot)(&memory)?)?;

    // A watchdog so a guest that never exits cannot hang the program.
    let finished = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    {
        let (finished, timed_out, kick) = (finished.clone(), timed_out.clone(), vcpu.kick_handle());
        std::thread::spawn(move || {
            std::thread::sleep(WATCHDOG);
            if !finished.load(Ordering::SeqCst) {
                timed_out.store(true, Ordering::SeqCst);
                kick.kick();
            }
        });
    }

    let mut seen = Vec::new();
    while seen.len() < guest.expected.len() {
        let event = match vcpu.run()? {
            VcpuExit::IoOut { port, data } => Seen::PortOut(port, data.to_vec()),
            VcpuExit::MmioWrite { addr, data } => Seen::MmioWrite(addr, data.to_vec()),
            VcpuExit::MmioRead { addr, data } => {
                let value = READ_VALUE.to_le_bytes();
                let n = data.len().min(value.len());
                data[..n].copy_from_slice(&value[..n]);
                Seen::MmioRead(addr, data.len())
            }
            VcpuExit::Halt => Seen::Halt,
            VcpuExit::SystemEvent(SystemEvent::Shutdown) => Seen::PowerOff,
            VcpuExit::Interrupted if timed_out.load(Ordering::SeqCst) => {
                println!("the guest made no further exit within {WATCHDOG:?}");
                break;
            }
            VcpuExit::Interrupted => continue,
            other => {
                println!("unexpected exit: {other:?}");
                break;
            }
        };
        println!("exit: {event:?}");
        seen.push(event);
    }
    finished.store(true, Ordering::SeqCst);
    if seen == guest.expected {
        println!("PASS: {} exits as expected on {}", seen.len(), accel.kind());
        Ok(true)
    } else {
        println!("FAIL: expected {:?}", guest.expected);
        println!("      got      {seen:?}");
        Ok(false)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
