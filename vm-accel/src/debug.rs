//! What a debugger (the gdb stub in `vm-service`) asks of a vCPU beyond
//! [`Vcpu::registers`](crate::Vcpu::registers): registers outside the general
//! set, guest-virtual memory, breakpoints, watchpoints and single-step. Engines
//! that lack an operation answer
//! [`AccelError::Unsupported`](crate::AccelError::Unsupported) (the `Vcpu`
//! trait's default).

/// A register outside [`Registers`](crate::Registers), named by architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DebugRegister {
    /// riscv64 floating-point register `f0`..`f31` (raw 64-bit pattern).
    Riscv64Fpr(u8),
    /// riscv64 CSR by number (`fflags` = 0x001, `sstatus` = 0x100, ...).
    Riscv64Csr(u16),
}

/// The x87 and SSE registers of an x86-64 vCPU, as `FXSAVE` lays them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X86_64FpuRegisters {
    /// `st0`..`st7`, 80 bits each.
    pub st: [[u8; 10]; 8],
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// x87 tag word, abridged (`FXSAVE`): bit `i` set when register `i` is in use.
    pub ftw: u8,
    /// Opcode of the last x87 instruction.
    pub fop: u16,
    /// Address of the last x87 instruction.
    pub fip: u64,
    /// Address of the last x87 operand.
    pub fdp: u64,
    /// `xmm0`..`xmm15`.
    pub xmm: [u128; 16],
    /// SSE control and status.
    pub mxcsr: u32,
}

/// The accesses a watchpoint stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// Stores.
    Write,
    /// Loads.
    Read,
    /// Loads and stores.
    Access,
}

/// Stop when the guest accesses `[addr, addr + len)` (guest-virtual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchpoint {
    /// First byte watched.
    pub addr: u64,
    /// Bytes watched (at least one).
    pub len: u64,
    /// Which accesses stop the vCPU.
    pub kind: WatchKind,
}

impl Watchpoint {
    /// True when an access of `kind` to `[addr, addr + len)` touches this watchpoint.
    pub fn hit(&self, addr: u64, len: u64, write: bool) -> bool {
        let kind_matches = match self.kind {
            WatchKind::Write => write,
            WatchKind::Read => !write,
            WatchKind::Access => true,
        };
        // Last bytes, inclusive: a range may end at the top of the address space.
        let last = |start: u64, len: u64| start.saturating_add(len.max(1) - 1);
        kind_matches && addr <= last(self.addr, self.len) && self.addr <= last(addr, len)
    }
}

/// How a vCPU should run under a debugger (applied until changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Stop before executing an instruction at any of these guest-virtual
    /// addresses (software and hardware breakpoints alike).
    pub breakpoints: Vec<u64>,
    /// Stop after an instruction that accessed one of these.
    pub watchpoints: Vec<Watchpoint>,
    /// Stop after one instruction (or after entering a trap handler).
    pub single_step: bool,
}

impl GuestDebug {
    /// True when the vCPU runs as if no debugger were attached.
    pub fn is_off(&self) -> bool {
        self.breakpoints.is_empty() && self.watchpoints.is_empty() && !self.single_step
    }
}

/// Why a vCPU stopped for its debugger ([`VcpuExit::Debug`](crate::VcpuExit::Debug)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DebugStop {
    /// A breakpoint or single-step: the next instruction is at the stop's PC.
    #[default]
    Break,
    /// An access touched a watchpoint; the instruction has completed.
    Watch {
        /// The watchpoint's first byte (as set).
        addr: u64,
        /// The watchpoint's kind.
        kind: WatchKind,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchpoints_match_overlapping_accesses_of_their_kind() {
        let w = Watchpoint {
            addr: 0x1000,
            len: 8,
            kind: WatchKind::Write,
        };
        assert!(w.hit(0x1000, 8, true));
        assert!(w.hit(0x1007, 1, true));
        assert!(w.hit(0xffc, 8, true));
        assert!(!w.hit(0x1008, 8, true));
        assert!(!w.hit(0xff8, 8, true));
        assert!(!w.hit(0x1000, 8, false));
        let r = Watchpoint {
            kind: WatchKind::Read,
            ..w
        };
        assert!(r.hit(0x1004, 4, false) && !r.hit(0x1004, 4, true));
        let a = Watchpoint {
            kind: WatchKind::Access,
            addr: u64::MAX - 1,
            ..w
        };
        assert!(a.hit(u64::MAX, 1, false) && a.hit(u64::MAX - 8, 16, true));
    }
}
