//! Zicbom and Zicboz: cache-block management on a 64-byte block.
//!
//! Guest RAM is coherent host memory, so `cbo.clean`, `cbo.flush` and
//! `cbo.inval` only perform their enable and permission checks; `cbo.zero`
//! writes zeros through the MMU like eight stores. The Zicbop prefetches
//! are `ori x0, ...` encodings and execute as the no-ops they are.

use crate::interp::riscv64::csr::envcfg;
use crate::interp::riscv64::decode::Cbo;
use crate::interp::riscv64::hart::{Hart, MODE_M, MODE_U};
use crate::interp::riscv64::mmu::{READ, WRITE};
use crate::interp::riscv64::trap::{
    Exc, CAUSE_ILLEGAL, CAUSE_LOAD_ACCESS, CAUSE_LOAD_PAGE, CAUSE_STORE_ACCESS, CAUSE_STORE_PAGE,
};

/// Cache-block size advertised in the device tree (`riscv,cbo*-block-size`).
pub const BLOCK: u64 = 64;

impl Hart {
    /// Whether the `xenvcfg` fields selected by `mask` let the current mode
    /// run the operation (M-mode always may).
    fn cbo_enabled(&self, mask: u64) -> bool {
        match self.mode {
            MODE_M => true,
            MODE_U => self.csr.menvcfg & mask != 0 && self.csr.senvcfg & mask != 0,
            _ => self.csr.menvcfg & mask != 0,
        }
    }

    pub(in crate::interp::riscv64) fn exec_cbo(&mut self, cbo: Cbo, va: u64) -> Result<(), Exc> {
        let mask = match cbo {
            Cbo::Zero => envcfg::CBZE,
            Cbo::Clean | Cbo::Flush => envcfg::CBCFE,
            Cbo::Inval => envcfg::CBIE,
        };
        if !self.cbo_enabled(mask) {
            return Err(Exc::trap(CAUSE_ILLEGAL, u64::from(self.cur_bits)));
        }
        let base = va & !(BLOCK - 1);
        // Faults report the effective address (rs1), as store faults.
        let as_store = |e: Exc| match e {
            Exc::Trap { cause, .. } => Exc::trap(
                match cause {
                    CAUSE_LOAD_PAGE | CAUSE_STORE_PAGE => CAUSE_STORE_PAGE,
                    CAUSE_LOAD_ACCESS => CAUSE_STORE_ACCESS,
                    c => c,
                },
                va,
            ),
            other => other,
        };
        let mode = self.data_mode();
        if cbo == Cbo::Zero {
            // Only RAM has cache blocks: a block elsewhere (MMIO) faults
            // before any byte is written.
            let pa = self.translate(base, WRITE, mode).map_err(as_store)?;
            if self.ram.host(pa, BLOCK).is_none() {
                return Err(Exc::trap(CAUSE_STORE_ACCESS, va));
            }
            for off in (0..BLOCK).step_by(8) {
                self.store(base + off, 3, 0).map_err(as_store)?;
            }
            return Ok(());
        }
        // Management ops need load or store permission; a writable page is
        // always readable, so the read check decides.
        let pa = self.translate(base, READ, mode).map_err(as_store)?;
        if self.ram.host(pa, BLOCK).is_none() {
            return Err(Exc::trap(CAUSE_STORE_ACCESS, va));
        }
        Ok(())
    }
}
