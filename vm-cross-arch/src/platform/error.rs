//! Errors of the platform layer: layout, kernel loading and boot data.

use super::GuestArch;

/// Everything that can go wrong while laying out a machine and loading a kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The requested RAM cannot hold the fixed parts of the layout.
    #[error("{arch}: guest memory of {size:#x} bytes is too small (needs at least {min:#x})")]
    MemoryTooSmall {
        /// Guest architecture.
        arch: GuestArch,
        /// Requested RAM size.
        size: u64,
        /// Smallest size the layout accepts.
        min: u64,
    },
    /// The requested RAM is larger than the layout can address.
    #[error("{arch}: guest memory of {size:#x} bytes exceeds the maximum {max:#x}")]
    MemoryTooLarge {
        /// Guest architecture.
        arch: GuestArch,
        /// Requested RAM size.
        size: u64,
        /// Largest size the layout accepts.
        max: u64,
    },
    /// The vCPU count is zero or larger than the platform supports.
    #[error("{arch}: {requested} vCPUs requested, the platform supports 1..={max}")]
    VcpuCount {
        /// Guest architecture.
        arch: GuestArch,
        /// Requested count.
        requested: u32,
        /// Largest supported count.
        max: u32,
    },
    /// More virtio-mmio devices than the layout has slots (or IRQ lines) for.
    #[error("{arch}: {requested} virtio-mmio devices requested, the layout has {max} slots")]
    TooManyDevices {
        /// Guest architecture.
        arch: GuestArch,
        /// Requested count.
        requested: u32,
        /// Number of slots.
        max: u32,
    },
    /// A vCPU index outside `0..vcpus`.
    #[error("vCPU {index} does not exist (machine has {vcpus})")]
    NoSuchVcpu {
        /// Requested index.
        index: u32,
        /// vCPU count of the machine.
        vcpus: u32,
    },
    /// A memory map from another platform (or hand-edited) was passed in.
    #[error("{arch}: the memory map does not suit this platform: {reason}")]
    MapMismatch {
        /// Guest architecture of the platform.
        arch: GuestArch,
        /// What does not match.
        reason: &'static str,
    },
    /// The kernel file is not a bootable image for this architecture.
    #[error("{arch}: not a valid kernel image: {reason}")]
    InvalidKernel {
        /// Guest architecture.
        arch: GuestArch,
        /// What was wrong with it.
        reason: String,
    },
    /// The kernel, once placed, runs past the end of RAM.
    #[error(
        "kernel of {size:#x} bytes at {addr:#x} does not fit in guest RAM ending at {ram_end:#x}"
    )]
    KernelDoesNotFit {
        /// Load address.
        addr: u64,
        /// Bytes needed from the load address.
        size: u64,
        /// End of the RAM range the kernel is loaded into.
        ram_end: u64,
    },
    /// No RAM is left for the initrd between the kernel and the allowed ceiling.
    #[error("initrd of {size:#x} bytes does not fit: {available:#x} bytes free between {low:#x} and {high:#x}")]
    InitrdDoesNotFit {
        /// Initrd size.
        size: u64,
        /// Free bytes in the window.
        available: u64,
        /// Lowest usable address (end of kernel).
        low: u64,
        /// Highest usable address (exclusive).
        high: u64,
    },
    /// The command line (with its NUL) exceeds what the architecture or kernel allows.
    #[error("{arch}: command line of {len} bytes exceeds the limit of {max} bytes")]
    CmdlineTooLong {
        /// Guest architecture.
        arch: GuestArch,
        /// Length including the terminating NUL.
        len: usize,
        /// Maximum including the terminating NUL.
        max: usize,
    },
    /// The command line contains a NUL byte.
    #[error("command line contains a NUL byte at offset {offset}")]
    CmdlineNul {
        /// Offset of the first NUL.
        offset: usize,
    },
    /// The boot data does not fit where the layout reserves room for it.
    #[error("{what} of {size:#x} bytes does not fit in the {max:#x} bytes reserved for it")]
    BootDataTooLarge {
        /// Which structure (device tree, ACPI tables).
        what: &'static str,
        /// Its size.
        size: u64,
        /// The room reserved.
        max: u64,
    },
    /// Building the guest memory from the map failed.
    #[error("creating guest memory: {0}")]
    MemoryCreate(#[from] vm_memory::mmap::FromRangesError),
    /// Writing boot data into guest memory failed.
    #[error("writing {what} at {addr:#x}: {source}")]
    GuestWrite {
        /// What was being written.
        what: &'static str,
        /// Where.
        addr: u64,
        /// Underlying error.
        source: vm_memory::GuestMemoryError,
    },
    /// linux-loader rejected the kernel or failed to place it.
    #[error("kernel loader: {0}")]
    Loader(String),
    /// linux-loader failed to write the boot parameters.
    #[error("boot configurator: {0}")]
    BootConfigurator(String),
    /// vm-fdt refused the device tree.
    #[error("device tree: {0}")]
    Fdt(#[from] vm_fdt::Error),
    /// The operation needs host support this build lacks.
    #[error("{what} is not available on a {host} host")]
    UnsupportedOnHost {
        /// What was attempted.
        what: &'static str,
        /// The host (`os-arch`).
        host: String,
    },
}

/// Result alias of the platform layer.
pub type Result<T> = std::result::Result<T, PlatformError>;
