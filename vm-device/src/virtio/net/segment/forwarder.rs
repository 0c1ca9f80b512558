//! The bridge thread of a segment member: moves frames between the member's
//! socket and its port on the local switch, learns which member each MAC is
//! behind, and keeps the member list in line with the directory.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{
    Counters, BATCH, CONGESTION_WAIT, ETH_HLEN, MAX_LEARNED, MTIME_SETTLE, RESCAN_INTERVAL,
};
use crate::virtio::net::r#virtual::{mac_of, VirtualPort};
use crate::virtio::net::{NetBackend, MAX_BUFFER_LEN, MAX_FRAME_LEN, VNET_HDR_LEN};

#[derive(Debug)]
struct Peer {
    id: u64,
    path: PathBuf,
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
    /// Datagrams land at `VNET_HDR_LEN`, behind room for the header; one byte
    /// more than the longest frame shows an oversized datagram.
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
            rx: vec![0; VNET_HDR_LEN + MAX_FRAME_LEN + 1],
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
            let (n, from) = match self.sock.recv_from(&mut self.rx[VNET_HDR_LEN..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(err = %e, "switch segment: receive failed");
                    return false;
                }
            };
            if !(ETH_HLEN..=MAX_FRAME_LEN).contains(&n) {
                Counters::bump(&self.counters.malformed);
                tracing::debug!(len = n, "switch segment: malformed datagram dropped");
                continue;
            }
            let frame = &mut self.rx[..VNET_HDR_LEN + n];
            frame[..VNET_HDR_LEN].fill(0);
            let src = &frame[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12];
            if src[0] & 1 == 0 {
                let mac = mac_of(src);
                // Learn only from members of this segment; anything else is answered by flooding.
                if let Some(path) = from.as_pathname().filter(|p| p.parent() == Some(&self.dir)) {
                    let id = match self.peers.iter().find(|p| p.path == path) {
                        Some(p) => p.id,
                        None => self.add_peer(path.to_owned()),
                    };
                    self.learn(mac, id);
                }
            }
            match self.port.send(&self.rx[..VNET_HDR_LEN + n]) {
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
            let Some(eth) = tx
                .get(VNET_HDR_LEN..n)
                .filter(|e| (ETH_HLEN..=MAX_FRAME_LEN).contains(&e.len()))
            else {
                Counters::bump(&self.counters.malformed);
                continue;
            };
            self.forward(eth);
        }
        self.tx = tx;
        more
    }

    fn forward(&mut self, eth: &[u8]) {
        if eth[0] & 1 == 0 {
            if let Some(&id) = self.macs.get(&mac_of(&eth[..6])) {
                if let Some(i) = self.peers.iter().position(|p| p.id == id) {
                    self.send_to(i, eth);
                    return;
                }
            }
        }
        if self.members_may_have_changed() {
            self.rescan();
        }
        let mut i = 0;
        while i < self.peers.len() {
            if !matches!(self.send_to(i, eth), SendOutcome::Gone) {
                i += 1;
            }
        }
    }

    fn send_to(&mut self, i: usize, eth: &[u8]) -> SendOutcome {
        let mut deadline = None;
        loop {
            let Err(err) = self.sock.send_to(eth, &self.peers[i].path) else {
                self.peers[i].congested = false;
                Counters::bump(&self.counters.sent);
                return SendOutcome::Sent;
            };
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + CONGESTION_WAIT);
                    if self.peers[i].congested || Instant::now() >= deadline {
                        self.peers[i].congested = true;
                        Counters::bump(&self.counters.congested);
                        return SendOutcome::Dropped;
                    }
                    // The member may be waiting on us in turn: keep our own queue moving.
                    self.pump_in();
                    std::thread::yield_now();
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

    fn add_peer(&mut self, path: PathBuf) -> u64 {
        let id = self.next_peer_id;
        self.next_peer_id += 1;
        self.peers.push(Peer {
            id,
            path,
            congested: false,
        });
        self.counters
            .members
            .store(self.peers.len() as u64, Ordering::Relaxed);
        id
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
            self.add_peer(path);
        }
    }
}
