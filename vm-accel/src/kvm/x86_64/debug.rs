//! Guest debugging on KVM x86_64 (for the gdb stub): `KVM_SET_GUEST_DEBUG`
//! with single-step and instruction breakpoints in the debug registers,
//! guest-virtual memory through the guest's page tables (`KVM_TRANSLATE`), and
//! the x87/SSE registers (`KVM_GET_FPU`).
//!
//! Limits, stated plainly: every breakpoint is a hardware one, so at most
//! four are set at once (DR0-DR3). A software breakpoint (an `int3` written
//! into guest code) would need `KVM_GUESTDBG_USE_SW_BP`, and on a nested
//! paravirtual KVM (kvm_pvm) an `int3` never reaches the VMM as a debug exit;
//! the debug registers work there. Watchpoints are refused.

use crate::debug::{DebugStop, GuestDebug, X86_64FpuRegisters};
use crate::error::AccelError;
use crate::kvm::vm::VmShared;
use kvm_bindings::{
    kvm_guest_debug, kvm_guest_debug_arch, kvm_run, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
    KVM_GUESTDBG_USE_HW_BP,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Instruction breakpoints the debug registers hold (DR0-DR3).
const HW_BREAKPOINTS: usize = 4;
/// DR7 bit 10 is reserved and reads as one.
const DR7_FIXED: u64 = 1 << 10;
const PAGE: u64 = 4096;

/// The `KVM_SET_GUEST_DEBUG` request for `debug`.
fn guest_debug(debug: &GuestDebug) -> Result<kvm_guest_debug, AccelError> {
    if !debug.watchpoints.is_empty() {
        return Err(AccelError::Unsupported {
            what: "watchpoints",
            backend: "KVM x86_64",
        });
    }
    if debug.breakpoints.len() > HW_BREAKPOINTS {
        return Err(AccelError::Unsupported {
            what: "more than 4 breakpoints (they live in the debug registers DR0-DR3)",
            backend: "KVM x86_64",
        });
    }
    let mut request = kvm_guest_debug::default();
    if debug.is_off() {
        return Ok(request);
    }
    request.control = KVM_GUESTDBG_ENABLE;
    if debug.single_step {
        request.control |= KVM_GUESTDBG_SINGLESTEP;
    }
    if !debug.breakpoints.is_empty() {
        request.control |= KVM_GUESTDBG_USE_HW_BP;
        let mut arch = kvm_guest_debug_arch::default();
        arch.debugreg[7] = DR7_FIXED;
        for (i, addr) in debug.breakpoints.iter().enumerate() {
            arch.debugreg[i] = *addr;
            // The slot's global enable; R/W and LEN stay 0: instruction execution.
            arch.debugreg[7] |= 1 << (2 * i + 1);
        }
        request.arch = arch;
    }
    Ok(request)
}

pub(in crate::kvm) fn set_guest_debug(fd: &VcpuFd, debug: &GuestDebug) -> Result<(), AccelError> {
    fd.set_guest_debug(&guest_debug(debug)?)
        .map_err(|e| AccelError::hypervisor("KVM_SET_GUEST_DEBUG", e))
}

/// The linear address of the next instruction and why the vCPU stopped, for
/// a `KVM_EXIT_DEBUG` exit; call only for that exit.
// The signature is shared with `kvm/no_debug.rs`, where it fails.
#[allow(clippy::unnecessary_wraps)]
pub(in crate::kvm) fn debug_exit(run: &kvm_run) -> Option<(u64, DebugStop)> {
    // SAFETY: the caller saw exit_reason == KVM_EXIT_DEBUG, for which the
    // kernel fills the `debug` member; every bit pattern is valid.
    let debug = unsafe { run.__bindgen_anon_1.debug };
    Some((debug.arch.pc, DebugStop::Break))
}

/// Splits `[addr, addr + len)` at page boundaries, translates each piece
/// with `KVM_TRANSLATE` and runs `access` on it; stops at the first piece
/// that is unmapped or outside RAM. Returns the bytes done.
fn access_virtual(
    vm: &VmShared,
    fd: &VcpuFd,
    addr: u64,
    len: usize,
    mut access: impl FnMut(&GuestMemoryMmap, GuestAddress, std::ops::Range<usize>) -> bool,
) -> usize {
    let Some(memory) = vm.memory() else {
        return 0;
    };
    let mut done = 0;
    while done < len {
        let va = addr.wrapping_add(done as u64);
        let piece = ((PAGE - va % PAGE) as usize).min(len - done);
        let Ok(t) = fd.translate_gva(va) else { break };
        if t.valid == 0 {
            break;
        }
        if !access(
            &memory,
            GuestAddress(t.physical_address),
            done..done + piece,
        ) {
            break;
        }
        done += piece;
    }
    done
}

// The signature is shared with `kvm/no_debug.rs`, where it fails.
#[allow(clippy::unnecessary_wraps)]
pub(in crate::kvm) fn read_memory(
    vm: &VmShared,
    fd: &VcpuFd,
    addr: u64,
    buf: &mut [u8],
) -> Result<usize, AccelError> {
    Ok(access_virtual(
        vm,
        fd,
        addr,
        buf.len(),
        |memory, pa, range| memory.read_slice(&mut buf[range], pa).is_ok(),
    ))
}

/// Writes guest memory as the guest would, except that a debugger may write
/// read-only pages (to patch code), as `KVM_TRANSLATE` cannot tell a
/// supervisor-only mapping from a missing one anyway.
// The signature is shared with `kvm/no_debug.rs`, where it fails.
#[allow(clippy::unnecessary_wraps)]
pub(in crate::kvm) fn write_memory(
    vm: &VmShared,
    fd: &VcpuFd,
    addr: u64,
    data: &[u8],
) -> Result<usize, AccelError> {
    Ok(access_virtual(
        vm,
        fd,
        addr,
        data.len(),
        |memory, pa, range| memory.write_slice(&data[range], pa).is_ok(),
    ))
}

pub(in crate::kvm) fn fpu_registers(fd: &VcpuFd) -> Result<X86_64FpuRegisters, AccelError> {
    let f = fd
        .get_fpu()
        .map_err(|e| AccelError::hypervisor("KVM_GET_FPU", e))?;
    let mut st = [[0u8; 10]; 8];
    for (out, raw) in st.iter_mut().zip(&f.fpr) {
        out.copy_from_slice(&raw[..10]);
    }
    Ok(X86_64FpuRegisters {
        st,
        fcw: f.fcw,
        fsw: f.fsw,
        ftw: f.ftwx,
        fop: f.last_opcode,
        fip: f.last_ip,
        fdp: f.last_dp,
        xmm: f.xmm.map(u128::from_le_bytes),
        mxcsr: f.mxcsr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debug::{WatchKind, Watchpoint};

    #[test]
    fn breakpoints_fill_the_debug_registers_and_a_fifth_is_refused() {
        let off = guest_debug(&GuestDebug::default()).unwrap();
        assert_eq!(off.control, 0);
        let step = guest_debug(&GuestDebug {
            single_step: true,
            ..GuestDebug::default()
        })
        .unwrap();
        assert_eq!(step.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
        let two = guest_debug(&GuestDebug {
            breakpoints: vec![0x1000, 0x2000],
            ..GuestDebug::default()
        })
        .unwrap();
        assert_eq!(two.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP);
        assert_eq!(&two.arch.debugreg[..2], &[0x1000, 0x2000]);
        assert_eq!(two.arch.debugreg[7], DR7_FIXED | 0b1010);
        let five = GuestDebug {
            breakpoints: vec![1, 2, 3, 4, 5],
            ..GuestDebug::default()
        };
        assert!(guest_debug(&five).is_err());
        let watch = GuestDebug {
            watchpoints: vec![Watchpoint {
                addr: 0,
                len: 8,
                kind: WatchKind::Write,
            }],
            ..GuestDebug::default()
        };
        assert!(guest_debug(&watch).is_err());
    }
}
