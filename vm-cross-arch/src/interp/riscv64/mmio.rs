//! Accesses to physical addresses outside RAM: the engine's own devices
//! (CLINT, PLIC, syscon) answer at once; anything else leaves `run` as an
//! MMIO exit for the VMM.

use vm_accel::SystemEvent;
use vm_device::riscv::{Syscon, SysconEvent};

use super::hart::{Hart, HartExit};
use super::trap::{Exc, CAUSE_LOAD_ACCESS, CAUSE_STORE_ACCESS};

impl Hart {
    /// Loads from a non-RAM physical address: engine-internal devices answer
    /// at once; anything else becomes an `MmioRead` exit.
    pub(super) fn mmio_load(&mut self, pa: u64, size: u8, va: u64) -> Result<u64, Exc> {
        let len = 1usize << size;
        let dev = self.machine.devices;
        if let Some(off) = offset_in(pa, dev.clint) {
            let mut buf = [0u8; 8];
            self.machine.clint.read_at(off, &mut buf[..len]);
            return Ok(u64::from_le_bytes(buf));
        }
        if let Some(off) = offset_in(pa, dev.plic) {
            let mut buf = [0u8; 8];
            self.machine.plic.read_at(off, &mut buf[..len]);
            return Ok(u64::from_le_bytes(buf));
        }
        if dev.syscon.and_then(|s| offset_in(pa, s)).is_some() {
            return Ok(0);
        }
        if !is_mmio_candidate(pa) {
            return Err(Exc::trap(CAUSE_LOAD_ACCESS, va));
        }
        self.exit = Some(HartExit::MmioRead { addr: pa, len });
        Err(Exc::Exit)
    }

    /// Stores to a non-RAM physical address (see [`Hart::mmio_load`]).
    pub(super) fn mmio_store(&mut self, pa: u64, size: u8, value: u64, va: u64) -> Result<(), Exc> {
        let len = 1usize << size;
        let bytes = value.to_le_bytes();
        let dev = self.machine.devices;
        if let Some(off) = offset_in(pa, dev.clint) {
            self.machine.clint.write_at(off, &bytes[..len]);
            return Ok(());
        }
        if let Some(off) = offset_in(pa, dev.plic) {
            self.machine.plic.write_at(off, &bytes[..len]);
            return Ok(());
        }
        if let Some(off) = dev.syscon.and_then(|s| offset_in(pa, s)) {
            let event = match Syscon::decode_write(off, &bytes[..len]) {
                Some(SysconEvent::PowerOff) => SystemEvent::Shutdown,
                Some(SysconEvent::Reset) => SystemEvent::Reset,
                Some(SysconEvent::Fail(code)) => {
                    tracing::info!(hart = self.id, code, "guest powered off reporting failure");
                    SystemEvent::Crash
                }
                None => return Ok(()),
            };
            self.exit = Some(HartExit::System(event));
            self.pc = self.pc.wrapping_add(u64::from(self.cur_len));
            return Err(Exc::Exit);
        }
        if !is_mmio_candidate(pa) {
            return Err(Exc::trap(CAUSE_STORE_ACCESS, va));
        }
        self.mmio_buf = bytes;
        self.exit = Some(HartExit::MmioWrite { addr: pa, len });
        // The store is complete once the VMM has it: move on.
        self.pc = self.pc.wrapping_add(u64::from(self.cur_len));
        self.instret += 1;
        Err(Exc::Exit)
    }
}

/// `pa - base` if `pa` lies in the window.
fn offset_in(pa: u64, (base, size): (u64, u64)) -> Option<u64> {
    let off = pa.wrapping_sub(base);
    (off < size).then_some(off)
}

/// Physical addresses that may be device registers (below 2^56); anything
/// else is an access fault without asking the VMM.
fn is_mmio_candidate(pa: u64) -> bool {
    pa >> 56 == 0
}
