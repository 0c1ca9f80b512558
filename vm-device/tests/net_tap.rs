//! virtio-net over a real TAP device, inside a network namespace the test
//! creates (so the host's network is never touched). Needs root and iproute2;
//! skips with a printed reason otherwise.

#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use common::*;
use vm_device::virtio::net::features;
use vm_device::virtio::net::tap::Tap;

const ETH_P_ALL: u16 = 0x0003;
const TAP_NAME: &str = "vmdtap0";

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: String) -> Result<Self, String> {
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(name))
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Move the calling thread into this namespace.
    fn enter(&self) -> Result<(), String> {
        let path = format!("/var/run/netns/{}", self.0);
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns on a valid namespace fd; affects only the calling thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("setns: {}", io::Error::last_os_error()))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// An AF_PACKET socket bound to one interface: the "host side" of the tap.
struct PacketSocket(OwnedFd);

impl PacketSocket {
    fn bind(ifname: &str) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh socket we own.
        let sock = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        let name = CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval; pointer and length match.
        unsafe {
            libc::setsockopt(
                sock.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(sock)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for `frame.len()` bytes.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait (bounded) for a frame with our test ethertype.
    fn recv_test_frame(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        for _ in 0..50 {
            // SAFETY: the buffer is valid for its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 14 && buf[12..14] == [0x88, 0xb5] {
                return Some(buf[..n as usize].to_vec());
            }
        }
        None
    }
}

fn run_in_netns() -> Result<(), String> {
    let ns = Netns::create(format!("vmdev-tap-{}", std::process::id()))?;
    ns.enter()?;
    let backend = match Tap::open(TAP_NAME) {
        Ok(b) => Box::new(b),
        // Only "not allowed / not present" is a reason to skip; anything else is a bug.
        Err(vm_device::virtio::net::NetBackendError::Io { op, source })
            if matches!(
                source.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound
            ) =>
        {
            return Err(format!("{op}: {source}"));
        }
        Err(e) => panic!("opening the tap failed: {e}"),
    };
    let wanted = BASE_FEATURES | features::MRG_RXBUF | features::OFFLOADS;
    let mut nic = Nic::new(MAC_A, backend, wanted);
    assert_eq!(
        nic.features & features::OFFLOADS,
        features::OFFLOADS,
        "TAP passes offloads through"
    );
    ns.ip(&["link", "set", TAP_NAME, "up"])?;
    let host = PacketSocket::bind(TAP_NAME).map_err(|e| format!("packet socket: {e}"))?;

    // Guest -> host.
    let out = eth_frame(MAC_B, MAC_A, 200, 0x11);
    nic.send(&out);
    let seen = host.recv_test_frame().expect("host saw the guest's frame");
    assert_eq!(seen, out);

    // Host -> guest.
    nic.post_rx(16, 4096);
    let back = eth_frame(MAC_A, MAC_B, 300, 0x22);
    host.send(&back).map_err(|e| format!("packet send: {e}"))?;
    let mut got = None;
    for _ in 0..200 {
        while let Some(f) = nic.recv() {
            if f.len() >= 14 && f[12..14] == [0x88, 0xb5] {
                got = Some(f);
            }
        }
        if got.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(got, Some(back), "guest received the host's frame");
    assert_eq!(nic.status() & 0x40, 0);
    Ok(())
}

#[test]
fn frames_cross_a_tap_in_a_private_netns_both_ways() {
    // setns affects only the calling thread: run the body on its own thread.
    let result = std::thread::spawn(run_in_netns)
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    if let Err(reason) = result {
        test_prerequisites::prerequisite_missing(format_args!("tap test: {reason}"));
    }
}
