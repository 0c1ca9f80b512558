//! No seccomp and no privilege drop outside Linux: only "off" is accepted.

use super::jail::{CgroupPlacement, JailConfig, JailError};
use super::{SandboxConfig, SandboxError, SeccompLevel, ThreadKind};

pub(super) fn enter_process(config: &SandboxConfig) -> Result<(), SandboxError> {
    if config.seccomp != SeccompLevel::Off {
        return Err(SandboxError::Unsupported("seccomp (pass --no-seccomp)"));
    }
    if config.uid.is_some() || config.gid.is_some() {
        return Err(SandboxError::Unsupported("--uid/--gid"));
    }
    Ok(())
}

pub(super) fn install_thread_filter(
    _kind: ThreadKind,
    _level: SeccompLevel,
) -> Result<(), SandboxError> {
    Ok(())
}

pub(super) fn forbidden_syscall(_kind: ThreadKind) {}

pub(super) fn name_current_thread(_name: &str) {}

pub(super) fn enter_jail(_config: &JailConfig) -> Result<(), JailError> {
    Err(JailError::Unsupported)
}

pub(super) fn remove_cgroups(_placement: &CgroupPlacement, _id: &str) {}
