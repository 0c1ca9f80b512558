//! The `Vcpu` trait: run a virtual CPU and access its registers.

use crate::boot::BootState;
use crate::debug::{DebugRegister, GuestDebug, X86_64FpuRegisters};
use crate::error::AccelError;
use crate::exit::VcpuExit;
use crate::kick::KickHandle;
use crate::regs::{GuestArch, Registers, X86_64Registers, X86_64SpecialRegisters};
use crate::state::VcpuState;
use std::fmt;

pub use vm_core::VcpuId;

/// One virtual CPU, hardware-backed or interpreted. Driven by one thread at a
/// time (`Send`, not `Sync`); other threads stop it through a [`KickHandle`].
/// `Any`, so a VMM can reach the engine's own type where the trait has no
/// word for what it needs (snapshot state capture).
pub trait Vcpu: Send + fmt::Debug + std::any::Any {
    /// This vCPU's id.
    fn id(&self) -> VcpuId;

    /// Its architecture.
    fn arch(&self) -> GuestArch;

    /// Runs the guest until it needs the VMM. Data of `IoIn`/`MmioRead` exits
    /// is filled in by the caller and consumed by the next `run()`.
    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError>;

    /// A handle other threads use to force `run()` to return `Interrupted`.
    fn kick_handle(&self) -> KickHandle;

    /// Whether `run()` writes and runs host code (a translator): the thread
    /// driving it needs executable mappings (a sandbox allows them only to
    /// such threads, and never writable and executable at once).
    fn translates(&self) -> bool {
        false
    }

    /// Reads the general-purpose registers.
    fn registers(&self) -> Result<Registers, AccelError>;

    /// Writes the general-purpose registers (must match [`Vcpu::arch`]).
    fn set_registers(&mut self, regs: &Registers) -> Result<(), AccelError>;

    /// Reads the x86-64 system registers; other architectures refuse.
    fn x86_64_special_registers(&self) -> Result<X86_64SpecialRegisters, AccelError> {
        Err(AccelError::ArchMismatch {
            what: "x86_64 special registers",
            given: GuestArch::X86_64,
            vcpu: self.arch(),
        })
    }

    /// Writes the x86-64 system registers; other architectures refuse.
    fn set_x86_64_special_registers(
        &mut self,
        sregs: &X86_64SpecialRegisters,
    ) -> Result<(), AccelError> {
        let _ = sregs;
        Err(AccelError::ArchMismatch {
            what: "x86_64 special registers",
            given: GuestArch::X86_64,
            vcpu: self.arch(),
        })
    }

    /// Puts the vCPU into the state a kernel expects at entry (see [`BootState`]),
    /// writing any boot tables into guest memory the backend needs.
    fn apply_boot_state(&mut self, boot: &BootState) -> Result<(), AccelError>;

    /// Saves this vCPU's complete state. The vCPU is not running while `&mut
    /// self` is held: call it on the vCPU's thread between two `run()`s (the
    /// executor parks vCPUs there when paused). A port or MMIO read the last
    /// exit asked for is completed first, as KVM requires, so answer it before.
    /// Engines without snapshot support return [`AccelError::StateUnsupported`].
    fn save_state(&mut self) -> Result<VcpuState, AccelError> {
        Err(AccelError::StateUnsupported {
            what: "saving vCPU state",
            engine: format!("this {} vCPU's engine", self.arch()),
        })
    }

    /// Restores a state from [`Vcpu::save_state`] into this vCPU, normally a
    /// fresh one of a VM whose [`Vm::restore_state`](crate::Vm::restore_state)
    /// was called first. A state from another engine, layout version or an
    /// incompatible host gives [`AccelError::InvalidState`]; after an error the
    /// vCPU may be partly written and should be discarded.
    fn restore_state(&mut self, state: &VcpuState) -> Result<(), AccelError> {
        Err(AccelError::StateUnsupported {
            what: "restoring vCPU state",
            engine: format!(
                "this {} vCPU's engine (state from {})",
                self.arch(),
                state.engine()
            ),
        })
    }

    // Debugger support (the gdb stub). Engines without it refuse.

    /// Reads a register outside [`Registers`] (see [`DebugRegister`]).
    fn debug_register(&mut self, reg: DebugRegister) -> Result<u64, AccelError> {
        let _ = reg;
        Err(debug_unsupported(self.arch(), "reading debug registers"))
    }

    /// Writes a register outside [`Registers`].
    fn set_debug_register(&mut self, reg: DebugRegister, value: u64) -> Result<(), AccelError> {
        let _ = (reg, value);
        Err(debug_unsupported(self.arch(), "writing debug registers"))
    }

    /// Reads the x87 and SSE registers of an x86-64 vCPU.
    fn x86_64_fpu_registers(&mut self) -> Result<X86_64FpuRegisters, AccelError> {
        Err(debug_unsupported(self.arch(), "reading x87/SSE registers"))
    }

    /// Reads guest memory at a guest-virtual address, translated as the vCPU
    /// would now (an untranslated address is taken as physical); returns how
    /// many bytes could be read (0 when `addr` itself is not readable).
    fn debug_read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, AccelError> {
        let _ = (addr, buf);
        Err(debug_unsupported(self.arch(), "debugger memory reads"))
    }

    /// Writes guest memory like [`Vcpu::debug_read_memory`] reads it; returns
    /// how many bytes were written.
    fn debug_write_memory(&mut self, addr: u64, data: &[u8]) -> Result<usize, AccelError> {
        let _ = (addr, data);
        Err(debug_unsupported(self.arch(), "debugger memory writes"))
    }

    /// Sets breakpoints, watchpoints and single-step; `run()` then returns
    /// [`VcpuExit::Debug`] where the vCPU stops. An engine that cannot give
    /// what is asked (too many breakpoints, watchpoints at all) refuses the
    /// whole request and keeps the previous one.
    fn set_guest_debug(&mut self, debug: &GuestDebug) -> Result<(), AccelError> {
        let _ = debug;
        Err(debug_unsupported(self.arch(), "guest debugging"))
    }
}

/// One line saying where a stopped vCPU is: its program counter and, on
/// x86-64, the stack pointer, flags, control registers, EFER and IDT, so that
/// an unexpected stop (a triple fault) explains itself in a log. A vCPU in
/// its reset state is named as such: KVM on AMD SVM re-initialises a vCPU
/// when it shuts down, so the state at the fault itself is gone there.
pub fn state_summary(vcpu: &dyn Vcpu) -> String {
    use fmt::Write as _;
    let regs = match vcpu.registers() {
        Ok(r) => r,
        Err(e) => return format!("registers unreadable: {e}"),
    };
    let Registers::X86_64(r) = regs else {
        return format!("pc={:#x}", regs.pc());
    };
    let mut line = format!("rip={:#x} rsp={:#x} rflags={:#x}", r.rip, r.rsp, r.rflags);
    match vcpu.x86_64_special_registers() {
        Ok(s) => {
            let _ = write!(
                line,
                " cs={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} idt={:#x}/{:#x}",
                s.cs.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.idt.base, s.idt.limit
            );
            if is_x86_reset_state(&r, &s) {
                line.push_str(
                    " (the x86 reset state: the hypervisor re-initialised the vCPU, \
                     so the state at the fault is lost)",
                );
            }
        }
        Err(e) => {
            let _ = write!(line, " (system registers unreadable: {e})");
        }
    }
    line
}

/// Whether these are the registers of an x86 CPU after RESET/INIT: real
/// mode (CR0.PE and EFER clear), executing at `f000:fff0`.
fn is_x86_reset_state(r: &X86_64Registers, s: &X86_64SpecialRegisters) -> bool {
    const CR0_PE: u64 = 1;
    r.rip == 0xfff0 && s.cs.selector == 0xf000 && s.cr0 & CR0_PE == 0 && s.efer == 0
}

fn debug_unsupported(arch: GuestArch, what: &'static str) -> AccelError {
    AccelError::Unsupported {
        what,
        backend: match arch {
            GuestArch::X86_64 => "x86_64",
            GuestArch::Arm64 => "arm64",
            GuestArch::Riscv64 => "riscv64",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kick::KickFlag;
    use crate::state::{X86_64KvmVcpuState, X86_64_KVM_STATE_VERSION};
    use std::sync::Arc;

    /// A vCPU that implements only what the trait requires.
    #[derive(Debug, Default)]
    struct Minimal(Arc<KickFlag>);

    impl Vcpu for Minimal {
        fn id(&self) -> VcpuId {
            VcpuId(0)
        }
        fn arch(&self) -> GuestArch {
            GuestArch::Riscv64
        }
        fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
            Ok(VcpuExit::Interrupted)
        }
        fn kick_handle(&self) -> KickHandle {
            KickHandle::new(self.0.clone())
        }
        fn registers(&self) -> Result<Registers, AccelError> {
            Err(AccelError::Unsupported {
                what: "registers",
                backend: "test",
            })
        }
        fn set_registers(&mut self, _: &Registers) -> Result<(), AccelError> {
            Ok(())
        }
        fn apply_boot_state(&mut self, _: &BootState) -> Result<(), AccelError> {
            Ok(())
        }
    }

    /// An x86-64 vCPU stopped with these registers.
    #[derive(Debug, Default)]
    struct StoppedX86 {
        kick: Arc<KickFlag>,
        regs: X86_64Registers,
        sregs: X86_64SpecialRegisters,
    }

    impl Vcpu for StoppedX86 {
        fn id(&self) -> VcpuId {
            VcpuId(1)
        }
        fn arch(&self) -> GuestArch {
            GuestArch::X86_64
        }
        fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
            Ok(VcpuExit::Shutdown)
        }
        fn kick_handle(&self) -> KickHandle {
            KickHandle::new(self.kick.clone())
        }
        fn registers(&self) -> Result<Registers, AccelError> {
            Ok(Registers::X86_64(self.regs))
        }
        fn set_registers(&mut self, _: &Registers) -> Result<(), AccelError> {
            Ok(())
        }
        fn x86_64_special_registers(&self) -> Result<X86_64SpecialRegisters, AccelError> {
            Ok(self.sregs)
        }
        fn apply_boot_state(&mut self, _: &BootState) -> Result<(), AccelError> {
            Ok(())
        }
    }

    #[test]
    fn state_summary_names_rip_and_control_registers() {
        let mut vcpu = StoppedX86::default();
        vcpu.regs.rip = 0xffff_ffff_8100_1234;
        vcpu.regs.rsp = 0xffff_c900_0000_3f00;
        vcpu.sregs.cr0 = 0x8005_0033;
        vcpu.sregs.cr3 = 0x10_a000;
        vcpu.sregs.cr4 = 0x20_06f0;
        vcpu.sregs.efer = 0xd01;
        vcpu.sregs.idt.base = 0xffff_fe00_0000_0000;
        vcpu.sregs.idt.limit = 0xfff;
        let line = state_summary(&vcpu);
        for part in [
            "rip=0xffffffff81001234",
            "rsp=0xffffc90000003f00",
            "cr0=0x80050033",
            "cr3=0x10a000",
            "cr4=0x2006f0",
            "efer=0xd01",
            "idt=0xfffffe0000000000/0xfff",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
        assert!(!line.contains("reset state"), "{line}");

        // What KVM on AMD SVM leaves after a shutdown: an INIT-reset vCPU.
        vcpu.regs.rip = 0xfff0;
        vcpu.sregs.cs.selector = 0xf000;
        // As KVM on AMD SVM left it after a triple fault of a Linux guest.
        vcpu.sregs.cr0 = 0x10;
        vcpu.sregs.efer = 0;
        assert!(state_summary(&vcpu).contains("reset state"));

        let other = state_summary(&Minimal::default());
        assert!(other.starts_with("registers unreadable"), "{other}");
    }

    #[test]
    fn engines_without_snapshots_say_so() {
        let mut vcpu = Minimal::default();
        let e = vcpu.save_state().unwrap_err();
        assert!(matches!(e, AccelError::StateUnsupported { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "saving vCPU state is not implemented for this riscv64 vCPU's engine"
        );
        let state = VcpuState::X86_64Kvm(Box::new(X86_64KvmVcpuState {
            version: X86_64_KVM_STATE_VERSION,
            cpuid: Vec::new(),
            tsc_khz: None,
            mp_state: 0,
            regs: Vec::new(),
            sregs: Vec::new(),
            xsave: Vec::new(),
            xcrs: None,
            debug_regs: Vec::new(),
            lapic: None,
            msrs: Vec::new(),
            vcpu_events: Vec::new(),
        }));
        let e = vcpu.restore_state(&state).unwrap_err();
        assert!(e.to_string().contains("state from KVM x86_64"), "{e}");
    }
}
