//! Legacy PC devices: the 8250/16550 UART and the i8042 controller's reset line.

pub mod i8042;
pub mod serial;

pub use i8042::I8042;
pub use serial::Serial;
