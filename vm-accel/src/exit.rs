//! Why a vCPU stopped running: the small enum every engine (hardware
//! backends and the software interpreters) returns from [`Vcpu::run`].
//!
//! Data of I/O and MMIO exits borrows from the vCPU (zero copy, like
//! `kvm-ioctls`): for `IoIn`/`MmioRead` the VMM fills `data` in and the access
//! completes on the next `run()`.
//!
//! [`Vcpu::run`]: crate::Vcpu::run

use std::fmt;

/// The `tracing` target of the per-exit events engines emit at TRACE level
/// (`vcpu`, guest `pc`, `exit` reason): `--log-level vm_exit=trace` turns
/// them on; off, each costs one check of the global level filter.
pub const EXIT_TRACE_TARGET: &str = "vm_exit";

/// The reason [`Vcpu::run`](crate::Vcpu::run) returned.
#[derive(Debug)]
#[non_exhaustive]
pub enum VcpuExit<'a> {
    /// The guest read from an I/O port; fill `data` before the next `run()`.
    IoIn {
        /// The port.
        port: u16,
        /// Where the value read goes (1, 2 or 4 bytes, times a `rep` count).
        data: &'a mut [u8],
    },
    /// The guest wrote `data` to an I/O port.
    IoOut {
        /// The port.
        port: u16,
        /// The bytes written.
        data: &'a [u8],
    },
    /// The guest read from an address no memory region backs; fill `data`.
    MmioRead {
        /// Guest physical address.
        addr: u64,
        /// Where the value read goes.
        data: &'a mut [u8],
    },
    /// The guest wrote `data` to an address no memory region backs.
    MmioWrite {
        /// Guest physical address.
        addr: u64,
        /// The bytes written.
        data: &'a [u8],
    },
    /// The vCPU executed `hlt`/`wfi` and no interrupt is pending for it.
    Halt,
    /// The vCPU shut down (x86 triple fault or shutdown cycle).
    Shutdown,
    /// The guest asked the platform for a power event (PSCI, SBI SRST, ...).
    SystemEvent(SystemEvent),
    /// Another thread kicked the vCPU out of `run()` (see [`KickHandle`](crate::KickHandle)),
    /// or a signal interrupted it. Nothing to complete; call `run()` again to resume.
    Interrupted,
    /// The in-kernel IOAPIC saw an EOI for a level-triggered vector (split irqchip only).
    IoapicEoi {
        /// The vector acknowledged.
        vector: u8,
    },
    /// A riscv64 SBI call the in-kernel SBI does not implement.
    RiscvSbi(RiscvSbiCall<'a>),
    /// The hypervisor could not run or emulate the guest; see [`InternalError`].
    InternalError(InternalError),
    /// Entering the guest failed in hardware.
    FailEntry {
        /// Hardware-specific failure reason.
        hardware_reason: u64,
        /// Host CPU the entry was attempted on.
        cpu: u32,
    },
    /// A guest access hit memory the backend could not resolve.
    MemoryFault {
        /// Guest physical address.
        gpa: u64,
        /// Size of the access or range.
        size: u64,
        /// Backend flags (e.g. private-memory conversion requests).
        flags: u64,
    },
    /// The vCPU stopped for its debugger (see [`Vcpu::set_guest_debug`](crate::Vcpu::set_guest_debug)):
    /// a breakpoint was reached, a single step completed or a watchpoint was hit.
    Debug {
        /// Guest-virtual address of the next instruction.
        pc: u64,
        /// What stopped it.
        stop: crate::debug::DebugStop,
    },
    /// An exit this crate recognises but the VMM normally never sees, named.
    Other {
        /// The backend's name for the exit, e.g. `KVM_EXIT_DEBUG`.
        name: &'static str,
        /// The backend's numeric code.
        code: u32,
    },
}

/// A power event requested by the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    /// Power off.
    Shutdown,
    /// Reboot.
    Reset,
    /// The guest declared itself crashed (panic notifier).
    Crash,
    /// Wake-up from a suspended state.
    Wakeup,
    /// Suspend to RAM.
    Suspend,
    /// A backend-specific event type.
    Other(u32),
}

/// An SBI call forwarded to the VMM (`ecall` from S-mode, riscv64).
#[derive(Debug)]
pub struct RiscvSbiCall<'a> {
    /// SBI extension id (a7).
    pub extension: u64,
    /// SBI function id (a6).
    pub function: u64,
    /// Arguments a0..a5.
    pub args: [u64; 6],
    /// Return values (a0 = error, a1 = value) the VMM sets before the next `run()`.
    pub ret: &'a mut [u64; 2],
}

/// What kind of internal error the hypervisor reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalErrorKind {
    /// The hypervisor's instruction emulator failed on the instruction at RIP.
    Emulation,
    /// An exception was raised while delivering another one.
    SimultaneousException,
    /// An event could not be delivered (e.g. the IDT is bad).
    DeliveryEvent,
    /// The hardware exited for a reason the hypervisor does not handle.
    UnexpectedExitReason,
    /// Any other sub-error code.
    Other(u32),
}

impl fmt::Display for InternalErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Emulation => f.write_str("instruction emulation failed"),
            Self::SimultaneousException => f.write_str("simultaneous exceptions"),
            Self::DeliveryEvent => f.write_str("event delivery failed"),
            Self::UnexpectedExitReason => f.write_str("unexpected hardware exit reason"),
            Self::Other(code) => write!(f, "sub-error {code}"),
        }
    }
}

/// Bytes of the guest instruction the hypervisor stopped at (at most 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InstructionBytes {
    bytes: [u8; 15],
    len: u8,
}

impl InstructionBytes {
    /// Up to 15 bytes; longer input is cut to 15.
    pub fn new(bytes: &[u8]) -> Self {
        let len = bytes.len().min(15);
        let mut out = [0u8; 15];
        out[..len].copy_from_slice(&bytes[..len]);
        Self {
            bytes: out,
            len: len as u8,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for InstructionBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A decoded hypervisor internal error: what failed and what the guest was executing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError {
    /// The kind of failure.
    pub kind: InternalErrorKind,
    /// Backend-specific words that came with it.
    pub data: Vec<u64>,
    /// Guest instruction pointer, when the registers could be read.
    pub pc: Option<u64>,
    /// Guest physical address of the instruction, when it could be translated.
    pub pc_phys: Option<u64>,
    /// The instruction bytes at `pc`, when guest memory could be read there.
    pub instruction: Option<InstructionBytes>,
    /// What the backend made of the instruction (e.g. why its userspace
    /// fallback could not emulate it), when it looked.
    pub detail: Option<String>,
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hypervisor internal error: {}", self.kind)?;
        match self.pc {
            Some(pc) => write!(f, " at pc {pc:#x}")?,
            None => f.write_str(" (pc unreadable)")?,
        }
        if let Some(phys) = self.pc_phys {
            write!(f, " (phys {phys:#x})")?;
        }
        match &self.instruction {
            Some(bytes) => write!(f, ", instruction bytes [{bytes}]")?,
            None => f.write_str(", instruction bytes unreadable")?,
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if !self.data.is_empty() {
            f.write_str(", data [")?;
            for (i, word) in self.data.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{word:#x}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_bytes_cut_to_fifteen_and_print_hex() {
        let bytes = InstructionBytes::new(&[0xAB; 20]);
        assert_eq!(bytes.as_slice().len(), 15);
        let short = InstructionBytes::new(&[0x0f, 0xae, 0x54]);
        assert_eq!(short.to_string(), "0f ae 54");
    }

    #[test]
    fn internal_error_names_kind_pc_and_bytes() {
        let err = InternalError {
            kind: InternalErrorKind::Emulation,
            data: vec![0x10],
            pc: Some(0x1000),
            pc_phys: Some(0x2000),
            instruction: Some(InstructionBytes::new(&[0xcc])),
            detail: None,
        };
        let text = err.to_string();
        assert!(text.contains("emulation failed"), "{text}");
        assert!(text.contains("pc 0x1000"), "{text}");
        assert!(text.contains("phys 0x2000"), "{text}");
        assert!(text.contains("[cc]"), "{text}");
        assert!(text.contains("0x10"), "{text}");
    }
}
