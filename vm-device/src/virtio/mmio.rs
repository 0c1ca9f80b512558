//! The virtio-mmio transport (virtio 1.x "modern" register layout, version 2).
//!
//! The transport owns the device's queues and runs the driver's handshake:
//! reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK, queue set-up,
//! DRIVER_OK. Notifies are handed to the device; whatever error the device
//! reports sets `DEVICE_NEEDS_RESET` and raises a configuration interrupt, and
//! the device stays quiet until the driver resets it.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::VIRTIO_F_VERSION_1;
use super::{status, DeviceError, GuestMemory, QueueContext, UsedQueues, VirtioDevice};
use crate::bus::BusDevice;
use crate::interrupt::Interrupt;
use crate::state::StateError;

/// Size of the MMIO window of one virtio-mmio device.
pub const MMIO_WINDOW_LEN: u64 = 0x1000;
/// "virt" in little endian, the MagicValue register.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// Register offsets (virtio 1.x, 4.2.2).
pub mod reg {
    /// Magic value "virt".
    pub const MAGIC: u64 = 0x000;
    /// Transport version (2 = modern).
    pub const VERSION: u64 = 0x004;
    /// Device type id.
    pub const DEVICE_ID: u64 = 0x008;
    /// Vendor id.
    pub const VENDOR_ID: u64 = 0x00c;
    /// Device features, 32 bits selected by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Selects the device feature word.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// Driver features, 32 bits selected by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Selects the driver feature word.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Selects the queue the queue registers refer to.
    pub const QUEUE_SEL: u64 = 0x030;
    /// Maximum size of the selected queue.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// Size of the selected queue.
    pub const QUEUE_NUM: u64 = 0x038;
    /// Ready bit of the selected queue.
    pub const QUEUE_READY: u64 = 0x044;
    /// Notify: the queue index that has new buffers.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Interrupt status (bit 0 used buffers, bit 1 config change).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Interrupt acknowledge.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Device status.
    pub const STATUS: u64 = 0x070;
    /// Descriptor table address, low 32 bits.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// Descriptor table address, high 32 bits.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Available (driver) ring address, low 32 bits.
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    /// Available (driver) ring address, high 32 bits.
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    /// Used (device) ring address, low 32 bits.
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    /// Used (device) ring address, high 32 bits.
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    /// Shared-memory region length, low 32 bits (all ones: no region).
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// Shared-memory region length, high 32 bits.
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// Shared-memory region base, low 32 bits.
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    /// Shared-memory region base, high 32 bits.
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    /// Configuration generation counter.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Start of the device-specific configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Interrupt status bit: a queue has used buffers.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration changed (or the device needs reset).
pub const INT_CONFIG: u32 = 2;

/// A virtio device on the MMIO bus.
#[derive(Debug)]
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    interrupt: Arc<dyn Interrupt>,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    seen_device_generation: u32,
    last_error: Option<DeviceError>,
}

impl MmioTransport {
    /// Put `device` behind an MMIO transport using `mem` and raising `interrupt`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<dyn Interrupt>,
    ) -> Result<Self, DeviceError> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .enumerate()
            .map(|(i, &max)| {
                <Queue as QueueT>::new(max).map_err(|source| DeviceError::Queue {
                    queue: i as u16,
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seen_device_generation = device.config_generation();
        Ok(Self {
            device,
            mem,
            interrupt,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            seen_device_generation,
            last_error: None,
        })
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Whether the device has flagged `DEVICE_NEEDS_RESET`.
    pub fn needs_reset(&self) -> bool {
        self.status & status::DEVICE_NEEDS_RESET != 0
    }

    /// The error that set `DEVICE_NEEDS_RESET`, until the driver resets the device.
    pub fn last_error(&self) -> Option<&DeviceError> {
        self.last_error.as_ref()
    }

    /// The device model.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    /// The device model, mutably (e.g. to change link state).
    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        self.device.as_mut()
    }

    fn running(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && !self.needs_reset()
    }

    /// When the VMM should call [`MmioTransport::poll`] even without an event
    /// (a throttled queue waiting for its rate limiter), if ever.
    pub fn poll_after(&self) -> Option<std::time::Duration> {
        if self.running() {
            self.device.poll_after()
        } else {
            None
        }
    }

    /// Run work the device has outside driver notifications (e.g. frames from a
    /// backend); the VMM calls this when a backend becomes readable.
    pub fn poll(&mut self) {
        self.check_config_change();
        if !self.running() {
            return;
        }
        let ctx = QueueContext {
            mem: &self.mem,
            queues: &mut self.queues,
        };
        let result = self.device.poll(ctx);
        self.finish(result);
    }

    fn check_config_change(&mut self) {
        let generation = self.device.config_generation();
        if generation != self.seen_device_generation {
            self.seen_device_generation = generation;
            self.config_generation = self.config_generation.wrapping_add(1);
            if self.status & status::DRIVER_OK != 0 {
                self.raise(INT_CONFIG);
            }
        }
    }

    fn notify(&mut self, index: u32) {
        if !self.running() {
            tracing::debug!(
                index,
                status = self.status,
                "virtio-mmio: notify ignored, device not running"
            );
            return;
        }
        let Some(queue) = self.queues.get(index as usize) else {
            tracing::warn!(index, "virtio-mmio: notify for a queue that does not exist");
            return;
        };
        if !queue.ready() {
            tracing::warn!(index, "virtio-mmio: notify for a queue that is not ready");
            return;
        }
        let ctx = QueueContext {
            mem: &self.mem,
            queues: &mut self.queues,
        };
        let result = self.device.queue_notify(index as u16, ctx);
        self.finish(result);
    }

    fn finish(&mut self, result: Result<UsedQueues, DeviceError>) {
        match result {
            Ok(used) => self.signal_used(used),
            Err(err) => self.fail(err),
        }
    }

    fn signal_used(&mut self, used: UsedQueues) {
        if used.0 == 0 {
            return;
        }
        let mut needed = false;
        for (i, q) in self.queues.iter_mut().enumerate() {
            if used.contains(i) {
                // Honour used_event (EVENT_IDX) or VRING_AVAIL_F_NO_INTERRUPT;
                // on a read error interrupt anyway: a spurious interrupt is
                // harmless.
                let wanted = q.needs_notification(&self.mem).unwrap_or(true);
                needed |= wanted && !interrupts_suppressed(&self.mem, q);
            }
        }
        if needed {
            self.raise(INT_VRING);
        }
    }

    /// Enter DEVICE_NEEDS_RESET after a device error and tell the driver.
    fn fail(&mut self, err: DeviceError) {
        tracing::error!(%err, "virtio-mmio: device error, setting DEVICE_NEEDS_RESET");
        self.last_error = Some(err);
        self.status |= status::DEVICE_NEEDS_RESET;
        self.raise(INT_CONFIG);
    }

    fn raise(&mut self, bit: u32) {
        self.interrupt_status |= bit;
        if let Err(err) = self.interrupt.trigger() {
            tracing::error!(%err, "virtio-mmio: interrupt delivery failed");
        }
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.last_error = None;
        self.seen_device_generation = self.device.config_generation();
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            tracing::debug!("virtio-mmio: driver reset the device");
            self.reset();
            return;
        }
        let added = value & !self.status;
        let removed = self.status & !value & !status::DEVICE_NEEDS_RESET;
        if removed != 0 {
            tracing::warn!(
                old = self.status,
                new = value,
                "virtio-mmio: driver cleared status bits without reset; ignored"
            );
            return;
        }
        let keep = self.status & status::DEVICE_NEEDS_RESET;
        if added & status::FEATURES_OK != 0 && !self.features_acceptable() {
            // The driver re-reads status and sees FEATURES_OK unset (3.1.1).
            self.status = (value & !status::FEATURES_OK) | keep;
            return;
        }
        if added & status::DRIVER_OK != 0 {
            if self.status & status::FEATURES_OK == 0 {
                tracing::warn!("virtio-mmio: DRIVER_OK before FEATURES_OK; ignored");
                return;
            }
            self.status = value | keep;
            let acked = self.driver_features;
            let ctx = QueueContext {
                mem: &self.mem,
                queues: &mut self.queues,
            };
            if let Err(err) = self.device.activate(acked, ctx) {
                self.fail(err);
            }
            return;
        }
        self.status = value | keep;
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device.device_features();
        let extra = self.driver_features & !offered;
        if extra != 0 {
            tracing::warn!(
                extra,
                "virtio-mmio: driver accepted features the device did not offer"
            );
            return false;
        }
        if self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            tracing::warn!("virtio-mmio: legacy driver (no VIRTIO_F_VERSION_1) refused");
            return false;
        }
        true
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        // Queue registers only change between FEATURES_OK and DRIVER_OK.
        let configurable =
            self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0;
        let sel = self.queue_sel;
        match self.queues.get_mut(sel as usize) {
            Some(q) if configurable => Some(q),
            Some(_) => {
                tracing::warn!(
                    sel,
                    "virtio-mmio: queue register written outside queue set-up"
                );
                None
            }
            None => {
                tracing::warn!(
                    sel,
                    "virtio-mmio: queue register written for a missing queue"
                );
                None
            }
        }
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            reg::MAGIC => MMIO_MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => 0,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.device_features() as u32,
                1 => (self.device.device_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            // No shared-memory regions: the spec's "absent" value is all ones.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            _ => {
                tracing::debug!(offset, "virtio-mmio: read of an unknown register");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        let negotiating =
            self.status & status::DRIVER != 0 && self.status & status::FEATURES_OK == 0;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES if negotiating => match self.driver_features_sel {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value);
                }
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32);
                }
                sel => tracing::warn!(sel, "virtio-mmio: driver features word out of range"),
            },
            reg::DRIVER_FEATURES => {
                tracing::warn!(
                    status = self.status,
                    "virtio-mmio: driver features written outside negotiation"
                );
            }
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    if let Err(err) = q.try_set_size(value as u16).map_err(|e| (e, value)) {
                        tracing::warn!(?err, "virtio-mmio: bad queue size");
                    }
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_AVAIL_LOW
            | reg::QUEUE_AVAIL_HIGH
            | reg::QUEUE_USED_LOW
            | reg::QUEUE_USED_HIGH => {
                if let Some(q) = self.selected_queue() {
                    set_queue_address(q, offset, value);
                }
            }
            reg::QUEUE_NOTIFY => self.notify(value),
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => self.set_status(value),
            _ => tracing::debug!(
                offset,
                value,
                "virtio-mmio: write to an unknown or read-only register"
            ),
        }
    }
}

/// One virtqueue in a snapshot (virtio-queue's `QueueState`, serialisable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    /// Largest size the device offers.
    pub max_size: u16,
    /// Next available-ring entry the device reads.
    pub next_avail: u16,
    /// Next used-ring entry the device writes.
    pub next_used: u16,
    /// `VIRTIO_F_RING_EVENT_IDX` in use.
    pub event_idx_enabled: bool,
    /// Size the driver chose.
    pub size: u16,
    /// Ready bit.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
}

/// A virtio-mmio transport in a snapshot: the registers, the negotiated
/// features and every queue. The device model behind it (virtio-net,
/// virtio-blk) keeps no other guest-visible state: when the driver had
/// finished (`DRIVER_OK`), restore activates it again with the acked features,
/// which checks every queue against guest memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MmioTransportState {
    /// The virtio device type id, to refuse a state for another kind of device.
    pub device_type: u32,
    /// Device status register.
    pub status: u32,
    /// `DeviceFeaturesSel`.
    pub device_features_sel: u32,
    /// `DriverFeaturesSel`.
    pub driver_features_sel: u32,
    /// Features the driver accepted.
    pub driver_features: u64,
    /// `QueueSel`.
    pub queue_sel: u32,
    /// Interrupt status bits not yet acknowledged.
    pub interrupt_status: u32,
    /// Configuration generation the driver sees.
    pub config_generation: u32,
    /// The queues, indexed like the device's.
    pub queues: Vec<QueueSnapshot>,
}

impl MmioTransport {
    /// The state to save (take it with the vCPUs paused and the device's
    /// I/O thread idle).
    pub fn state(&self) -> MmioTransportState {
        MmioTransportState {
            device_type: self.device.device_type(),
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            queues: self
                .queues
                .iter()
                .map(|q| {
                    let s = q.state();
                    QueueSnapshot {
                        max_size: s.max_size,
                        next_avail: s.next_avail,
                        next_used: s.next_used,
                        event_idx_enabled: s.event_idx_enabled,
                        size: s.size,
                        ready: s.ready,
                        desc_table: s.desc_table,
                        avail_ring: s.avail_ring,
                        used_ring: s.used_ring,
                    }
                })
                .collect(),
        }
    }

    /// Restores `state` into this freshly built transport. Everything is
    /// checked before anything changes: the device type, the queue count and
    /// sizes, features the device never offered, and, for a running device,
    /// every queue's rings against guest memory (the device is then activated
    /// again). On error the transport is left as it was.
    pub fn restore(&mut self, state: &MmioTransportState) -> Result<(), StateError> {
        let invalid = |reason: String| StateError::Invalid {
            device: "virtio-mmio",
            reason,
        };
        if state.device_type != self.device.device_type() {
            return Err(invalid(format!(
                "the state is for device type {}, this device is type {}",
                state.device_type,
                self.device.device_type()
            )));
        }
        if state.queues.len() != self.queues.len() {
            return Err(StateError::Size {
                device: "virtio-mmio",
                what: "queues",
                expected: self.queues.len(),
                found: state.queues.len(),
            });
        }
        let extra = state.driver_features & !self.device.device_features();
        if extra != 0 {
            return Err(invalid(format!(
                "driver features {extra:#x} were never offered by the device"
            )));
        }
        let mut queues = Vec::with_capacity(state.queues.len());
        for (i, (q, own)) in state.queues.iter().zip(&self.queues).enumerate() {
            if q.max_size != own.max_size() {
                return Err(invalid(format!(
                    "queue {i}: maximum size {} in the state, {} on the device",
                    q.max_size,
                    own.max_size()
                )));
            }
            let queue = Queue::try_from(virtio_queue::QueueState {
                max_size: q.max_size,
                next_avail: q.next_avail,
                next_used: q.next_used,
                event_idx_enabled: q.event_idx_enabled,
                size: q.size,
                ready: q.ready,
                desc_table: q.desc_table,
                avail_ring: q.avail_ring,
                used_ring: q.used_ring,
            })
            .map_err(|e| invalid(format!("queue {i}: {e}")))?;
            queues.push(queue);
        }
        let running =
            state.status & status::DRIVER_OK != 0 && state.status & status::DEVICE_NEEDS_RESET == 0;
        if running {
            for (i, q) in queues.iter().enumerate() {
                if q.ready() {
                    super::validate_queue(&self.mem, q, i as u16)
                        .map_err(|e| invalid(format!("queue {i}: {e}")))?;
                }
            }
            let ctx = QueueContext {
                mem: &self.mem,
                queues: &mut queues,
            };
            self.device
                .activate(state.driver_features, ctx)
                .map_err(|e| invalid(format!("activating the device: {e}")))?;
        }
        self.queues = queues;
        self.status = state.status;
        self.device_features_sel = state.device_features_sel;
        self.driver_features_sel = state.driver_features_sel;
        self.driver_features = state.driver_features;
        self.queue_sel = state.queue_sel;
        self.interrupt_status = state.interrupt_status;
        self.config_generation = state.config_generation;
        self.seen_device_generation = self.device.config_generation();
        self.last_error = None;
        if self.interrupt_status != 0 {
            // The guest has not acknowledged these yet: its line must be up again.
            if let Err(err) = self.interrupt.trigger() {
                tracing::warn!(%err, "virtio-mmio: re-raising a restored interrupt failed");
            }
        }
        Ok(())
    }
}

fn set_queue_address(q: &mut Queue, offset: u64, value: u32) {
    let patch = |old: u64| -> GuestAddress {
        if offset & 4 == 0 {
            GuestAddress((old & !0xffff_ffff) | u64::from(value))
        } else {
            GuestAddress((old & 0xffff_ffff) | (u64::from(value) << 32))
        }
    };
    let result = match offset {
        reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH => {
            q.try_set_desc_table_address(patch(q.desc_table()))
        }
        reg::QUEUE_AVAIL_LOW | reg::QUEUE_AVAIL_HIGH => {
            q.try_set_avail_ring_address(patch(q.avail_ring()))
        }
        _ => q.try_set_used_ring_address(patch(q.used_ring())),
    };
    if let Err(err) = result {
        tracing::warn!(?err, offset, value, "virtio-mmio: bad queue address");
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.check_config_change();
            self.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        let value = if data.len() == 4 && offset.is_multiple_of(4) {
            self.read_reg(offset)
        } else {
            tracing::warn!(
                offset,
                len = data.len(),
                "virtio-mmio: register read that is not 32-bit aligned"
            );
            0
        };
        let bytes = value.to_le_bytes();
        for (d, b) in data
            .iter_mut()
            .zip(bytes.iter().chain(std::iter::repeat(&0)))
        {
            *d = *b;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.device.write_config(offset - reg::CONFIG, data);
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(bytes) if offset.is_multiple_of(4) => {
                self.write_reg(offset, u32::from_le_bytes(bytes));
            }
            _ => tracing::warn!(
                offset,
                len = data.len(),
                "virtio-mmio: register write that is not 32-bit aligned"
            ),
        }
    }
}

/// `VRING_AVAIL_F_NO_INTERRUPT`: the driver polls the used ring (Linux sets
/// it while NAPI or its TX completion handling runs).
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Whether the driver of `q` asked for no interrupts through the available
/// ring's flags (meaningful only without `EVENT_IDX`). Read after the used
/// ring's index was published (`needs_notification` fences), so a driver that
/// clears the flag and then checks the used ring cannot miss both the
/// interrupt and the buffers. Unreadable flags count as "not asked".
fn interrupts_suppressed(mem: &GuestMemory, q: &Queue) -> bool {
    use vm_memory::Bytes;
    !q.event_idx_enabled()
        && mem
            .read_obj::<u16>(GuestAddress(q.avail_ring()))
            .is_ok_and(|flags| u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT != 0)
}
