//! Linux TAP backend: `/dev/net/tun` opened non-blocking with
//! `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, so every frame carries the 12-byte
//! virtio-net header and checksum/TSO offloads pass straight through.
//!
//! Limits: the interface is created (or attached to) by name; bringing it up,
//! addressing and bridging it are the host administrator's business. Opening
//! needs `CAP_NET_ADMIN` unless the interface already exists and is owned by us.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::backend::{NetBackend, NetBackendError};
use super::{features, VNET_HDR_LEN};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags of the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> NetBackendError {
    move |source| NetBackendError::Io { op, source }
}

impl Tap {
    /// Create (or attach to) the TAP interface `name`.
    pub fn open(name: &str) -> Result<Self, NetBackendError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(NetBackendError::Io {
                op: "tap name",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad interface name {name:?}"),
                ),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(io_err("open /dev/net/tun"))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: `file` is an open tun fd; TUNSETIFF reads and writes a
        // `struct ifreq`, and `req` is a properly sized and aligned one that
        // outlives the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &raw mut req) };
        if rc < 0 {
            return Err(io_err("TUNSETIFF")(io::Error::last_os_error()));
        }
        let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which
        // points to a live local.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ, &raw const hdr_len) };
        if rc < 0 {
            return Err(io_err("TUNSETVNETHDRSZ")(io::Error::last_os_error()));
        }
        let end = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(libc::IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        tracing::debug!(%name, "tap: opened");
        Ok(Self { file, name })
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl NetBackend for Tap {
    fn send(&mut self, frame: &[u8]) -> Result<(), NetBackendError> {
        match self.file.write(frame) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(NetBackendError::WouldBlock),
            Err(e) => Err(io_err("tap write")(e)),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetBackendError> {
        loop {
            match self.file.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("tap read")(e)),
            }
        }
    }

    fn offload_features(&self) -> u64 {
        features::OFFLOADS
    }

    fn set_offloads(&mut self, acked: u64) -> Result<(), NetBackendError> {
        // TUNSETOFFLOAD says what the kernel may hand us, i.e. what the guest can receive.
        let mut flags: libc::c_uint = 0;
        if acked & features::GUEST_CSUM != 0 {
            flags |= TUN_F_CSUM;
            if acked & features::GUEST_TSO4 != 0 {
                flags |= TUN_F_TSO4;
            }
            if acked & features::GUEST_TSO6 != 0 {
                flags |= TUN_F_TSO6;
            }
            if acked & features::GUEST_ECN != 0 {
                flags |= TUN_F_TSO_ECN;
            }
        }
        // SAFETY: TUNSETOFFLOAD takes the flags by value; the fd is an open tap.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if rc < 0 {
            return Err(io_err("TUNSETOFFLOAD")(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn raw_fd(&self) -> Option<i32> {
        Some(self.file.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_touching_the_os() {
        for name in ["", "a-name-that-is-too-long", "nul\0byte"] {
            assert!(matches!(
                Tap::open(name),
                Err(NetBackendError::Io { op: "tap name", .. })
            ));
        }
    }
}
