//! Inherited descriptors and the drop to an unprivileged user and group.

use super::os_err;
use crate::sandbox::SandboxError;

/// Closes every descriptor above stderr except `keep`: a VMM must not hold
/// what its parent happened to leave open. `close_range` needs no `/proc`
/// (a jail has none); kernels before 5.9 fall back to listing `/proc/self/fd`.
pub(super) fn close_inherited_fds(keep: &[i32]) -> Result<(), SandboxError> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd > 2)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for last in keep
        .iter()
        .map(|&k| k.checked_sub(1))
        .chain([Some(u32::MAX)])
    {
        if let Some(last) = last.filter(|&l| l >= first) {
            // SAFETY: nothing in this process owns these descriptors yet: they
            // were inherited, and this runs before any other set-up.
            if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
                return close_listed(&keep);
            }
        }
        first = last.map_or(u32::MAX, |l| l.saturating_add(2));
    }
    Ok(())
}

/// [`close_inherited_fds`] for kernels without `close_range`.
fn close_listed(keep: &[u32]) -> Result<(), SandboxError> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|source| SandboxError::Os {
        what: "listing /proc/self/fd",
        source,
    })?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > libc::STDERR_FILENO)
        .filter(|fd| u32::try_from(*fd).is_ok_and(|fd| !keep.contains(&fd)))
        .collect();
    // The directory's own descriptor is closed by now; closing it again fails
    // with EBADF, which is ignored like any other already-closed fd.
    for fd in fds {
        // SAFETY: as in close_inherited_fds.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// What the drop reads from `/proc`, opened beforehand so that it also works
/// where `/proc` is gone by then (inside a jail).
pub(super) struct ProcFiles {
    /// `/proc/self/status`, read again after the drop to check it.
    status: std::fs::File,
    /// The highest capability number this kernel knows.
    last_cap: u32,
}

impl ProcFiles {
    pub(super) fn open() -> Result<Self, SandboxError> {
        let status =
            std::fs::File::open("/proc/self/status").map_err(|source| SandboxError::Os {
                what: "opening /proc/self/status",
                source,
            })?;
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        Ok(Self { status, last_cap })
    }
}

/// Drops supplementary groups, sets `gid` then `uid`, and empties the
/// capability bounding, ambient, inheritable, permitted and effective sets;
/// then checks `/proc/self/status`. Must run while the process has one thread
/// (credentials are per thread).
pub(super) fn drop_to(
    uid: Option<u32>,
    gid: Option<u32>,
    proc: &ProcFiles,
) -> Result<(), SandboxError> {
    // SAFETY: geteuid only reads this process's credentials.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(SandboxError::NotRoot { euid });
    }
    // SAFETY: setgroups with a count of 0 reads no memory.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(os_err("setgroups"));
    }
    if let Some(gid) = gid {
        // SAFETY: setresgid takes integers only.
        if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
            return Err(os_err("setresgid"));
        }
    }
    for cap in 0..=proc.last_cap {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number; needs
        // CAP_SETPCAP, which root still has here.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(SandboxError::Os {
                    what: "PR_CAPBSET_DROP",
                    source: err,
                });
            }
        }
    }
    // SAFETY: integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(os_err("PR_CAP_AMBIENT_CLEAR_ALL"));
    }
    if let Some(uid) = uid {
        // SAFETY: setresuid takes integers only.
        if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
            return Err(os_err("setresuid"));
        }
    }
    clear_capabilities()?;
    verify(uid, gid, &proc.status)
}

/// `capset` with every set empty (version 3: two 32-bit words per set).
fn clear_capabilities() -> Result<(), SandboxError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data match the kernel's v3 capability structs and
    // live for the call; pid 0 is this thread.
    if unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) } != 0 {
        return Err(os_err("capset"));
    }
    Ok(())
}

fn verify(uid: Option<u32>, gid: Option<u32>, file: &std::fs::File) -> Result<(), SandboxError> {
    use std::io::{Read, Seek};
    let mut status = String::new();
    let mut file = file;
    // Each read from the start regenerates the file: it shows the state now.
    file.rewind()
        .and_then(|()| file.read_to_string(&mut status))
        .map_err(|source| SandboxError::Os {
            what: "reading /proc/self/status",
            source,
        })?;
    for line in status.lines() {
        let mut words = line.split_whitespace();
        let ok = match words.next() {
            Some("Uid:") => uid.is_none_or(|u| words.all(|w| w == u.to_string())),
            Some("Gid:") => gid.is_none_or(|g| words.all(|w| w == g.to_string())),
            Some("Groups:") => gid.is_none_or(|g| words.all(|w| w == g.to_string())),
            Some("CapInh:" | "CapPrm:" | "CapEff:" | "CapBnd:" | "CapAmb:") => {
                words.all(|w| w.bytes().all(|b| b == b'0'))
            }
            _ => true,
        };
        if !ok {
            return Err(SandboxError::NotDropped {
                line: line.to_string(),
            });
        }
    }
    Ok(())
}
