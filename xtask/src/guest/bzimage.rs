//! The uncompressed `vmlinux` inside an x86 bzImage: the setup header's
//! `payload_offset`/`payload_length` (boot protocol >= 2.08) locate the
//! compressed kernel, its magic says how it is compressed.

use anyhow::{bail, Context, Result};

use super::decompress::{decompress, Format};

/// `e_machine` of x86_64 ELF files.
pub const EM_X86_64: u16 = 62;

fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Returns the compressed payload of `bz` and its format.
pub fn payload(bz: &[u8]) -> Result<(&[u8], Format)> {
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage: no `HdrS` setup header magic at 0x202");
    }
    let version = le_u16(bz, 0x206).context("setup header truncated")?;
    if version < 0x0208 {
        bail!(
            "boot protocol {}.{:02} has no payload_offset (2.08 or newer needed)",
            version >> 8,
            version & 0xff
        );
    }
    let setup_sects = match bz.get(0x1f1).copied() {
        Some(0) => 4,
        Some(n) => usize::from(n),
        None => bail!("setup header truncated"),
    };
    let offset = le_u32(bz, 0x248).context("setup header truncated")? as usize;
    let length = le_u32(bz, 0x24c).context("setup header truncated")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    let Some(data) = bz.get(start..start.saturating_add(length)) else {
        bail!(
            "payload at {start:#x}+{length:#x} lies outside the {}-byte image (truncated?)",
            bz.len()
        );
    };
    let Some(format) = Format::detect(data) else {
        bail!(
            "unknown payload compression (magic {:02x?})",
            &data[..data.len().min(6)]
        );
    };
    Ok((data, format))
}

/// Checks that `elf` is a 64-bit little-endian ELF file for `machine`.
pub fn check_elf64(elf: &[u8], machine: u16, what: &str) -> Result<()> {
    if elf.get(..4) != Some(b"\x7fELF") {
        bail!("{what} is not an ELF file");
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        bail!("{what} is not a 64-bit little-endian ELF file");
    }
    let found = le_u16(elf, 0x12).context("ELF header truncated")?;
    if found != machine {
        bail!("{what} is an ELF file for machine {found}, not {machine}");
    }
    Ok(())
}

/// Extracts and verifies the x86_64 `vmlinux` ELF from a bzImage.
pub fn vmlinux(bz: &[u8]) -> Result<Vec<u8>> {
    let (data, format) = payload(bz)?;
    // The build appends the uncompressed size (u32 LE) after the stream.
    let Some(split) = data.len().checked_sub(4) else {
        bail!("payload of {} bytes is too short", data.len());
    };
    let (stream, trailer) = data.split_at(split);
    let expected = u32::from_le_bytes(trailer.try_into().expect("4 bytes")) as usize;
    let elf = decompress(format, stream, "the bzImage payload")?;
    if elf.len() != expected {
        bail!(
            "payload decompressed to {} bytes, the image says {expected}",
            elf.len()
        );
    }
    check_elf64(&elf, EM_X86_64, "the bzImage payload")?;
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A minimal bzImage around `payload` (one setup sector).
    fn bzimage(payload: &[u8], version: u16) -> Vec<u8> {
        let mut bz = vec![0u8; 2 * 512];
        bz[0x1f1] = 1;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        bz.extend_from_slice(&[0u8; 16]);
        bz.extend_from_slice(payload);
        bz
    }

    fn fake_vmlinux(machine: u16) -> Vec<u8> {
        let mut elf = vec![0u8; 256];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        elf
    }

    fn gzip_with_size(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        let mut out = enc.finish().unwrap();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn extracts_the_elf_payload() {
        let elf = fake_vmlinux(EM_X86_64);
        let bz = bzimage(&gzip_with_size(&elf), 0x020f);
        assert_eq!(vmlinux(&bz).unwrap(), elf);
    }

    #[test]
    fn lz4_payload_like_debians() {
        let elf = fake_vmlinux(EM_X86_64);
        let mut p = 0x184c_2102u32.to_le_bytes().to_vec();
        let c = lz4_flex::block::compress(&elf);
        p.extend_from_slice(&(c.len() as u32).to_le_bytes());
        p.extend_from_slice(&c);
        p.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        assert_eq!(vmlinux(&bzimage(&p, 0x020f)).unwrap(), elf);
    }

    #[test]
    fn hostile_images_are_errors() {
        let good = bzimage(&gzip_with_size(&fake_vmlinux(EM_X86_64)), 0x020f);
        let msg = |r: Result<Vec<u8>>| r.unwrap_err().to_string();
        // Every truncation fails cleanly.
        for len in [0, 0x100, 0x204, 0x250, good.len() - 1] {
            assert!(vmlinux(&good[..len]).is_err(), "truncated at {len}");
        }
        assert!(msg(vmlinux(&good[..good.len() - 5])).contains("outside"));
        let mut no_magic = good.clone();
        no_magic[0x202] = b'X';
        assert!(msg(vmlinux(&no_magic)).contains("HdrS"));
        assert!(msg(vmlinux(&bzimage(b"\0\0\0\0\0\0\0\0", 0x020f))).contains("unknown payload"));
        assert!(msg(vmlinux(&bzimage(b"whatever", 0x0206))).contains("2.08"));
        // A huge payload_length does not overflow.
        let mut huge = good.clone();
        huge[0x248..0x24c].copy_from_slice(&u32::MAX.to_le_bytes());
        huge[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(vmlinux(&huge).is_err());
        // Wrong size trailer, wrong machine, not an ELF.
        let mut p = gzip_with_size(&fake_vmlinux(EM_X86_64));
        let n = p.len();
        p[n - 4] ^= 1;
        assert!(msg(vmlinux(&bzimage(&p, 0x020f))).contains("the image says"));
        let riscv = bzimage(&gzip_with_size(&fake_vmlinux(243)), 0x020f);
        assert!(msg(vmlinux(&riscv)).contains("machine 243"));
        let text = bzimage(&gzip_with_size(b"not an elf at all"), 0x020f);
        assert!(msg(vmlinux(&text)).contains("not an ELF"));
    }
}
