//! Decompression by magic number: the formats Debian uses for kernel payloads
//! (bzImage) and kernel modules (`.ko.xz`, `.ko.zst`, `.ko.gz`).

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};

/// Largest output accepted from one decompression: far above any kernel or
/// module, low enough that a hostile input cannot exhaust memory.
pub const MAX_OUTPUT: usize = 1 << 30;

/// A compression format recognised by its leading magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip (RFC 1952).
    Gzip,
    /// xz container (LZMA2).
    Xz,
    /// Zstandard frame.
    Zstd,
    /// LZ4 legacy frame (`lz4 -l`), what Linux uses for `KERNEL_LZ4`.
    Lz4Legacy,
    /// bzip2: recognised so the error can name it; not supported.
    Bzip2,
    /// Raw LZMA (`.lzma`): recognised so the error can name it; not supported.
    Lzma,
    /// LZO (`lzop`): recognised so the error can name it; not supported.
    Lzo,
}

const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Uncompressed size of one LZ4 legacy block.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

impl Format {
    /// Detects the format from the first bytes of `data`.
    pub fn detect(data: &[u8]) -> Option<Self> {
        let starts = |m: &[u8]| data.starts_with(m);
        if starts(&[0x1f, 0x8b]) {
            Some(Self::Gzip)
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Self::Xz)
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::Zstd)
        } else if starts(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
            Some(Self::Lz4Legacy)
        } else if starts(b"BZh") {
            Some(Self::Bzip2)
        } else if starts(&[0x5d, 0, 0]) {
            Some(Self::Lzma)
        } else if starts(&[0x89, b'L', b'Z', b'O']) {
            Some(Self::Lzo)
        } else {
            None
        }
    }
}

/// A writer that refuses to grow past `limit` bytes.
struct Limited {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "output exceeds {} bytes",
                self.limit
            )));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_limited(mut reader: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .by_ref()
        .take(MAX_OUTPUT as u64 + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("decompressing {what}"))?;
    if out.len() > MAX_OUTPUT {
        bail!("decompressing {what}: output exceeds {MAX_OUTPUT} bytes");
    }
    Ok(out)
}

/// Decompresses `data` in `format`; `what` names the input in errors.
pub fn decompress(format: Format, data: &[u8], what: &str) -> Result<Vec<u8>> {
    match format {
        Format::Gzip => read_limited(flate2::read::GzDecoder::new(data), what),
        Format::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| anyhow::anyhow!("decompressing {what}: zstd: {e}"))?;
            read_limited(decoder, what)
        }
        Format::Xz => {
            let mut out = Limited {
                out: Vec::new(),
                limit: MAX_OUTPUT,
            };
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut out)
                .map_err(|e| anyhow::anyhow!("decompressing {what}: xz: {e}"))?;
            Ok(out.out)
        }
        Format::Lz4Legacy => lz4_legacy(data, what),
        Format::Bzip2 | Format::Lzma | Format::Lzo => {
            bail!("{what} is {format:?}-compressed, which this tool does not decompress (gzip, xz, zstd and lz4 are supported)")
        }
    }
}

/// Decompresses `data` if it starts with a known magic; otherwise returns it.
pub fn decompress_if_compressed(data: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    match Format::detect(&data) {
        Some(format) => decompress(format, &data, what),
        None => Ok(data),
    }
}

/// The LZ4 legacy frame: the magic, then blocks of `[u32 LE size][data]`,
/// each decompressing to at most 8 MiB. A size with no data after it (the
/// kernel's appended length) or the end of input ends the stream.
fn lz4_legacy(data: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut pos = 4;
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + 4) else {
            bail!("{what}: lz4 stream truncated in a block header at offset {pos}");
        };
        let size = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
        pos += 4;
        if size == LZ4_LEGACY_MAGIC as usize {
            continue; // concatenated legacy streams
        }
        if pos == data.len() || size == 0 {
            break;
        }
        let Some(chunk) = data.get(pos..pos.saturating_add(size)) else {
            bail!(
                "{what}: lz4 block of {size} bytes at offset {pos} runs past the end ({} bytes)",
                data.len()
            );
        };
        let n = lz4_flex::block::decompress_into(chunk, &mut block)
            .map_err(|e| anyhow::anyhow!("{what}: lz4 block at offset {pos}: {e}"))?;
        if out.len() + n > MAX_OUTPUT {
            bail!("decompressing {what}: output exceeds {MAX_OUTPUT} bytes");
        }
        out.extend_from_slice(&block[..n]);
        pos += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trip_and_detection() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello kernel").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(Format::detect(&gz), Some(Format::Gzip));
        assert_eq!(decompress_if_compressed(gz, "t").unwrap(), b"hello kernel");
        assert_eq!(
            decompress_if_compressed(b"plain".to_vec(), "t").unwrap(),
            b"plain"
        );
    }

    #[test]
    fn lz4_legacy_blocks_and_trailer() {
        let a = vec![7u8; 100_000];
        let b = b"tail bytes".repeat(50);
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for part in [&a[..], &b[..]] {
            let c = lz4_flex::block::compress(part);
            stream.extend_from_slice(&(c.len() as u32).to_le_bytes());
            stream.extend_from_slice(&c);
        }
        // The kernel's appended uncompressed size ends the stream.
        stream.extend_from_slice(&((a.len() + b.len()) as u32).to_le_bytes());
        let out = decompress(Format::Lz4Legacy, &stream, "t").unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert_eq!(&out[..a.len()], &a[..]);

        // A block that claims more bytes than remain is an error, not a panic.
        let mut bad = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        bad.extend_from_slice(&1000u32.to_le_bytes());
        bad.extend_from_slice(&[1, 2, 3]);
        let err = decompress(Format::Lz4Legacy, &bad, "t").unwrap_err();
        assert!(err.to_string().contains("runs past the end"), "{err}");
        // Garbage inside a block is an error too.
        let mut junk = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        junk.extend_from_slice(&8u32.to_le_bytes());
        junk.extend_from_slice(&[0xff; 8]);
        assert!(decompress(Format::Lz4Legacy, &junk, "t").is_err());
    }

    #[test]
    fn corrupt_and_unsupported_inputs_are_errors() {
        assert!(decompress(Format::Xz, &[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2], "t").is_err());
        assert!(decompress(Format::Zstd, &[0x28, 0xb5, 0x2f, 0xfd, 0xff], "t").is_err());
        assert!(decompress(Format::Gzip, &[0x1f, 0x8b, 8, 0, 0], "t").is_err());
        let err = decompress(Format::Bzip2, b"BZh91AY", "the payload").unwrap_err();
        assert!(err.to_string().contains("the payload is Bzip2"), "{err}");
    }
}
