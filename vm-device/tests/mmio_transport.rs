//! The virtio-mmio transport's register rules, with a scripted device.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use vm_device::bus::BusDevice;
use vm_device::interrupt::CountingInterrupt;
use vm_device::virtio::guest_driver::GuestDriver;
use vm_device::virtio::mmio::{reg, MmioTransport, INT_CONFIG};
use vm_device::virtio::{
    status, DeviceError, GuestMemory, QueueContext, UsedQueues, VirtioDevice, VIRTIO_F_VERSION_1,
};
use vm_memory::GuestAddress;

const FEATURE_X: u64 = 1 << 3;

#[derive(Debug, Default)]
struct Script {
    fail_next_notify: AtomicBool,
    notified: AtomicU32,
    activated_with: std::sync::Mutex<Option<u64>>,
    resets: AtomicU32,
}

#[derive(Debug)]
struct ScriptedDevice(Arc<Script>);

impl VirtioDevice for ScriptedDevice {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16]
    }
    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | FEATURE_X
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = (offset as u8).wrapping_add(i as u8);
        }
    }
    fn activate(&mut self, acked: u64, _ctx: QueueContext<'_>) -> Result<(), DeviceError> {
        *self.0.activated_with.lock().unwrap() = Some(acked);
        Ok(())
    }
    fn queue_notify(
        &mut self,
        _index: u16,
        _ctx: QueueContext<'_>,
    ) -> Result<UsedQueues, DeviceError> {
        self.0.notified.fetch_add(1, Ordering::SeqCst);
        if self.0.fail_next_notify.swap(false, Ordering::SeqCst) {
            return Err(DeviceError::Activation("scripted failure".into()));
        }
        Ok(UsedQueues::default())
    }
    fn reset(&mut self) {
        self.0.resets.fetch_add(1, Ordering::SeqCst);
    }
}

fn setup() -> (
    MmioTransport,
    Arc<Script>,
    Arc<CountingInterrupt>,
    GuestDriver,
) {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let script = Arc::new(Script::default());
    let irq = Arc::new(CountingInterrupt::new());
    let t = MmioTransport::new(
        Box::new(ScriptedDevice(script.clone())),
        mem.clone(),
        irq.clone(),
    )
    .unwrap();
    let drv = GuestDriver::new(mem, GuestAddress(0x1000), 0x10000);
    (t, script, irq, drv)
}

fn rd(t: &mut MmioTransport, off: u64) -> u32 {
    GuestDriver::read_reg(t, off)
}
fn wr(t: &mut MmioTransport, off: u64, v: u32) {
    GuestDriver::write_reg(t, off, v);
}

#[test]
fn identity_and_feature_words() {
    let (mut t, ..) = setup();
    assert_eq!(rd(&mut t, reg::DEVICE_ID), 42);
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), FEATURE_X as u32);
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1);
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 7);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 0);
    wr(&mut t, reg::QUEUE_SEL, 0);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 16);
    wr(&mut t, reg::QUEUE_SEL, 1);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 0, "no such queue");
    assert_eq!(
        rd(&mut t, reg::SHM_LEN_LOW),
        u32::MAX,
        "no shared memory region"
    );
    assert_eq!(rd(&mut t, reg::SHM_LEN_HIGH), u32::MAX);
}

#[test]
fn handshake_activates_with_the_negotiated_features() {
    let (mut t, script, _, mut drv) = setup();
    let got = drv
        .init(&mut t, VIRTIO_F_VERSION_1 | FEATURE_X | (1 << 20), &[16])
        .unwrap();
    assert_eq!(got, VIRTIO_F_VERSION_1 | FEATURE_X);
    assert_eq!(*script.activated_with.lock().unwrap(), Some(got));
    assert_eq!(t.status(), 0x0f);
}

#[test]
fn registers_outside_their_phase_are_ignored() {
    let (mut t, script, _, mut drv) = setup();
    // Driver features before DRIVER is set: ignored.
    wr(&mut t, reg::DRIVER_FEATURES_SEL, 0);
    wr(&mut t, reg::DRIVER_FEATURES, FEATURE_X as u32);
    drv.init(&mut t, VIRTIO_F_VERSION_1, &[16]).unwrap();
    assert_eq!(
        *script.activated_with.lock().unwrap(),
        Some(VIRTIO_F_VERSION_1)
    );
    // After DRIVER_OK: queue registers and driver features are frozen.
    wr(&mut t, reg::QUEUE_SEL, 0);
    wr(&mut t, reg::QUEUE_READY, 0);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 1);
    // Clearing status bits without a reset is ignored.
    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    assert_eq!(t.status(), 0x0f);
    // Unaligned and odd-sized register accesses do nothing and read zero.
    t.write(reg::STATUS + 1, &[0, 0, 0, 0]);
    t.write(reg::STATUS, &[0, 0]);
    assert_eq!(t.status(), 0x0f);
    let mut b = [0xffu8; 2];
    t.read(reg::MAGIC, &mut b);
    assert_eq!(b, [0, 0]);
    // Config space is byte addressable.
    let mut c = [0u8; 3];
    t.read(reg::CONFIG + 5, &mut c);
    assert_eq!(c, [5, 6, 7]);
}

#[test]
fn notify_before_driver_ok_or_for_missing_queue_is_not_delivered() {
    let (mut t, script, _, mut drv) = setup();
    GuestDriver::notify(&mut t, 0);
    assert_eq!(script.notified.load(Ordering::SeqCst), 0);
    drv.init(&mut t, VIRTIO_F_VERSION_1, &[16]).unwrap();
    GuestDriver::notify(&mut t, 5);
    assert_eq!(script.notified.load(Ordering::SeqCst), 0);
    GuestDriver::notify(&mut t, 0);
    assert_eq!(script.notified.load(Ordering::SeqCst), 1);
}

#[test]
fn device_error_sets_needs_reset_until_the_driver_resets() {
    let (mut t, script, irq, mut drv) = setup();
    drv.init(&mut t, VIRTIO_F_VERSION_1, &[16]).unwrap();
    script.fail_next_notify.store(true, Ordering::SeqCst);
    GuestDriver::notify(&mut t, 0);
    assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(irq.count(), 1);
    assert!(t.last_error().is_some());
    // Ack only some bits: the others stay.
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
    wr(&mut t, reg::INTERRUPT_ACK, 1);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
    wr(&mut t, reg::INTERRUPT_ACK, INT_CONFIG);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), 0);
    // The device is not called while it needs a reset.
    GuestDriver::notify(&mut t, 0);
    assert_eq!(script.notified.load(Ordering::SeqCst), 1);
    // Reset clears everything; a new handshake works.
    wr(&mut t, reg::STATUS, 0);
    assert_eq!(t.status(), 0);
    assert!(t.last_error().is_none());
    assert_eq!(
        script.resets.load(Ordering::SeqCst),
        2,
        "one per init, one now"
    );
    let mut drv = GuestDriver::new(drv.mem().clone(), GuestAddress(0x8000), 0x8000);
    drv.init(&mut t, VIRTIO_F_VERSION_1, &[16]).unwrap();
    GuestDriver::notify(&mut t, 0);
    assert_eq!(script.notified.load(Ordering::SeqCst), 2);
}

#[test]
fn state_restores_into_a_fresh_transport_and_hostile_states_are_refused() {
    let (mut t, _, _, mut drv) = setup();
    let got = drv
        .init(&mut t, VIRTIO_F_VERSION_1 | FEATURE_X, &[16])
        .unwrap();
    let state = t.state();
    assert_eq!(state.driver_features, got);

    let (mut fresh, script, _, _) = setup();
    fresh.restore(&state).unwrap();
    assert_eq!(fresh.state(), state);
    assert_eq!(fresh.status(), 0x0f);
    assert_eq!(
        *script.activated_with.lock().unwrap(),
        Some(got),
        "a running device is activated again"
    );

    // Rings outside guest memory (1 MiB here): refused, the transport untouched.
    let mut outside = state.clone();
    outside.queues[0].desc_table = 1 << 40;
    let (mut fresh, script, _, _) = setup();
    let err = fresh.restore(&outside).unwrap_err();
    assert!(err.to_string().contains("queue 0"), "{err}");
    assert_eq!(fresh.status(), 0);
    assert_eq!(*script.activated_with.lock().unwrap(), None);

    let mut wrong_type = state.clone();
    wrong_type.device_type = 1;
    assert!(fresh.restore(&wrong_type).is_err());
    let mut bad_size = state.clone();
    bad_size.queues[0].size = 3;
    assert!(fresh.restore(&bad_size).is_err());
    let mut extra_queue = state.clone();
    extra_queue.queues.push(extra_queue.queues[0]);
    assert!(fresh.restore(&extra_queue).is_err());
    let mut unoffered = state;
    unoffered.driver_features |= 1 << 50;
    assert!(fresh.restore(&unoffered).is_err());
    assert_eq!(fresh.status(), 0);
}
