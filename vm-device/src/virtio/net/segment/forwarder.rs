//! The bridge thread of a segment member: moves frames between the member's
//! socket and its port on the local switch, learns which member each MAC is
//! behind, and keeps the member list in line with the directory.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Counters, BATCH, ETH_HLEN, MAX_LEARNED, MTIME_SETTLE, RESCAN_INTERVAL};
use crate::virtio::net::r#virtual::{mac_of, VirtualPort};
use crate::virtio::net::{NetBackend, MAX_BUFFER_LEN, VNET_HDR_LEN};

/// Where a datagram's header keeps `num_buffers`.
const NUM_BUFFERS: std::ops::Range<usize> = 10..VNET_HDR_LEN;

#[derive(Debug)]
struct Peer {
    id: u64,
    path: PathBuf,
    /// `path` as a socket address, built once.
    addr: SocketAddrUn,
    /// The last frame to it waited for [`CONGESTION_WAIT`] in vain; do not wait again until a send succeeds.
    congested: bool,
}

enum SendOutcome {
    Sent,
    Dropped,
    /// The member is gone; it was removed.
    Gone,
}

/// The bridge thread's state; everything here is owned by that thread.
pub(super) struct Worker {
    sock: UnixDatagram,
    wake: UnixStream,
    port: VirtualPort,
    me: PathBuf,
    dir: PathBuf,
    /// Datagrams from members (a virtio-net header and a frame); one byte
    /// more than the longest shows an oversized datagram.
    rx: Vec<u8>,
    /// Frames from the local switch, with their virtio-net header.
    tx: Vec<u8>,
    peers: Vec<Peer>,
    next_peer_id: u64,
    /// Source MAC -> peer id.
    macs: HashMap<u64, u64>,
    last_scan: Option<Instant>,
    /// The directory's modification time at the last scan.
    scanned_mtime: Option<SystemTime>,
    /// Whether that time was old enough to show every later change.
    scan_settled: bool,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// The state for member socket `paths.0` in switch directory `paths.1`,
    /// with the member list read from the directory.
    pub(super) fn new(
        sock: UnixDatagram,
        wake: UnixStream,
        port: VirtualPort,
        paths: (PathBuf, PathBuf),
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let (me, dir) = paths;
        let mut worker = Self {
            sock,
            wake,
            port,
            me,
            dir,
            rx: vec![0; MAX_BUFFER_LEN + 1],
            tx: vec![0; MAX_BUFFER_LEN],
            peers: Vec::new(),
            next_peer_id: 0,
            macs: HashMap::with_capacity(64),
            last_scan: None,
            scanned_mtime: None,
            scan_settled: false,
            counters,
            stop,
        };
        worker.rescan();
        worker
    }

    pub(super) fn run(mut self) {
        if let Err(e) = vm_core::thread_role::enter(vm_core::thread_role::ThreadRole::SwitchBridge)
        {
            tracing::error!(%e, "switch bridge not confined; the segment link stops");
            return;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let mut more = true;
        while !self.stop.load(Ordering::Acquire) {
            let timeout = if more { 0 } else { -1 };
            // SAFETY: `fds` is a valid array of two pollfd, exclusively borrowed for
            // the call; both fds are owned by `self` and open for the whole loop.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(%err, "switch segment: poll failed; the bridge stops");
                return;
            }
            if fds[1].revents != 0 {
                let mut sink = [0u8; 64];
                while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let inbound = self.pump_in();
            let outbound = self.pump_out();
            more = inbound || outbound;
        }
    }

    /// Moves datagrams from members into the local switch; true if there may be more.
    fn pump_in(&mut self) -> bool {
        for _ in 0..BATCH {
            let (n, from) = match recv_dontwait(&self.sock, &mut self.rx) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(err = %e, "switch segment: receive failed");
                    return false;
                }
            };
            if !(VNET_HDR_LEN + ETH_HLEN..=MAX_BUFFER_LEN).contains(&n) {
                Counters::bump(&self.counters.malformed);
                tracing::debug!(len = n, "switch segment: malformed datagram dropped");
                continue;
            }
            // `num_buffers` is the receiving device's to fill in.
            self.rx[NUM_BUFFERS].fill(0);
            let frame = &self.rx[..n];
            let src = &frame[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12];
            if src[0] & 1 == 0 {
                let mac = mac_of(src);
                // Learn only from members of this segment; anything else is answered by flooding.
                let sender = from.path();
                if let Some(i) = self.peers.iter().position(|p| p.addr.path() == sender) {
                    self.learn(mac, self.peers[i].id);
                } else if is_member_of(sender, self.dir.as_os_str().as_bytes()) {
                    let path = PathBuf::from(std::ffi::OsStr::from_bytes(sender));
                    if let Some(id) = self.add_peer(path) {
                        self.learn(mac, id);
                    }
                }
            }
            match self.port.send(&self.rx[..n]) {
                Ok(()) => Counters::bump(&self.counters.received),
                Err(e) => {
                    Counters::bump(&self.counters.malformed);
                    tracing::debug!(err = %e, "switch segment: frame refused by the local switch");
                }
            }
        }
        true
    }

    fn learn(&mut self, mac: u64, id: u64) {
        if self.macs.get(&mac) == Some(&id) {
            return;
        }
        if self.macs.len() >= MAX_LEARNED && !self.macs.contains_key(&mac) {
            self.macs.clear(); // keeps its capacity: no allocation later
        }
        self.macs.insert(mac, id);
    }

    /// Moves frames from the local switch to members; true if there may be more.
    fn pump_out(&mut self) -> bool {
        let mut tx = std::mem::take(&mut self.tx);
        let mut more = true;
        for _ in 0..BATCH {
            let n = match self.port.recv(&mut tx) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    more = false;
                    break;
                }
                Err(e) => {
                    Counters::bump(&self.counters.malformed);
                    tracing::debug!(err = %e, "switch segment: local frame dropped");
                    continue;
                }
            };
            let Some(datagram) = tx
                .get(..n)
                .filter(|d| (VNET_HDR_LEN + ETH_HLEN..=MAX_BUFFER_LEN).contains(&d.len()))
            else {
                Counters::bump(&self.counters.malformed);
                continue;
            };
            self.forward(datagram);
        }
        self.tx = tx;
        more
    }

    /// Sends `datagram` (a virtio-net header and a frame) to the member its
    /// destination is behind, or to all.
    fn forward(&mut self, datagram: &[u8]) {
        let dst = &datagram[VNET_HDR_LEN..VNET_HDR_LEN + 6];
        if dst[0] & 1 == 0 {
            if let Some(&id) = self.macs.get(&mac_of(dst)) {
                if let Some(i) = self.peers.iter().position(|p| p.id == id) {
                    self.send_to(i, datagram);
                    return;
                }
            }
        }
        if self.members_may_have_changed() {
            self.rescan();
        }
        let mut i = 0;
        while i < self.peers.len() {
            if !matches!(self.send_to(i, datagram), SendOutcome::Gone) {
                i += 1;
            }
        }
    }

    fn send_to(&mut self, i: usize, datagram: &[u8]) -> SendOutcome {
        // A blocking send sleeps in the kernel until the member's queue has room
        // (SO_SNDTIMEO = CONGESTION_WAIT); between attempts our own queue is
        // drained, in case the member is blocked sending to us.
        let mut attempts = if self.peers[i].congested { 0 } else { 2 };
        loop {
            let Err(err) = self.peers[i].addr.send(&self.sock, datagram, attempts == 0) else {
                self.peers[i].congested = false;
                Counters::bump(&self.counters.sent);
                return SendOutcome::Sent;
            };
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if attempts == 0 {
                        self.peers[i].congested = true;
                        Counters::bump(&self.counters.congested);
                        return SendOutcome::Dropped;
                    }
                    attempts -= 1;
                    self.pump_in();
                }
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                    let peer = self.remove_peer(i);
                    // Refused: nobody is bound there any more, and nobody can bind
                    // while the file exists, so removing it cannot hit a live member.
                    if err.kind() == io::ErrorKind::ConnectionRefused
                        && std::fs::remove_file(&peer.path).is_ok()
                    {
                        Counters::bump(&self.counters.stale_removed);
                        tracing::debug!(path = %peer.path.display(), "switch segment: dead member removed");
                    }
                    return SendOutcome::Gone;
                }
                _ => {
                    tracing::debug!(%err, path = %self.peers[i].path.display(), "switch segment: send failed");
                    Counters::bump(&self.counters.congested);
                    return SendOutcome::Dropped;
                }
            }
        }
    }

    /// Adds a member; `None` if its path cannot be a socket address.
    fn add_peer(&mut self, path: PathBuf) -> Option<u64> {
        let addr = SocketAddrUn::new(path.as_os_str().as_bytes())?;
        let id = self.next_peer_id;
        self.next_peer_id += 1;
        self.peers.push(Peer {
            id,
            path,
            addr,
            congested: false,
        });
        self.counters
            .members
            .store(self.peers.len() as u64, Ordering::Relaxed);
        Some(id)
    }

    fn remove_peer(&mut self, i: usize) -> Peer {
        let peer = self.peers.swap_remove(i);
        self.macs.retain(|_, id| *id != peer.id);
        self.counters
            .members
            .store(self.peers.len() as u64, Ordering::Relaxed);
        peer
    }

    /// One `stat` (no allocation): whether the directory changed since the last scan.
    fn members_may_have_changed(&self) -> bool {
        if !self.scan_settled
            || self
                .last_scan
                .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL)
        {
            return true;
        }
        std::fs::metadata(&self.dir)
            .and_then(|m| m.modified())
            .map_or(true, |m| Some(m) != self.scanned_mtime)
    }

    /// Brings the member list in line with the directory.
    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.scanned_mtime = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        self.scan_settled = self.scanned_mtime.is_some_and(|m| {
            SystemTime::now()
                .duration_since(m)
                .is_ok_and(|age| age >= MTIME_SETTLE)
        });
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(err = %e, dir = %self.dir.display(), "switch segment: cannot list members");
                return;
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
            .map(|e| e.path())
            .filter(|p| *p != self.me)
            .collect();
        let mut i = 0;
        while i < self.peers.len() {
            if let Some(at) = found.iter().position(|p| *p == self.peers[i].path) {
                found.swap_remove(at);
                i += 1;
            } else {
                self.remove_peer(i);
            }
        }
        for path in found {
            let _ = self.add_peer(path);
        }
    }
}

/// A `sockaddr_un` with its length: a member's address, built once and
/// passed to `sendto` as is, or a sender's address filled in by `recvfrom`.
#[derive(Clone, Copy)]
struct SocketAddrUn {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl std::fmt::Debug for SocketAddrUn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", std::ffi::OsStr::from_bytes(self.path()))
    }
}

fn path_offset() -> usize {
    std::mem::offset_of!(libc::sockaddr_un, sun_path)
}

impl SocketAddrUn {
    fn empty() -> Self {
        Self {
            // SAFETY: sockaddr_un is plain old data; all zeroes is a valid (empty) value.
            addr: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        }
    }

    /// The address of the socket file at `path`; `None` if it does not fit.
    fn new(path: &[u8]) -> Option<Self> {
        let mut a = Self::empty();
        if path.is_empty() || path.len() >= a.addr.sun_path.len() || path.contains(&0) {
            return None;
        }
        a.addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, &s) in a.addr.sun_path.iter_mut().zip(path) {
            *d = s as libc::c_char;
        }
        a.len = (path_offset() + path.len() + 1) as libc::socklen_t;
        Some(a)
    }

    /// The path bytes (empty for an unnamed sender).
    fn path(&self) -> &[u8] {
        let n = (self.len as usize)
            .saturating_sub(path_offset())
            .min(self.addr.sun_path.len());
        // SAFETY: `sun_path` is an array of `c_char` (i8 or u8), the same size
        // and alignment as u8; `n` is within it.
        let bytes: &[u8] =
            unsafe { std::slice::from_raw_parts(self.addr.sun_path.as_ptr().cast(), n) };
        bytes.split(|&b| b == 0).next().unwrap_or(&[])
    }

    /// One datagram to this address; `dontwait` never sleeps on a full queue.
    fn send(&self, sock: &UnixDatagram, buf: &[u8], dontwait: bool) -> io::Result<()> {
        let flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `buf` is valid for `buf.len()` bytes; `self.addr` is an
        // initialised sockaddr_un of at least `self.len` bytes; the fd is open.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                flags,
                std::ptr::addr_of!(self.addr).cast(),
                self.len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Receives one datagram without waiting, with its sender's address.
fn recv_dontwait(sock: &UnixDatagram, buf: &mut [u8]) -> io::Result<(usize, SocketAddrUn)> {
    let mut from = SocketAddrUn::empty();
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `from.addr` is a
    // sockaddr_un whose size is in `from.len`, which the kernel updates; the fd is open.
    let n = unsafe {
        libc::recvfrom(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            std::ptr::addr_of_mut!(from.addr).cast(),
            &raw mut from.len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n.unsigned_abs(), from))
}

/// Whether socket path `path` is directly inside directory `dir`.
fn is_member_of(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir)
        .and_then(|rest| rest.strip_prefix(b"/"))
        .is_some_and(|name| !name.is_empty() && !name.contains(&b'/'))
}
