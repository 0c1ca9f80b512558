//! Turns vCPU exits into device-bus accesses and lifecycle decisions: the
//! [`ExitHandler`] every VM built by [`crate::Vmm`] uses.

use std::sync::Arc;

use vm_accel::{SystemEvent, VcpuExit, VcpuId};
use vm_device::interrupt::CountingInterrupt;
use vm_device::Bus;

use crate::executor::{ExitAction, ExitHandler, StopReason};

/// Dispatches port I/O to the PIO bus and MMIO to the MMIO bus.
///
/// Accesses no device claims behave like an open bus: reads return all ones,
/// writes are dropped. Guests probe absent hardware all the time (Linux pokes
/// legacy ports during boot), so this is traced, not an error.
#[derive(Debug)]
pub struct DeviceExits {
    pio: Bus,
    mmio: Bus,
    /// Fired by the i8042 when the guest pulses the reset line.
    reset: Arc<CountingInterrupt>,
    /// Fired by the ACPI sleep control register when the guest enters S5.
    poweroff: Arc<CountingInterrupt>,
}

impl DeviceExits {
    /// A handler over these buses; `reset` is the i8042's reset line,
    /// `poweroff` the ACPI power-off request.
    pub fn new(
        pio: Bus,
        mmio: Bus,
        reset: Arc<CountingInterrupt>,
        poweroff: Arc<CountingInterrupt>,
    ) -> Self {
        Self {
            pio,
            mmio,
            reset,
            poweroff,
        }
    }

    fn after_write(&self) -> ExitAction {
        if self.poweroff.take() > 0 {
            ExitAction::Stop(StopReason::GuestShutdown)
        } else if self.reset.take() > 0 {
            ExitAction::Stop(StopReason::GuestReset)
        } else {
            ExitAction::Continue
        }
    }
}

impl ExitHandler for DeviceExits {
    fn handle(&self, vcpu: VcpuId, exit: VcpuExit<'_>) -> ExitAction {
        match exit {
            VcpuExit::IoIn { port, data } => {
                if self.pio.read(u64::from(port), data).is_err() {
                    tracing::trace!(vcpu = vcpu.0, port, "read from an unclaimed port");
                    data.fill(0xff);
                }
                ExitAction::Continue
            }
            VcpuExit::IoOut { port, data } => {
                if self.pio.write(u64::from(port), data).is_err() {
                    tracing::trace!(vcpu = vcpu.0, port, "write to an unclaimed port");
                }
                self.after_write()
            }
            VcpuExit::MmioRead { addr, data } => {
                if self.mmio.read(addr, data).is_err() {
                    tracing::debug!(vcpu = vcpu.0, addr, "read from unclaimed MMIO");
                    data.fill(0xff);
                }
                ExitAction::Continue
            }
            VcpuExit::MmioWrite { addr, data } => {
                if self.mmio.write(addr, data).is_err() {
                    tracing::debug!(vcpu = vcpu.0, addr, "write to unclaimed MMIO");
                }
                self.after_write()
            }
            VcpuExit::Interrupted | VcpuExit::IoapicEoi { .. } => ExitAction::Continue,
            VcpuExit::Halt => ExitAction::Park,
            VcpuExit::Shutdown => ExitAction::Stop(StopReason::TripleFault { vcpu }),
            VcpuExit::SystemEvent(event) => match event {
                SystemEvent::Shutdown => ExitAction::Stop(StopReason::GuestShutdown),
                SystemEvent::Reset => ExitAction::Stop(StopReason::GuestReset),
                SystemEvent::Crash => ExitAction::Stop(StopReason::Failed {
                    vcpu: Some(vcpu),
                    message: "the guest reported a crash".into(),
                }),
                other => {
                    tracing::debug!(vcpu = vcpu.0, ?other, "system event ignored");
                    ExitAction::Continue
                }
            },
            VcpuExit::InternalError(error) => ExitAction::Stop(StopReason::Failed {
                vcpu: Some(vcpu),
                message: error.to_string(),
            }),
            other => ExitAction::Stop(StopReason::Failed {
                vcpu: Some(vcpu),
                message: format!("unhandled exit: {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> DeviceExits {
        let (reset, poweroff) = (
            Arc::new(CountingInterrupt::new()),
            Arc::new(CountingInterrupt::new()),
        );
        let mut pio = Bus::new();
        vm_device::legacy::insert_pc_devices(&mut pio, reset.clone(), poweroff.clone()).unwrap();
        DeviceExits::new(pio, Bus::new(), reset, poweroff)
    }

    #[test]
    fn unclaimed_reads_float_high() {
        let h = handler();
        let mut data = [0u8; 4];
        let action = h.handle(
            VcpuId(0),
            VcpuExit::MmioRead {
                addr: 0xd000_0000,
                data: &mut data,
            },
        );
        assert_eq!(action, ExitAction::Continue);
        assert_eq!(data, [0xff; 4]);
        let mut port = [0u8; 1];
        h.handle(
            VcpuId(0),
            VcpuExit::IoIn {
                port: 0x80,
                data: &mut port,
            },
        );
        assert_eq!(port, [0xff]);
    }

    #[test]
    fn i8042_reset_stops_the_vm() {
        let h = handler();
        assert_eq!(
            h.handle(
                VcpuId(0),
                VcpuExit::IoOut {
                    port: 0x64,
                    data: &[0x01]
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(
            h.handle(
                VcpuId(0),
                VcpuExit::IoOut {
                    port: 0x64,
                    data: &[0xfe]
                }
            ),
            ExitAction::Stop(StopReason::GuestReset)
        );
    }

    #[test]
    fn acpi_s5_stops_the_vm_as_a_shutdown() {
        let h = handler();
        assert_eq!(
            h.handle(
                VcpuId(0),
                VcpuExit::IoOut {
                    port: 0x600,
                    data: &[0x34]
                }
            ),
            ExitAction::Stop(StopReason::GuestShutdown)
        );
    }

    #[test]
    fn triple_fault_and_power_events() {
        let h = handler();
        assert_eq!(
            h.handle(VcpuId(1), VcpuExit::Shutdown),
            ExitAction::Stop(StopReason::TripleFault { vcpu: VcpuId(1) })
        );
        assert_eq!(
            h.handle(VcpuId(0), VcpuExit::SystemEvent(SystemEvent::Shutdown)),
            ExitAction::Stop(StopReason::GuestShutdown)
        );
        assert_eq!(h.handle(VcpuId(0), VcpuExit::Halt), ExitAction::Park);
    }
}
