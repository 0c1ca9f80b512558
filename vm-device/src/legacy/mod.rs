//! Legacy PC devices: the 8250/16550 UART, the i8042 controller's reset
//! line, the CMOS real-time clock and the ACPI sleep control register.

pub mod acpi_sleep;
pub mod cmos_rtc;
pub mod i8042;
pub mod serial;

use std::sync::{Arc, Mutex};

pub use acpi_sleep::AcpiSleepControl;
pub use cmos_rtc::CmosRtc;
pub use i8042::I8042;
pub use serial::Serial;

use crate::bus::{Bus, BusError};
use crate::interrupt::Interrupt;

/// Puts the PC platform devices an x86_64 guest expects at their fixed ports
/// on `pio`: the i8042 (fires `reset` on the CPU-reset command), the CMOS
/// RTC and the ACPI sleep control register (fires `poweroff` on S5). The
/// ACPI tables describe the same ports. Returns the RTC, the one of them
/// with state a snapshot keeps.
pub fn insert_pc_devices(
    pio: &mut Bus,
    reset: Arc<dyn Interrupt>,
    poweroff: Arc<dyn Interrupt>,
) -> Result<Arc<Mutex<CmosRtc>>, BusError> {
    pio.insert(
        Arc::new(Mutex::new(I8042::new(reset))),
        i8042::I8042_PORT_BASE,
        i8042::I8042_PORT_LEN,
    )?;
    let rtc = Arc::new(Mutex::new(CmosRtc::new()));
    pio.insert(
        rtc.clone(),
        cmos_rtc::CMOS_PORT_BASE,
        cmos_rtc::CMOS_PORT_LEN,
    )?;
    pio.insert(
        Arc::new(Mutex::new(AcpiSleepControl::new(poweroff))),
        acpi_sleep::ACPI_SLEEP_PORT_BASE,
        acpi_sleep::ACPI_SLEEP_PORT_LEN,
    )?;
    Ok(rtc)
}
