//! The x86_64 platform's boot data under real KVM: a tiny "kernel" (a bzImage
//! whose 64-bit entry reads the zero page through `rsi`) is loaded by the
//! platform, its boot state applied by vm-accel's KVM backend, and the guest
//! reports what it finds with `out` instructions.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod support;

use support::machine;
use vm_accel::kvm::KvmAccelerator;
use vm_accel::{Accelerator, VcpuExit, VcpuId, VmOptions};
use vm_cross_arch::platform::{for_arch, BootState, GuestArch};

const PORT: u16 = 0x80;

/// Guest code at the 64-bit entry (`startup_64`, 0x200 into the payload).
#[rustfmt::skip]
const PROBE: &[u8] = &[
    0x66, 0xba, 0x80, 0x00,                   // mov dx, 0x80
    0x8b, 0x86, 0x02, 0x02, 0x00, 0x00,       // mov eax, [rsi+0x202]   "HdrS"
    0xef,                                     // out dx, eax
    0x0f, 0xb6, 0x86, 0xe8, 0x01, 0x00, 0x00, // movzx eax, byte [rsi+0x1e8]  e820 entries
    0xef,                                     // out dx, eax
    0x8b, 0x86, 0x28, 0x02, 0x00, 0x00,       // mov eax, [rsi+0x228]   cmd_line_ptr
    0xef,                                     // out dx, eax
    0x8b, 0x00,                               // mov eax, [rax]         cmdline bytes
    0xef,                                     // out dx, eax
    0x48, 0x8b, 0x46, 0x70,                   // mov rax, [rsi+0x70]    acpi_rsdp_addr
    0x8b, 0x00,                               // mov eax, [rax]         "RSD "
    0xef,                                     // out dx, eax
    0x48, 0x89, 0xe0,                         // mov rax, rsp
    0xef,                                     // out dx, eax
    0xf4,                                     // hlt
];

/// A bzImage (boot protocol 2.15, 64-bit entry) carrying `PROBE` at +0x200.
fn probe_bzimage() -> Vec<u8> {
    let mut v = vec![0u8; 5 * 512 + 0x1000];
    v[0x1f1] = 4;
    v[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    v[0x202..0x206].copy_from_slice(b"HdrS");
    v[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    v[0x211] = 1;
    v[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    v[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    v[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    v[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    v[0x260..0x264].copy_from_slice(&0x1_0000u32.to_le_bytes());
    let entry = 5 * 512 + 0x200;
    v[entry..entry + PROBE.len()].copy_from_slice(PROBE);
    v
}

fn out_u32(exit: &VcpuExit<'_>) -> Option<u32> {
    match exit {
        VcpuExit::IoOut { port: PORT, data } if data.len() == 4 => {
            Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]]))
        }
        _ => None,
    }
}

#[test]
fn kvm_guest_reads_the_zero_page_the_platform_wrote() {
    let kvm = match KvmAccelerator::new() {
        Ok(kvm) => kvm,
        Err(e) => {
            test_prerequisites::prerequisite_missing(format_args!("KVM is not usable here: {e}"));
            return;
        }
    };
    let (map, mem) = machine(GuestArch::X86_64, 1, 64 << 20, 2);
    let platform = for_arch(GuestArch::X86_64);
    let boot = platform
        .boot(
            &mem,
            &map,
            &probe_bzimage(),
            Some(&[7u8; 100]),
            "wxyz console=ttyS0",
        )
        .expect("boot");
    let vm = kvm
        .create_vm(&VmOptions {
            vcpu_count: 1,
            in_kernel_irqchip: false,
            ..VmOptions::default()
        })
        .expect("VM");
    vm.map_memory(&mem).expect("map guest memory");
    let mut vcpu = vm.create_vcpu(VcpuId(0)).expect("vCPU");
    let state = platform.vcpu_start(&map, &boot, 0).expect("boot state");
    assert!(matches!(state, BootState::X86_64Linux { .. }));
    vcpu.apply_boot_state(&state).expect("apply boot state");

    let mut seen = Vec::new();
    loop {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::Halt => break,
            exit => match out_u32(&exit) {
                Some(v) => seen.push(v),
                None => panic!("unexpected exit after {seen:x?}"),
            },
        }
    }
    let le = |b: &[u8; 4]| u32::from_le_bytes(*b);
    let cmdline = boot.cmdline.expect("cmdline placed");
    let BootState::X86_64Linux { regs, .. } = state else {
        unreachable!()
    };
    assert_eq!(
        seen,
        vec![
            le(b"HdrS"),
            3,
            cmdline.start.0 as u32,
            le(b"wxyz"),
            le(b"RSD "),
            regs.rsp as u32
        ],
        "what the guest saw through rsi"
    );
}
