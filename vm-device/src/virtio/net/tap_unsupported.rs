//! TAP backend on hosts without Linux's `/dev/net/tun`: opening one is a typed error.

use super::backend::{NetBackend, NetBackendError};

/// A TAP device; it cannot be opened on this host.
#[derive(Debug)]
pub struct Tap {
    _never: (),
}

impl Tap {
    /// Always fails: TAP devices need Linux.
    pub fn open(_name: &str) -> Result<Self, NetBackendError> {
        Err(NetBackendError::Unsupported("tap"))
    }
}

impl NetBackend for Tap {
    fn send(&mut self, _frame: &[u8]) -> Result<(), NetBackendError> {
        Err(NetBackendError::Unsupported("tap"))
    }
    fn recv(&mut self, _buf: &mut [u8]) -> Result<Option<usize>, NetBackendError> {
        Err(NetBackendError::Unsupported("tap"))
    }
}
