//! Which architecture a kernel image is for, read from its header.
//!
//! Firecracker's API has no architecture field: a Firecracker VM always has
//! the host's. Here a kernel built for another architecture runs on the
//! software engine (riscv64 on an x86_64 host), so the guest architecture is
//! taken from the kernel file: an ELF's `e_machine`, the `Image` header magic
//! of arm64 and riscv64 kernels, or the x86 boot protocol's `HdrS`. A file
//! none of these match is taken to be for the host.

use std::io::Read;
use std::path::Path;

use vm_core::config::GuestArch;

/// ELF `e_machine` values.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// How much of the file the checks need (the x86 setup header ends before this).
const HEADER_LEN: usize = 0x210;

/// The architecture `header` (a kernel file's first bytes) is for, if it says.
pub fn from_header(header: &[u8]) -> Option<GuestArch> {
    let at = |offset: usize, magic: &[u8]| header.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\x7fELF") {
        // EI_DATA (byte 5): 1 little-endian, 2 big-endian.
        let bytes = [*header.get(18)?, *header.get(19)?];
        let machine = match header.get(5) {
            Some(2) => u16::from_be_bytes(bytes),
            _ => u16::from_le_bytes(bytes),
        };
        return match machine {
            EM_X86_64 => Some(GuestArch::X86_64),
            EM_AARCH64 => Some(GuestArch::Arm64),
            EM_RISCV => Some(GuestArch::Riscv64),
            _ => None,
        };
    }
    // The Linux `Image` headers: magic2 at 56 (riscv64; magic "RISCV" at 48), magic at 56 (arm64).
    if at(56, b"RSC\x05") || at(48, b"RISCV\0\0\0") {
        return Some(GuestArch::Riscv64);
    }
    if at(56, b"ARM\x64") {
        return Some(GuestArch::Arm64);
    }
    if at(0x202, b"HdrS") {
        return Some(GuestArch::X86_64);
    }
    None
}

/// The architecture of the kernel at `path`: its header's, else the host's.
pub fn of_kernel(path: &Path) -> std::io::Result<GuestArch> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path)?
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)?;
    Ok(from_header(&header)
        .or_else(GuestArch::host)
        .unwrap_or(GuestArch::X86_64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn headers_name_their_architecture() {
        assert_eq!(from_header(&elf(EM_RISCV)), Some(GuestArch::Riscv64));
        assert_eq!(from_header(&elf(EM_X86_64)), Some(GuestArch::X86_64));
        assert_eq!(from_header(&elf(EM_AARCH64)), Some(GuestArch::Arm64));
        assert_eq!(from_header(&elf(3)), None);
        let mut image = vec![0u8; 64];
        image[48..56].copy_from_slice(b"RISCV\0\0\0");
        image[56..60].copy_from_slice(b"RSC\x05");
        assert_eq!(from_header(&image), Some(GuestArch::Riscv64));
        let mut arm = vec![0u8; 64];
        arm[56..60].copy_from_slice(b"ARM\x64");
        assert_eq!(from_header(&arm), Some(GuestArch::Arm64));
        let mut bz = vec![0u8; HEADER_LEN];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(from_header(&bz), Some(GuestArch::X86_64));
        assert_eq!(from_header(b"short"), None);
        assert_eq!(from_header(&[]), None);
    }
}
