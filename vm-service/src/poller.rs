//! Device work off the vCPU threads: one thread per kind of device per VM
//! (`net-rx` for NICs, `blk-io` for drives) waits with `poll(2)` on each
//! device's wake-up file descriptor and runs `MmioTransport::poll` for the
//! devices that are ready. Each device is locked only while its own work runs.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vm_accel::EventNotifier;
use vm_device::virtio::mmio::MmioTransport;

/// A device on a virtio-mmio slot and what wakes its poller.
pub(crate) struct PolledDevice {
    pub transport: Arc<Mutex<MmioTransport>>,
    /// What the poller waits on: a backend's fd, or `notifier`'s.
    pub wake_fd: i32,
    /// The eventfd the device fires (its fd is `wake_fd`); None for a TAP fd.
    pub notifier: Option<Arc<EventNotifier>>,
}

/// Back-to-back wake-ups of one device before it rests.
const STREAK_LIMIT: u32 = 1024;
/// How long a device rests.
const REST: Duration = Duration::from_millis(1);
/// `REST` for poll(2).
const REST_MS: i32 = 1;

/// Stops its poller thread when dropped.
#[derive(Debug)]
pub(crate) struct Poller {
    stop: Arc<EventNotifier>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        let _ = self.stop.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the thread `name` polling `devices` (none when there are no devices).
pub(crate) fn spawn(name: &str, devices: Vec<PolledDevice>) -> std::io::Result<Option<Poller>> {
    if devices.is_empty() {
        return Ok(None);
    }
    let stop = Arc::new(EventNotifier::new_nonblocking()?);
    let stop_fd = stop.as_event_fd().as_raw_fd();
    let thread_name = name.to_string();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(&thread_name, &devices, stop_fd))?;
    Ok(Some(Poller {
        stop,
        thread: Some(thread),
    }))
}

fn run(name: &str, devices: &[PolledDevice], stop_fd: i32) {
    if let Err(e) = crate::sandbox::enter_thread(crate::sandbox::ThreadKind::DeviceIo) {
        tracing::error!(thread = name, error = %e, "device thread not confined; device work stops");
        return;
    }
    let mut fds: Vec<libc::pollfd> = devices
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
    // long run of back-to-back wake-ups a device sits out a short pause, so a
    // guest that never receives cannot make this thread spin a host core.
    let mut ready_streak = vec![0u32; devices.len()];
    let mut resting: Vec<(usize, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        resting.retain(|&(i, since)| {
            let done = now.duration_since(since) >= REST;
            if done {
                fds[i].fd = devices[i].wake_fd;
                ready_streak[i] = 0;
            }
            !done
        });
        let timeout = if resting.is_empty() { -1 } else { REST_MS };
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for
        // the duration of the call; every fd stays open while `devices` and
        // the stop notifier live, which outlive this loop.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(%err, thread = name, "poll failed; device work stops");
            return;
        }
        if fds.last().is_some_and(|p| p.revents != 0) {
            return;
        }
        if n == 0 {
            continue;
        }
        for (i, (device, pfd)) in devices.iter().zip(&mut fds).enumerate() {
            if pfd.revents == 0 {
                ready_streak[i] = 0;
                continue;
            }
            pfd.revents = 0;
            if let Some(n) = &device.notifier {
                // Reset the eventfd so poll(2) does not spin on it.
                let _ = n.wait();
            }
            device
                .transport
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
}
