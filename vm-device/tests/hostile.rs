//! A hostile guest: malformed descriptor chains and rings. Each case must end
//! in DEVICE_NEEDS_RESET (or a dropped frame), with a config interrupt, no
//! panic, and no access outside guest memory; a reset brings the device back.

mod common;

use common::*;
use vm_device::bus::BusDevice;
use vm_device::virtio::guest_driver::{GuestDriver, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_device::virtio::mmio::{reg, INT_CONFIG};
use vm_device::virtio::net::r#virtual::{VirtualPort, VirtualSwitch};
use vm_device::virtio::net::{NetBackend, VNET_HDR_LEN};
use vm_device::virtio::status;
use vm_memory::{Bytes, GuestAddress};

const VRING_DESC_F_INDIRECT: u16 = 4;
const TX: usize = 1;
const RX: usize = 0;

/// A NIC under test plus a peer port on the same switch to observe traffic.
fn setup() -> (Nic, VirtualPort, VirtualSwitch) {
    let sw = VirtualSwitch::new();
    let peer = sw.add_port();
    let nic = Nic::new(MAC_A, Box::new(sw.add_port()), BASE_FEATURES);
    (nic, peer, sw)
}

/// A valid frame in guest memory, for chains that are otherwise well-formed.
fn valid_frame(nic: &mut Nic) -> (u64, u32) {
    let f = {
        let mut v = vec![0u8; VNET_HDR_LEN];
        v.extend(eth_frame(BROADCAST, MAC_A, 50, 0));
        v
    };
    let addr = nic.driver.alloc(f.len() as u64, 16).unwrap();
    nic.mem().write_slice(&f, addr).unwrap();
    (addr.0, f.len() as u32)
}

/// Publish the hand-written descriptors (index, addr, len, flags, next) with head `head`.
fn offer(nic: &mut Nic, q: usize, descs: &[(u16, u64, u32, u16, u16)], head: u16) {
    for &(i, addr, len, flags, next) in descs {
        nic.driver.write_desc(q, i, addr, len, flags, next).unwrap();
    }
    nic.driver.push_avail(q, head).unwrap();
    GuestDriver::notify(&mut nic.transport, q as u16);
}

fn assert_needs_reset_then_recovers(mut nic: Nic, mut peer: VirtualPort, why: &str) {
    let st = nic.status();
    assert_ne!(st & status::DEVICE_NEEDS_RESET, 0, "status {st:#x}");
    let err = nic
        .transport
        .last_error()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(err.contains(why), "error {err:?} should mention {why:?}");
    assert_ne!(
        GuestDriver::ack_interrupt(&mut nic.transport) & INT_CONFIG,
        0
    );
    // While broken the device ignores notifies and polls (and does not panic).
    GuestDriver::notify(&mut nic.transport, 0);
    GuestDriver::notify(&mut nic.transport, 1);
    nic.transport.poll();
    let mut buf = vec![0u8; 4096];
    while peer.recv(&mut buf).unwrap().is_some() {}
    // The driver resets and re-initialises: traffic flows again.
    nic.reinit(BASE_FEATURES);
    assert_eq!(nic.status() & status::DEVICE_NEEDS_RESET, 0);
    let f = eth_frame(BROADCAST, MAC_A, 40, 1);
    nic.send(&f);
    let n = peer.recv(&mut buf).unwrap().expect("frame after reset");
    assert_eq!(&buf[VNET_HDR_LEN..n], &f[..]);
}

#[test]
fn tx_buffer_outside_guest_memory() {
    let (mut nic, peer, _sw) = setup();
    offer(&mut nic, TX, &[(0, MEM_SIZE as u64 + 0x1000, 64, 0, 0)], 0);
    assert_needs_reset_then_recovers(nic, peer, "outside guest memory");
}

#[test]
fn tx_buffer_straddling_the_end_of_guest_memory() {
    let (mut nic, peer, _sw) = setup();
    offer(&mut nic, TX, &[(0, MEM_SIZE as u64 - 8, 64, 0, 0)], 0);
    assert_needs_reset_then_recovers(nic, peer, "outside guest memory");
}

#[test]
fn tx_buffer_whose_address_wraps_around_u64() {
    let (mut nic, peer, _sw) = setup();
    offer(&mut nic, TX, &[(0, u64::MAX - 10, 100, 0, 0)], 0);
    assert_needs_reset_then_recovers(nic, peer, "outside guest memory");
}

#[test]
fn rx_buffer_outside_guest_memory() {
    let (mut nic, peer, sw) = setup();
    offer(
        &mut nic,
        RX,
        &[(0, 1 << 40, 2048, VRING_DESC_F_WRITE, 0)],
        0,
    );
    let mut other = sw.add_port();
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend(eth_frame(MAC_A, MAC_B, 64, 0));
    other.send(&f).unwrap();
    nic.transport.poll();
    drop(other);
    assert_needs_reset_then_recovers(nic, peer, "outside guest memory");
}

#[test]
fn chain_that_loops_back_on_itself() {
    let (mut nic, peer, _sw) = setup();
    let (addr, len) = valid_frame(&mut nic);
    offer(
        &mut nic,
        TX,
        &[
            (0, addr, len, VRING_DESC_F_NEXT, 1),
            (1, addr, 0, VRING_DESC_F_NEXT, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(nic, peer, "loop or over-long");
}

#[test]
fn descriptor_pointing_at_itself() {
    let (mut nic, peer, _sw) = setup();
    let (addr, len) = valid_frame(&mut nic);
    offer(&mut nic, TX, &[(5, addr, len, VRING_DESC_F_NEXT, 5)], 5);
    assert_needs_reset_then_recovers(nic, peer, "loop or over-long");
}

#[test]
fn chain_longer_than_the_queue() {
    let (mut nic, peer, _sw) = setup();
    let (addr, _) = valid_frame(&mut nic);
    // Every one of the 256 descriptors chains to the next, the last back to 0:
    // the walk must stop after the queue size.
    let descs: Vec<_> = (0..256u16)
        .map(|i| (i, addr, 1, VRING_DESC_F_NEXT, (i + 1) % 256))
        .collect();
    offer(&mut nic, TX, &descs, 0);
    assert_needs_reset_then_recovers(nic, peer, "loop or over-long");
}

#[test]
fn next_index_outside_the_descriptor_table() {
    let (mut nic, peer, _sw) = setup();
    let (addr, len) = valid_frame(&mut nic);
    offer(&mut nic, TX, &[(0, addr, len, VRING_DESC_F_NEXT, 300)], 0);
    assert_needs_reset_then_recovers(nic, peer, "next index 300");
}

#[test]
fn head_index_outside_the_descriptor_table() {
    let (mut nic, peer, _sw) = setup();
    nic.driver.push_avail(TX, 999).unwrap();
    GuestDriver::notify(&mut nic.transport, TX as u16);
    assert_needs_reset_then_recovers(nic, peer, "head descriptor cannot be read");
}

#[test]
fn total_length_overflowing_32_bits() {
    // Needs a guest big enough that a 4 GiB - 16 buffer is "inside" it
    // (mapped lazily: the pages are never touched).
    let mem =
        vm_device::virtio::GuestMemory::from_ranges(&[(GuestAddress(0), 0x1_0001_0000)]).unwrap();
    let sw = VirtualSwitch::new();
    let peer = sw.add_port();
    let dev = vm_device::virtio::net::NetDevice::new(MAC_A, Box::new(sw.add_port()));
    let mut nic = Nic::with_memory(mem, dev, BASE_FEATURES);
    offer(
        &mut nic,
        TX,
        &[
            (0, 0, 0xffff_fff0, VRING_DESC_F_NEXT, 1),
            (1, 0, 0x100, 0, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(nic, peer, "overflows 32 bits");
}

#[test]
fn device_writable_descriptor_in_a_tx_chain() {
    let (mut nic, peer, _sw) = setup();
    let (addr, len) = valid_frame(&mut nic);
    offer(
        &mut nic,
        TX,
        &[
            (0, addr, len, VRING_DESC_F_NEXT, 1),
            (1, addr, 16, VRING_DESC_F_WRITE, 0),
        ],
        0,
    );
    assert_needs_reset_then_recovers(nic, peer, "device-writable");
}

#[test]
fn rx_chain_with_a_read_only_descriptor_is_never_written() {
    let (mut nic, peer, sw) = setup();
    let buf = nic.driver.alloc(2048, 16).unwrap();
    let canary = vec![0x5a; 2048];
    nic.mem().write_slice(&canary, buf).unwrap();
    // A read-only descriptor the device would have to write into.
    offer(&mut nic, RX, &[(0, buf.0, 2048, 0, 0)], 0);
    let mut other = sw.add_port();
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend(eth_frame(MAC_A, MAC_B, 64, 0));
    other.send(&f).unwrap();
    nic.transport.poll();
    let mut after = vec![0u8; 2048];
    nic.mem().read_slice(&mut after, buf).unwrap();
    assert_eq!(after, canary, "read-only buffer untouched");
    drop(other);
    assert_needs_reset_then_recovers(nic, peer, "device-readable");
}

#[test]
fn indirect_table_outside_guest_memory() {
    let (mut nic, peer, _sw) = setup();
    offer(
        &mut nic,
        TX,
        &[(0, 1 << 40, 64, VRING_DESC_F_INDIRECT, 0)],
        0,
    );
    assert_needs_reset_then_recovers(nic, peer, "head descriptor cannot be read");
}

#[test]
fn available_index_jumping_past_the_queue_size() {
    let (mut nic, peer, _sw) = setup();
    nic.driver.set_avail_idx(TX, 1000).unwrap();
    GuestDriver::notify(&mut nic.transport, TX as u16);
    assert_needs_reset_then_recovers(nic, peer, "available index jumped");
}

#[test]
fn rings_outside_guest_memory_fail_activation() {
    let sw = VirtualSwitch::new();
    let mem = guest_memory();
    let irq = std::sync::Arc::new(vm_device::interrupt::CountingInterrupt::new());
    let dev = vm_device::virtio::net::NetDevice::new(MAC_A, Box::new(sw.add_port()));
    let mut t = vm_device::virtio::mmio::MmioTransport::new(Box::new(dev), mem, irq).unwrap();
    let s = status::ACKNOWLEDGE | status::DRIVER;
    GuestDriver::write_reg(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    GuestDriver::write_reg(&mut t, reg::STATUS, s);
    GuestDriver::write_reg(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    GuestDriver::write_reg(&mut t, reg::DRIVER_FEATURES, 1);
    GuestDriver::write_reg(&mut t, reg::STATUS, s | status::FEATURES_OK);
    for q in 0..2 {
        GuestDriver::write_reg(&mut t, reg::QUEUE_SEL, q);
        GuestDriver::write_reg(&mut t, reg::QUEUE_NUM, 16);
        GuestDriver::write_reg(&mut t, reg::QUEUE_DESC_LOW, 0x1000);
        GuestDriver::write_reg(&mut t, reg::QUEUE_AVAIL_LOW, 0x2000);
        GuestDriver::write_reg(&mut t, reg::QUEUE_USED_LOW, 0x3000);
        GuestDriver::write_reg(&mut t, reg::QUEUE_USED_HIGH, 0x10); // far beyond 16 MiB
        GuestDriver::write_reg(&mut t, reg::QUEUE_READY, 1);
    }
    GuestDriver::write_reg(
        &mut t,
        reg::STATUS,
        s | status::FEATURES_OK | status::DRIVER_OK,
    );
    assert_ne!(GuestDriver::status(&mut t) & status::DEVICE_NEEDS_RESET, 0);
    let err = t.last_error().map(ToString::to_string).unwrap_or_default();
    assert!(err.contains("outside guest memory"), "{err}");
    GuestDriver::notify(&mut t, 1); // ignored, no panic
}

#[test]
fn too_short_and_too_long_tx_frames_are_dropped_not_fatal() {
    let (mut nic, mut peer, _sw) = setup();
    assert_eq!(nic.send(&[0u8; 4]), 0);
    let mut buf = vec![0u8; 70000];
    assert!(peer.recv(&mut buf).unwrap().is_none());
    assert_eq!(nic.status() & status::DEVICE_NEEDS_RESET, 0);
    let huge = vec![0u8; 70000];
    nic.send(&huge);
    assert!(peer.recv(&mut buf).unwrap().is_none());
    assert_eq!(nic.status() & status::DEVICE_NEEDS_RESET, 0);
}

/// Random register traffic over the whole window: never panics.
#[test]
fn random_mmio_accesses_do_not_panic() {
    let (mut nic, _peer, _sw) = setup();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let r = next();
        let offset = (r % 0x140) & !((r >> 20) % 2);
        let size = [1usize, 2, 4, 8][((r >> 32) % 4) as usize];
        let value = next().to_le_bytes();
        if r >> 40 & 1 == 0 {
            let mut data = vec![0u8; size];
            nic.transport.read(offset, &mut data);
        } else {
            nic.transport.write(offset, &value[..size]);
        }
        if (r >> 48) % 256 == 0 {
            nic.transport.poll();
        }
    }
}
