//! The arm64 and riscv64 `Image` header (the flat kernel image both ports
//! produce, optionally prefixed by an EFI stub), parsed by hand: linux-loader
//! only offers its PE loader on arm64/riscv64 hosts, and the header is 64 bytes.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{write_blob, KernelFormat, LoadedKernel};
use super::error::{PlatformError, Result};
use super::layout::MemoryMap;
use super::GuestArch;

/// Size of the `Image` header.
pub const HEADER_LEN: usize = 64;
/// arm64 magic at offset 0x38: "ARM\x64".
const ARM64_MAGIC: u32 = 0x644d_5241;
/// riscv64 magic2 at offset 0x38: "RSC\x05".
const RISCV_MAGIC2: &[u8; 4] = b"RSC\x05";
/// riscv64 deprecated magic at offset 0x30.
const RISCV_MAGIC: &[u8; 8] = b"RISCV\0\0\0";
/// arm64 kernels before 3.17 leave `image_size` zero and assume this offset.
const ARM64_LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// The fields of an `Image` header the loader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB-aligned base at which the image must sit.
    pub text_offset: u64,
    /// Bytes the kernel occupies in memory, from the load address (BSS included).
    pub image_size: u64,
    /// Header flags (bit 0: big-endian kernel).
    pub flags: u64,
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Names what a file is when it is not an `Image`, to make the error useful.
fn what_is_it(image: &[u8]) -> &'static str {
    if image.starts_with(b"\x7fELF") {
        "an ELF file (pass the flat Image, not vmlinux)"
    } else if image.starts_with(&[0x1f, 0x8b]) {
        "gzip-compressed (decompress Image.gz first)"
    } else if image.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd-compressed (decompress it first)"
    } else if image.len() >= 0x206 && &image[0x202..0x206] == b"HdrS" {
        "an x86 bzImage"
    } else {
        "not a kernel Image (no header magic)"
    }
}

/// Parses an `Image` header for `arch` (arm64 or riscv64).
pub fn parse(arch: GuestArch, image: &[u8]) -> Result<ImageHeader> {
    let invalid = |reason: String| PlatformError::InvalidKernel { arch, reason };
    if image.len() < HEADER_LEN {
        return Err(invalid(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte Image header",
            image.len()
        )));
    }
    let (mut text_offset, mut image_size, flags) =
        (le64(image, 8), le64(image, 16), le64(image, 24));
    match arch {
        GuestArch::Arm64 => {
            let magic = u32::from_le_bytes([image[0x38], image[0x39], image[0x3a], image[0x3b]]);
            if magic != ARM64_MAGIC {
                let other = if &image[0x38..0x3c] == RISCV_MAGIC2 {
                    "a riscv64 Image"
                } else {
                    what_is_it(image)
                };
                return Err(invalid(format!("{other}, not an arm64 Image")));
            }
            if image_size == 0 {
                text_offset = ARM64_LEGACY_TEXT_OFFSET;
            }
        }
        GuestArch::Riscv64 => {
            if &image[0x38..0x3c] != RISCV_MAGIC2 && &image[0x30..0x38] != RISCV_MAGIC {
                let other =
                    if u32::from_le_bytes([image[0x38], image[0x39], image[0x3a], image[0x3b]])
                        == ARM64_MAGIC
                    {
                        "an arm64 Image"
                    } else {
                        what_is_it(image)
                    };
                return Err(invalid(format!("{other}, not a riscv64 Image")));
            }
        }
        GuestArch::X86_64 => return Err(invalid("x86_64 kernels have no Image header".into())),
    }
    if flags & 1 != 0 {
        return Err(invalid("big-endian kernel".into()));
    }
    if image_size == 0 {
        image_size = image.len() as u64;
    }
    if text_offset % 0x1000 != 0 {
        return Err(invalid(format!(
            "text_offset {text_offset:#x} is not page aligned"
        )));
    }
    Ok(ImageHeader {
        text_offset,
        image_size,
        flags,
    })
}

/// Validates `image` and copies it to `base + text_offset` (`base` 2 MiB aligned).
pub fn load(
    arch: GuestArch,
    mem: &GuestMemoryMmap,
    map: &MemoryMap,
    base: u64,
    image: &[u8],
) -> Result<LoadedKernel> {
    let hdr = parse(arch, image)?;
    let load = base
        .checked_add(hdr.text_offset)
        .ok_or_else(|| PlatformError::InvalidKernel {
            arch,
            reason: format!("text_offset {:#x} overflows", hdr.text_offset),
        })?;
    let size = hdr.image_size.max(image.len() as u64);
    let ram = map
        .ram_range_of(base, 1)
        .copied()
        .unwrap_or(super::layout::Range::new(base, 0));
    if !ram.contains(load, size) {
        return Err(PlatformError::KernelDoesNotFit {
            addr: load,
            size,
            ram_end: ram.end(),
        });
    }
    write_blob(mem, "kernel image", GuestAddress(load), image)?;
    Ok(LoadedKernel {
        format: if arch == GuestArch::Arm64 {
            KernelFormat::Arm64Image
        } else {
            KernelFormat::Riscv64Image
        },
        load: GuestAddress(load),
        end: load + size,
        entry: GuestAddress(load),
        pvh_entry: None,
        initrd_addr_max: None,
        cmdline_max: None,
        x86_setup_header: None,
        tohost: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal Image header for tests: `code0`, offsets, magic.
    pub(crate) fn fake_image(
        arch: GuestArch,
        text_offset: u64,
        image_size: u64,
        len: usize,
    ) -> Vec<u8> {
        let mut v = vec![0u8; len.max(HEADER_LEN)];
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        if arch == GuestArch::Arm64 {
            v[0x38..0x3c].copy_from_slice(&ARM64_MAGIC.to_le_bytes());
        } else {
            v[0x30..0x38].copy_from_slice(RISCV_MAGIC);
            v[0x38..0x3c].copy_from_slice(RISCV_MAGIC2);
        }
        v
    }

    #[test]
    fn parses_both_headers() {
        let a = parse(
            GuestArch::Arm64,
            &fake_image(GuestArch::Arm64, 0, 0x20_0000, 4096),
        )
        .unwrap();
        assert_eq!((a.text_offset, a.image_size), (0, 0x20_0000));
        let r = parse(
            GuestArch::Riscv64,
            &fake_image(GuestArch::Riscv64, 0x20_0000, 0, 4096),
        )
        .unwrap();
        assert_eq!((r.text_offset, r.image_size), (0x20_0000, 4096));
        let legacy = parse(GuestArch::Arm64, &fake_image(GuestArch::Arm64, 0, 0, 4096)).unwrap();
        assert_eq!(legacy.text_offset, ARM64_LEGACY_TEXT_OFFSET);
    }

    #[test]
    fn wrong_images_say_what_they_are() {
        let err = |arch, img: &[u8]| match parse(arch, img) {
            Err(PlatformError::InvalidKernel { reason, .. }) => reason,
            other => panic!("expected InvalidKernel, got {other:?}"),
        };
        assert!(
            err(GuestArch::Arm64, &fake_image(GuestArch::Riscv64, 0, 0, 64))
                .contains("riscv64 Image")
        );
        assert!(
            err(GuestArch::Riscv64, &fake_image(GuestArch::Arm64, 0, 0, 64))
                .contains("arm64 Image")
        );
        let mut elf = vec![0u8; 128];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(err(GuestArch::Riscv64, &elf).contains("ELF"));
        assert!(err(GuestArch::Arm64, &[0x1f, 0x8b, 8]).contains("shorter"));
        let mut gz = vec![0u8; 128];
        gz[..2].copy_from_slice(&[0x1f, 0x8b]);
        assert!(err(GuestArch::Arm64, &gz).contains("gzip"));
        let mut be = fake_image(GuestArch::Arm64, 0, 0x1000, 64);
        be[24] = 1;
        assert!(err(GuestArch::Arm64, &be).contains("big-endian"));
        let odd = fake_image(GuestArch::Riscv64, 0x123, 0x1000, 64);
        assert!(err(GuestArch::Riscv64, &odd).contains("page aligned"));
    }
}
