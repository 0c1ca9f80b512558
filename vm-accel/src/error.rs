//! Errors of the accelerator layer: each variant names what failed (the
//! ioctl, the memory slot, the address, the vCPU id).

use crate::regs::GuestArch;

/// What went wrong in an accelerator, VM or vCPU operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccelError {
    /// A system call into the hypervisor failed.
    #[error("{op} failed: {source}")]
    Hypervisor {
        /// The operation or ioctl that failed, e.g. `KVM_SET_USER_MEMORY_REGION`.
        op: &'static str,
        /// The OS error it returned.
        #[source]
        source: std::io::Error,
    },
    /// A memory region overlaps one that is already mapped.
    #[error(
        "memory region at {addr:#x} (size {size:#x}) overlaps the mapped region at {other:#x} (size {other_size:#x})"
    )]
    RegionOverlap {
        /// Guest physical base of the rejected region.
        addr: u64,
        /// Size of the rejected region.
        size: u64,
        /// Guest physical base of the region it overlaps.
        other: u64,
        /// Size of the region it overlaps.
        other_size: u64,
    },
    /// A memory region's base, size or host address is not page-aligned.
    #[error(
        "memory region at {addr:#x} (size {size:#x}, host {host_addr:#x}) is not aligned to the {page_size:#x}-byte page size"
    )]
    RegionUnaligned {
        /// Guest physical base of the rejected region.
        addr: u64,
        /// Size of the rejected region.
        size: u64,
        /// Host virtual address backing it.
        host_addr: u64,
        /// Required alignment.
        page_size: u64,
    },
    /// A memory region is empty or its end overflows the address space.
    #[error("memory region at {addr:#x} has an invalid size {size:#x}")]
    RegionSize {
        /// Guest physical base of the rejected region.
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// Every memory slot of the backend is in use.
    #[error("no free memory slot for the region at {addr:#x}: all {max} slots are in use")]
    NoFreeSlot {
        /// Guest physical base of the rejected region.
        addr: u64,
        /// Number of slots the backend offers.
        max: u32,
    },
    /// No mapped region starts at this address.
    #[error("no memory region is mapped at {addr:#x}")]
    RegionNotMapped {
        /// The address asked for.
        addr: u64,
    },
    /// A vCPU id is outside what the VM or the backend allows.
    #[error("vCPU id {id} is out of range: this VM allows ids 0..{limit}")]
    VcpuIdOutOfRange {
        /// The id asked for.
        id: u32,
        /// One past the highest id allowed.
        limit: u32,
    },
    /// A vCPU with this id was already created.
    #[error("vCPU {id} already exists")]
    VcpuExists {
        /// The duplicate id.
        id: u32,
    },
    /// A software vCPU was given all the instructions it was allowed.
    #[error("the instruction limit ({limit}) was reached")]
    InstructionLimit {
        /// The limit.
        limit: u64,
    },
    /// The VM configuration is unusable.
    #[error("invalid VM configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// The backend does not offer this operation.
    #[error("{what} is not supported by the {backend} backend")]
    Unsupported {
        /// The operation asked for.
        what: &'static str,
        /// The backend that lacks it.
        backend: &'static str,
    },
    /// Register or boot state for one architecture was given to a vCPU of another.
    #[error("{what} is for {given} but this vCPU is {vcpu}")]
    ArchMismatch {
        /// What was given (registers, boot state).
        what: &'static str,
        /// The architecture of the data.
        given: GuestArch,
        /// The architecture of the vCPU.
        vcpu: GuestArch,
    },
    /// This engine cannot save or restore its vCPU or VM state.
    #[error("{what} is not implemented for {engine}")]
    StateUnsupported {
        /// The operation asked for (saving or restoring vCPU or VM state).
        what: &'static str,
        /// The engine that lacks it.
        engine: String,
    },
    /// A saved vCPU or VM state cannot be restored here; nothing after the
    /// failing part was written.
    #[error("cannot restore {what}: {reason}")]
    InvalidState {
        /// The part of the state that was refused (e.g. `XSAVE area`, `MSRs`).
        what: &'static str,
        /// Why: the sizes that differ, the version, the MSR KVM refused.
        reason: String,
    },
    /// Guest memory needed by the backend could not be accessed.
    #[error("guest memory at {addr:#x} ({len} bytes) is not accessible: {reason}")]
    GuestMemory {
        /// Guest physical address.
        addr: u64,
        /// Length of the access.
        len: u64,
        /// Why it failed.
        reason: String,
    },
    /// The kernel reported an exit this backend cannot interpret.
    #[error("{backend} reported malformed exit data: {detail}")]
    MalformedExit {
        /// The backend.
        backend: &'static str,
        /// What was malformed.
        detail: String,
    },
    /// No accelerator is usable on this host.
    #[error("no accelerator is available: {}", format_unavailable(.reasons))]
    NoAccelerator {
        /// Why each candidate was rejected.
        reasons: Vec<crate::accelerator::Unavailable>,
    },
}

fn format_unavailable(reasons: &[crate::accelerator::Unavailable]) -> String {
    if reasons.is_empty() {
        return "no backend was probed".to_owned();
    }
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AccelError {
    /// Wraps the OS error of a failed hypervisor call.
    pub fn hypervisor(op: &'static str, source: impl Into<std::io::Error>) -> Self {
        Self::Hypervisor {
            op,
            source: source.into(),
        }
    }
}
