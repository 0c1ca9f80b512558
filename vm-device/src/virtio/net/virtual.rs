//! An in-process L2 switch: any number of virtual NICs, MAC learning,
//! broadcast/multicast and unknown-unicast flooding. Two guests in one process
//! talk through it with no host network set-up; one port alone is a sink.
//! [`super::segment`] joins switches of several processes into one.
//!
//! Hot path, per frame: one atomic load to see whether the port list changed,
//! a lock-free MAC table lookup (an array of atomics), and a push of a recycled
//! buffer onto the destination's lock-free queue. Buffers come back to the
//! receiving port's pool after delivery, so steady-state forwarding neither
//! allocates nor takes a lock. A full destination queue drops the frame, as a
//! congested switch would.
//!
//! Ports offer the checksum and TSO offloads: frames keep their virtio-net
//! header through the switch, and a port whose driver did not accept what a
//! frame's header asks gets the work done for it ([`super::offload`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crossbeam_queue::ArrayQueue;

use super::backend::{NetBackend, NetBackendError};
use super::offload::{self, Offload};
use super::{features, VNET_HDR_LEN};
use crate::interrupt::Interrupt;

/// Frames a port can hold before the switch drops for it.
const PORT_QUEUE_LEN: usize = 1024;
/// Entries in the MAC learning table (a power of two).
const MAC_TABLE_LEN: usize = 4096;
/// Buffer capacity reserved for a fresh frame buffer.
const INITIAL_BUFFER: usize = 2048;

struct Port {
    id: u16,
    inbox: ArrayQueue<Vec<u8>>,
    pool: ArrayQueue<Vec<u8>>,
    /// Set by the receiver when it found the inbox empty; a sender that clears it notifies.
    armed: AtomicBool,
    notifier: OnceLock<Arc<dyn Interrupt>>,
    dropped: AtomicU64,
    /// The virtio-net features the port's driver accepted (its `GUEST_*`
    /// offloads say which frames it takes as they are).
    offloads: AtomicU64,
}

impl Port {
    /// An empty buffer, recycled when one is free.
    fn buffer(&self) -> Vec<u8> {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(INITIAL_BUFFER));
        buf.clear();
        buf
    }

    /// Queues `buf`; false (counted, the buffer recycled) when the inbox is full.
    fn push(&self, buf: Vec<u8>) -> bool {
        match self.inbox.push(buf) {
            Ok(()) => true,
            Err(buf) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let _ = self.pool.push(buf);
                false
            }
        }
    }

    /// Queues `frame`, whose header asks for `offload`, doing that work first
    /// if this port's driver did not accept it.
    fn deliver(&self, frame: &[u8], offload: Offload) {
        let accepted = offload.needs() & !self.offloads.load(Ordering::Relaxed) == 0;
        let queued = match offload {
            Offload::Tso(tso) if !accepted => {
                let mut any = false;
                offload::segment(
                    frame,
                    tso,
                    || self.buffer(),
                    |buf| {
                        let queued = self.push(buf);
                        any |= queued;
                        queued
                    },
                );
                any
            }
            Offload::Csum { start, offset } if !accepted => {
                let mut buf = self.buffer();
                buf.extend_from_slice(frame);
                offload::complete_checksum(&mut buf, start, offset);
                self.push(buf)
            }
            _ => {
                let mut buf = self.buffer();
                buf.extend_from_slice(frame);
                self.push(buf)
            }
        };
        if !queued {
            return;
        }
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            if let Some(n) = self.notifier.get() {
                if let Err(err) = n.trigger() {
                    tracing::warn!(%err, port = self.id, "virtual switch: RX notification failed");
                }
            }
        }
    }
}

type PortList = Arc<Vec<Option<Arc<Port>>>>;

struct Shared {
    ports: Mutex<PortList>,
    generation: AtomicU64,
    /// `(mac << 16) | (port id + 1)`, 0 = empty.
    macs: Box<[AtomicU64]>,
}

impl Shared {
    fn slot(&self, mac: u64) -> &AtomicU64 {
        // Fibonacci hashing spreads sequential MACs over the table.
        let h = mac.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - MAC_TABLE_LEN.trailing_zeros());
        &self.macs[h as usize]
    }

    fn lookup(&self, mac: u64) -> Option<u16> {
        let e = self.slot(mac).load(Ordering::Relaxed);
        (e != 0 && e >> 16 == mac).then(|| ((e & 0xffff) - 1) as u16)
    }

    fn learn(&self, mac: u64, port: u16) {
        let e = (mac << 16) | (u64::from(port) + 1);
        let slot = self.slot(mac);
        // Only write when it changes, so steady traffic keeps the line shared.
        if slot.load(Ordering::Relaxed) != e {
            slot.store(e, Ordering::Relaxed);
        }
    }
}

/// A virtual L2 switch; clone it to share (all clones are the same switch).
#[derive(Clone)]
pub struct VirtualSwitch {
    shared: Arc<Shared>,
}

impl fmt::Debug for VirtualSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualSwitch")
            .field("ports", &self.port_count())
            .finish()
    }
}

impl Default for VirtualSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualSwitch {
    /// A switch with no ports.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                ports: Mutex::new(Arc::new(Vec::new())),
                generation: AtomicU64::new(0),
                macs: (0..MAC_TABLE_LEN).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    /// Number of connected ports.
    pub fn port_count(&self) -> usize {
        let ports = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ports.iter().flatten().count()
    }

    /// Plug a new port into the switch.
    pub fn add_port(&self) -> VirtualPort {
        let mut ports = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = ports.len() as u16;
        let port = Arc::new(Port {
            id,
            inbox: ArrayQueue::new(PORT_QUEUE_LEN),
            pool: ArrayQueue::new(PORT_QUEUE_LEN),
            armed: AtomicBool::new(true),
            notifier: OnceLock::new(),
            dropped: AtomicU64::new(0),
            offloads: AtomicU64::new(0),
        });
        let mut list: Vec<_> = ports.as_ref().clone();
        list.push(Some(port.clone()));
        *ports = Arc::new(list);
        self.shared.generation.fetch_add(1, Ordering::Release);
        tracing::debug!(port = id, "virtual switch: port added");
        VirtualPort {
            shared: self.shared.clone(),
            port,
            snapshot: ports.clone(),
            seen_generation: self.shared.generation.load(Ordering::Acquire),
        }
    }

    fn remove_port(&self, id: u16) {
        let mut ports = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = ports.as_ref().clone();
        if let Some(slot) = list.get_mut(usize::from(id)) {
            *slot = None;
        }
        *ports = Arc::new(list);
        self.shared.generation.fetch_add(1, Ordering::Release);
        tracing::debug!(port = id, "virtual switch: port removed");
    }
}

/// One port of a [`VirtualSwitch`], used as a NIC backend. Dropping it unplugs it.
pub struct VirtualPort {
    shared: Arc<Shared>,
    port: Arc<Port>,
    snapshot: PortList,
    seen_generation: u64,
}

impl fmt::Debug for VirtualPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualPort")
            .field("id", &self.port.id)
            .field("queued", &self.port.inbox.len())
            .finish_non_exhaustive()
    }
}

impl VirtualPort {
    /// This port's number on the switch.
    pub fn id(&self) -> u16 {
        self.port.id
    }

    /// Frames dropped because this port's receive queue was full.
    pub fn dropped(&self) -> u64 {
        self.port.dropped.load(Ordering::Relaxed)
    }

    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.seen_generation {
            let ports = self
                .shared
                .ports
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.snapshot = ports.clone();
            self.seen_generation = generation;
        }
    }
}

impl Drop for VirtualPort {
    fn drop(&mut self) {
        VirtualSwitch {
            shared: self.shared.clone(),
        }
        .remove_port(self.port.id);
    }
}

/// The 48-bit MAC address at the start of `bytes`, as an integer.
pub(super) fn mac_of(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(6)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

impl NetBackend for VirtualPort {
    fn send(&mut self, frame: &[u8]) -> Result<(), NetBackendError> {
        let Some(eth) = frame.get(VNET_HDR_LEN..).filter(|e| e.len() >= 14) else {
            return Err(NetBackendError::BadFrame {
                len: frame.len(),
                reason: "shorter than an Ethernet header",
            });
        };
        let offload = offload::parse(frame).map_err(|reason| NetBackendError::BadFrame {
            len: frame.len(),
            reason,
        })?;
        self.refresh();
        let me = self.port.id;
        let dst = mac_of(&eth[0..6]);
        let src = mac_of(&eth[6..12]);
        if eth[6] & 1 == 0 {
            self.shared.learn(src, me);
        }
        let unicast = eth[0] & 1 == 0;
        if unicast {
            if let Some(to) = self.shared.lookup(dst) {
                if to == me {
                    return Ok(()); // the destination is behind the sender: filter
                }
                if let Some(Some(port)) = self.snapshot.get(usize::from(to)) {
                    port.deliver(frame, offload);
                    return Ok(());
                }
            }
        }
        // Broadcast, multicast or unknown unicast: flood to every other port.
        for port in self.snapshot.iter().flatten() {
            if port.id != me {
                port.deliver(frame, offload);
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetBackendError> {
        let frame = if let Some(f) = self.port.inbox.pop() {
            f
        } else {
            // Arm the notifier, then look again to close the race with a sender.
            self.port.armed.store(true, Ordering::Release);
            let Some(f) = self.port.inbox.pop() else {
                return Ok(None);
            };
            self.port.armed.store(false, Ordering::Release);
            f
        };
        let len = frame.len();
        let result = if let Some(dst) = buf.get_mut(..len) {
            dst.copy_from_slice(&frame);
            Ok(Some(len))
        } else {
            Err(NetBackendError::BufferTooSmall {
                len,
                cap: buf.len(),
            })
        };
        let _ = self.port.pool.push(frame);
        result
    }

    fn offload_features(&self) -> u64 {
        features::OFFLOADS
    }

    fn set_offloads(&mut self, acked_features: u64) -> Result<(), NetBackendError> {
        self.port.offloads.store(acked_features, Ordering::Relaxed);
        Ok(())
    }

    fn set_rx_notifier(&mut self, notifier: Arc<dyn Interrupt>) {
        if self.port.notifier.set(notifier).is_err() {
            tracing::warn!(
                port = self.port.id,
                "virtual switch: RX notifier already set"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::CountingInterrupt;

    fn frame(dst: [u8; 6], src: [u8; 6], payload: u8) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00, payload]);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];

    fn recv_all(p: &mut VirtualPort) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Some(n) = p.recv(&mut buf).unwrap() {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn unknown_unicast_floods_then_learned_mac_is_switched() {
        let sw = VirtualSwitch::new();
        let (mut a, mut b, mut c) = (sw.add_port(), sw.add_port(), sw.add_port());
        // B unknown yet: flooded to B and C.
        a.send(&frame(B, A, 1)).unwrap();
        assert_eq!(recv_all(&mut b), vec![frame(B, A, 1)]);
        assert_eq!(recv_all(&mut c), vec![frame(B, A, 1)]);
        // B answers; A was learned, so only A gets it.
        b.send(&frame(A, B, 2)).unwrap();
        assert_eq!(recv_all(&mut a), vec![frame(A, B, 2)]);
        assert!(recv_all(&mut c).is_empty());
        // Now B is learned too.
        a.send(&frame(B, A, 3)).unwrap();
        assert_eq!(recv_all(&mut b), vec![frame(B, A, 3)]);
        assert!(recv_all(&mut c).is_empty());
        assert!(recv_all(&mut a).is_empty(), "no echo to the sender");
    }

    #[test]
    fn broadcast_reaches_every_other_port() {
        let sw = VirtualSwitch::new();
        let mut ports: Vec<_> = (0..5).map(|_| sw.add_port()).collect();
        ports[2].send(&frame(BCAST, C, 9)).unwrap();
        for (i, p) in ports.iter_mut().enumerate() {
            let got = recv_all(p);
            if i == 2 {
                assert!(got.is_empty());
            } else {
                assert_eq!(got, vec![frame(BCAST, C, 9)]);
            }
        }
    }

    #[test]
    fn removed_port_is_not_delivered_to_and_its_mac_floods() {
        let sw = VirtualSwitch::new();
        let mut a = sw.add_port();
        let b = sw.add_port();
        let mut c = sw.add_port();
        let mut b_mut = b;
        b_mut.send(&frame(A, B, 0)).unwrap(); // learn B
        drop(b_mut);
        assert_eq!(sw.port_count(), 2);
        recv_all(&mut a);
        recv_all(&mut c);
        a.send(&frame(B, A, 1)).unwrap();
        assert_eq!(recv_all(&mut c), vec![frame(B, A, 1)]);
    }

    #[test]
    fn full_port_drops_and_counts() {
        let sw = VirtualSwitch::new();
        let mut a = sw.add_port();
        let b = sw.add_port();
        for _ in 0..PORT_QUEUE_LEN + 10 {
            a.send(&frame(BCAST, A, 0)).unwrap();
        }
        assert_eq!(b.dropped(), 10);
    }

    #[test]
    fn short_frames_and_small_buffers_are_errors() {
        let sw = VirtualSwitch::new();
        let mut a = sw.add_port();
        let mut b = sw.add_port();
        assert!(matches!(
            a.send(&[0u8; VNET_HDR_LEN + 13]),
            Err(NetBackendError::BadFrame { .. })
        ));
        a.send(&frame(BCAST, A, 0)).unwrap();
        let mut tiny = [0u8; 8];
        assert!(matches!(
            b.recv(&mut tiny),
            Err(NetBackendError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn offloads_pass_to_ports_that_accept_them_and_are_done_for_others() {
        let sw = VirtualSwitch::new();
        let (mut a, mut plain, mut tso) = (sw.add_port(), sw.add_port(), sw.add_port());
        tso.set_offloads(features::GUEST_CSUM | features::GUEST_TSO4)
            .unwrap();
        let irq = Arc::new(CountingInterrupt::new());
        plain.set_rx_notifier(irq.clone());
        // Unknown destination: flooded to both.
        let big = offload::tests::tso_v4(&[5; 3000], 1448, 0x18);
        a.send(&big).unwrap();
        assert_eq!(recv_all(&mut tso), vec![big.clone()]);
        let segs = recv_all(&mut plain);
        assert_eq!(
            irq.count(),
            1,
            "one notification for the segments of one frame"
        );
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| s[..10] == [0; 10]), "plain headers");
        let lens: Vec<_> = segs.iter().map(|s| s.len() - VNET_HDR_LEN - 54).collect();
        assert_eq!(lens, [1448, 1448, 104]);
        // A header that does not fit its frame is the sender's error; nothing is delivered.
        let mut bad = big;
        bad[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            a.send(&bad),
            Err(NetBackendError::BadFrame { .. })
        ));
        assert!(recv_all(&mut tso).is_empty() && recv_all(&mut plain).is_empty());
    }

    #[test]
    fn notifier_fires_once_per_idle_to_busy_transition() {
        let sw = VirtualSwitch::new();
        let mut a = sw.add_port();
        let mut b = sw.add_port();
        let irq = Arc::new(CountingInterrupt::new());
        b.set_rx_notifier(irq.clone());
        a.send(&frame(BCAST, A, 0)).unwrap();
        a.send(&frame(BCAST, A, 1)).unwrap();
        assert_eq!(irq.count(), 1);
        assert_eq!(recv_all(&mut b).len(), 2); // drains and re-arms
        a.send(&frame(BCAST, A, 2)).unwrap();
        assert_eq!(irq.count(), 2);
    }

    #[test]
    fn concurrent_senders_lose_nothing_but_counted_drops_and_keep_order() {
        const SENDERS: u8 = 3;
        const PER_SENDER: u32 = 20_000;
        let sw = VirtualSwitch::new();
        let mut rx = sw.add_port();
        let threads: Vec<_> = (0..SENDERS)
            .map(|s| {
                let mut tx = sw.add_port();
                std::thread::spawn(move || {
                    let mut f = frame(BCAST, [2, 0, 0, 0, 1, s], 0);
                    f.extend_from_slice(&[0; 4]);
                    let at = f.len() - 4;
                    for seq in 0..PER_SENDER {
                        f[at..].copy_from_slice(&seq.to_le_bytes());
                        tx.send(&f).unwrap();
                    }
                    tx // keep the port plugged in until the receiver is done
                })
            })
            .collect();
        let mut next = [0u32; SENDERS as usize];
        let mut received = 0u64;
        let mut buf = vec![0u8; 128];
        let mut idle_rounds = 0u64;
        loop {
            if let Some(n) = rx.recv(&mut buf).unwrap() {
                idle_rounds = 0;
                let s = usize::from(buf[VNET_HDR_LEN + 11]);
                let seq = u32::from_le_bytes(buf[n - 4..n].try_into().unwrap());
                assert!(seq >= next[s], "sender {s}: {seq} after {}", next[s]);
                next[s] = seq + 1;
                received += 1;
                continue;
            }
            let total = received + rx.dropped();
            if total == u64::from(SENDERS) * u64::from(PER_SENDER) {
                break;
            }
            idle_rounds += 1;
            assert!(idle_rounds < 100_000_000, "frames went missing");
            std::thread::yield_now();
        }
        let ports: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(ports.len(), usize::from(SENDERS));
        assert!(received > 0);
    }
}
