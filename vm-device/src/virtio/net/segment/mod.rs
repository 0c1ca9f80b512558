//! A virtual switch segment shared across processes: each member process
//! bridges its local [`VirtualSwitch`] to the others through Unix datagram
//! sockets in one directory, so guests in different processes (two
//! `vm-service run`, or the VMM children of one daemon) share an L2 network
//! with no host set-up: no TAP, no bridge, no root.
//!
//! A member of switch `NAME` binds `<dir>/NAME/<pid>.<n>` and plugs one port
//! into its local switch. Frames the local switch hands that port leave as
//! datagrams (the frame behind its 12-byte virtio-net header, so checksum and
//! TSO requests cross as they are: the port accepts every offload, and the
//! receiving member's switch does the work for NICs that did not):
//! unicast to the one member the destination MAC was learned from, and
//! broadcast, multicast or unknown unicast to every member found in the
//! directory. Datagrams from members enter the local switch through the same
//! port, and teach the bridge which member each source MAC is behind. The
//! members form a full mesh with split horizon: a frame from a member is never
//! sent on to another member, so there are no loops to break.
//!
//! Hostile or broken peers: a datagram shorter than the virtio-net and
//! Ethernet headers, longer than [`MAX_BUFFER_LEN`](super::MAX_BUFFER_LEN), or
//! whose header asks for an offload the frame does not fit, is dropped and
//! counted (never a panic); a
//! member whose socket refuses datagrams (its process died) has its socket
//! file removed; a member whose queue stays full through two waits of
//! [`CONGESTION_WAIT`] loses the frame (counted) and gets no more waiting
//! until it takes a frame again, so one stuck process cannot stall the
//! segment. Only same-user processes can
//! reach the sockets: directories are created `0700` and checked.
//!
//! Hot path: one bridge thread per member waits in `poll(2)` on its socket
//! and on the port's notifier, and moves frames in batches through two
//! buffers allocated once, with `recvfrom`/`sendto` on prebuilt addresses.
//! A send to a full member sleeps in the kernel until the member reads
//! (`SO_SNDTIMEO`), and drains this member's own queue between attempts, so
//! two members sending to each other cannot wait on each other for long; the learning table and member list are owned by
//! that thread (no locks). Flooding checks the directory's modification time
//! (one `stat`) and scans it (which allocates) only when it changed, or when
//! the last scan is older than [`RESCAN_INTERVAL`].
//!
//! Limits: Linux queues at most `net.unix.max_dgram_qlen` datagrams per
//! socket (10 on many hosts), so bursts lean on the sender's waits above; each
//! frame between processes costs a datagram send and receive and a thread
//! wake-up on each side (the `net` benchmark measures it against the
//! in-process switch); on macOS the
//! largest datagram is raised with `SO_SNDBUF` on a best-effort basis.
//! A Unix socket path must fit `sun_path` (108 bytes on Linux, 104 on
//! macOS), which bounds how long the directory and switch name can be.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::r#virtual::VirtualSwitch;
use super::NetBackend;
use crate::interrupt::Interrupt;

/// Shortest frame carried: an Ethernet header.
const ETH_HLEN: usize = 14;
/// Longest switch name (the same limit `VmConfig` validation applies to
/// `backend.switch`, so every configured name fits).
const MAX_NAME_LEN: usize = 64;
/// Most MACs the bridge remembers; a peer inventing source MACs cannot grow it further.
const MAX_LEARNED: usize = 4096;
/// Frames moved in one direction before the other gets a turn.
const BATCH: usize = 256;
/// How long one send waits for a member whose receive queue is full (the
/// kernel rounds it up to its tick).
pub const CONGESTION_WAIT: Duration = Duration::from_millis(2);
/// Longest time between directory scans while flooding, whatever the
/// directory's modification time says.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// A directory modified this recently may change again within the same
/// timestamp tick, so its modification time cannot yet show every change.
const MTIME_SETTLE: Duration = Duration::from_millis(50);
/// Socket buffer sizes asked for (the kernel may cap them).
const SOCKET_BUFFER: libc::c_int = 1 << 20;

/// Why a member could not join a segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The switch name cannot be a directory name here.
    #[error("invalid switch name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The member socket's path does not fit a Unix socket address.
    #[error(
        "socket path {path} is {len} bytes, a Unix socket path must be shorter than {max}: \
         use a shorter switch directory or switch name"
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// `sun_path`'s size on this host.
        max: usize,
    },
    /// A directory exists but another user owns it or others can write to it.
    #[error("{path} is not a safe switch directory: {reason}")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An OS call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SegmentError + 'a {
    move |source| SegmentError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What a bridge has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// Datagrams sent to members.
    pub sent: u64,
    /// Frames from members delivered into the local switch.
    pub received: u64,
    /// Datagrams (or local frames) dropped for being shorter than the
    /// virtio-net and Ethernet headers, longer than
    /// [`MAX_BUFFER_LEN`](super::MAX_BUFFER_LEN), or with a header the
    /// local switch refused.
    pub malformed: u64,
    /// Frames dropped because a member's queue stayed full.
    pub congested: u64,
    /// Socket files of dead members removed.
    pub stale_removed: u64,
    /// Members currently known (not counting this one).
    pub members: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    congested: AtomicU64,
    stale_removed: AtomicU64,
    members: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wakes the bridge thread: the port's RX notifier and the stop signal.
#[derive(Debug)]
struct Wake(UnixStream);

impl Interrupt for Wake {
    fn trigger(&self) -> io::Result<()> {
        match (&self.0).write(&[1]) {
            // A full pipe already holds a wake-up.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Size of `sockaddr_un.sun_path` on this host.
fn sun_path_len() -> usize {
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path)
}

fn check_name(name: &str) -> Result<(), SegmentError> {
    let bad = |reason| {
        Err(SegmentError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 64 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return bad("allowed are ASCII letters, digits, '-', '_', '.'");
    }
    Ok(())
}

/// Creates `path` (and missing parents) with mode 0700, then checks that this
/// user owns it and nobody else can write to it.
fn private_dir(path: &Path) -> Result<(), SegmentError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err("creating the switch directory", path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err("inspecting", path))?;
    let unsafe_dir = |reason: String| {
        Err(SegmentError::UnsafeDir {
            path: path.to_owned(),
            reason,
        })
    };
    if !meta.is_dir() {
        return unsafe_dir("not a directory (a symbolic link?)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return unsafe_dir(format!("owned by uid {}, not {me}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return unsafe_dir(format!("mode {:o} lets others write", meta.mode() & 0o777));
    }
    Ok(())
}

fn set_buffer(sock: &UnixDatagram, option: libc::c_int) {
    let size = SOCKET_BUFFER;
    // SAFETY: the fd is an open socket owned by `sock`; `size` is a c_int that
    // lives across the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(err = %io::Error::last_os_error(), option, "switch segment: socket buffer size not raised");
    }
}

/// One process's membership in a cross-process switch segment: a port of the
/// local [`VirtualSwitch`] bridged to the other members' sockets. Dropping it
/// leaves the segment (stops the bridge thread, removes the socket file).
pub struct SegmentBridge {
    path: PathBuf,
    dir: PathBuf,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for SegmentBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentBridge")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SegmentBridge {
    /// Joins switch `name` under `dir` (both created `0700` if missing) and
    /// plugs the bridge into `switch` as one port.
    pub fn join(switch: &VirtualSwitch, dir: &Path, name: &str) -> Result<Self, SegmentError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        check_name(name)?;
        let seg_dir = dir.join(name);
        let pid = std::process::id();
        let member_path = |n: u32| {
            let path = seg_dir.join(format!("{pid}.{n}"));
            let len = path.as_os_str().len();
            if len >= sun_path_len() {
                return Err(SegmentError::PathTooLong {
                    path,
                    len,
                    max: sun_path_len(),
                });
            }
            Ok(path)
        };
        // Before creating anything: a path that cannot work leaves no directories behind.
        member_path(NEXT.load(Ordering::Relaxed))?;
        private_dir(dir)?;
        private_dir(&seg_dir)?;
        let (sock, path) = loop {
            let path = member_path(NEXT.fetch_add(1, Ordering::Relaxed))?;
            match UnixDatagram::bind(&path) {
                Ok(s) => break (s, path),
                // A dead process with our pid left this name behind: take another.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
                Err(e) => return Err(io_err("binding", &path)(e)),
            }
        };
        let cleanup = |e: SegmentError| {
            let _ = std::fs::remove_file(&path);
            e
        };
        // Blocking sends sleep at most this long for a member's full queue;
        // receives never wait (MSG_DONTWAIT after poll).
        sock.set_write_timeout(Some(CONGESTION_WAIT))
            .map_err(io_err("configuring", &path))
            .map_err(cleanup)?;
        set_buffer(&sock, libc::SO_SNDBUF);
        set_buffer(&sock, libc::SO_RCVBUF);
        let (wake_tx, wake_rx) = UnixStream::pair()
            .map_err(io_err("creating a wake-up pair for", &path))
            .map_err(cleanup)?;
        for s in [&wake_tx, &wake_rx] {
            s.set_nonblocking(true)
                .map_err(io_err("configuring a wake-up pair for", &path))
                .map_err(cleanup)?;
        }
        let wake = Arc::new(Wake(wake_tx));
        let mut port = switch.add_port();
        port.set_rx_notifier(wake.clone());
        // Offload requests cross to the other members as they are.
        let _ = port.set_offloads(super::features::OFFLOADS);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker::new(
            sock,
            wake_rx,
            port,
            (path.clone(), seg_dir.clone()),
            counters.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("switch-{name}"))
            .spawn(move || worker.run())
            .map_err(io_err("starting the bridge thread for", &path))
            .map_err(cleanup)?;
        tracing::debug!(path = %path.display(), "switch segment: joined");
        Ok(Self {
            path,
            dir: seg_dir,
            counters,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// This member's socket.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Counters so far.
    pub fn stats(&self) -> SegmentStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SegmentStats {
            sent: get(&c.sent),
            received: get(&c.received),
            malformed: get(&c.malformed),
            congested: get(&c.congested),
            stale_removed: get(&c.stale_removed),
            members: get(&c.members),
        }
    }
}

impl Drop for SegmentBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        // Removes the switch's directory when this was the last member; fails harmlessly otherwise.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

mod forwarder;

use forwarder::Worker;
