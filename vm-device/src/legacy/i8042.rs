//! The i8042 keyboard controller, reduced to what a guest uses it for here:
//! writing `0xFE` to the command port (0x64) pulses the CPU reset line, which
//! we turn into a reset/shutdown request the VMM observes.

use std::sync::Arc;

use vm_superio::I8042Device;

use crate::bus::BusDevice;
use crate::interrupt::{Interrupt, SuperioTrigger};

/// Base PIO port of the i8042 data register; the command register is at +4.
pub const I8042_PORT_BASE: u64 = 0x60;
/// Length of the PIO range the i8042 occupies (0x60..=0x64).
pub const I8042_PORT_LEN: u64 = 5;

/// i8042 controller on the PIO bus; fires `reset` on the CPU-reset command.
#[derive(Debug)]
pub struct I8042 {
    inner: I8042Device<SuperioTrigger>,
}

impl I8042 {
    /// A controller that fires `reset` when the guest asks for a CPU reset.
    pub fn new(reset: Arc<dyn Interrupt>) -> Self {
        Self {
            inner: I8042Device::new(SuperioTrigger(reset)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(off), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(off), Some(&value)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if let Err(err) = self.inner.write(off, value) {
            tracing::error!(%err, "i8042: could not deliver the reset request");
        } else if off == 4 && value == 0xfe {
            tracing::info!("i8042: guest requested a CPU reset");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::interrupt::CountingInterrupt;
    use std::sync::Mutex;

    #[test]
    fn reset_command_on_port_0x64_fires_the_reset_request() {
        let reset = Arc::new(CountingInterrupt::new());
        let mut bus = Bus::new();
        bus.insert(
            Arc::new(Mutex::new(I8042::new(reset.clone()))),
            I8042_PORT_BASE,
            I8042_PORT_LEN,
        )
        .unwrap();
        bus.write(0x60, &[0xfe]).unwrap(); // data port: not a command
        bus.write(0x64, &[0xd1]).unwrap(); // another command
        assert_eq!(reset.count(), 0);
        bus.write(0x64, &[0xfe]).unwrap();
        assert_eq!(reset.count(), 1);
        let mut v = [0xffu8];
        bus.read(0x64, &mut v).unwrap();
        assert_eq!(v, [0]);
    }
}
