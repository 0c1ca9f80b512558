//! Snapshot state of the interpreter: everything a hart needs to go on in
//! another process ([`HartState`]: integer and FP registers, pc, privilege
//! mode, the CSR file, counters, the LR/SC reservation, the built-in SBI's
//! timer, an MMIO load in flight, the SBI HSM state and pending IPIs) and what
//! the harts of one VM share ([`MachineState`]: the CLINT and PLIC).
//!
//! Caches (the TLB, the pre-decoded instruction cache) are not state: they
//! are flushed on restore and refill from guest memory. Restore refuses what
//! the hart itself could never have produced (a privilege mode that does not
//! exist, CSR bits its write rules keep clear, an MMIO load into a register
//! that does not exist), so a hostile snapshot cannot steer the interpreter
//! outside its tables. The reservation is stored as a guest physical address;
//! one that no longer lies in RAM is dropped (the next SC fails, which the
//! architecture allows at any time).

use std::sync::atomic::Ordering;

use vm_device::riscv::clint::ClintState;
use vm_device::riscv::plic::PlicState;
use vm_device::state::StateError;

pub use vm_accel::state::riscv64::{HartState, MmioLoadState};

use super::csr::{
    envcfg, irq, legal_tvec, mstatus, valid_mode, Csrs, COUNTINHIBIT_MASK, MEDELEG_MASK,
};
use super::hart::{Hart, MmioDest};
use super::machine::{hsm, Machine};
use super::memory::HostPtr;
use super::vcpu::RiscvVcpu;

/// Longest console backlog a restored hart accepts (bytes the SBI console had
/// not yet handed to the UART).
const MAX_CONSOLE_BACKLOG: usize = 1 << 20;
/// Most PMP address registers a hart has.
const PMP_ADDRS: usize = 64;

/// What the harts of one VM share, in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MachineState {
    /// The CLINT.
    pub clint: ClintState,
    /// The PLIC.
    pub plic: PlicState,
}

fn invalid(reason: String) -> StateError {
    StateError::Invalid {
        device: "riscv64 hart",
        reason,
    }
}

/// The CSR file as the hart's own write rules would have left it: a restored
/// file must equal this, or it holds bits no guest could have set.
fn legal_csrs(c: &Csrs) -> Csrs {
    let mut l = c.clone();
    l.mstatus &= mstatus::M_WRITABLE;
    if (l.mstatus & mstatus::MPP) >> mstatus::MPP_SHIFT == 2 {
        l.mstatus &= !mstatus::MPP;
    }
    l.medeleg &= MEDELEG_MASK;
    l.mideleg &= irq::S_ALL;
    l.mie &= irq::ALL;
    l.mip &= irq::S_ALL;
    l.mtvec = legal_tvec(l.mtvec);
    l.stvec = legal_tvec(l.stvec);
    l.mcounteren &= 0xffff_ffff;
    l.scounteren &= 0xffff_ffff;
    l.mepc &= !1;
    l.sepc &= !1;
    l.menvcfg = envcfg::legal(l.menvcfg, envcfg::M_WRITABLE);
    l.senvcfg = envcfg::legal(l.senvcfg, envcfg::S_WRITABLE);
    l.mcountinhibit &= COUNTINHIBIT_MASK;
    l.fflags &= 0x1f;
    l.frm &= 7;
    let satp_mode = l.satp >> 60;
    if satp_mode != 0 && satp_mode != 8 {
        l.satp = 0;
    }
    l.satp &= !(0xffff << 44);
    for a in &mut l.pmpaddr {
        *a &= (1 << 54) - 1;
    }
    l
}

impl Hart {
    /// The hart's state (take it while the hart is not running).
    pub fn state(&self) -> HartState {
        let s = &self.signal;
        HartState {
            id: self.id,
            x: self.x,
            f: self.f,
            pc: self.pc,
            mode: self.mode,
            csr: self.csr.clone(),
            instret: self.instret,
            reservation: self
                .reservation
                .and_then(|(host, value)| self.ram.guest_addr(host).map(|pa| (pa, value))),
            sbi: self.sbi,
            sbi_timecmp: self.sbi_timecmp,
            mmio_buf: self.mmio_buf,
            mmio_load: self.mmio_dest.map(|d| MmioLoadState {
                rd: d.rd,
                size: d.size,
                unsigned: d.unsigned,
                fp: d.fp,
                len: d.len,
            }),
            console: self.console.iter().copied().collect(),
            tohost: self.tohost,
            waiting: self.waiting,
            ipi: s.ipi.load(Ordering::Acquire),
            requests: s.requests.load(Ordering::Acquire),
            hsm: s.hsm.load(Ordering::Acquire),
            start_addr: s.start_addr.load(Ordering::Acquire),
            start_arg: s.start_arg.load(Ordering::Acquire),
        }
    }

    /// Checks `state` and, only if all of it is acceptable, makes it this
    /// hart's state. Caches are flushed; guest memory must already hold the
    /// snapshot's contents.
    pub fn restore(&mut self, state: &HartState) -> Result<(), StateError> {
        if state.id != self.id {
            return Err(invalid(format!(
                "the state is hart {}'s, this is hart {}",
                state.id, self.id
            )));
        }
        if !valid_mode(state.mode) {
            return Err(invalid(format!(
                "privilege mode {} does not exist",
                state.mode
            )));
        }
        if state.csr.pmpaddr.len() > PMP_ADDRS {
            return Err(invalid(format!(
                "{} PMP address registers (at most {PMP_ADDRS})",
                state.csr.pmpaddr.len()
            )));
        }
        let legal = legal_csrs(&state.csr);
        if legal != state.csr {
            return Err(invalid(
                "the CSR file holds values the hart's write rules cannot produce".into(),
            ));
        }
        if let Some(d) = state.mmio_load {
            if d.rd >= 32 || !matches!(d.size, 1 | 2 | 4 | 8) || d.len == 0 || d.len > 8 {
                return Err(invalid(format!("impossible MMIO load in flight: {d:?}")));
            }
        }
        if state.console.len() > MAX_CONSOLE_BACKLOG {
            return Err(invalid(format!(
                "{} console bytes pending (at most {MAX_CONSOLE_BACKLOG})",
                state.console.len()
            )));
        }
        if !matches!(state.hsm, hsm::STARTED | hsm::STOPPED | hsm::START_PENDING) {
            return Err(invalid(format!(
                "SBI HSM state {} does not exist",
                state.hsm
            )));
        }
        self.refresh_ram();
        let reservation = state
            .reservation
            .and_then(|(pa, value)| self.ram.host(pa, 8).map(|h: HostPtr| (h.addr(), value)));
        self.x = state.x;
        self.x[0] = 0;
        self.f = state.f;
        self.pc = state.pc;
        self.mode = state.mode;
        self.csr = state.csr.clone();
        self.instret = state.instret;
        self.reservation = reservation;
        self.sbi = state.sbi;
        self.sbi_timecmp = state.sbi_timecmp;
        self.mmio_buf = state.mmio_buf;
        self.mmio_dest = state.mmio_load.map(|d| MmioDest {
            rd: d.rd,
            size: d.size,
            unsigned: d.unsigned,
            fp: d.fp,
            len: d.len,
        });
        self.console = state.console.iter().copied().collect();
        self.tohost = state.tohost;
        self.waiting = state.waiting;
        self.exit = None;
        let s = &self.signal;
        s.ipi.store(state.ipi & irq::ALL, Ordering::Release);
        s.requests.store(state.requests, Ordering::Release);
        s.hsm.store(state.hsm, Ordering::Release);
        s.start_addr.store(state.start_addr, Ordering::Release);
        s.start_arg.store(state.start_arg, Ordering::Release);
        self.tlb.flush();
        self.fetch_invalidate();
        Ok(())
    }
}

impl Machine {
    /// The CLINT's and PLIC's state.
    pub fn state(&self) -> MachineState {
        MachineState {
            clint: self.clint.state(),
            plic: self.plic.state(),
        }
    }

    /// Restores the CLINT and PLIC (each checks its own shape first).
    pub fn restore(&self, state: &MachineState) -> Result<(), StateError> {
        // Check both before changing either.
        let probe_plic = vm_device::riscv::Plic::new(
            self.plic.sources(),
            self.harts.0.len() as u32,
            std::sync::Arc::new(vm_device::riscv::NoWaker),
        );
        probe_plic.restore(&state.plic)?;
        self.clint.restore(&state.clint)?;
        self.plic.restore(&state.plic)
    }
}

impl RiscvVcpu {
    /// The hart's state.
    pub fn state(&self) -> HartState {
        self.hart().state()
    }

    /// Restores the hart (see [`Hart::restore`]).
    pub fn restore(&mut self, state: &HartState) -> Result<(), StateError> {
        self.hart_mut().restore(state)
    }

    /// The state all harts of this VM share.
    pub fn machine(&self) -> &std::sync::Arc<Machine> {
        &self.hart().machine
    }
}
