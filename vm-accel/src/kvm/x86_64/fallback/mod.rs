//! The userspace instruction fallback: when `KVM_RUN` ends in an emulation
//! failure on a host whose KVM cannot emulate some instructions (the nested
//! `kvm_pvm` host: SSE, `cmpxchg16b`, `popcnt`, `clac`...), the instruction at
//! RIP is decoded with iced-x86 and, if the host profile enables its group,
//! emulated here on the vCPU's registers (`KVM_GET/SET_REGS`), SSE state
//! (`KVM_GET/SET_FPU`) and memory (each page translated with
//! `KVM_TRANSLATE`, only inside guest RAM); RIP advances and the guest resumes.
//!
//! Limits: 64-bit code only; faults the instruction would raise (#PF, #GP
//! on misalignment, #UD) are not injected but reported as errors, so the VMM
//! stops with the instruction named; `cmpxchg8b`/`cmpxchg16b` are not atomic
//! against other vCPUs.

mod integer;
mod machine;
mod sse;
mod table;
#[cfg(test)]
mod tests;

pub use machine::FallbackError;
pub(super) use machine::{CpuState, Guest, SseState};

use super::regs::{from_kvm_regs, to_kvm_regs};
use crate::host_profile::{FallbackGroup, HostProfile};
use crate::kvm::vm::VmShared;
use crate::x86_emulator::gpr::copy_gprs;
use crate::x86_emulator::mnemonic_name;
use iced_x86::Mnemonic;
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// How many instructions the fallback emulated, per mnemonic, for one VM.
#[derive(Debug, Default)]
pub(in crate::kvm) struct EmulationCounts(Mutex<BTreeMap<Mnemonic, u64>>);

impl EmulationCounts {
    /// Counts one emulation of `m`; logs at info level each time a count
    /// reaches a power of two, so a long run's log shows the trend cheaply.
    fn record(&self, m: Mnemonic) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(m).or_insert(0);
        *n += 1;
        if n.is_power_of_two() {
            tracing::info!(mnemonic = ?m, count = *n, "instruction fallback: emulated");
        }
    }

    /// `(mnemonic, count)` pairs, most frequent first.
    fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.iter().map(|(m, n)| (mnemonic_name(*m), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// One line: `popcnt=12 clac=3`.
    pub(in crate::kvm) fn summary(&self) -> String {
        self.snapshot()
            .iter()
            .map(|(m, n)| format!("{m}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The vCPU and VM as a [`Guest`]: KVM_TRANSLATE, guest RAM, lazily loaded FPU.
struct KvmGuest<'a> {
    fd: &'a VcpuFd,
    memory: Option<GuestMemoryMmap>,
    fpu: Option<(kvm_fpu, SseState)>,
    sse: SseState,
}

fn hv(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> FallbackError {
    move |e| FallbackError::Hypervisor {
        what,
        error: e.to_string(),
    }
}

impl Guest for KvmGuest<'_> {
    fn translate(&mut self, gva: u64, write: bool) -> Result<u64, FallbackError> {
        let t = self.fd.translate_gva(gva).map_err(hv("KVM_TRANSLATE"))?;
        if t.valid == 0 {
            return Err(FallbackError::NotMapped { gva });
        }
        if write && t.writeable == 0 {
            return Err(FallbackError::NotWritable { gva });
        }
        Ok(t.physical_address)
    }

    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), FallbackError> {
        let outside = FallbackError::OutsideRam {
            gpa,
            len: buf.len(),
        };
        let memory = self.memory.as_ref().ok_or(outside.clone())?;
        memory
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| outside)
    }

    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), FallbackError> {
        let outside = FallbackError::OutsideRam {
            gpa,
            len: data.len(),
        };
        let memory = self.memory.as_ref().ok_or(outside.clone())?;
        memory
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| outside)
    }

    fn sse(&mut self) -> Result<&mut SseState, FallbackError> {
        if self.fpu.is_none() {
            let fpu = self.fd.get_fpu().map_err(hv("KVM_GET_FPU"))?;
            let loaded = SseState {
                xmm: fpu.xmm.map(u128::from_le_bytes),
                mxcsr: fpu.mxcsr,
            };
            self.sse = loaded;
            self.fpu = Some((fpu, loaded));
        }
        Ok(&mut self.sse)
    }

    fn xcr0(&mut self) -> Result<u64, FallbackError> {
        let xcrs = self.fd.get_xcrs().map_err(hv("KVM_GET_XCRS"))?;
        Ok(xcrs.xcrs[..xcrs.nr_xcrs.min(16) as usize]
            .iter()
            .find(|x| x.xcr == 0)
            .map_or(1, |x| x.value))
    }
}

/// Emulates the instruction `bytes` at RIP on the vCPU `fd` if `enabled`
/// allows its group, writing registers, SSE state and memory back.
pub(super) fn emulate_on_vcpu(
    vm: &VmShared,
    fd: &VcpuFd,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    bytes: &[u8],
    enabled: &dyn Fn(FallbackGroup) -> bool,
) -> Result<Mnemonic, FallbackError> {
    if sregs.efer & crate::boot::x86_64::EFER_LMA == 0 || sregs.cs.l == 0 {
        return Err(FallbackError::NotLongMode);
    }
    let mut gpr = [0u64; 16];
    copy_gprs(&mut gpr, &from_kvm_regs(regs));
    let mut cpu = CpuState {
        gpr,
        rip: regs.rip,
        rflags: regs.rflags,
        cpl: (sregs.cs.selector & 3) as u8,
        fs_base: sregs.fs.base,
        gs_base: sregs.gs.base,
    };
    let mut guest = KvmGuest {
        fd,
        memory: vm.memory(),
        fpu: None,
        sse: SseState::default(),
    };
    let mnemonic = table::emulate(&mut cpu, &mut guest, bytes, enabled)?;
    if let Some((_, loaded)) = guest.fpu {
        if guest.sse != loaded {
            let xmm = guest.sse.xmm.map(u128::to_le_bytes);
            super::state::write_sse(vm, fd, &xmm, guest.sse.mxcsr).map_err(|e| {
                FallbackError::Hypervisor {
                    what: "KVM_SET_XSAVE",
                    error: e.to_string(),
                }
            })?;
        }
    }
    let mut out = from_kvm_regs(regs);
    copy_gprs(&mut out, &cpu.gpr);
    out.rip = cpu.rip;
    out.rflags = cpu.rflags;
    fd.set_regs(&to_kvm_regs(&out))
        .map_err(hv("KVM_SET_REGS"))?;
    Ok(mnemonic)
}

/// Tries the fallback for an emulation failure, under the VM's host profile.
/// `Ok(Some(m))`: emulated, resume. `Ok(None)`: the profile enables no fallback.
pub(super) fn on_emulation_failure(
    vm: &VmShared,
    fd: &VcpuFd,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    bytes: &[u8],
) -> Result<Option<Mnemonic>, FallbackError> {
    let Some(profile) = vm.arch.profile else {
        return Ok(None);
    };
    if profile.fallback.is_empty() {
        return Ok(None);
    }
    let enabled = |g| HostProfile::enables(profile, g);
    let m = emulate_on_vcpu(vm, fd, regs, sregs, bytes, &enabled)?;
    tracing::debug!(mnemonic = ?m, rip = regs.rip, "instruction fallback: emulated");
    vm.arch.emulations.record(m);
    Ok(Some(m))
}

impl crate::kvm::KvmVcpu {
    /// Emulates the instruction at RIP with the userspace fallback, every
    /// group enabled, as `run()` does after an emulation failure when the
    /// host profile enables the instruction's group. Returns the mnemonic
    /// (lower case). For tests and diagnosis; the guest is not entered.
    pub fn emulate_at_rip(&self) -> Result<String, FallbackError> {
        let fd = self.vcpu_fd();
        let regs = fd.get_regs().map_err(hv("KVM_GET_REGS"))?;
        let sregs = fd.get_sregs().map_err(hv("KVM_GET_SREGS"))?;
        let vm = self.shared();
        let (bytes, _) =
            super::fixup::fetch_instruction(vm, fd, super::fixup::linear_pc(&regs, &sregs));
        if bytes.is_empty() {
            return Err(FallbackError::NotMapped { gva: regs.rip });
        }
        let m = emulate_on_vcpu(vm, fd, &regs, &sregs, &bytes, &|_| true)?;
        Ok(mnemonic_name(m))
    }
}
