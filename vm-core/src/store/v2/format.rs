//! The v2 file layout: header, frames (records) and a buffered frame reader.
//!
//! ```text
//! header: "VMEVSTOR" | u32 format version (2) | u32 crc32c(first 12 bytes)
//! frame:  u32 payload_len | u32 crc32c(payload) | payload
//! payload: u32 event_count | event_count × encoded event (see store::codec)
//! ```
//! A frame holds one appended batch, so a batch is atomic: after a crash the frame is
//! either complete with a matching CRC, or it is a torn tail that open() cuts off.

use crate::store::fs::StoreFile;
use std::io;
use std::ops::Range;
use std::path::Path;

use crate::event::VmEvent;
use crate::store::codec::{encode_event, DecodeError, EventDecoder};
use crate::store::StoreError;

/// Magic bytes at the start of a v2 store.
pub const MAGIC: [u8; 8] = *b"VMEVSTOR";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Length of the file header.
pub const HEADER_LEN: usize = 16;
/// Length of a frame header (payload length + CRC).
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a frame may have; larger length prefixes are corruption.
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// The unit a disk writes whole (a sector): what a write lost in a power cut
/// leaves unwritten is a run of such units, read back as zeros.
pub(crate) const SECTOR: u64 = 512;

/// The header of a new v2 file.
pub fn encode_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// True if `head` starts like a v2 header (used for format detection).
pub(crate) fn header_prefix_matches(head: &[u8]) -> bool {
    let n = head.len().min(MAGIC.len());
    n > 0 && head[..n] == MAGIC[..n]
}

/// Validates a header read from `path` (`head` may be shorter than a header).
pub(crate) fn check_header(path: &Path, head: &[u8]) -> Result<(), StoreError> {
    if head.len() < HEADER_LEN {
        return Err(StoreError::TruncatedHeader {
            path: path.to_owned(),
            len: head.len() as u64,
            need: HEADER_LEN as u64,
        });
    }
    let stored = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    if crc32c::crc32c(&head[..12]) != stored {
        return Err(StoreError::CorruptHeader {
            path: path.to_owned(),
        });
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            path: path.to_owned(),
            version,
        });
    }
    Ok(())
}

/// Appends a frame holding `events` to `out`.
pub(crate) fn encode_frame(events: &[VmEvent], out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for ev in events {
        if let Err(e) = encode_event(ev, out) {
            out.truncate(start);
            return Err(StoreError::Encode(e.to_string()));
        }
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(StoreError::BatchTooLarge {
            bytes: len,
            max: MAX_FRAME_LEN,
        });
    }
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes every event of a frame payload, passing each to `f`.
pub(crate) fn decode_payload(
    payload: &[u8],
    decoder: &mut EventDecoder,
    mut f: impl FnMut(VmEvent) -> Result<(), String>,
) -> Result<(), String> {
    let (count, mut rest) = split_count(payload).map_err(|e| e.to_string())?;
    for i in 0..count {
        let ev = decoder
            .decode_next(&mut rest)
            .map_err(|e| format!("event {i} of {count}: {e}"))?;
        f(ev)?;
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} bytes after the last of {count} events",
            rest.len()
        ))
    }
}

/// Splits a payload into its event count and the encoded events.
pub(crate) fn split_count(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match payload {
        [a, b, c, d, rest @ ..] => Ok((u32::from_le_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(DecodeError::Truncated {
            needed: 4 - payload.len(),
        }),
    }
}

/// A problem found while reading frames.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The damage is confined to the end of the file: safe to truncate at `offset`.
    Torn { offset: u64, reason: String },
    /// Damage with more data after it: the store cannot be used as is.
    Corrupt { offset: u64, reason: String },
    /// Reading failed.
    Io(io::Error),
}

/// Reads frames sequentially from `[start, end)` of a file through one reusable buffer.
#[derive(Debug)]
pub(crate) struct FrameReader<'f> {
    file: &'f dyn StoreFile,
    /// File offset of `buf[start]`.
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    start: usize,
    filled: usize,
}

const READ_CHUNK: usize = 256 << 10;

impl<'f> FrameReader<'f> {
    /// A reader over `[start, end)` of `file`.
    pub(crate) fn new(file: &'f dyn StoreFile, start: u64, end: u64) -> Self {
        Self {
            file,
            pos: start,
            end,
            buf: vec![0; READ_CHUNK],
            start: 0,
            filled: 0,
        }
    }

    /// Makes at least `n` bytes available at `buf[start..]`; the caller checked that the file
    /// region holds them, so `n` is bounded by the file's size.
    fn ensure(&mut self, n: usize) -> io::Result<()> {
        if self.filled - self.start >= n {
            return Ok(());
        }
        self.buf.copy_within(self.start..self.filled, 0);
        self.filled -= self.start;
        self.start = 0;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.filled < n {
            let file_pos = self.pos + self.filled as u64;
            let want = (self.buf.len() - self.filled).min((self.end - file_pos) as usize);
            if want == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let got = self
                .file
                .read_at(&mut self.buf[self.filled..self.filled + want], file_pos)?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.filled += got;
        }
        Ok(())
    }

    /// Bytes of the buffer (for payload ranges returned by [`FrameReader::next_frame`]).
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// File offset of the next frame.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// The next frame's file offset and the buffer range of its CRC-checked payload; `None`
    /// at the end. The range stays valid until the next call.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(u64, Range<usize>)>, FrameError> {
        let offset = self.pos;
        let remaining = self.end - offset;
        if remaining == 0 {
            return Ok(None);
        }
        if remaining < FRAME_HEADER_LEN as u64 {
            return Err(FrameError::Torn {
                offset,
                reason: format!("partial record header ({remaining} bytes)"),
            });
        }
        self.ensure(FRAME_HEADER_LEN).map_err(FrameError::Io)?;
        let h = &self.buf[self.start..self.start + FRAME_HEADER_LEN];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len > MAX_FRAME_LEN {
            return Err(FrameError::Corrupt {
                offset,
                reason: format!("length prefix {len} exceeds the {MAX_FRAME_LEN}-byte limit"),
            });
        }
        if len < 4 {
            if remaining <= (MAX_FRAME_LEN + FRAME_HEADER_LEN) as u64 {
                if self.rest_is_zero()? {
                    return Err(FrameError::Torn {
                        offset,
                        reason: format!("{remaining} zero bytes at the end"),
                    });
                }
                // Power lost during an append whose later blocks reached the disk but whose
                // first did not (it reads as zeros): torn, like any other damaged last record.
                let reason = format!("length prefix {len} is shorter than a payload");
                if let Some(end) = self.unwritten_sectors()? {
                    return Err(FrameError::Torn {
                        offset,
                        reason: format!(
                            "{reason}: zeros from there to the sector boundary at byte {end}, \
                             a write whose first sectors never reached the disk"
                        ),
                    });
                }
                return Err(self.torn_unless_followed(offset, reason)?);
            }
            return Err(FrameError::Corrupt {
                offset,
                reason: format!("length prefix {len} is shorter than a payload"),
            });
        }
        let total = FRAME_HEADER_LEN + len;
        if total as u64 > remaining {
            let reason = format!("record of {total} bytes but only {remaining} left in the file");
            return Err(self.torn_unless_followed(offset, reason)?);
        }
        self.ensure(total).map_err(FrameError::Io)?;
        let payload = self.start + FRAME_HEADER_LEN..self.start + total;
        if crc32c::crc32c(&self.buf[payload.clone()]) != crc {
            let reason = "CRC32C mismatch".to_string();
            return Err(if total as u64 == remaining {
                self.torn_unless_followed(offset, format!("{reason} in the last record"))?
            } else {
                FrameError::Corrupt { offset, reason }
            });
        }
        self.start += total;
        self.pos += total as u64;
        Ok(Some((offset, payload)))
    }

    /// The damaged record at `offset` (the current position) reaches the end
    /// of the file. It is a torn tail (a crash mid-append) only if no intact
    /// record follows it: a complete record with a matching CRC inside the
    /// damaged bytes means a corrupted length swallowed valid history, which
    /// truncation would destroy. Callers checked that the rest of the file is
    /// shorter than a maximal record, so it fits in memory.
    fn torn_unless_followed(
        &mut self,
        offset: u64,
        reason: String,
    ) -> Result<FrameError, FrameError> {
        let remaining = (self.end - self.pos) as usize;
        self.ensure(remaining).map_err(FrameError::Io)?;
        let rest = &self.buf[self.start..self.start + remaining];
        let u32_at =
            |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        for at in FRAME_HEADER_LEN..=remaining.saturating_sub(FRAME_HEADER_LEN + 4) {
            let len = u32_at(at) as usize;
            let fits = len >= 4 && at + FRAME_HEADER_LEN + len <= remaining;
            if fits
                && crc32c::crc32c(&rest[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len])
                    == u32_at(at + 4)
            {
                return Ok(FrameError::Corrupt {
                    offset,
                    reason: format!(
                        "{reason}, yet an intact record follows at byte offset {}: \
                         the length prefix is corrupt (not a torn tail; refusing to truncate)",
                        offset + at as u64
                    ),
                });
            }
        }
        Ok(FrameError::Torn { offset, reason })
    }

    /// The frame at the current position starts with zeros (header included)
    /// up to a sector boundary: the shape of a write whose first sectors never
    /// reached the disk. Returns that boundary's file offset.
    ///
    /// Records after such a run were never acknowledged, however intact: the
    /// store writes sequentially and acknowledges a write only once
    /// `fdatasync` made it durable, which makes every earlier byte of the file
    /// durable too, so a durable record cannot follow bytes that were lost.
    /// Hence a power cut during a group commit (one write holding several
    /// records, whose later sectors were written back before the first) is a
    /// torn tail. A corrupt length prefix is not this shape: its CRC field,
    /// and the record's bytes after it, are not zeros to a sector boundary.
    /// Callers checked that the rest of the file is shorter than a maximal
    /// record, so it fits in memory.
    fn unwritten_sectors(&mut self) -> Result<Option<u64>, FrameError> {
        let remaining = (self.end - self.pos) as usize;
        self.ensure(remaining).map_err(FrameError::Io)?;
        let rest = &self.buf[self.start..self.start + remaining];
        let zeros = rest.iter().take_while(|&&b| b == 0).count() as u64;
        // The first boundary past the frame header: a run shorter than the
        // header could be a zeroed length prefix in front of a valid CRC.
        let header_end = self.pos + FRAME_HEADER_LEN as u64;
        let boundary = header_end.div_ceil(SECTOR) * SECTOR;
        Ok((boundary <= self.pos + zeros).then_some(boundary))
    }

    fn rest_is_zero(&mut self) -> Result<bool, FrameError> {
        let remaining = (self.end - self.pos) as usize;
        self.ensure(remaining).map_err(FrameError::Io)?;
        Ok(self.buf[self.start..self.start + remaining]
            .iter()
            .all(|&b| b == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let p = Path::new("x");
        let h = encode_header();
        check_header(p, &h).unwrap();
        assert!(matches!(
            check_header(p, &h[..5]),
            Err(StoreError::TruncatedHeader { len: 5, .. })
        ));
        let mut bad = h;
        bad[13] ^= 1;
        assert!(matches!(
            check_header(p, &bad),
            Err(StoreError::CorruptHeader { .. })
        ));
        let mut v3 = h;
        v3[8] = 3;
        let crc = crc32c::crc32c(&v3[..12]);
        v3[12..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            check_header(p, &v3),
            Err(StoreError::UnsupportedVersion { version: 3, .. })
        ));
        assert!(header_prefix_matches(b"VMEV"));
        assert!(!header_prefix_matches(b"{\"vm\""));
    }
}
