//! virtio-net over the virtual switch, driven the way a guest driver would.

mod common;

use common::*;
use vm_device::bus::BusDevice;
use vm_device::virtio::guest_driver::GuestDriver;
use vm_device::virtio::mmio::{reg, INT_CONFIG, INT_VRING, MMIO_MAGIC};
use vm_device::virtio::net::r#virtual::VirtualSwitch;
use vm_device::virtio::net::{features, NetDevice};
use vm_device::virtio::{status, VIRTIO_F_VERSION_1};
use vm_memory::Bytes;

fn nic(switch: &VirtualSwitch, mac: [u8; 6], wanted: u64) -> Nic {
    Nic::new(mac, Box::new(switch.add_port()), wanted)
}

#[test]
fn registers_identify_a_modern_net_device_with_its_mac() {
    let sw = VirtualSwitch::new();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let t: &mut dyn BusDevice = &mut a.transport;
    assert_eq!(GuestDriver::read_reg(t, reg::MAGIC), MMIO_MAGIC);
    assert_eq!(GuestDriver::read_reg(t, reg::VERSION), 2);
    assert_eq!(GuestDriver::read_reg(t, reg::DEVICE_ID), 1);
    let mut mac = [0u8; 6];
    t.read(reg::CONFIG, &mut mac);
    assert_eq!(mac, MAC_A);
    let mut st = [0u8; 2];
    t.read(reg::CONFIG + 6, &mut st);
    assert_eq!(u16::from_le_bytes(st), 1, "link up");
    assert_eq!(a.features, BASE_FEATURES);
}

#[test]
fn two_nics_exchange_frames_both_ways() {
    let sw = VirtualSwitch::new();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let mut b = nic(&sw, MAC_B, BASE_FEATURES);
    a.post_rx(8, 2048);
    b.post_rx(8, 2048);
    let f1 = eth_frame(MAC_B, MAC_A, 100, 1);
    assert_eq!(a.send(&f1), 0);
    assert_eq!(b.recv(), Some(f1));
    assert!(b.irq.count() >= 1, "RX interrupt raised");
    assert_ne!(GuestDriver::ack_interrupt(&mut b.transport) & INT_VRING, 0);
    let f2 = eth_frame(MAC_A, MAC_B, 1486, 2);
    b.send(&f2);
    assert_eq!(a.recv(), Some(f2));
    assert_eq!(a.recv(), None);
    assert_eq!(b.recv(), None);
}

#[test]
fn a_driver_polling_with_interrupts_off_gets_none() {
    let sw = VirtualSwitch::new();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let mut b = nic(&sw, MAC_B, BASE_FEATURES);
    b.post_rx(8, 2048);
    // VRING_AVAIL_F_NO_INTERRUPT in the RX queue's available ring, as Linux
    // sets it while NAPI polls.
    let rx_avail = b.driver.queues[0].avail;
    b.mem().write_obj(1u16.to_le(), rx_avail).unwrap();
    let before = b.irq.count();
    let f1 = eth_frame(MAC_B, MAC_A, 100, 1);
    a.send(&f1);
    assert_eq!(b.recv(), Some(f1), "the frame is in the used ring");
    assert_eq!(b.irq.count(), before, "no interrupt while the driver polls");
    // Interrupts back on: the next frame raises one.
    b.mem().write_obj(0u16, rx_avail).unwrap();
    let f2 = eth_frame(MAC_B, MAC_A, 100, 2);
    a.send(&f2);
    assert_eq!(b.recv(), Some(f2));
    assert_eq!(b.irq.count(), before + 1);
}

#[test]
fn broadcast_reaches_all_and_unknown_unicast_floods() {
    let sw = VirtualSwitch::new();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let mut b = nic(&sw, MAC_B, BASE_FEATURES);
    let mut c = nic(&sw, MAC_C, BASE_FEATURES);
    for n in [&mut a, &mut b, &mut c] {
        n.post_rx(8, 2048);
    }
    let bcast = eth_frame(BROADCAST, MAC_A, 50, 3);
    a.send(&bcast);
    assert_eq!(b.recv(), Some(bcast.clone()));
    assert_eq!(c.recv(), Some(bcast));
    assert_eq!(a.recv(), None);
    // B has never sent: its MAC is unknown, so A's unicast to it floods.
    let to_b = eth_frame(MAC_B, MAC_A, 60, 4);
    a.send(&to_b);
    assert_eq!(b.recv(), Some(to_b.clone()));
    assert_eq!(c.recv(), Some(to_b));
    // Once B has spoken, frames for B reach only B.
    b.send(&eth_frame(MAC_A, MAC_B, 60, 5));
    assert!(a.recv().is_some());
    assert_eq!(c.recv(), None, "learned unicast is not flooded");
    a.send(&eth_frame(MAC_B, MAC_A, 60, 6));
    assert!(b.recv().is_some());
    assert_eq!(c.recv(), None);
}

#[test]
fn mergeable_rx_buffers_carry_a_large_frame_in_several_buffers() {
    let sw = VirtualSwitch::new();
    let wanted = BASE_FEATURES | features::MRG_RXBUF;
    let mut a = nic(&sw, MAC_A, wanted);
    let mut b = nic(&sw, MAC_B, wanted);
    assert_ne!(b.features & features::MRG_RXBUF, 0);
    b.post_rx(16, 512);
    let big = eth_frame(MAC_B, MAC_A, 1486, 7);
    a.send(&big);
    assert_eq!(b.recv(), Some(big)); // 1512 bytes with header: 3 buffers
    b.transport.poll();
    assert_eq!(b.driver.pop_used(0).unwrap(), None);
}

#[test]
fn frame_larger_than_a_non_mergeable_buffer_is_dropped_and_buffer_kept() {
    let sw = VirtualSwitch::new();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let mut b = nic(&sw, MAC_B, BASE_FEATURES);
    b.post_rx(1, 256);
    a.send(&eth_frame(MAC_B, MAC_A, 1000, 8));
    assert_eq!(b.recv(), None);
    let small = eth_frame(MAC_B, MAC_A, 100, 9);
    a.send(&small);
    assert_eq!(
        b.recv(),
        Some(small),
        "the same buffer serves the next frame"
    );
    assert_eq!(b.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn frames_wait_in_the_switch_until_the_guest_posts_buffers() {
    let sw = VirtualSwitch::new();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let mut b = nic(&sw, MAC_B, BASE_FEATURES);
    let frames: Vec<_> = (0..3).map(|i| eth_frame(MAC_B, MAC_A, 64, i)).collect();
    for f in &frames {
        a.send(f);
    }
    assert_eq!(b.recv(), None);
    b.post_rx(4, 2048); // the RX notify delivers what was waiting
    for f in frames {
        assert_eq!(b.recv(), Some(f));
    }
}

#[test]
fn link_change_bumps_config_generation_and_raises_config_interrupt() {
    let sw = VirtualSwitch::new();
    let mem = guest_memory();
    let irq = std::sync::Arc::new(vm_device::interrupt::CountingInterrupt::new());
    let dev = NetDevice::new(MAC_A, Box::new(sw.add_port()));
    let link = dev.link_control();
    let mut t =
        vm_device::virtio::mmio::MmioTransport::new(Box::new(dev), mem.clone(), irq.clone())
            .unwrap();
    let mut drv = GuestDriver::new(mem, vm_memory::GuestAddress(SCRATCH), 1 << 20);
    drv.init(&mut t, BASE_FEATURES, &[16, 16]).unwrap();
    let before = GuestDriver::read_reg(&mut t, reg::CONFIG_GENERATION);
    t.poll();
    assert_eq!(
        GuestDriver::ack_interrupt(&mut t) & INT_CONFIG,
        0,
        "no change, no interrupt"
    );
    link.set_up(false);
    t.poll();
    assert_ne!(GuestDriver::ack_interrupt(&mut t) & INT_CONFIG, 0);
    assert_eq!(
        GuestDriver::read_reg(&mut t, reg::CONFIG_GENERATION),
        before.wrapping_add(1)
    );
    let mut st = [0u8; 2];
    t.read(reg::CONFIG + 6, &mut st);
    assert_eq!(u16::from_le_bytes(st), 0, "link down in config space");
    link.set_up(false); // no change: no new generation
    t.poll();
    assert_eq!(
        GuestDriver::read_reg(&mut t, reg::CONFIG_GENERATION),
        before.wrapping_add(1)
    );
}

#[test]
fn features_not_offered_or_without_version_1_are_refused() {
    let sw = VirtualSwitch::new();
    let mem = guest_memory();
    let irq = std::sync::Arc::new(vm_device::interrupt::CountingInterrupt::new());
    let dev = NetDevice::new(MAC_A, Box::new(sw.add_port()));
    let mut t =
        vm_device::virtio::mmio::MmioTransport::new(Box::new(dev), mem.clone(), irq).unwrap();
    let mut drv = GuestDriver::new(mem.clone(), vm_memory::GuestAddress(SCRATCH), 1 << 20);
    // Legacy driver: no VERSION_1.
    assert!(drv.init(&mut t, features::MAC, &[16, 16]).is_err());
    assert_eq!(GuestDriver::status(&mut t) & status::FEATURES_OK, 0);
    // Accepting a feature the device never offered (`VIRTIO_NET_F_CTRL_VQ`: no control queue).
    GuestDriver::write_reg(&mut t, reg::STATUS, 0);
    GuestDriver::write_reg(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    GuestDriver::write_reg(&mut t, reg::DRIVER_FEATURES_SEL, 0);
    GuestDriver::write_reg(
        &mut t,
        reg::DRIVER_FEATURES,
        (features::MAC | 1 << 17) as u32,
    );
    GuestDriver::write_reg(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    GuestDriver::write_reg(
        &mut t,
        reg::DRIVER_FEATURES,
        (VIRTIO_F_VERSION_1 >> 32) as u32,
    );
    GuestDriver::write_reg(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(GuestDriver::status(&mut t) & status::FEATURES_OK, 0);
    // DRIVER_OK without FEATURES_OK does nothing.
    GuestDriver::write_reg(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
    );
    assert_eq!(GuestDriver::status(&mut t) & status::DRIVER_OK, 0);
    // A clean retry after reset works.
    let mut drv = GuestDriver::new(mem, vm_memory::GuestAddress(SCRATCH), 1 << 20);
    assert_eq!(
        drv.init(&mut t, BASE_FEATURES, &[16, 16]).unwrap(),
        BASE_FEATURES
    );
}

#[test]
fn tx_rate_limiter_holds_frames_beyond_the_bucket() {
    use vm_device::virtio::net::rate_limiter::RateLimiter;
    use vm_device::virtio::net::NetBackend;
    use vm_memory::Bytes;
    let sw = VirtualSwitch::new();
    let mut peer = sw.add_port();
    // Two packets of credit that never refills: exactly two frames may leave.
    let backend: Box<dyn NetBackend> = Box::new(sw.add_port());
    let dev =
        NetDevice::new(MAC_A, backend).with_tx_rate_limiter(RateLimiter::new(None, Some((2, 0))));
    let mut a = Nic::with_device(dev, BASE_FEATURES);
    let mut frame = vec![0u8; vm_device::virtio::net::VNET_HDR_LEN];
    frame.extend(eth_frame(BROADCAST, MAC_A, 60, 0));
    let addr = a.driver.alloc(frame.len() as u64, 16).unwrap();
    a.mem().write_slice(&frame, addr).unwrap();
    for _ in 0..5 {
        a.driver
            .add_buffer(1, addr, frame.len() as u32, false)
            .unwrap();
    }
    GuestDriver::notify(&mut a.transport, 1);
    a.transport.poll();
    let mut used = 0;
    while a.driver.pop_used(1).unwrap().is_some() {
        used += 1;
    }
    assert_eq!(used, 2, "throttled chains stay in the available ring");
    // The bucket never refills, so the transport asks to be polled "never" (Duration::MAX).
    assert_eq!(a.transport.poll_after(), Some(std::time::Duration::MAX));
    let mut buf = vec![0u8; 2048];
    let mut seen = 0;
    while peer.recv(&mut buf).unwrap().is_some() {
        seen += 1;
    }
    assert_eq!(seen, 2);
    assert_eq!(a.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn offload_requests_that_were_not_negotiated_are_dropped() {
    use vm_device::virtio::net::{NetBackend, VNET_HDR_LEN};
    use vm_memory::Bytes;
    let sw = VirtualSwitch::new();
    let mut peer = sw.add_port();
    let mut a = nic(&sw, MAC_A, BASE_FEATURES);
    let frame = eth_frame(BROADCAST, MAC_A, 60, 0);
    let mut buf = vec![0u8; 2048];
    for (flags, gso) in [(1u8, 0u8), (0, 1), (0, 4)] {
        let mut bytes = vec![0u8; VNET_HDR_LEN];
        bytes[0] = flags;
        bytes[1] = gso;
        bytes.extend_from_slice(&frame);
        let addr = a.driver.alloc(bytes.len() as u64, 16).unwrap();
        a.mem().write_slice(&bytes, addr).unwrap();
        a.driver
            .add_buffer(1, addr, bytes.len() as u32, false)
            .unwrap();
        GuestDriver::notify(&mut a.transport, 1);
        assert!(a.driver.pop_used(1).unwrap().is_some(), "chain returned");
        assert!(
            peer.recv(&mut buf).unwrap().is_none(),
            "flags {flags} gso {gso} not forwarded"
        );
    }
    a.send(&frame);
    let n = peer.recv(&mut buf).unwrap().expect("plain frame forwarded");
    assert_eq!(&buf[VNET_HDR_LEN..n], &frame[..]);
    assert_eq!(a.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn throttled_tx_resumes_on_poll_once_tokens_refill() {
    use vm_device::virtio::net::rate_limiter::RateLimiter;
    use vm_device::virtio::net::NetBackend;
    use vm_memory::Bytes;
    let sw = VirtualSwitch::new();
    let mut peer = sw.add_port();
    // Two packets of burst, 1000 packets/s refill.
    let dev = NetDevice::new(MAC_A, Box::new(sw.add_port()))
        .with_tx_rate_limiter(RateLimiter::new(None, Some((2, 1000))));
    let mut a = Nic::with_device(dev, BASE_FEATURES);
    let mut frame = vec![0u8; vm_device::virtio::net::VNET_HDR_LEN];
    frame.extend(eth_frame(BROADCAST, MAC_A, 60, 0));
    let addr = a.driver.alloc(frame.len() as u64, 16).unwrap();
    a.mem().write_slice(&frame, addr).unwrap();
    for _ in 0..4 {
        a.driver
            .add_buffer(1, addr, frame.len() as u32, false)
            .unwrap();
    }
    GuestDriver::notify(&mut a.transport, 1);
    let wait = a
        .transport
        .poll_after()
        .expect("throttled: asks for a poll");
    assert!(wait <= std::time::Duration::from_millis(1));
    // 10 ms at 1000 packets/s refills the bucket (2): both held frames can go.
    std::thread::sleep(std::time::Duration::from_millis(10));
    a.transport.poll();
    let mut used = 0;
    while a.driver.pop_used(1).unwrap().is_some() {
        used += 1;
    }
    assert_eq!(used, 4);
    assert_eq!(a.transport.poll_after(), None);
    let mut buf = vec![0u8; 2048];
    let mut seen = 0;
    while peer.recv(&mut buf).unwrap().is_some() {
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn a_flood_is_processed_in_bounded_rounds() {
    use vm_device::virtio::net::{NetBackend, VNET_HDR_LEN};
    let sw = VirtualSwitch::new();
    let mut flooder = sw.add_port();
    let mut b = nic(&sw, MAC_B, BASE_FEATURES);
    b.post_rx(1, 128); // too small for the flood's frames: each one is dropped
    let mut big = vec![0u8; VNET_HDR_LEN];
    big.extend(eth_frame(MAC_B, MAC_A, 1000, 0));
    for _ in 0..1000 {
        flooder.send(&big).unwrap();
    }
    b.transport.poll();
    assert_eq!(
        b.transport.poll_after(),
        Some(std::time::Duration::ZERO),
        "stopped at its budget and asks to be polled again"
    );
    b.transport.poll();
    assert_eq!(b.transport.poll_after(), None, "flood drained");
    // The guest's one small buffer is still there for a frame that fits.
    let small = eth_frame(MAC_B, MAC_A, 20, 1);
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&small);
    flooder.send(&f).unwrap();
    assert_eq!(b.recv(), Some(small));
}
