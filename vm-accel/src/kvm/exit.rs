//! Decoding `kvm_run` after `KVM_RUN` into [`VcpuExit`], zero copy: I/O and
//! MMIO data are slices of the vCPU's `kvm_run` mapping.

use crate::error::AccelError;
use crate::exit::{InternalError, InternalErrorKind, RiscvSbiCall, SystemEvent, VcpuExit};
use kvm_bindings::{
    kvm_run, KVM_EXIT_AP_RESET_HOLD, KVM_EXIT_ARM_NISV, KVM_EXIT_DCR, KVM_EXIT_DEBUG,
    KVM_EXIT_DIRTY_RING_FULL, KVM_EXIT_EPR, KVM_EXIT_EXCEPTION, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT,
    KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERV, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO,
    KVM_EXIT_IOAPIC_EOI, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT, KVM_EXIT_IRQ_WINDOW_OPEN,
    KVM_EXIT_LOONGARCH_IOCSR, KVM_EXIT_MEMORY_FAULT, KVM_EXIT_MMIO, KVM_EXIT_NMI, KVM_EXIT_NOTIFY,
    KVM_EXIT_OSI, KVM_EXIT_PAPR_HCALL, KVM_EXIT_RISCV_CSR, KVM_EXIT_RISCV_SBI, KVM_EXIT_S390_RESET,
    KVM_EXIT_S390_SIEIC, KVM_EXIT_S390_STSI, KVM_EXIT_S390_TSCH, KVM_EXIT_S390_UCONTROL,
    KVM_EXIT_SET_TPR, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT, KVM_EXIT_TPR_ACCESS,
    KVM_EXIT_UNKNOWN, KVM_EXIT_WATCHDOG, KVM_EXIT_X86_BUS_LOCK, KVM_EXIT_X86_RDMSR,
    KVM_EXIT_X86_WRMSR, KVM_EXIT_XEN, KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_SIMUL_EX, KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, KVM_SYSTEM_EVENT_CRASH,
    KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN, KVM_SYSTEM_EVENT_SUSPEND,
    KVM_SYSTEM_EVENT_WAKEUP,
};

/// The `KVM_EXIT_INTERNAL_ERROR` payload, copied out of `kvm_run`.
#[derive(Debug, Clone)]
pub(super) struct InternalErrorData {
    pub(super) suberror: u32,
    pub(super) data: Vec<u64>,
}

impl InternalErrorData {
    /// Copies the internal-error union member; call only for `KVM_EXIT_INTERNAL_ERROR`.
    pub(super) fn read(run: &kvm_run) -> Self {
        // SAFETY: the caller checked exit_reason == KVM_EXIT_INTERNAL_ERROR, for
        // which the kernel fills the `internal` member; every bit pattern is valid.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let n = (internal.ndata as usize).min(internal.data.len());
        Self {
            suberror: internal.suberror,
            data: internal.data[..n].to_vec(),
        }
    }

    /// The error with no guest context (registers or memory unreadable).
    pub(super) fn bare(&self) -> InternalError {
        InternalError {
            kind: internal_error_kind(self.suberror),
            data: self.data.clone(),
            pc: None,
            pc_phys: None,
            instruction: None,
            detail: None,
        }
    }
}

/// What the backend made of a `KVM_EXIT_INTERNAL_ERROR`.
#[derive(Debug)]
pub(super) enum Fixup {
    /// Handled in userspace (e.g. int3 re-injected); enter the guest again.
    // Only the x86 path recovers from internal errors so far.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Resume,
    /// Not recoverable: report it to the VMM.
    Report(InternalError),
}

/// Maps a `KVM_INTERNAL_ERROR_*` sub-error.
pub(super) fn internal_error_kind(suberror: u32) -> InternalErrorKind {
    match suberror {
        KVM_INTERNAL_ERROR_EMULATION => InternalErrorKind::Emulation,
        KVM_INTERNAL_ERROR_SIMUL_EX => InternalErrorKind::SimultaneousException,
        KVM_INTERNAL_ERROR_DELIVERY_EV => InternalErrorKind::DeliveryEvent,
        KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => InternalErrorKind::UnexpectedExitReason,
        other => InternalErrorKind::Other(other),
    }
}

fn system_event(kind: u32) -> SystemEvent {
    match kind {
        KVM_SYSTEM_EVENT_SHUTDOWN => SystemEvent::Shutdown,
        KVM_SYSTEM_EVENT_RESET => SystemEvent::Reset,
        KVM_SYSTEM_EVENT_CRASH => SystemEvent::Crash,
        KVM_SYSTEM_EVENT_WAKEUP => SystemEvent::Wakeup,
        KVM_SYSTEM_EVENT_SUSPEND => SystemEvent::Suspend,
        other => SystemEvent::Other(other),
    }
}

/// The name of every exit code KVM defines, for exits the VMM does not act on.
pub(super) fn exit_name(reason: u32) -> &'static str {
    match reason {
        KVM_EXIT_UNKNOWN => "KVM_EXIT_UNKNOWN",
        KVM_EXIT_EXCEPTION => "KVM_EXIT_EXCEPTION",
        KVM_EXIT_IO => "KVM_EXIT_IO",
        KVM_EXIT_HYPERCALL => "KVM_EXIT_HYPERCALL",
        KVM_EXIT_DEBUG => "KVM_EXIT_DEBUG",
        KVM_EXIT_HLT => "KVM_EXIT_HLT",
        KVM_EXIT_MMIO => "KVM_EXIT_MMIO",
        KVM_EXIT_IRQ_WINDOW_OPEN => "KVM_EXIT_IRQ_WINDOW_OPEN",
        KVM_EXIT_SHUTDOWN => "KVM_EXIT_SHUTDOWN",
        KVM_EXIT_FAIL_ENTRY => "KVM_EXIT_FAIL_ENTRY",
        KVM_EXIT_INTR => "KVM_EXIT_INTR",
        KVM_EXIT_SET_TPR => "KVM_EXIT_SET_TPR",
        KVM_EXIT_TPR_ACCESS => "KVM_EXIT_TPR_ACCESS",
        KVM_EXIT_S390_SIEIC => "KVM_EXIT_S390_SIEIC",
        KVM_EXIT_S390_RESET => "KVM_EXIT_S390_RESET",
        KVM_EXIT_DCR => "KVM_EXIT_DCR",
        KVM_EXIT_NMI => "KVM_EXIT_NMI",
        KVM_EXIT_INTERNAL_ERROR => "KVM_EXIT_INTERNAL_ERROR",
        KVM_EXIT_OSI => "KVM_EXIT_OSI",
        KVM_EXIT_PAPR_HCALL => "KVM_EXIT_PAPR_HCALL",
        KVM_EXIT_S390_UCONTROL => "KVM_EXIT_S390_UCONTROL",
        KVM_EXIT_WATCHDOG => "KVM_EXIT_WATCHDOG",
        KVM_EXIT_S390_TSCH => "KVM_EXIT_S390_TSCH",
        KVM_EXIT_EPR => "KVM_EXIT_EPR",
        KVM_EXIT_SYSTEM_EVENT => "KVM_EXIT_SYSTEM_EVENT",
        KVM_EXIT_S390_STSI => "KVM_EXIT_S390_STSI",
        KVM_EXIT_IOAPIC_EOI => "KVM_EXIT_IOAPIC_EOI",
        KVM_EXIT_HYPERV => "KVM_EXIT_HYPERV",
        KVM_EXIT_ARM_NISV => "KVM_EXIT_ARM_NISV",
        KVM_EXIT_X86_RDMSR => "KVM_EXIT_X86_RDMSR",
        KVM_EXIT_X86_WRMSR => "KVM_EXIT_X86_WRMSR",
        KVM_EXIT_DIRTY_RING_FULL => "KVM_EXIT_DIRTY_RING_FULL",
        KVM_EXIT_AP_RESET_HOLD => "KVM_EXIT_AP_RESET_HOLD",
        KVM_EXIT_X86_BUS_LOCK => "KVM_EXIT_X86_BUS_LOCK",
        KVM_EXIT_XEN => "KVM_EXIT_XEN",
        KVM_EXIT_RISCV_SBI => "KVM_EXIT_RISCV_SBI",
        KVM_EXIT_RISCV_CSR => "KVM_EXIT_RISCV_CSR",
        KVM_EXIT_NOTIFY => "KVM_EXIT_NOTIFY",
        KVM_EXIT_LOONGARCH_IOCSR => "KVM_EXIT_LOONGARCH_IOCSR",
        KVM_EXIT_MEMORY_FAULT => "KVM_EXIT_MEMORY_FAULT",
        _ => "unknown KVM exit code",
    }
}

fn malformed(detail: String) -> AccelError {
    AccelError::MalformedExit {
        backend: "KVM",
        detail,
    }
}

/// Decodes the exit `run` describes. `run_size` is the size of the vCPU's
/// `kvm_run` mapping, which I/O data must lie inside.
/// `KVM_EXIT_INTERNAL_ERROR` is handled by the caller before this.
#[inline]
pub(super) fn decode(run: &mut kvm_run, run_size: usize) -> Result<VcpuExit<'_>, AccelError> {
    let reason = run.exit_reason;
    match reason {
        KVM_EXIT_IO => {
            // SAFETY: exit_reason is KVM_EXIT_IO, so the kernel filled the `io` member.
            let io = unsafe { run.__bindgen_anon_1.io };
            let len = usize::from(io.size) * io.count as usize;
            let offset = usize::try_from(io.data_offset).unwrap_or(usize::MAX);
            if offset.checked_add(len).is_none_or(|end| end > run_size) {
                return Err(malformed(format!(
                    "I/O data at offset {offset:#x} + {len} bytes is outside the {run_size:#x}-byte kvm_run mapping"
                )));
            }
            let base = std::ptr::from_mut::<kvm_run>(run).cast::<u8>();
            // SAFETY: [offset, offset + len) lies inside the kvm_run mapping (checked
            // above), which lives as long as the vCPU `run` borrows from; the region is
            // past the `kvm_run` struct, so it does not alias the `run` reference's
            // fields, and `run` is exclusively borrowed for the slice's lifetime.
            let data = unsafe { std::slice::from_raw_parts_mut(base.add(offset), len) };
            match u32::from(io.direction) {
                KVM_EXIT_IO_IN => Ok(VcpuExit::IoIn {
                    port: io.port,
                    data,
                }),
                KVM_EXIT_IO_OUT => Ok(VcpuExit::IoOut {
                    port: io.port,
                    data,
                }),
                other => Err(malformed(format!("I/O direction {other}"))),
            }
        }
        KVM_EXIT_MMIO => {
            // SAFETY: exit_reason is KVM_EXIT_MMIO, so the kernel filled the `mmio` member.
            let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
            let len = mmio.len as usize;
            let addr = mmio.phys_addr;
            let is_write = mmio.is_write != 0;
            let Some(data) = mmio.data.get_mut(..len) else {
                return Err(malformed(format!("MMIO length {len} at {addr:#x}")));
            };
            if is_write {
                Ok(VcpuExit::MmioWrite { addr, data })
            } else {
                Ok(VcpuExit::MmioRead { addr, data })
            }
        }
        KVM_EXIT_HLT => Ok(VcpuExit::Halt),
        KVM_EXIT_SHUTDOWN => Ok(VcpuExit::Shutdown),
        KVM_EXIT_INTR => Ok(VcpuExit::Interrupted),
        KVM_EXIT_SYSTEM_EVENT => {
            // SAFETY: exit_reason is KVM_EXIT_SYSTEM_EVENT: the `system_event` member is filled.
            let event = unsafe { run.__bindgen_anon_1.system_event };
            Ok(VcpuExit::SystemEvent(system_event(event.type_)))
        }
        KVM_EXIT_IOAPIC_EOI => {
            // SAFETY: exit_reason is KVM_EXIT_IOAPIC_EOI: the `eoi` member is filled.
            let vector = unsafe { run.__bindgen_anon_1.eoi.vector };
            Ok(VcpuExit::IoapicEoi { vector })
        }
        KVM_EXIT_FAIL_ENTRY => {
            // SAFETY: exit_reason is KVM_EXIT_FAIL_ENTRY: the `fail_entry` member is filled.
            let fail = unsafe { run.__bindgen_anon_1.fail_entry };
            Ok(VcpuExit::FailEntry {
                hardware_reason: fail.hardware_entry_failure_reason,
                cpu: fail.cpu,
            })
        }
        KVM_EXIT_MEMORY_FAULT => {
            // SAFETY: exit_reason is KVM_EXIT_MEMORY_FAULT: the `memory_fault` member is filled.
            let fault = unsafe { run.__bindgen_anon_1.memory_fault };
            Ok(VcpuExit::MemoryFault {
                gpa: fault.gpa,
                size: fault.size,
                flags: fault.flags,
            })
        }
        KVM_EXIT_RISCV_SBI => {
            // SAFETY: exit_reason is KVM_EXIT_RISCV_SBI: the `riscv_sbi` member is filled.
            let sbi = unsafe { &mut run.__bindgen_anon_1.riscv_sbi };
            let args = sbi.args;
            Ok(VcpuExit::RiscvSbi(RiscvSbiCall {
                extension: sbi.extension_id,
                function: sbi.function_id,
                args,
                ret: sbi_ret(&mut sbi.ret),
            }))
        }
        KVM_EXIT_INTERNAL_ERROR => Ok(VcpuExit::InternalError(InternalErrorData::read(run).bare())),
        KVM_EXIT_DEBUG => Ok(match super::arch::debug_exit(run) {
            Some((pc, stop)) => VcpuExit::Debug { pc, stop },
            None => VcpuExit::Other {
                name: exit_name(reason),
                code: reason,
            },
        }),
        code => Ok(VcpuExit::Other {
            name: exit_name(code),
            code,
        }),
    }
}

/// `c_ulong` is `u64` on every 64-bit Linux target this backend builds for.
fn sbi_ret(ret: &mut [libc::c_ulong; 2]) -> &mut [u64; 2] {
    ret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_has_a_name() {
        for code in 0..=KVM_EXIT_MEMORY_FAULT {
            assert_ne!(exit_name(code), "unknown KVM exit code", "code {code}");
        }
        assert_eq!(exit_name(1000), "unknown KVM exit code");
    }

    #[test]
    fn malformed_io_offset_is_an_error_not_a_slice() {
        // SAFETY: kvm_run is plain old data; all-zero is a valid value.
        let mut run: kvm_run = unsafe { std::mem::zeroed() };
        run.exit_reason = KVM_EXIT_IO;
        run.__bindgen_anon_1.io.size = 4;
        run.__bindgen_anon_1.io.count = 1;
        run.__bindgen_anon_1.io.data_offset = 1 << 40;
        let err = decode(&mut run, std::mem::size_of::<kvm_run>()).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[test]
    fn mmio_write_borrows_the_run_data() {
        // SAFETY: kvm_run is plain old data; all-zero is a valid value.
        let mut run: kvm_run = unsafe { std::mem::zeroed() };
        run.exit_reason = KVM_EXIT_MMIO;
        run.__bindgen_anon_1.mmio.phys_addr = 0xd000_0000;
        run.__bindgen_anon_1.mmio.len = 4;
        run.__bindgen_anon_1.mmio.is_write = 1;
        run.__bindgen_anon_1.mmio.data = [1, 2, 3, 4, 0, 0, 0, 0];
        match decode(&mut run, std::mem::size_of::<kvm_run>()).unwrap() {
            VcpuExit::MmioWrite { addr, data } => {
                assert_eq!(addr, 0xd000_0000);
                assert_eq!(data, &[1, 2, 3, 4]);
            }
            other => panic!("unexpected {other:?}"),
        }
        run.__bindgen_anon_1.mmio.len = 9;
        assert!(decode(&mut run, std::mem::size_of::<kvm_run>()).is_err());
    }
}
