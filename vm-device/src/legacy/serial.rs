//! 8250/16550 UART on the PIO bus, built on `vm_superio::Serial`.
//!
//! Output goes to any `Write` (stdout, a file, a [`CaptureBuffer`] in tests);
//! input is queued with [`Serial::enqueue_input`], or forwarded from any
//! `Read` (stdin for an interactive console) by [`spawn_input_forwarder`].

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use vm_superio::serial::NoEvents;

use crate::bus::BusDevice;
use crate::interrupt::{Interrupt, SuperioTrigger};

/// Base PIO port of COM1.
pub const COM1_PORT_BASE: u64 = 0x3f8;
/// Number of registers (PIO ports) of an 8250.
pub const SERIAL_PORT_LEN: u64 = 8;

/// Errors from feeding input to the UART.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The interrupt for received data could not be delivered.
    #[error("serial: could not raise the receive interrupt: {0}")]
    Interrupt(io::Error),
    /// The writer or the interrupt failed in another way.
    #[error("serial: {0}")]
    Io(io::Error),
}

/// An 8250 UART: guest writes to THR reach `out`; bytes queued as input are read from RBR.
pub struct Serial {
    inner: vm_superio::Serial<SuperioTrigger, NoEvents, Box<dyn Write + Send>>,
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serial")
            .field("fifo_capacity", &self.inner.fifo_capacity())
            .finish_non_exhaustive()
    }
}

impl Serial {
    /// A UART raising `irq` and writing the guest's output to `out`.
    pub fn new(irq: Arc<dyn Interrupt>, out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: vm_superio::Serial::new(SuperioTrigger(irq), out),
        }
    }

    /// Queue input bytes for the guest; returns how many fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> Result<usize, SerialError> {
        if bytes.is_empty() || self.inner.fifo_capacity() == 0 {
            return Ok(0);
        }
        self.inner.enqueue_raw_bytes(bytes).map_err(|e| match e {
            vm_superio::serial::Error::Trigger(e) => SerialError::Interrupt(e),
            vm_superio::serial::Error::IOError(e) => SerialError::Io(e),
            vm_superio::serial::Error::FullFifo => SerialError::Io(io::Error::other("fifo full")),
        })
    }

    /// Free space in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.inner.fifo_capacity()
    }
}

/// The UART's registers and receive FIFO in a snapshot (vm-superio's
/// `SerialState`, made serialisable).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialState {
    /// Divisor latch, low byte.
    pub baud_divisor_low: u8,
    /// Divisor latch, high byte.
    pub baud_divisor_high: u8,
    /// IER.
    pub interrupt_enable: u8,
    /// IIR.
    pub interrupt_identification: u8,
    /// LCR.
    pub line_control: u8,
    /// LSR.
    pub line_status: u8,
    /// MCR.
    pub modem_control: u8,
    /// MSR.
    pub modem_status: u8,
    /// Scratch register.
    pub scratch: u8,
    /// Received bytes the guest has not read.
    pub in_buffer: Vec<u8>,
}

impl Serial {
    /// The state to save.
    pub fn state(&self) -> SerialState {
        let s = self.inner.state();
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// A UART restored from `state`, raising `irq` and writing to `out`; a
    /// receive FIFO longer than the UART's is refused.
    pub fn from_state(
        state: &SerialState,
        irq: Arc<dyn Interrupt>,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, crate::state::StateError> {
        let inner_state = vm_superio::serial::SerialState {
            baud_divisor_low: state.baud_divisor_low,
            baud_divisor_high: state.baud_divisor_high,
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.in_buffer.clone(),
        };
        let inner =
            vm_superio::Serial::from_state(&inner_state, SuperioTrigger(irq), NoEvents, out)
                .map_err(|e| crate::state::StateError::Invalid {
                    device: "serial",
                    reason: match e {
                        vm_superio::serial::Error::FullFifo => format!(
                            "{} received bytes do not fit the receive FIFO",
                            state.in_buffer.len()
                        ),
                        other => format!("{other:?}"),
                    },
                })?;
        Ok(Self { inner })
    }
}

impl BusDevice for Serial {
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
            // A full terminal or a closed file must not stop the guest.
            tracing::warn!(?err, offset, "serial: write failed");
        }
    }
}

/// Forward bytes from `input` (e.g. stdin) to `serial` on a thread until EOF or a read error.
///
/// When the guest has not drained the FIFO yet, the thread waits briefly and
/// retries, so no input is lost.
pub fn spawn_input_forwarder<R: Read + Send + 'static>(
    serial: Arc<Mutex<Serial>>,
    mut input: R,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("serial-input".into())
        .spawn(move || {
            if let Err(e) =
                vm_core::thread_role::enter(vm_core::thread_role::ThreadRole::SerialInput)
            {
                tracing::error!(%e, "serial input not confined; input stops");
                return;
            }
            let mut buf = [0u8; 64];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(%e, "serial input: read failed, stopping");
                        return;
                    }
                };
                let mut pending = &buf[..n];
                while !pending.is_empty() {
                    let queued = serial
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .enqueue_input(pending);
                    match queued {
                        Ok(k) => pending = &pending[k..],
                        Err(e) => {
                            tracing::warn!(%e, "serial input: dropping input");
                            break;
                        }
                    }
                    if !pending.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        })
}

/// A `Write` that appends to a shared buffer, for tests and for capturing a console.
#[derive(Debug, Clone, Default)]
pub struct CaptureBuffer(Arc<Mutex<Vec<u8>>>);

impl CaptureBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Write for CaptureBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::interrupt::CountingInterrupt;

    const THR: u64 = COM1_PORT_BASE;
    const IER: u64 = COM1_PORT_BASE + 1;
    const LSR: u64 = COM1_PORT_BASE + 5;

    fn com1() -> (
        Bus,
        Arc<Mutex<Serial>>,
        CaptureBuffer,
        Arc<CountingInterrupt>,
    ) {
        let out = CaptureBuffer::new();
        let irq = Arc::new(CountingInterrupt::new());
        let serial = Arc::new(Mutex::new(Serial::new(irq.clone(), Box::new(out.clone()))));
        let mut bus = Bus::new();
        bus.insert(serial.clone(), COM1_PORT_BASE, SERIAL_PORT_LEN)
            .unwrap();
        (bus, serial, out, irq)
    }

    #[test]
    fn guest_output_reaches_the_writer() {
        let (bus, _, out, _) = com1();
        for b in b"hello\n" {
            bus.write(THR, &[*b]).unwrap();
        }
        assert_eq!(out.contents(), b"hello\n");
        let mut lsr = [0u8];
        bus.read(LSR, &mut lsr).unwrap();
        assert_ne!(lsr[0] & 0x20, 0, "THR empty bit set");
    }

    #[test]
    fn input_is_readable_by_the_guest_and_raises_the_irq() {
        let (bus, serial, _, irq) = com1();
        bus.write(IER, &[0x01]).unwrap(); // enable received-data interrupt
        assert_eq!(serial.lock().unwrap().enqueue_input(b"ok").unwrap(), 2);
        assert!(irq.count() >= 1);
        let mut got = Vec::new();
        loop {
            let mut lsr = [0u8];
            bus.read(LSR, &mut lsr).unwrap();
            if lsr[0] & 0x01 == 0 {
                break;
            }
            let mut b = [0u8];
            bus.read(THR, &mut b).unwrap();
            got.push(b[0]);
        }
        assert_eq!(got, b"ok");
    }

    #[test]
    fn forwarder_delivers_more_than_a_fifo_of_input() {
        let (bus, serial, _, _) = com1();
        let text: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
        let handle = spawn_input_forwarder(serial, io::Cursor::new(text.clone())).unwrap();
        let mut got = Vec::new();
        while got.len() < text.len() {
            let mut lsr = [0u8];
            bus.read(LSR, &mut lsr).unwrap();
            if lsr[0] & 0x01 != 0 {
                let mut b = [0u8];
                bus.read(THR, &mut b).unwrap();
                got.push(b[0]);
            } else {
                std::thread::yield_now();
            }
        }
        handle.join().unwrap();
        assert_eq!(got, text);
    }

    #[test]
    fn odd_offsets_and_empty_accesses_do_not_panic() {
        let (_, serial, _, _) = com1();
        let mut s = serial.lock().unwrap();
        s.write(0x1_0000, &[1]);
        s.write(3, &[]);
        let mut empty = [];
        s.read(2, &mut empty);
        let mut wide = [0xffu8; 4];
        s.read(u64::MAX, &mut wide);
        assert_eq!(wide, [0; 4]);
    }

    #[test]
    fn state_round_trips_with_pending_input_and_an_oversized_fifo_is_refused() {
        let (bus, serial, _, _) = com1();
        bus.write(IER, &[0x01]).unwrap();
        bus.write(COM1_PORT_BASE + 7, &[0x5a]).unwrap(); // scratch
        serial.lock().unwrap().enqueue_input(b"hi").unwrap();
        let state = serial.lock().unwrap().state();
        let irq = Arc::new(CountingInterrupt::new());
        let restored = Serial::from_state(&state, irq.clone(), Box::new(io::sink())).unwrap();
        assert_eq!(restored.state(), state);
        assert!(
            irq.count() >= 1,
            "pending received data re-raises the interrupt"
        );

        let mut big = state;
        big.in_buffer = vec![0; 10_000];
        assert!(matches!(
            Serial::from_state(&big, irq, Box::new(io::sink())),
            Err(crate::state::StateError::Invalid { .. })
        ));
    }
}
