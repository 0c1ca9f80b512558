//! The `gdb` section of a [`VmConfig`](super::VmConfig): run the VM under a
//! GDB remote stub listening on a Unix socket or a loopback TCP port.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Run the VM under a GDB stub instead of an executor (the VMM's `gdb`
/// module serves it; it needs the VMM's `gdb` cargo feature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GdbConfig {
    /// Where the stub listens: `unix:PATH` or `tcp:127.0.0.1:PORT` (see
    /// [`GdbAddr`]); checked by [`GdbConfig::addr`].
    pub address: String,
    /// Run no guest instruction before a debugger attaches.
    #[serde(default)]
    pub wait: bool,
}

impl GdbConfig {
    /// The parsed address; the error names the `gdb.address` field.
    pub fn addr(&self) -> Result<GdbAddr, ConfigError> {
        self.address
            .parse()
            .map_err(|e: GdbAddrError| ConfigError::new("gdb.address", e.reason))
    }
}

/// Where a GDB stub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddr {
    /// A Unix socket at this path (`unix:PATH`), created by the stub.
    Unix(PathBuf),
    /// A loopback TCP address (`tcp:127.0.0.1:PORT`).
    Tcp(SocketAddr),
}

/// A GDB stub address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gdb address {given:?}: {reason}")]
pub struct GdbAddrError {
    /// What was given.
    pub given: String,
    /// Why it was refused.
    pub reason: String,
}

impl FromStr for GdbAddr {
    type Err = GdbAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| GdbAddrError {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            if path.contains('\0') {
                return Err(bad("NUL byte in the socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e: std::net::AddrParseError| bad(&e.to_string()))?;
            // The stub reads and writes guest memory: never offer it to the network.
            if !addr.ip().is_loopback() {
                return Err(bad("only loopback addresses are accepted"));
            }
            return Ok(Self::Tcp(addr));
        }
        Err(bad("expected unix:PATH or tcp:127.0.0.1:PORT"))
    }
}

impl fmt::Display for GdbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_non_loopback_is_refused() {
        assert_eq!(
            "unix:/tmp/x.sock".parse::<GdbAddr>().unwrap(),
            GdbAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:1234".parse::<GdbAddr>().unwrap(),
            GdbAddr::Tcp("127.0.0.1:1234".parse().unwrap())
        );
        for bad in [
            "unix:",
            "unix:/a\0b",
            "tcp:0.0.0.0:1234",
            "tcp:nope",
            "1234",
            "",
        ] {
            assert!(bad.parse::<GdbAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn section_parses_with_wait_defaulting_to_false() {
        let c: GdbConfig = serde_json::from_str(r#"{"address": "unix:/tmp/g"}"#).unwrap();
        assert!(!c.wait);
        assert_eq!(c.addr().unwrap(), GdbAddr::Unix("/tmp/g".into()));
        let e = serde_json::from_str::<GdbConfig>(r#"{"address": "unix:/g", "port": 1}"#);
        assert!(e.is_err(), "unknown fields are refused");
    }

    #[test]
    fn a_bad_address_names_the_field() {
        let c = GdbConfig {
            address: "tcp:10.0.0.1:1234".into(),
            wait: false,
        };
        let e = c.addr().unwrap_err();
        assert_eq!(e.field, "gdb.address");
        assert!(e.reason.contains("loopback"), "{e}");
        let config = super::super::VmConfig {
            gdb: Some(c),
            ..super::super::VmConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "gdb.address");
    }
}
