//! Byte streams over a validated chain: a request is its readable part (the
//! 16-byte header, then OUT data or discard ranges) and its writable part
//! (IN data or the id, then the status byte), wherever descriptors split them.

use std::io;

use vm_memory::{
    Address, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion, VolatileSlice,
};

use crate::virtio::chain::Segment;
use crate::virtio::GuestMemory;

/// Length of `virtio_blk_req`'s header: type u32, reserved u32, sector u64.
pub(super) const HEADER_LEN: u64 = 16;
/// Length of one discard / write-zeroes range: sector u64, num_sectors u32, flags u32.
pub(super) const RANGE_LEN: u64 = 16;

/// Why moving data for a request failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Guest memory could not be accessed (the chain was validated, so this is
    /// a device error).
    Memory(GuestMemoryError),
    /// The backend failed (the guest gets `IOERR`).
    Backend(io::Error),
}

/// `len` bytes of a chain's segments, starting `skip` bytes into them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span<'a> {
    segs: &'a [Segment],
    skip: u64,
    len: u64,
}

impl<'a> Span<'a> {
    /// Bytes `[skip, skip + len)` of `segs` laid end to end (the caller keeps
    /// it inside their total length).
    pub(super) fn new(segs: &'a [Segment], skip: u64, len: u64) -> Self {
        Self { segs, skip, len }
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The part of this span from `start` on (empty past its end).
    pub(super) fn tail(&self, start: u64) -> Self {
        let start = start.min(self.len);
        Self {
            segs: self.segs,
            skip: self.skip + start,
            len: self.len - start,
        }
    }

    /// Call `f(addr, len, offset)` for each contiguous piece of `[start,
    /// start + len)` of the span, in order; `offset` is the piece's place
    /// relative to `start`.
    fn pieces<E>(
        &self,
        start: u64,
        len: u64,
        mut f: impl FnMut(GuestAddress, usize, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let begin = self.skip + start;
        let end = begin + len.min(self.len.saturating_sub(start));
        let mut seg_start = 0u64;
        for seg in self.segs {
            let seg_end = seg_start + u64::from(seg.len);
            let (a, b) = (begin.max(seg_start), end.min(seg_end));
            if a < b {
                // The chain was validated: `seg.addr + seg.len` is guest memory,
                // so this cannot overflow.
                f(
                    seg.addr.unchecked_add(a - seg_start),
                    (b - a) as usize,
                    a - begin,
                )?;
            }
            if seg_end >= end {
                break;
            }
            seg_start = seg_end;
        }
        Ok(())
    }

    /// Copy `buf.len()` bytes from offset `start` of the span (short spans leave the rest of `buf` alone).
    pub(super) fn read(
        &self,
        mem: &GuestMemory,
        start: u64,
        buf: &mut [u8],
    ) -> Result<(), GuestMemoryError> {
        self.pieces(start, buf.len() as u64, |addr, n, off| {
            let off = off as usize;
            let dst = &mut buf[off..off + n];
            let mut done = 0;
            slices(mem, addr, n, |slice| {
                done += slice.copy_to(&mut dst[done..]);
                Ok::<(), GuestMemoryError>(())
            })
        })
    }

    /// Copy `buf` to offset `start` of the span (as much as fits).
    pub(super) fn write(
        &self,
        mem: &GuestMemory,
        start: u64,
        buf: &[u8],
    ) -> Result<(), GuestMemoryError> {
        self.pieces(start, buf.len() as u64, |addr, n, off| {
            let off = off as usize;
            let src = &buf[off..off + n];
            let mut done = 0;
            slices(mem, addr, n, |slice| {
                slice.copy_from(&src[done..done + slice.len()]);
                done += slice.len();
                Ok::<(), GuestMemoryError>(())
            })
        })
    }

    /// Call `f(slice, offset)` on every guest-memory slice of the span, in
    /// order; `offset` is where the slice starts within the span.
    pub(super) fn for_each_slice(
        &self,
        mem: &GuestMemory,
        mut f: impl FnMut(&VolatileSlice<'_>, u64) -> io::Result<()>,
    ) -> Result<(), Failure> {
        self.pieces(0, self.len, |addr, n, off| {
            let mut at = off;
            slices(mem, addr, n, |slice| {
                f(slice, at).map_err(Failure::Backend)?;
                at += slice.len() as u64;
                Ok(())
            })
        })
    }
}

/// Call `f` on the guest-memory slices covering `[addr, addr + n)`: one slice
/// from a single region lookup in the common case (vm-memory's general
/// iterator costs more than a 4 KiB copy), the multi-region walk otherwise.
fn slices<E: From<GuestMemoryError>>(
    mem: &GuestMemory,
    addr: GuestAddress,
    n: usize,
    mut f: impl FnMut(&VolatileSlice<'_>) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(region) = mem.find_region(addr) {
        if let Some(at) = region.to_region_addr(addr) {
            if let Ok(slice) = region.get_slice(at, n) {
                return f(&slice);
            }
        }
    }
    // A buffer may straddle two adjacent memory regions.
    for slice in mem.get_slices(addr, n) {
        f(&slice?)?;
    }
    Ok(())
}

impl From<GuestMemoryError> for Failure {
    fn from(e: GuestMemoryError) -> Self {
        Self::Memory(e)
    }
}

/// The fixed part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// `VIRTIO_BLK_T_*`.
    pub kind: u32,
    /// First sector.
    pub sector: u64,
}

impl Header {
    pub(super) fn parse(bytes: &[u8; HEADER_LEN as usize]) -> Self {
        let mut kind = [0u8; 4];
        let mut sector = [0u8; 8];
        kind.copy_from_slice(&bytes[0..4]);
        sector.copy_from_slice(&bytes[8..16]);
        Self {
            kind: u32::from_le_bytes(kind),
            sector: u64::from_le_bytes(sector),
        }
    }
}

/// One discard / write-zeroes range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Range {
    pub sector: u64,
    pub num_sectors: u32,
    pub flags: u32,
}

impl Range {
    /// Length in bytes.
    pub(super) fn len(&self) -> u64 {
        u64::from(self.num_sectors) * super::SECTOR_SIZE
    }

    pub(super) fn parse(bytes: &[u8; RANGE_LEN as usize]) -> Self {
        let mut sector = [0u8; 8];
        let mut num = [0u8; 4];
        let mut flags = [0u8; 4];
        sector.copy_from_slice(&bytes[0..8]);
        num.copy_from_slice(&bytes[8..12]);
        flags.copy_from_slice(&bytes[12..16]);
        Self {
            sector: u64::from_le_bytes(sector),
            num_sectors: u32::from_le_bytes(num),
            flags: u32::from_le_bytes(flags),
        }
    }
}

/// The byte offset of `len` bytes at `sector`, if they lie inside `capacity` sectors.
pub(super) fn byte_range(sector: u64, len: u64, capacity: u64) -> Option<u64> {
    let offset = sector.checked_mul(super::SECTOR_SIZE)?;
    let end = offset.checked_add(len)?;
    (end <= capacity.checked_mul(super::SECTOR_SIZE)?).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn spans_cross_segments_at_any_byte() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let segs = [
            Segment {
                addr: GuestAddress(0x100),
                len: 3,
            },
            Segment {
                addr: GuestAddress(0x200),
                len: 5,
            },
            Segment {
                addr: GuestAddress(0x300),
                len: 8,
            },
        ];
        let span = Span::new(&segs, 2, 12);
        span.write(&mem, 0, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
            .unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x102)).unwrap(), 1);
        let mut b = [0u8; 5];
        mem.read_slice(&mut b, GuestAddress(0x200)).unwrap();
        assert_eq!(b, [2, 3, 4, 5, 6]);
        let mut c = [0u8; 8];
        mem.read_slice(&mut c, GuestAddress(0x300)).unwrap();
        assert_eq!(
            c,
            [7, 8, 9, 10, 11, 12, 0, 0],
            "the 13th byte is past the span"
        );
        let mut back = [0u8; 4];
        span.tail(3).read(&mem, 1, &mut back).unwrap();
        assert_eq!(back, [5, 6, 7, 8]);
        let mut seen = Vec::new();
        span.for_each_slice(&mem, |s, off| {
            seen.push((s.len(), off));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(1, 0), (5, 1), (6, 6)]);
    }

    #[test]
    fn byte_ranges_overflow_and_capacity() {
        assert_eq!(byte_range(0, 512, 1), Some(0));
        assert_eq!(byte_range(1, 512, 1), None);
        assert_eq!(byte_range(0, 513, 1), None);
        assert_eq!(byte_range(u64::MAX / 512 + 1, 0, u64::MAX), None);
        assert_eq!(byte_range(u64::MAX / 512, 512, u64::MAX / 512), None);
    }
}
