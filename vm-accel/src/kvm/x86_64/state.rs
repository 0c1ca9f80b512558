//! Saving and restoring a KVM x86-64 vCPU and VM ([`X86_64KvmVcpuState`],
//! [`X86_64KvmVmState`]).
//!
//! Order matters, because several KVM ioctls read or change state another one
//! sets:
//! - save: `KVM_GET_MP_STATE` first (it lets the LAPIC accept pending INIT/SIPI
//!   events, which can change the registers and the LAPIC), then registers,
//!   XSAVE, XCRs, debug registers, LAPIC, MSRs, vCPU events;
//! - restore: CPUID first (which MSRs and XSAVE features are valid depends on
//!   it), MP state, registers, sregs (they also set the APIC base MSR, which
//!   the LAPIC state needs), XSAVE, XCRs, debug registers, LAPIC (the
//!   TSC-deadline MSR is only accepted when the LAPIC timer is in that mode),
//!   MSRs, and vCPU events last (how a pending interrupt is delivered depends on
//!   the LAPIC);
//! - VM: the PICs, IOAPIC and PIT, then the kvmclock; a VM is restored before
//!   its vCPUs.
//!
//! Every byte blob is checked against the kernel structure's size and the
//! XSAVE area against this host's size before anything is written; MSRs KVM
//! refuses are reported by index. A failed vCPU restore can leave the vCPU
//! half-written: discard it (the callers restore into fresh vCPUs).

use crate::error::AccelError;
use crate::kvm::vm::VmShared;
use crate::state::{
    CpuidEntry, MsrEntry, X86_64KvmIrqchipState, X86_64KvmVcpuState, X86_64KvmVmState,
    X86_64_KVM_STATE_VERSION,
};
use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    CpuId, Msrs, Xsave, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_MAX_CPUID_ENTRIES, KVM_MAX_MSR_ENTRIES,
};
use kvm_ioctls::{Cap, VcpuFd, VmFd};
use std::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// What this host's KVM offers for saving state, probed once per VM.
#[derive(Debug)]
pub(super) struct StateCaps {
    /// MSR indices from `KVM_GET_MSR_INDEX_LIST`, in KVM's order.
    msr_indices: Vec<u32>,
    /// Bytes of the XSAVE area: 4096, or `KVM_CAP_XSAVE2`'s size rounded to
    /// whole `u32`s when larger.
    xsave_len: usize,
    xcrs: bool,
    tsc_khz: bool,
    tsc_control: bool,
}

impl StateCaps {
    pub(super) fn probe(kvm: &kvm_ioctls::Kvm, vm: &VmFd) -> Result<Self, AccelError> {
        let msr_indices = kvm
            .get_msr_index_list()
            .map_err(|e| AccelError::hypervisor("KVM_GET_MSR_INDEX_LIST", e))?
            .as_slice()
            .to_vec();
        let legacy = size_of::<kvm_xsave>();
        let xsave2 = usize::try_from(vm.check_extension_int(Cap::Xsave2)).unwrap_or(0);
        let xsave_len = if xsave2 > legacy {
            legacy + (xsave2 - legacy).div_ceil(size_of::<u32>()) * size_of::<u32>()
        } else {
            legacy
        };
        Ok(Self {
            msr_indices,
            xsave_len,
            xcrs: vm.check_extension(Cap::Xcrs),
            tsc_khz: vm.check_extension(Cap::GetTscKhz),
            tsc_control: vm.check_extension(Cap::TscControl),
        })
    }
}

fn hv(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> AccelError {
    move |e| AccelError::hypervisor(op, e)
}

fn blob<T: IntoBytes + Immutable>(value: &T) -> Vec<u8> {
    value.as_bytes().to_vec()
}

/// Reads a kernel structure back from its saved bytes, refusing any other size.
fn parse<T: FromBytes>(what: &'static str, bytes: &[u8]) -> Result<T, AccelError> {
    T::read_from_bytes(bytes).map_err(|_| AccelError::InvalidState {
        what,
        reason: format!(
            "it is {} bytes, KVM's structure is {} bytes",
            bytes.len(),
            size_of::<T>()
        ),
    })
}

/// Saves every part of the vCPU's state, in the order the module header gives.
pub(super) fn save_vcpu(vm: &VmShared, fd: &VcpuFd) -> Result<X86_64KvmVcpuState, AccelError> {
    let caps = &vm.arch.state_caps;
    let mp_state = fd.get_mp_state().map_err(hv("KVM_GET_MP_STATE"))?;
    let cpuid = fd
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(hv("KVM_GET_CPUID2"))?;
    // A TSC frequency KVM cannot tell (it fails when the host's is unknown)
    // is left out: restoring then keeps this host's rate.
    let tsc_khz = caps.tsc_khz.then(|| fd.get_tsc_khz().ok()).flatten();
    let regs = fd.get_regs().map_err(hv("KVM_GET_REGS"))?;
    let sregs = fd.get_sregs().map_err(hv("KVM_GET_SREGS"))?;
    let xsave = save_xsave(caps, fd)?;
    let xcrs = if caps.xcrs {
        Some(blob(&fd.get_xcrs().map_err(hv("KVM_GET_XCRS"))?))
    } else {
        None
    };
    let debug_regs = fd.get_debug_regs().map_err(hv("KVM_GET_DEBUGREGS"))?;
    let lapic = if vm.arch.irqchip {
        Some(blob(&fd.get_lapic().map_err(hv("KVM_GET_LAPIC"))?))
    } else {
        None
    };
    let msrs = save_msrs(fd, &caps.msr_indices)?;
    let vcpu_events = fd.get_vcpu_events().map_err(hv("KVM_GET_VCPU_EVENTS"))?;
    Ok(X86_64KvmVcpuState {
        version: X86_64_KVM_STATE_VERSION,
        cpuid: cpuid.as_slice().iter().map(cpuid_from_kvm).collect(),
        tsc_khz,
        mp_state: mp_state.mp_state,
        regs: blob(&regs),
        sregs: blob(&sregs),
        xsave,
        xcrs,
        debug_regs: blob(&debug_regs),
        lapic,
        msrs,
        vcpu_events: blob(&vcpu_events),
    })
}

fn save_xsave(caps: &StateCaps, fd: &VcpuFd) -> Result<Vec<u8>, AccelError> {
    let legacy = size_of::<kvm_xsave>();
    if caps.xsave_len == legacy {
        return Ok(blob(&fd.get_xsave().map_err(hv("KVM_GET_XSAVE"))?));
    }
    let mut xsave = Xsave::new((caps.xsave_len - legacy) / size_of::<u32>())
        .map_err(|e| AccelError::hypervisor("KVM_GET_XSAVE2", std::io::Error::other(e)))?;
    // SAFETY: `xsave` holds `xsave_len` bytes, at least the `KVM_CAP_XSAVE2`
    // size this VM reported, so the kernel writes inside it.
    unsafe { fd.get_xsave2(&mut xsave) }.map_err(hv("KVM_GET_XSAVE2"))?;
    let mut bytes = blob(&xsave.as_fam_struct_ref().xsave);
    bytes.extend(xsave.as_slice().iter().flat_map(|w| w.to_ne_bytes()));
    Ok(bytes)
}

/// Byte offsets in the XSAVE area (Intel SDM vol. 1, 13.4): MXCSR and XMM0
/// in the legacy region, XSTATE_BV in the header.
const XSAVE_MXCSR: usize = 24;
const XSAVE_XMM0: usize = 160;
const XSAVE_XSTATE_BV: usize = 512;
/// XSTATE_BV's bit for the SSE state (XMM registers and MXCSR).
const XSTATE_SSE: u64 = 1 << 1;

/// Writes XMM0–15 and MXCSR through the XSAVE area and marks the SSE state
/// as in use. `KVM_SET_FPU` leaves XSTATE_BV as it was: while the guest's SSE
/// state is still in its initial configuration (bit clear), the CPU's XRSTOR
/// then loads zeros and the write is lost.
pub(super) fn write_sse(
    vm: &VmShared,
    fd: &VcpuFd,
    xmm: &[[u8; 16]; 16],
    mxcsr: u32,
) -> Result<(), AccelError> {
    let caps = &vm.arch.state_caps;
    let mut bytes = save_xsave(caps, fd)?;
    let short = || {
        AccelError::hypervisor(
            "KVM_GET_XSAVE",
            std::io::Error::other("the XSAVE area is shorter than its header"),
        )
    };
    bytes
        .get_mut(XSAVE_MXCSR..XSAVE_MXCSR + 4)
        .ok_or_else(short)?
        .copy_from_slice(&mxcsr.to_le_bytes());
    for (i, x) in xmm.iter().enumerate() {
        let at = XSAVE_XMM0 + 16 * i;
        bytes
            .get_mut(at..at + 16)
            .ok_or_else(short)?
            .copy_from_slice(x);
    }
    let bv = bytes
        .get_mut(XSAVE_XSTATE_BV..XSAVE_XSTATE_BV + 8)
        .ok_or_else(short)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(bv);
    bv.copy_from_slice(&(u64::from_le_bytes(word) | XSTATE_SSE).to_le_bytes());
    let xsave = parse_xsave(&bytes)?;
    // SAFETY: `xsave` holds `xsave_len` bytes, the size this VM's KVM reads.
    unsafe { fd.set_xsave2(&xsave) }.map_err(hv("KVM_SET_XSAVE"))
}

/// Reads the listed MSRs, dropping those this vCPU cannot read: `KVM_GET_MSRS`
/// stops at the first MSR it fails on and returns how many it read.
fn save_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<MsrEntry>, AccelError> {
    let mut saved = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(KVM_MAX_MSR_ENTRIES)];
        let entries: Vec<_> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries)
            .map_err(|e| AccelError::hypervisor("KVM_GET_MSRS", std::io::Error::other(e)))?;
        let read = fd.get_msrs(&mut msrs).map_err(hv("KVM_GET_MSRS"))?;
        let read = read.min(chunk.len());
        saved.extend(msrs.as_slice()[..read].iter().map(|e| MsrEntry {
            index: e.index,
            data: e.data,
        }));
        if read < chunk.len() {
            tracing::debug!(
                msr = chunk[read],
                "MSR not readable on this vCPU, not saved"
            );
            rest = &rest[read + 1..];
        } else {
            rest = &rest[chunk.len()..];
        }
    }
    Ok(saved)
}

/// The saved state, parsed and checked before anything is written.
struct ParsedVcpu {
    cpuid: CpuId,
    mp_state: kvm_mp_state,
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: Xsave,
    xcrs: Option<kvm_xcrs>,
    debug_regs: kvm_debugregs,
    lapic: Option<kvm_lapic_state>,
    msrs: Vec<Msrs>,
    vcpu_events: kvm_vcpu_events,
}

fn check_version(what: &'static str, version: u32) -> Result<(), AccelError> {
    if version == X86_64_KVM_STATE_VERSION {
        return Ok(());
    }
    Err(AccelError::InvalidState {
        what,
        reason: format!(
            "its layout version is {version}, this build reads version {X86_64_KVM_STATE_VERSION}"
        ),
    })
}

fn parse_vcpu(vm: &VmShared, state: &X86_64KvmVcpuState) -> Result<ParsedVcpu, AccelError> {
    check_version("the x86_64 vCPU state", state.version)?;
    let caps = &vm.arch.state_caps;
    if state.cpuid.len() > KVM_MAX_CPUID_ENTRIES {
        return Err(AccelError::InvalidState {
            what: "CPUID",
            reason: format!(
                "{} leaves, KVM takes at most {KVM_MAX_CPUID_ENTRIES}",
                state.cpuid.len()
            ),
        });
    }
    let entries: Vec<_> = state.cpuid.iter().map(cpuid_to_kvm).collect();
    let cpuid = CpuId::from_entries(&entries).map_err(|e| AccelError::InvalidState {
        what: "CPUID",
        reason: e.to_string(),
    })?;
    if state.xsave.len() != caps.xsave_len {
        return Err(AccelError::InvalidState {
            what: "the XSAVE area",
            reason: format!(
                "it is {} bytes, this host's KVM uses {} bytes: the snapshot comes from a CPU with other XSAVE features",
                state.xsave.len(),
                caps.xsave_len
            ),
        });
    }
    let xsave = parse_xsave(&state.xsave)?;
    let xcrs = match (&state.xcrs, caps.xcrs) {
        (Some(bytes), true) => Some(parse("XCRs", bytes)?),
        (None, _) => None,
        (Some(_), false) => {
            return Err(AccelError::InvalidState {
                what: "XCRs",
                reason: "this host's KVM lacks KVM_CAP_XCRS".to_owned(),
            })
        }
    };
    let lapic = match (&state.lapic, vm.arch.irqchip) {
        (Some(bytes), true) => Some(parse("the LAPIC", bytes)?),
        (None, false) => None,
        (Some(_), false) => {
            return Err(AccelError::InvalidState {
                what: "the LAPIC",
                reason: "the state has an in-kernel LAPIC but this VM has no in-kernel irqchip"
                    .to_owned(),
            })
        }
        (None, true) => {
            return Err(AccelError::InvalidState {
                what: "the LAPIC",
                reason: "this VM has an in-kernel irqchip but the state has no LAPIC".to_owned(),
            })
        }
    };
    let msrs = state
        .msrs
        .chunks(KVM_MAX_MSR_ENTRIES)
        .map(|chunk| {
            let entries: Vec<_> = chunk
                .iter()
                .map(|m| kvm_msr_entry {
                    index: m.index,
                    data: m.data,
                    ..Default::default()
                })
                .collect();
            Msrs::from_entries(&entries).map_err(|e| AccelError::InvalidState {
                what: "MSRs",
                reason: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ParsedVcpu {
        cpuid,
        mp_state: kvm_mp_state {
            mp_state: state.mp_state,
        },
        regs: parse("the general registers", &state.regs)?,
        sregs: parse("the segment and control registers", &state.sregs)?,
        xsave,
        xcrs,
        debug_regs: parse("the debug registers", &state.debug_regs)?,
        lapic,
        msrs,
        vcpu_events: parse("the vCPU events", &state.vcpu_events)?,
    })
}

fn parse_xsave(bytes: &[u8]) -> Result<Xsave, AccelError> {
    let legacy = size_of::<kvm_xsave>();
    let (head, tail) = bytes
        .split_at_checked(legacy)
        .ok_or(AccelError::InvalidState {
            what: "the XSAVE area",
            reason: format!("it is {} bytes, less than {legacy}", bytes.len()),
        })?;
    let words = tail.chunks_exact(size_of::<u32>());
    if !words.remainder().is_empty() {
        return Err(AccelError::InvalidState {
            what: "the XSAVE area",
            reason: format!(
                "its size {} is not a whole number of u32 words",
                bytes.len()
            ),
        });
    }
    let mut xsave =
        Xsave::new(tail.len() / size_of::<u32>()).map_err(|e| AccelError::InvalidState {
            what: "the XSAVE area",
            reason: e.to_string(),
        })?;
    let head = parse("the XSAVE area", head)?;
    // SAFETY: only the `xsave` field is replaced; the wrapper's length field,
    // which the safety contract protects, is left as `Xsave::new` set it.
    unsafe { xsave.as_mut_fam_struct() }.xsave = head;
    for (slot, word) in xsave.as_mut_slice().iter_mut().zip(words) {
        let mut w = [0u8; 4];
        w.copy_from_slice(word);
        *slot = u32::from_ne_bytes(w);
    }
    Ok(xsave)
}

/// Restores a vCPU in the order the module header gives.
pub(super) fn restore_vcpu(
    vm: &VmShared,
    fd: &VcpuFd,
    state: &X86_64KvmVcpuState,
) -> Result<(), AccelError> {
    let caps = &vm.arch.state_caps;
    let p = parse_vcpu(vm, state)?;
    fd.set_cpuid2(&p.cpuid).map_err(hv("KVM_SET_CPUID2"))?;
    if let Some(khz) = state.tsc_khz {
        restore_tsc_khz(caps, fd, khz)?;
    }
    fd.set_mp_state(p.mp_state)
        .map_err(hv("KVM_SET_MP_STATE"))?;
    fd.set_regs(&p.regs).map_err(hv("KVM_SET_REGS"))?;
    fd.set_sregs(&p.sregs).map_err(hv("KVM_SET_SREGS"))?;
    // SAFETY: `p.xsave` holds `xsave_len` bytes, the size this VM's KVM reads.
    unsafe { fd.set_xsave2(&p.xsave) }.map_err(hv("KVM_SET_XSAVE"))?;
    if let Some(xcrs) = &p.xcrs {
        fd.set_xcrs(xcrs).map_err(hv("KVM_SET_XCRS"))?;
    }
    fd.set_debug_regs(&p.debug_regs)
        .map_err(hv("KVM_SET_DEBUGREGS"))?;
    if let Some(lapic) = &p.lapic {
        fd.set_lapic(lapic).map_err(hv("KVM_SET_LAPIC"))?;
    }
    for msrs in &p.msrs {
        let written = fd.set_msrs(msrs).map_err(hv("KVM_SET_MSRS"))?;
        if let Some(refused) = msrs.as_slice().get(written) {
            return Err(AccelError::InvalidState {
                what: "MSRs",
                reason: format!(
                    "KVM refused MSR {:#x} = {:#x}: the snapshot comes from a host or CPU model this vCPU does not match",
                    refused.index, refused.data
                ),
            });
        }
    }
    fd.set_vcpu_events(&p.vcpu_events)
        .map_err(hv("KVM_SET_VCPU_EVENTS"))
}

fn restore_tsc_khz(caps: &StateCaps, fd: &VcpuFd, khz: u32) -> Result<(), AccelError> {
    let current = if caps.tsc_khz {
        fd.get_tsc_khz().ok()
    } else {
        None
    };
    if current == Some(khz) {
        return Ok(());
    }
    if caps.tsc_control {
        return fd.set_tsc_khz(khz).map_err(hv("KVM_SET_TSC_KHZ"));
    }
    // Without TSC scaling the guest's TSC runs at this host's rate; its time
    // stays monotonic (the TSC value itself is restored as an MSR).
    tracing::warn!(
        saved_khz = khz,
        host_khz = ?current,
        "TSC frequency differs and KVM cannot scale it (no KVM_CAP_TSC_CONTROL)"
    );
    Ok(())
}

fn cpuid_from_kvm(e: &kvm_cpuid_entry2) -> CpuidEntry {
    CpuidEntry {
        function: e.function,
        index: e.index,
        flags: e.flags,
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
    }
}

fn cpuid_to_kvm(e: &CpuidEntry) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function: e.function,
        index: e.index,
        flags: e.flags,
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
        ..Default::default()
    }
}

fn get_chip(fd: &VmFd, chip_id: u32) -> Result<Vec<u8>, AccelError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    fd.get_irqchip(&mut chip).map_err(hv("KVM_GET_IRQCHIP"))?;
    Ok(blob(&chip))
}

fn parse_chip(what: &'static str, bytes: &[u8], chip_id: u32) -> Result<kvm_irqchip, AccelError> {
    let chip: kvm_irqchip = parse(what, bytes)?;
    if chip.chip_id != chip_id {
        return Err(AccelError::InvalidState {
            what,
            reason: format!("it is irqchip {}, expected {chip_id}", chip.chip_id),
        });
    }
    Ok(chip)
}

/// Saves the irqchip, PIT and kvmclock. Every vCPU must be paused.
pub(super) fn save_vm(vm: &VmShared) -> Result<X86_64KvmVmState, AccelError> {
    let irqchip = if vm.arch.irqchip {
        Some(X86_64KvmIrqchipState {
            pic_master: get_chip(&vm.fd, KVM_IRQCHIP_PIC_MASTER)?,
            pic_slave: get_chip(&vm.fd, KVM_IRQCHIP_PIC_SLAVE)?,
            ioapic: get_chip(&vm.fd, KVM_IRQCHIP_IOAPIC)?,
            pit: blob(&vm.fd.get_pit2().map_err(hv("KVM_GET_PIT2"))?),
        })
    } else {
        None
    };
    let clock = vm.fd.get_clock().map_err(hv("KVM_GET_CLOCK"))?;
    Ok(X86_64KvmVmState {
        version: X86_64_KVM_STATE_VERSION,
        irqchip,
        clock_ns: clock.clock,
    })
}

/// Restores the irqchip and PIT, then the kvmclock (it keeps running from the
/// saved value: the guest does not see the time the VM was saved).
pub(super) fn restore_vm(vm: &VmShared, state: &X86_64KvmVmState) -> Result<(), AccelError> {
    check_version("the x86_64 VM state", state.version)?;
    let chips = match (&state.irqchip, vm.arch.irqchip) {
        (Some(s), true) => Some((
            parse_chip("the master PIC", &s.pic_master, KVM_IRQCHIP_PIC_MASTER)?,
            parse_chip("the slave PIC", &s.pic_slave, KVM_IRQCHIP_PIC_SLAVE)?,
            parse_chip("the IOAPIC", &s.ioapic, KVM_IRQCHIP_IOAPIC)?,
            parse::<kvm_pit_state2>("the PIT", &s.pit)?,
        )),
        (None, false) => None,
        (have, _) => {
            return Err(AccelError::InvalidState {
                what: "the in-kernel irqchip",
                reason: format!(
                    "the state {} one but this VM {} one",
                    if have.is_some() { "has" } else { "has no" },
                    if vm.arch.irqchip { "has" } else { "has no" },
                ),
            })
        }
    };
    if let Some((master, slave, ioapic, pit)) = chips {
        for chip in [&master, &slave, &ioapic] {
            vm.fd.set_irqchip(chip).map_err(hv("KVM_SET_IRQCHIP"))?;
        }
        vm.fd.set_pit2(&pit).map_err(hv("KVM_SET_PIT2"))?;
    }
    let clock = kvm_clock_data {
        clock: state.clock_ns,
        ..Default::default()
    };
    vm.fd.set_clock(&clock).map_err(hv("KVM_SET_CLOCK"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_other_sizes() {
        let regs = kvm_regs {
            rax: 7,
            ..Default::default()
        };
        let bytes = blob(&regs);
        assert_eq!(parse::<kvm_regs>("regs", &bytes).unwrap().rax, 7);
        let short = parse::<kvm_regs>("regs", &bytes[1..]).unwrap_err();
        assert!(
            short
                .to_string()
                .contains(&format!("{} bytes", bytes.len() - 1)),
            "{short}"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(parse::<kvm_regs>("regs", &long).is_err());
    }

    #[test]
    fn xsave_round_trips_through_bytes_and_refuses_ragged_sizes() {
        let legacy = size_of::<kvm_xsave>();
        let mut bytes: Vec<u8> = (0..legacy + 8).map(|i| i as u8).collect();
        let xsave = parse_xsave(&bytes).unwrap();
        let mut back = blob(&xsave.as_fam_struct_ref().xsave);
        back.extend(xsave.as_slice().iter().flat_map(|w| w.to_ne_bytes()));
        assert_eq!(back, bytes);
        bytes.push(1);
        assert!(parse_xsave(&bytes).is_err());
        assert!(parse_xsave(&bytes[..100]).is_err());
    }

    #[test]
    fn irqchip_id_is_checked() {
        let chip = kvm_irqchip {
            chip_id: KVM_IRQCHIP_PIC_SLAVE,
            ..Default::default()
        };
        let err = parse_chip("the master PIC", &blob(&chip), KVM_IRQCHIP_PIC_MASTER).unwrap_err();
        assert!(err.to_string().contains("irqchip 1, expected 0"), "{err}");
    }
}
