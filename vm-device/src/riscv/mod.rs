//! riscv64 platform devices: the CLINT (machine timer and software
//! interrupts), the PLIC (external interrupts) and the SiFive test syscon
//! (power-off and reboot). The 16550 UART is [`crate::legacy::serial::Serial`]
//! on the MMIO bus.
//!
//! The interrupt controllers keep their outputs in atomics that a hart polls
//! without a lock, and call a [`HartWaker`] when a hart may have to leave `wfi`.

pub mod clint;
pub mod plic;
pub mod syscon;

pub use clint::Clint;
pub use plic::Plic;
pub use syscon::{Syscon, SysconEvent};

/// Wakes a hart that may be waiting in `wfi` (its interrupt lines changed).
pub trait HartWaker: Send + Sync + std::fmt::Debug {
    /// Hart `hart`'s pending interrupts may have changed.
    fn wake(&self, hart: u32);
}

/// A waker for tests and for machines whose harts only poll.
#[derive(Debug, Default)]
pub struct NoWaker;

impl HartWaker for NoWaker {
    fn wake(&self, _hart: u32) {}
}

/// Reads a little-endian value of `data.len()` bytes (at most 8).
pub(crate) fn read_le(data: &[u8]) -> u64 {
    data.iter()
        .take(8)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

/// Writes the low `data.len()` bytes of `value`, little-endian.
pub(crate) fn write_le(value: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 8 { (value >> (8 * i)) as u8 } else { 0 };
    }
}
