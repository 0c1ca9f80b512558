//! Device models on a PIO/MMIO bus: legacy devices (8250 serial, i8042, CMOS
//! RTC, ACPI sleep control) and virtio-mmio devices built on `virtio-queue`:
//! virtio-net with a TAP backend and a virtual switch backend (in-process, or
//! bridged across processes), and virtio-blk with a raw image file backend
//! and an in-memory one.
//!
//! Where this crate sits among the others, and a guest boot followed through
//! all of them: `docs/ARCHITECTURE.md` in the repository.
//!
//! Every value a guest writes is validated: a bad descriptor puts the device in
//! `DEVICE_NEEDS_RESET`; it never panics the VMM and never touches memory
//! outside the guest's.
//!
//! - [`bus`]: the PIO/MMIO bus and the [`BusDevice`] trait every device implements.
//! - [`interrupt`]: the [`Interrupt`] trait (irqfd on KVM, a callback in the software engine).
//! - [`legacy`]: the 8250 UART (vm-superio) and the i8042 reset line.
//! - [`virtio`]: the virtio-mmio transport, descriptor-chain validation, virtio-net
//!   with TAP and virtual-switch backends, virtio-blk with file and memory
//!   backends, and a guest-side driver for tests.
//!
//! Threading: devices sit on the bus behind a `Mutex`; a vCPU thread's MMIO
//! exit (a queue notify) and the VMM's event loop (a backend became readable,
//! a drive's I/O was requested: `MmioTransport::poll`) take that device's lock. The virtual switch between
//! NICs is lock-free, so two guests' hot paths never wait on each other.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use vm_device::bus::Bus;
//! use vm_device::interrupt::CountingInterrupt;
//! use vm_device::legacy::serial::{CaptureBuffer, Serial, COM1_PORT_BASE, SERIAL_PORT_LEN};
//!
//! let out = CaptureBuffer::new();
//! let serial = Serial::new(Arc::new(CountingInterrupt::new()), Box::new(out.clone()));
//! let mut pio = Bus::new();
//! pio.insert(Arc::new(Mutex::new(serial)), COM1_PORT_BASE, SERIAL_PORT_LEN)?;
//! pio.write(COM1_PORT_BASE, b"A")?; // the guest's `out 0x3f8, al`
//! assert_eq!(out.contents(), b"A");
//! # Ok::<(), vm_device::bus::BusError>(())
//! ```

#![deny(missing_docs)]

pub mod bus;
pub mod interrupt;
pub mod legacy;
pub mod riscv;
pub mod state;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
pub use interrupt::Interrupt;
