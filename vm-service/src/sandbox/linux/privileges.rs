//! Inherited descriptors and the drop to an unprivileged user and group.

use super::os_err;
use crate::sandbox::SandboxError;

/// Closes every descriptor above stderr except `keep`: a VMM must not hold
/// what its parent happened to leave open.
pub(super) fn close_inherited_fds(keep: &[i32]) -> Result<(), SandboxError> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|source| SandboxError::Os {
        what: "listing /proc/self/fd",
        source,
    })?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > libc::STDERR_FILENO && !keep.contains(fd))
        .collect();
    // The directory's own descriptor is closed by now; closing it again fails
    // with EBADF, which is ignored like any other already-closed fd.
    for fd in fds {
        // SAFETY: nothing in this process owns these descriptors yet: they
        // were inherited, and this runs before any other set-up.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Drops supplementary groups, sets `gid` then `uid`, and empties the
/// capability bounding, ambient, inheritable, permitted and effective sets;
/// then checks `/proc/self/status`. Must run while the process has one thread
/// (credentials are per thread).
pub(super) fn drop_to(uid: Option<u32>, gid: Option<u32>) -> Result<(), SandboxError> {
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
    for cap in 0..=last_cap() {
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
    verify(uid, gid)
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

fn verify(uid: Option<u32>, gid: Option<u32>) -> Result<(), SandboxError> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|source| SandboxError::Os {
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
