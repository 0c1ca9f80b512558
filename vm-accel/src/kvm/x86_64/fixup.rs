//! `KVM_EXIT_INTERNAL_ERROR` on x86: decode what the guest was executing, and
//! recover where userspace can. On this project's nested-KVM hosts the kernel's
//! emulator fails on software interrupts (`int3`, `int n`, `int1`) in
//! protected/long mode; those are re-injected here so callers never see them:
//! read the opcode at RIP, advance RIP past it, inject the vector with
//! `KVM_SET_VCPU_EVENTS`.

use crate::boot::x86_64::{CR0_PE, EFER_LMA};
use crate::exit::{InstructionBytes, InternalErrorKind};
use crate::kvm::exit::{Fixup, InternalErrorData};
use crate::kvm::vm::VmShared;
use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;

const MAX_INSN_LEN: usize = 15;
const PAGE: u64 = 4096;
const NMI_VECTOR: u8 = 2;

/// A software interrupt instruction and the vector it raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SoftInterrupt {
    pub(super) vector: u8,
    pub(super) len: u64,
}

/// Recognises `int3` (CC), `int imm8` (CD ib) and `int1` (F1) at the start of `bytes`.
pub(super) fn decode_soft_interrupt(bytes: &[u8]) -> Option<SoftInterrupt> {
    match bytes {
        [0xcc, ..] => Some(SoftInterrupt { vector: 3, len: 1 }),
        [0xf1, ..] => Some(SoftInterrupt { vector: 1, len: 1 }),
        [0xcd, vector, ..] => Some(SoftInterrupt {
            vector: *vector,
            len: 2,
        }),
        _ => None,
    }
}

/// The linear address of the instruction pointer in the vCPU's current mode.
pub(super) fn linear_pc(regs: &kvm_regs, sregs: &kvm_sregs) -> u64 {
    if sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0 {
        regs.rip
    } else if sregs.cr0 & CR0_PE != 0 {
        sregs.cs.base.wrapping_add(regs.rip & 0xffff_ffff) & 0xffff_ffff
    } else {
        sregs.cs.base.wrapping_add(regs.rip & 0xffff) & 0xf_ffff
    }
}

/// Reads up to 15 instruction bytes at linear address `pc`, translating each
/// page with `KVM_TRANSLATE`. Returns the bytes read (possibly fewer) and the
/// physical address of the first.
pub(super) fn fetch_instruction(vm: &VmShared, fd: &VcpuFd, pc: u64) -> (Vec<u8>, Option<u64>) {
    let mut bytes = Vec::with_capacity(MAX_INSN_LEN);
    let mut first_phys = None;
    while bytes.len() < MAX_INSN_LEN {
        let gva = pc.wrapping_add(bytes.len() as u64);
        let Ok(t) = fd.translate_gva(gva) else { break };
        if t.valid == 0 {
            break;
        }
        first_phys.get_or_insert(t.physical_address);
        let in_page = (PAGE - (gva % PAGE)) as usize;
        let Some(chunk) = vm.read_phys(t.physical_address, in_page.min(MAX_INSN_LEN - bytes.len()))
        else {
            break;
        };
        bytes.extend_from_slice(&chunk);
    }
    (bytes, first_phys)
}

fn inject(fd: &VcpuFd, regs: &mut kvm_regs, soft: SoftInterrupt) -> Result<(), std::io::Error> {
    let mut events = fd.get_vcpu_events()?;
    regs.rip = regs.rip.wrapping_add(soft.len);
    fd.set_regs(regs)?;
    if soft.vector < 32 && soft.vector != NMI_VECTOR {
        events.exception.injected = 1;
        events.exception.nr = soft.vector;
        events.exception.has_error_code = 0;
        events.exception.error_code = 0;
        events.exception.pending = 0;
    } else {
        // KVM refuses exception vectors above 31: deliver through the interrupt
        // path; RIP already points past the instruction, as the handler expects.
        events.interrupt.injected = 1;
        events.interrupt.nr = soft.vector;
        events.interrupt.soft = 0;
    }
    fd.set_vcpu_events(&events).map_err(Into::into)
}

/// Handles an internal error: re-injects software interrupts the kernel failed
/// to emulate, and otherwise reports the error with the instruction at RIP.
pub(in crate::kvm) fn handle_internal_error(
    vm: &VmShared,
    fd: &VcpuFd,
    data: &InternalErrorData,
) -> Fixup {
    let mut report = data.bare();
    let (Ok(mut regs), Ok(sregs)) = (fd.get_regs(), fd.get_sregs()) else {
        return Fixup::Report(report);
    };
    report.pc = Some(regs.rip);
    let (bytes, phys) = fetch_instruction(vm, fd, linear_pc(&regs, &sregs));
    report.pc_phys = phys;
    if !bytes.is_empty() {
        report.instruction = Some(InstructionBytes::new(&bytes));
    }
    let protected = sregs.cr0 & CR0_PE != 0;
    if report.kind == InternalErrorKind::Emulation && protected {
        if let Some(soft) = decode_soft_interrupt(&bytes) {
            match inject(fd, &mut regs, soft) {
                Ok(()) => {
                    tracing::trace!(
                        vector = soft.vector,
                        rip = regs.rip,
                        "re-injected software interrupt"
                    );
                    return Fixup::Resume;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-injecting a software interrupt failed");
                }
            }
        } else {
            match super::fallback::on_emulation_failure(vm, fd, &regs, &sregs, &bytes) {
                Ok(Some(_)) => return Fixup::Resume,
                Ok(None) => {}
                Err(e) => report.detail = Some(describe(&bytes, regs.rip, &e)),
            }
        }
    }
    Fixup::Report(report)
}

/// The fallback's verdict, with the instruction disassembled when it decodes.
fn describe(bytes: &[u8], rip: u64, e: &super::FallbackError) -> String {
    use iced_x86::{Decoder, DecoderOptions, FastFormatter};
    let insn = Decoder::with_ip(64, bytes, rip, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return format!("instruction fallback: {e}");
    }
    let mut text = String::new();
    FastFormatter::new().format(&insn, &mut text);
    format!("`{text}`: instruction fallback: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_software_interrupts_only() {
        assert_eq!(
            decode_soft_interrupt(&[0xcc, 0x90]),
            Some(SoftInterrupt { vector: 3, len: 1 })
        );
        assert_eq!(
            decode_soft_interrupt(&[0xcd, 0x80]),
            Some(SoftInterrupt {
                vector: 0x80,
                len: 2
            })
        );
        assert_eq!(decode_soft_interrupt(&[0xcd]), None, "truncated int n");
        assert_eq!(decode_soft_interrupt(&[0x0f, 0xae]), None);
        assert_eq!(decode_soft_interrupt(&[]), None);
    }

    #[test]
    fn linear_pc_follows_the_cpu_mode() {
        let regs = kvm_regs {
            rip: 0x1_2345_6789,
            ..kvm_regs::default()
        };
        let mut sregs = kvm_sregs::default();
        sregs.cs.base = 0xf0000;
        assert_eq!(linear_pc(&regs, &sregs), (0xf0000 + 0x6789) & 0xf_ffff);
        sregs.cr0 = CR0_PE;
        sregs.cs.base = 0x1000;
        assert_eq!(linear_pc(&regs, &sregs), 0x2345_6789 + 0x1000);
        sregs.efer = EFER_LMA;
        sregs.cs.l = 1;
        assert_eq!(linear_pc(&regs, &sregs), 0x1_2345_6789);
    }
}
