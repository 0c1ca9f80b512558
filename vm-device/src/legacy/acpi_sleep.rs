//! The ACPI sleep control register of a hardware-reduced ACPI platform (the
//! FADT's `SLEEP_CONTROL_REG`, which stands in for PM1 control there): the
//! guest powers off by writing `SLP_TYP` = 5 (the DSDT's `_S5`) with
//! `SLP_EN`, and we turn that into a power-off request the VMM observes.
//! Reads of the status register (the next port) say the wake status is clear.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::interrupt::Interrupt;

/// The sleep control register's port; the sleep status register follows.
pub const ACPI_SLEEP_PORT_BASE: u64 = 0x600;
/// Control and status registers, one byte each.
pub const ACPI_SLEEP_PORT_LEN: u64 = 2;
/// The `SLP_TYP` value the DSDT's `\_S5` object names (soft off).
pub const S5_SLEEP_TYPE: u8 = 5;

/// `SLP_TYP` occupies bits 2-4 of the sleep control register.
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;
/// `SLP_EN`: enter the sleep state written in `SLP_TYP`.
const SLP_EN: u8 = 1 << 5;

/// The sleep control/status registers on the PIO bus; fires `poweroff` when
/// the guest enters S5.
#[derive(Debug)]
pub struct AcpiSleepControl {
    poweroff: Arc<dyn Interrupt>,
}

impl AcpiSleepControl {
    /// Registers that fire `poweroff` when the guest enters S5.
    pub fn new(poweroff: Arc<dyn Interrupt>) -> Self {
        Self { poweroff }
    }
}

impl BusDevice for AcpiSleepControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (0, Some(&value)) = (offset, data.first()) else {
            return;
        };
        let sleep_type = value >> SLP_TYP_SHIFT & SLP_TYP_MASK;
        if value & SLP_EN == 0 {
            return;
        }
        if sleep_type == S5_SLEEP_TYPE {
            tracing::info!("ACPI: guest entered S5 (power off)");
            if let Err(err) = self.poweroff.trigger() {
                tracing::error!(%err, "ACPI: could not deliver the power-off request");
            }
        } else {
            tracing::warn!(sleep_type, "ACPI: sleep state not supported; ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::bus::Bus;
    use crate::interrupt::CountingInterrupt;

    #[test]
    fn only_slp_en_with_s5_powers_off() {
        let off = Arc::new(CountingInterrupt::new());
        let mut bus = Bus::new();
        bus.insert(
            Arc::new(Mutex::new(AcpiSleepControl::new(off.clone()))),
            ACPI_SLEEP_PORT_BASE,
            ACPI_SLEEP_PORT_LEN,
        )
        .unwrap();
        bus.write(0x600, &[S5_SLEEP_TYPE << 2]).unwrap(); // no SLP_EN
        bus.write(0x600, &[(3 << 2) | SLP_EN]).unwrap(); // S3
        bus.write(0x601, &[0xff]).unwrap(); // status register
        assert_eq!(off.count(), 0);
        // What Linux writes on a hardware-reduced platform: 0x34.
        bus.write(0x600, &[0x34]).unwrap();
        assert_eq!(off.count(), 1);
        let mut v = [0xffu8];
        bus.read(0x601, &mut v).unwrap();
        assert_eq!(v, [0]);
    }
}
