//! virtio-net NICs for a VM: backend selection from configuration, MMIO
//! attachment, and the receive poller.
//!
//! Transmit work happens on the vCPU thread that notifies the queue. Receive
//! work is driven by the backend: a TAP device's file descriptor becomes
//! readable, or a virtual-switch port fires its notifier. One `net-rx` thread
//! per VM waits on all of them with `poll(2)` and lets each ready device move
//! frames into the guest's RX queue.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vm_accel::EventNotifier;
use vm_core::config::{NetBackendConfig, NetConfig as NetDeviceConfig};
use vm_device::interrupt::{CallbackInterrupt, Interrupt};
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::net::r#virtual::VirtualSwitch;
use vm_device::virtio::net::segment::{SegmentBridge, SegmentError};
use vm_device::virtio::net::{NetBackendConfig as Backend, NetConfig, NetDevice};
use vm_device::virtio::GuestMemory;

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

/// One NIC attached to a VM.
pub(crate) struct AttachedNic {
    pub transport: Arc<Mutex<MmioTransport>>,
    /// What the poller waits on: the backend's fd, or the rx notifier's.
    wake_fd: i32,
    /// A virtual port's rx notifier (its fd is `wake_fd`); None for TAP.
    notifier: Option<Arc<EventNotifier>>,
}

/// Opens the backend for `config` and puts the device behind a transport.
pub(crate) fn attach(
    config: &NetDeviceConfig,
    mem: GuestMemory,
    interrupt: Arc<dyn Interrupt>,
    switches: &SwitchRegistry,
) -> Result<AttachedNic, Box<dyn std::error::Error + Send + Sync>> {
    let backend = match &config.backend {
        NetBackendConfig::Virtual { switch } => Backend::Virtual {
            switch: switches.get(switch)?,
        },
        NetBackendConfig::Tap { ifname } => Backend::Tap {
            name: ifname.clone(),
        },
    }
    .open()?;
    let mac = config.mac.map_or_else(generated_mac, |m| m.0);
    let mut device = NetDevice::new(NetConfig::new(mac), backend);
    let (wake_fd, notifier) = if let Some(fd) = device.backend().raw_fd() {
        (fd, None)
    } else {
        let notifier = Arc::new(EventNotifier::new_nonblocking()?);
        let fire = Arc::clone(&notifier);
        device.set_rx_notifier(Arc::new(CallbackInterrupt::new(move || fire.notify())));
        (notifier.as_event_fd().as_raw_fd(), Some(notifier))
    };
    let transport = MmioTransport::new(Box::new(device), mem, interrupt)?;
    Ok(AttachedNic {
        transport: Arc::new(Mutex::new(transport)),
        wake_fd,
        notifier,
    })
}

/// Back-to-back wake-ups of one NIC before it rests.
const STREAK_LIMIT: u32 = 1024;
/// How long a NIC rests.
const REST: Duration = Duration::from_millis(1);
/// `REST` for poll(2).
const REST_MS: i32 = 1;

/// Stops the receive poller when dropped.
#[derive(Debug)]
pub(crate) struct RxPoller {
    stop: Arc<EventNotifier>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for RxPoller {
    fn drop(&mut self) {
        let _ = self.stop.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the `net-rx` thread for `nics` (none when there are no NICs).
pub(crate) fn spawn_rx_poller(nics: Vec<AttachedNic>) -> std::io::Result<Option<RxPoller>> {
    if nics.is_empty() {
        return Ok(None);
    }
    let stop = Arc::new(EventNotifier::new_nonblocking()?);
    let stop_fd = stop.as_event_fd().as_raw_fd();
    let thread = std::thread::Builder::new()
        .name("net-rx".into())
        .spawn(move || {
            let mut fds: Vec<libc::pollfd> = nics
                .iter()
                .map(|n| n.wake_fd)
                .chain(std::iter::once(stop_fd))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // A TAP fd stays readable while the guest posts no RX buffers: after a
            // long run of back-to-back wake-ups a NIC sits out a short pause, so a
            // guest that never receives cannot make this thread spin a host core.
            let mut ready_streak = vec![0u32; nics.len()];
            let mut resting: Vec<(usize, Instant)> = Vec::new();
            loop {
                let now = Instant::now();
                resting.retain(|&(i, since)| {
                    let done = now.duration_since(since) >= REST;
                    if done {
                        fds[i].fd = nics[i].wake_fd;
                        ready_streak[i] = 0;
                    }
                    !done
                });
                let timeout = if resting.is_empty() { -1 } else { REST_MS };
                // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for
                // the duration of the call; every fd stays open while `nics` and
                // `stop` live, which outlive this loop.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
                if n < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    tracing::error!(%err, "net-rx: poll failed; receive stops");
                    return;
                }
                if fds.last().is_some_and(|p| p.revents != 0) {
                    return;
                }
                if n == 0 {
                    continue;
                }
                for (i, (nic, pfd)) in nics.iter().zip(&mut fds).enumerate() {
                    if pfd.revents == 0 {
                        ready_streak[i] = 0;
                        continue;
                    }
                    pfd.revents = 0;
                    drainnotifier(nic);
                    nic.transport
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .poll();
                    ready_streak[i] += 1;
                    if ready_streak[i] >= STREAK_LIMIT {
                        pfd.fd = -1; // poll(2) ignores negative fds
                        resting.push((i, Instant::now()));
                    }
                }
            }
        })?;
    Ok(Some(RxPoller {
        stop,
        thread: Some(thread),
    }))
}

/// Resets a virtual port's notifier so `poll` does not spin on it.
fn drainnotifier(nic: &AttachedNic) {
    if let Some(n) = &nic.notifier {
        let _ = n.wait();
    }
}
