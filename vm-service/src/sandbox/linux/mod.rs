//! Linux: seccomp-BPF filters (seccompiler), `PR_SET_NO_NEW_PRIVS`,
//! inherited descriptors, the drop to an unprivileged user, and the jail
//! (namespaces, pivot_root, cgroups).

mod cgroup;
mod filters;
mod jail;
mod privileges;
mod sigsys;

pub(super) use jail::enter_jail;

use seccompiler::BpfProgram;

use super::{SandboxConfig, SandboxError, SeccompLevel, ThreadKind};

fn os_err(what: &'static str) -> SandboxError {
    SandboxError::Os {
        what,
        source: std::io::Error::last_os_error(),
    }
}

pub(super) fn enter_process(config: &SandboxConfig) -> Result<(), SandboxError> {
    privileges::close_inherited_fds(&config.keep_fds)?;
    if config.uid.is_some() || config.gid.is_some() {
        privileges::drop_to(config.uid, config.gid, &privileges::ProcFiles::open()?)?;
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and affects
    // this process's future execve calls.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os_err("PR_SET_NO_NEW_PRIVS"));
    }
    if config.seccomp == SeccompLevel::Off {
        return Ok(());
    }
    if config.seccomp == SeccompLevel::Log {
        sigsys::install_handler()?;
    }
    // One filter for every thread: TSYNC, so a thread started before this
    // call (none are, by contract) could not stay unfiltered.
    for program in programs(ThreadKind::Vmm, config.seccomp)? {
        seccompiler::apply_filter_all_threads(&program).map_err(|e| SandboxError::Seccomp {
            kind: ThreadKind::Vmm,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// Removes the cgroups of jail `id` (best effort).
pub(super) fn remove_cgroups(placement: &super::jail::CgroupPlacement, id: &str) {
    match cgroup::Hierarchies::probe() {
        Ok(h) => h.remove(placement, id),
        Err(e) => tracing::warn!(error = %e, "cannot list the cgroup hierarchies"),
    }
}

pub(super) fn install_thread_filter(
    kind: ThreadKind,
    level: SeccompLevel,
) -> Result<(), SandboxError> {
    for program in programs(kind, level)? {
        seccompiler::apply_filter(&program).map_err(|e| SandboxError::Seccomp {
            kind,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

fn programs(kind: ThreadKind, level: SeccompLevel) -> Result<Vec<BpfProgram>, SandboxError> {
    filters::programs(kind, level).map_err(|e| SandboxError::Seccomp {
        kind,
        message: e.to_string(),
    })
}

pub(super) fn name_current_thread(name: &str) {
    let mut buf = [0u8; 16];
    let len = name.len().min(15);
    buf[..len].copy_from_slice(&name.as_bytes()[..len]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes;
    // `buf` has a NUL at index 15 at the latest and lives for the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr(), 0, 0, 0) };
}

/// Makes a syscall `kind`'s filter forbids: `execve` on the VMM thread,
/// `socket` (allowed there) on every other kind.
pub(super) fn forbidden_syscall(kind: ThreadKind) {
    match kind {
        ThreadKind::Vmm => {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            // SAFETY: path, argv and envp are NUL-terminated and live for the
            // call; the filter ends the process before the kernel looks.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        }
        ThreadKind::Vcpu
        | ThreadKind::TranslatingVcpu
        | ThreadKind::DeviceIo
        | ThreadKind::IrqRelay
        | ThreadKind::SwitchBridge
        | ThreadKind::SerialInput
        | ThreadKind::Control => {
            // SAFETY: socket takes integers only; a returned fd is closed below.
            let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) };
            if fd >= 0 {
                // SAFETY: fd was just returned by socket and is owned here.
                unsafe { libc::close(fd) };
            }
        }
    }
}
