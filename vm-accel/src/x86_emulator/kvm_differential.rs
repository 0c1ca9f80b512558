//! Differential tests of the WHPX backend's userspace x86 emulation against
//! KVM, which emulates the same instructions in the kernel:
//! - MMIO ([`super::mmio`]): for each instruction form, KVM's
//!   exit (size, written bytes) and the registers after the access completes
//!   must equal what the decoder predicts from the registers before;
//! - string port I/O ([`super::port_io`]): the bytes `OUTS`
//!   sends, where `INS` stores, and the final RSI/RDI/RCX/RIP must equal the
//!   element-by-element model.
//!
//! Needs /dev/kvm on an x86_64 Linux host; skipped with a message otherwise.

use super::mmio::{decode_mmio, MmioAccess};
use super::port_io::decode_string_io;
use crate::boot::test_support::{long_mode_entry, BOOT_STACK_POINTER, ZERO_PAGE_ADDR};
use crate::kvm::KvmAccelerator;
use crate::regs::X86_64Registers;
use crate::{GuestAddress, GuestMemoryMmap, Registers, Vcpu, VcpuExit, VcpuId, Vm, VmOptions};
use iced_x86::code_asm::{
    ah, al, ax, bh, bl, bx, byte_ptr, ch, cl, cx, dh, di, dil, dl, dword_ptr, dx, eax, ebp, ecx,
    edx, esi, esp, qword_ptr, r10, r10d, r11w, r12b, r13, r14d, r15, r8, r8b, r9d, r9w, rax, rbp,
    rbx, rcx, rdi, rdx, rsi, rsp, si, sil, spl, word_ptr, CodeAssembler,
};
use vm_memory::Bytes;

const CODE: u64 = 0x1_0000;
const MMIO: u64 = 0x2000_0000;
/// The guest signals "access done" with `out 0x80, al` (2 bytes).
const MARKER_PORT: u16 = 0x80;

struct Harness {
    memory: GuestMemoryMmap,
    vcpu: Box<dyn Vcpu>,
    _vm: std::sync::Arc<dyn Vm>,
}

fn harness() -> Option<Harness> {
    let accel = match KvmAccelerator::new() {
        Ok(accel) => accel,
        Err(e) => {
            test_prerequisites::prerequisite_missing(format_args!("KVM unavailable: {e}"));
            return None;
        }
    };
    let vm: std::sync::Arc<dyn Vm> = std::sync::Arc::new(
        accel
            .create_kvm_vm(&VmOptions::default())
            .expect("create VM"),
    );
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).expect("memory");
    vm.map_memory(&memory).expect("map memory");
    let mut vcpu = vm.create_vcpu(VcpuId(0)).expect("vCPU");
    let boot = long_mode_entry(&memory, CODE, ZERO_PAGE_ADDR, BOOT_STACK_POINTER)
        .expect("long-mode tables");
    vcpu.apply_boot_state(&boot).expect("boot state");
    Some(Harness {
        memory,
        vcpu,
        _vm: vm,
    })
}

/// Distinct register values; RSI and RDI point at MMIO.
fn start_registers() -> X86_64Registers {
    X86_64Registers {
        rax: 0x8081_8283_8485_8687,
        rbx: 0x1112_1314_1516_1718,
        rcx: 0x2122_2324_2526_2728,
        rdx: 0x3132_3334_3536_3738,
        rsi: MMIO,
        rdi: MMIO + 0x10,
        rsp: BOOT_STACK_POINTER,
        rbp: 0x4142_4344_4546_4748,
        r8: 0x5152_5354_5556_5758,
        r9: 0x6162_6364_6566_6768,
        r10: 0x7172_7374_7576_7778,
        r11: 0x9192_9394_9596_9798,
        r12: 0xa1a2_a3a4_a5a6_a7a8,
        r13: 0xb1b2_b3b4_b5b6_b7b8,
        r14: 0xc1c2_c3c4_c5c6_c7c8,
        r15: 0xd1d2_d3d4_d5d6_d7d8,
        rip: CODE,
        rflags: 0x2,
    }
}

/// Runs one instruction touching MMIO followed by the marker, checking KVM
/// against the decoder. Returns a description of any mismatch.
fn check(h: &mut Harness, name: &str, emit: &dyn Fn(&mut CodeAssembler)) -> Result<(), String> {
    let mut a = CodeAssembler::new(64).map_err(|e| e.to_string())?;
    emit(&mut a);
    let insn_len = a.assemble(CODE).map_err(|e| e.to_string())?.len() as u64;
    a.out(0x80, al).map_err(|e| e.to_string())?;
    let code = a.assemble(CODE).map_err(|e| e.to_string())?;
    h.memory
        .write_slice(&code, GuestAddress(CODE))
        .map_err(|e| e.to_string())?;
    let before = start_registers();
    h.vcpu
        .set_registers(&Registers::X86_64(before))
        .map_err(|e| e.to_string())?;
    let decoded = decode_mmio(&code, 64, &before).map_err(|e| format!("{name}: {e}"))?;
    if decoded.len != insn_len {
        return Err(format!(
            "{name}: decoded length {} != {insn_len}",
            decoded.len
        ));
    }
    // The value a load returns: a recognisable pattern with the sign bit set.
    let fill = [0x81u8, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8];
    match h.vcpu.run().map_err(|e| e.to_string())? {
        VcpuExit::MmioRead { addr, data } => {
            let MmioAccess::Read { size, .. } = decoded.access else {
                return Err(format!(
                    "{name}: KVM read, decoder says {:?}",
                    decoded.access
                ));
            };
            if data.len() != usize::from(size) {
                return Err(format!(
                    "{name}: KVM reads {} bytes, decoder {size}",
                    data.len()
                ));
            }
            let n = data.len();
            data.copy_from_slice(&fill[..n]);
            if !(MMIO..MMIO + 0x20).contains(&addr) {
                return Err(format!("{name}: unexpected address {addr:#x}"));
            }
        }
        VcpuExit::MmioWrite { data, .. } => {
            let MmioAccess::Write { size, data: bytes } = decoded.access else {
                return Err(format!(
                    "{name}: KVM wrote, decoder says {:?}",
                    decoded.access
                ));
            };
            if data != &bytes[..usize::from(size)] {
                return Err(format!(
                    "{name}: KVM wrote {data:02x?}, decoder {:02x?}",
                    &bytes[..usize::from(size)]
                ));
            }
        }
        other => return Err(format!("{name}: expected an MMIO exit, got {other:?}")),
    }
    match h.vcpu.run().map_err(|e| e.to_string())? {
        VcpuExit::IoOut { port, .. } if port == MARKER_PORT => {}
        other => return Err(format!("{name}: expected the marker, got {other:?}")),
    }
    let Registers::X86_64(after) = h.vcpu.registers().map_err(|e| e.to_string())? else {
        return Err("not x86".to_owned());
    };
    let mut model = before;
    decoded.complete(&mut model, &fill);
    model.rip += 2; // the marker
    model.rflags = after.rflags; // not touched by MOV; KVM may set reserved bits
    if model != after {
        return Err(format!(
            "{name}: registers differ\n model {model:x?}\n   kvm {after:x?}"
        ));
    }
    Ok(())
}

type Case = (&'static str, Box<dyn Fn(&mut CodeAssembler)>);

macro_rules! case {
    ($name:expr, |$a:ident| $body:expr) => {
        (
            $name,
            Box::new(|$a: &mut CodeAssembler| {
                $body.expect("assemble");
            }) as Box<dyn Fn(&mut CodeAssembler)>,
        )
    };
}

fn cases() -> Vec<Case> {
    vec![
        case!("mov rax, [rsi]", |a| a.mov(rax, qword_ptr(rsi))),
        case!("mov r13, [rsi]", |a| a.mov(r13, qword_ptr(rsi))),
        case!("mov eax, [rsi]", |a| a.mov(eax, dword_ptr(rsi))),
        case!("mov r9d, [rsi]", |a| a.mov(r9d, dword_ptr(rsi))),
        case!("mov esp, [rsi]", |a| a.mov(esp, dword_ptr(rsi))),
        case!("mov cx, [rsi]", |a| a.mov(cx, word_ptr(rsi))),
        case!("mov r11w, [rsi]", |a| a.mov(r11w, word_ptr(rsi))),
        case!("mov dl, [rsi]", |a| a.mov(dl, byte_ptr(rsi))),
        case!("mov ah, [rsi]", |a| a.mov(ah, byte_ptr(rsi))),
        case!("mov bh, [rsi]", |a| a.mov(bh, byte_ptr(rsi))),
        case!("mov sil, [rdi]", |a| a.mov(sil, byte_ptr(rdi))),
        case!("mov r12b, [rsi]", |a| a.mov(r12b, byte_ptr(rsi))),
        case!("mov esi, [rsi]", |a| a.mov(esi, dword_ptr(rsi))),
        case!("movzx eax, byte [rsi]", |a| a.movzx(eax, byte_ptr(rsi))),
        case!("movzx r10, word [rsi]", |a| a.movzx(r10, word_ptr(rsi))),
        case!("movzx bx, byte [rsi]", |a| a.movzx(bx, byte_ptr(rsi))),
        case!("movsx ecx, byte [rsi]", |a| a.movsx(ecx, byte_ptr(rsi))),
        case!("movsx r15, word [rsi]", |a| a.movsx(r15, word_ptr(rsi))),
        case!("movsx dx, byte [rsi]", |a| a.movsx(dx, byte_ptr(rsi))),
        case!("movsxd rbp, dword [rsi]", |a| a.movsxd(rbp, dword_ptr(rsi))),
        case!("mov rax, [abs]", |a| a.mov(rax, qword_ptr(MMIO))),
        case!("mov eax, [rsi+8]", |a| a.mov(eax, dword_ptr(rsi + 8))),
        case!("mov [rdi], rbx", |a| a.mov(qword_ptr(rdi), rbx)),
        case!("mov [rdi], r8", |a| a.mov(qword_ptr(rdi), r8)),
        case!("mov [rdi], edx", |a| a.mov(dword_ptr(rdi), edx)),
        case!("mov [rdi], ebp", |a| a.mov(dword_ptr(rdi), ebp)),
        case!("mov [rdi], r10d", |a| a.mov(dword_ptr(rdi), r10d)),
        case!("mov [rdi], r14d", |a| a.mov(dword_ptr(rdi), r14d)),
        case!("mov [rdi], ax", |a| a.mov(word_ptr(rdi), ax)),
        case!("mov [rdi], r9w", |a| a.mov(word_ptr(rdi), r9w)),
        case!("mov [rdi], si", |a| a.mov(word_ptr(rdi), si)),
        case!("mov [rdi], di", |a| a.mov(word_ptr(rdi), di)),
        case!("mov [rdi], cl", |a| a.mov(byte_ptr(rdi), cl)),
        case!("mov [rdi], ch", |a| a.mov(byte_ptr(rdi), ch)),
        case!("mov [rdi], dh", |a| a.mov(byte_ptr(rdi), dh)),
        case!("mov [rdi], bl", |a| a.mov(byte_ptr(rdi), bl)),
        case!("mov [rdi], spl", |a| a.mov(byte_ptr(rdi), spl)),
        case!("mov [rdi], dil", |a| a.mov(byte_ptr(rdi), dil)),
        case!("mov [rdi], r8b", |a| a.mov(byte_ptr(rdi), r8b)),
        case!("mov [rsi], rsp", |a| a.mov(qword_ptr(rsi), rsp)),
        case!("mov [rdi], rdx", |a| a.mov(qword_ptr(rdi), rdx)),
        case!("mov [rdi], rcx", |a| a.mov(qword_ptr(rdi), rcx)),
        case!("mov [rdi], r15", |a| a.mov(qword_ptr(rdi), r15)),
        case!("mov byte [rdi], imm8", |a| a.mov(byte_ptr(rdi), 0x5a)),
        case!("mov word [rdi], imm16", |a| a.mov(word_ptr(rdi), 0x1234)),
        case!("mov dword [rdi], imm32", |a| a
            .mov(dword_ptr(rdi), 0x7654_3210)),
        case!("mov qword [rdi], simm32", |a| a.mov(qword_ptr(rdi), -2)),
        case!("mov [abs], eax", |a| a.mov(dword_ptr(MMIO + 4), eax)),
    ]
}

#[test]
fn decoder_matches_kvm_for_every_mmio_form() {
    let Some(mut h) = harness() else {
        return;
    };
    let failures: Vec<String> = cases()
        .iter()
        .filter_map(|(name, emit)| check(&mut h, name, emit.as_ref()).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Guest buffer the string instructions read from and write to.
const BUF: u64 = 0x10_0000;
const PORT: u16 = 0x3f8;

/// Runs one string I/O instruction, checking KVM against the element model.
fn check_string(
    h: &mut Harness,
    name: &str,
    bytes: &[u8],
    count: u64,
    direction_down: bool,
) -> Result<(), String> {
    let mut code = bytes.to_vec();
    code.extend_from_slice(&[0xe6, 0x80]); // out 0x80, al
    let pattern: Vec<u8> = (0x10..0x90).collect();
    h.memory
        .write_slice(&code, GuestAddress(CODE))
        .and_then(|()| h.memory.write_slice(&pattern, GuestAddress(BUF)))
        .and_then(|()| {
            h.memory
                .write_slice(&[0u8; 0x80], GuestAddress(BUF + 0x100))
        })
        .map_err(|e| e.to_string())?;
    let before = X86_64Registers {
        rsi: BUF + 0x40,
        rdi: BUF + 0x140,
        rcx: count,
        rdx: u64::from(PORT),
        rflags: if direction_down { 0x402 } else { 0x2 },
        ..start_registers()
    };
    h.vcpu
        .set_registers(&Registers::X86_64(before))
        .map_err(|e| e.to_string())?;
    let sio = decode_string_io(bytes, 64).map_err(|e| format!("{name}: {e}"))?;
    let size = usize::from(sio.size);
    // The model: element by element, as the WHPX backend steps it.
    let mut model = before;
    let mut offsets = Vec::new();
    let elements = sio.remaining(&model);
    for _ in 0..elements {
        offsets.push(sio.offset(&model));
        sio.step(&mut model);
    }
    if elements == 0 {
        sio.skip(&mut model);
    }
    model.rip += 2;
    // KVM: collect what the guest sent, feed what it reads.
    let mut sent = Vec::new();
    let mut fed = Vec::new();
    let mut next = 0xc0u8;
    loop {
        match h.vcpu.run().map_err(|e| e.to_string())? {
            VcpuExit::IoOut { port, data } if port == PORT => sent.extend_from_slice(data),
            VcpuExit::IoIn { port, data } if port == PORT => {
                for b in data.iter_mut() {
                    *b = next;
                    next = next.wrapping_add(1);
                }
                fed.extend_from_slice(data);
            }
            VcpuExit::IoOut { port, .. } if port == MARKER_PORT => break,
            other => return Err(format!("{name}: unexpected exit {other:?}")),
        }
    }
    if sio.input {
        let mut stored = Vec::new();
        for offset in &offsets {
            let mut element = vec![0u8; size];
            h.memory
                .read_slice(&mut element, GuestAddress(*offset))
                .map_err(|e| e.to_string())?;
            stored.extend_from_slice(&element);
        }
        if stored != fed {
            return Err(format!(
                "{name}: model stores {stored:02x?}, KVM fed {fed:02x?}"
            ));
        }
    } else {
        let mut expected = Vec::new();
        for offset in &offsets {
            let start = usize::try_from(*offset - BUF).map_err(|e| e.to_string())?;
            expected.extend_from_slice(&pattern[start..start + size]);
        }
        if sent != expected {
            return Err(format!(
                "{name}: KVM sent {sent:02x?}, model {expected:02x?}"
            ));
        }
    }
    let Registers::X86_64(after) = h.vcpu.registers().map_err(|e| e.to_string())? else {
        return Err("not x86".to_owned());
    };
    model.rflags = after.rflags;
    if model != after {
        return Err(format!(
            "{name}: registers differ\n model {model:x?}\n   kvm {after:x?}"
        ));
    }
    Ok(())
}

#[test]
fn string_port_io_model_matches_kvm() {
    let Some(mut h) = harness() else {
        return;
    };
    let cases: &[(&str, &[u8], u64, bool)] = &[
        ("outsb", &[0x6e], 5, false),
        ("outsw", &[0x66, 0x6f], 5, false),
        ("outsd", &[0x6f], 5, false),
        ("rep outsb", &[0xf3, 0x6e], 5, false),
        ("rep outsw", &[0x66, 0xf3, 0x6f], 3, false),
        ("rep outsd down", &[0xf3, 0x6f], 3, true),
        ("addr32 rep outsb", &[0x67, 0xf3, 0x6e], 4, false),
        ("rep outsb, rcx = 0", &[0xf3, 0x6e], 0, false),
        ("insb", &[0x6c], 5, false),
        ("insd", &[0x6d], 5, false),
        ("rep insb", &[0xf3, 0x6c], 6, false),
        ("rep insw down", &[0x66, 0xf3, 0x6d], 3, true),
        ("addr32 rep insd", &[0x67, 0xf3, 0x6d], 2, false),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, bytes, count, down)| {
            check_string(&mut h, name, bytes, *count, *down).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
