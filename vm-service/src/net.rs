//! virtio-net NICs for a VM: backend selection from configuration, MMIO
//! attachment, and the receive poller.
//!
//! Transmit work happens on the vCPU thread that notifies the queue. Receive
//! work is driven by the backend: a TAP device's file descriptor becomes
//! readable, or a virtual-switch port fires its notifier. One `net-rx` thread
//! per VM ([`crate::poller`]) waits on all of them with `poll(2)` and lets
//! each ready device move frames into the guest's RX queue.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vm_accel::EventNotifier;
use vm_core::config::{NetBackendConfig, NetConfig};
use vm_device::interrupt::{CallbackInterrupt, Interrupt};
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::net::r#virtual::VirtualSwitch;
use vm_device::virtio::net::segment::{SegmentBridge, SegmentError};
use vm_device::virtio::net::tap::Tap;
use vm_device::virtio::net::{NetBackend, NetDevice};
use vm_device::virtio::GuestMemory;

use crate::poller::PolledDevice;

/// Virtual switches by name, shared by the VMs of one process so their NICs
/// can talk (two guests in one embedding process, or a test's peer port).
///
/// With a segment directory ([`SwitchRegistry::with_segment_dir`]) each
/// switch also joins the cross-process segment of the same name there, so
/// VMs in other processes using the same directory are on the same switch
/// (see `vm_device::virtio::net::segment`).
#[derive(Debug, Clone, Default)]
pub struct SwitchRegistry(Arc<Registry>);

#[derive(Debug, Default)]
struct Registry {
    segment_dir: Option<PathBuf>,
    switches: Mutex<HashMap<String, Switch>>,
}

#[derive(Debug)]
struct Switch {
    switch: VirtualSwitch,
    /// Membership in the cross-process segment; leaves it when dropped.
    _segment: Option<SegmentBridge>,
}

impl SwitchRegistry {
    /// An empty registry whose switches stay inside this process.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose switches join the cross-process segment of the
    /// same name under `dir` (created `0700` when first used).
    pub fn with_segment_dir(dir: impl Into<PathBuf>) -> Self {
        Self(Arc::new(Registry {
            segment_dir: Some(dir.into()),
            switches: Mutex::default(),
        }))
    }

    /// Where switches join their cross-process segments, if they do.
    pub fn segment_dir(&self) -> Option<&Path> {
        self.0.segment_dir.as_deref()
    }

    /// The switch called `name`, created (and joined to its segment) on first use.
    pub fn get(&self, name: &str) -> Result<VirtualSwitch, SegmentError> {
        let mut switches = self
            .0
            .switches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = switches.get(name) {
            return Ok(s.switch.clone());
        }
        let switch = VirtualSwitch::new();
        let segment = self
            .0
            .segment_dir
            .as_deref()
            .map(|dir| SegmentBridge::join(&switch, dir, name))
            .transpose()?;
        if let Some(s) = &segment {
            tracing::info!(switch = name, socket = %s.socket_path().display(), "joined switch segment");
        }
        switches.insert(
            name.to_string(),
            Switch {
                switch: switch.clone(),
                _segment: segment,
            },
        );
        Ok(switch)
    }
}

/// Where `vm-service run` joins switch segments by default:
/// `$XDG_RUNTIME_DIR/vm-service/switches`, else `/tmp/vm-service-<uid>/switches`.
pub fn default_switch_dir() -> PathBuf {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&runtime).join("vm-service").join("switches");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    PathBuf::from(format!("/tmp/vm-service-{uid}/switches"))
}

/// A locally administered MAC, unique per process and NIC.
pub fn generated_mac() -> [u8; 6] {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let pid = std::process::id().to_be_bytes();
    [
        0x52,
        0x54,
        0x00,
        pid[2],
        pid[3],
        NEXT.fetch_add(1, Ordering::Relaxed),
    ]
}

/// Opens the backend for `config` and puts the device behind a transport.
pub(crate) fn attach(
    config: &NetConfig,
    mem: GuestMemory,
    interrupt: Arc<dyn Interrupt>,
    switches: &SwitchRegistry,
) -> Result<PolledDevice, Box<dyn std::error::Error + Send + Sync>> {
    let backend: Box<dyn NetBackend> = match &config.backend {
        NetBackendConfig::Virtual { switch } => Box::new(switches.get(switch)?.add_port()),
        NetBackendConfig::Tap { ifname } => Box::new(Tap::open(ifname)?),
    };
    let mac = config.mac.map_or_else(generated_mac, |m| m.0);
    let mut device = NetDevice::new(mac, backend);
    let (wake_fd, notifier) = if let Some(fd) = device.backend().raw_fd() {
        (fd, None)
    } else {
        let notifier = Arc::new(EventNotifier::new_nonblocking()?);
        let fire = Arc::clone(&notifier);
        device.set_rx_notifier(Arc::new(CallbackInterrupt::new(move || fire.notify())));
        (notifier.as_event_fd().as_raw_fd(), Some(notifier))
    };
    let transport = MmioTransport::new(Box::new(device), mem, interrupt)?;
    Ok(PolledDevice {
        transport: Arc::new(Mutex::new(transport)),
        wake_fd,
        notifier,
    })
}
