//! Descriptor-chain validation: turns a chain the guest offered into a list of
//! guest-memory segments the device may read or write, or a typed error.
//!
//! Checked for every chain: each buffer lies inside guest memory; the chain
//! ends (no loop, not longer than the queue, `next` inside the table); the
//! total length fits in 32 bits; the direction of every descriptor is the one
//! the device needs (a device never writes a driver-readable descriptor, and
//! readable descriptors never follow writable ones: [`collect_split_segments`]
//! for requests that carry their reply, [`collect_segments`] otherwise).

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::GuestMemory;

/// One buffer of a validated chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address of the buffer.
    pub addr: GuestAddress,
    /// Its length in bytes.
    pub len: u32,
}

/// Which descriptors a device expects in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Only device-readable descriptors (e.g. virtio-net TX).
    ReadOnly,
    /// Only device-writable descriptors (e.g. virtio-net RX).
    WriteOnly,
    /// Device-readable descriptors, then device-writable ones (a request and
    /// its reply, e.g. virtio-blk); either part may be empty.
    ReadThenWrite,
}

/// How a validated [`Direction::ReadThenWrite`] chain splits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitLengths {
    /// How many of the collected segments are device-readable (they come first).
    pub readable_segments: usize,
    /// Bytes in the readable part.
    pub readable_len: u32,
    /// Bytes in the writable part.
    pub writable_len: u32,
}

/// What was wrong with a descriptor chain.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The head descriptor could not be read.
    #[error("chain {head}: head descriptor cannot be read")]
    BadHead {
        /// Head index.
        head: u16,
    },
    /// A buffer is not (entirely) inside guest memory.
    #[error("chain {head}: buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfMemory {
        /// Head index.
        head: u16,
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
    /// The chain did not end within the queue size (a loop, or simply too long).
    #[error("chain {head}: more than {queue_size} descriptors (loop or over-long chain)")]
    TooLong {
        /// Head index.
        head: u16,
        /// Queue size, the longest a chain may be.
        queue_size: u16,
    },
    /// A `next` field points outside the descriptor table.
    #[error("chain {head}: next index {next} is outside a table of {queue_size}")]
    BadNext {
        /// Head index.
        head: u16,
        /// The bad next index.
        next: u16,
        /// Queue size.
        queue_size: u16,
    },
    /// The total length of the chain does not fit in 32 bits.
    #[error("chain {head}: total length overflows 32 bits")]
    LengthOverflow {
        /// Head index.
        head: u16,
    },
    /// The chain has a descriptor in the wrong direction for this queue.
    #[error(
        "chain {head}: descriptor {position} is {found}, the device needs {expected:?} buffers"
    )]
    WrongDirection {
        /// Head index.
        head: u16,
        /// Position of the descriptor in the chain (0 = head).
        position: u16,
        /// "device-writable" or "device-readable".
        found: &'static str,
        /// What the queue needs.
        expected: Direction,
    },
}

/// Validate `chain` and append its segments to `out`; returns the chain's total length.
///
/// `out` is reused across calls by the caller so that the hot path does not
/// allocate once its capacity has grown to the longest chain seen.
pub fn collect_segments(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    queue_size: u16,
    direction: Direction,
    out: &mut Vec<Segment>,
) -> Result<u32, ChainError> {
    collect(mem, chain, queue_size, direction, out)
        .map(|split| split.readable_len + split.writable_len)
}

/// Validate a chain of device-readable descriptors followed by device-writable
/// ones, append its segments to `out` (readable ones first) and say where the
/// two parts split.
pub fn collect_split_segments(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    queue_size: u16,
    out: &mut Vec<Segment>,
) -> Result<SplitLengths, ChainError> {
    collect(mem, chain, queue_size, Direction::ReadThenWrite, out)
}

fn collect(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    queue_size: u16,
    direction: Direction,
    out: &mut Vec<Segment>,
) -> Result<SplitLengths, ChainError> {
    let head = chain.head_index();
    let start = out.len();
    let result = walk(mem, chain, head, queue_size, direction, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn walk(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    head: u16,
    queue_size: u16,
    direction: Direction,
    out: &mut Vec<Segment>,
) -> Result<SplitLengths, ChainError> {
    let mut total: u32 = 0;
    let mut count: u16 = 0;
    let mut last: Option<Descriptor> = None;
    let mut split = SplitLengths::default();
    // The iterator itself bounds the walk by the queue size (its "ttl"), so a
    // loop cannot keep us here; we only need to see why it stopped.
    for desc in chain {
        let seen_writable = split.writable_len > 0 || usize::from(count) > split.readable_segments;
        check_descriptor(mem, &desc, head, count, direction, seen_writable)?;
        total = total
            .checked_add(desc.len())
            .ok_or(ChainError::LengthOverflow { head })?;
        if desc.is_write_only() {
            split.writable_len += desc.len();
        } else {
            split.readable_segments += 1;
            split.readable_len += desc.len();
        }
        out.push(Segment {
            addr: desc.addr(),
            len: desc.len(),
        });
        count = count.saturating_add(1);
        last = Some(desc);
    }
    match last {
        None => Err(ChainError::BadHead { head }),
        // The iterator stops early, still pointing on, when the chain is too
        // long (ttl), `next` is out of range, or the length would overflow.
        Some(d) if d.has_next() => Err(if d.next() >= queue_size {
            ChainError::BadNext {
                head,
                next: d.next(),
                queue_size,
            }
        } else if count >= queue_size {
            ChainError::TooLong { head, queue_size }
        } else {
            ChainError::LengthOverflow { head }
        }),
        Some(_) => Ok(split),
    }
}

/// Whether `[addr, addr + len)` is guest memory: one region lookup in the
/// common case, the general (multi-region) walk otherwise.
fn in_guest_memory(mem: &GuestMemory, addr: GuestAddress, len: u32) -> bool {
    let Some(last) = addr.checked_add(u64::from(len.saturating_sub(1))) else {
        return false;
    };
    if let Some(region) = mem.find_region(addr) {
        if last <= region.last_addr() {
            return true;
        }
    }
    GuestMemoryBackend::check_range(mem, addr, len as usize)
}

fn check_descriptor(
    mem: &GuestMemory,
    desc: &Descriptor,
    head: u16,
    position: u16,
    direction: Direction,
    seen_writable: bool,
) -> Result<(), ChainError> {
    let writable = desc.is_write_only();
    let ok = match direction {
        Direction::ReadOnly => !writable,
        Direction::WriteOnly => writable,
        Direction::ReadThenWrite => writable || !seen_writable,
    };
    if !ok {
        return Err(ChainError::WrongDirection {
            head,
            position,
            found: if writable {
                "device-writable"
            } else {
                "device-readable"
            },
            expected: direction,
        });
    }
    if !in_guest_memory(mem, desc.addr(), desc.len()) {
        return Err(ChainError::OutOfMemory {
            head,
            addr: desc.addr().0,
            len: desc.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_across_regions_gaps_and_the_address_space_end() {
        // Two adjacent regions, then a gap, then a third.
        let mem = GuestMemory::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x1000), 0x1000),
            (GuestAddress(0x4000), 0x1000),
        ])
        .unwrap();
        assert!(
            in_guest_memory(&mem, GuestAddress(0x800), 0x1000),
            "spans two adjacent regions"
        );
        assert!(in_guest_memory(&mem, GuestAddress(0x4000), 0x1000));
        assert!(
            !in_guest_memory(&mem, GuestAddress(0x1800), 0x1000),
            "runs into the gap"
        );
        assert!(
            !in_guest_memory(&mem, GuestAddress(0x2000), 1),
            "in the gap"
        );
        assert!(
            !in_guest_memory(&mem, GuestAddress(0x4fff), 2),
            "past the end"
        );
        assert!(!in_guest_memory(&mem, GuestAddress(u64::MAX), 2), "wraps");
        assert!(in_guest_memory(&mem, GuestAddress(0x4fff), 1));
    }
}
