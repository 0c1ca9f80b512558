//! Kernel loading and the zero page through `linux-loader` (bzImage and ELF
//! vmlinux). linux-loader only builds its x86 loaders on x86 hosts (and needs
//! vm-memory's unix-only `rawfd`), so this module is selected at its `mod` line.

use std::io::Cursor;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

use super::layout::{self, HIGH_RAM_START, ZERO_PAGE};
use crate::platform::boot::{KernelFormat, LoadedKernel, SetupHeaderBytes, SETUP_HEADER_LEN};
use crate::platform::error::{PlatformError, Result};
use crate::platform::layout::{MemoryMap, Range};
use crate::platform::GuestArch;

const _: () = assert!(std::mem::size_of::<setup_header>() == SETUP_HEADER_LEN);

/// Offset of the setup header in a bzImage.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `xloadflags` bit: the kernel has a 64-bit entry at `load + 0x200`.
const XLF_KERNEL_64: u16 = 1;
/// Offset of the 64-bit entry point from the protected-mode load address.
const STARTUP_64_OFFSET: u64 = 0x200;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Default ceiling for initrds when the kernel gives none (ELF vmlinux).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// x86 `COMMAND_LINE_SIZE` for kernels that do not state `cmdline_size`.
const DEFAULT_CMDLINE_MAX: usize = 2047;

fn invalid(reason: impl Into<String>) -> PlatformError {
    PlatformError::InvalidKernel {
        arch: GuestArch::X86_64,
        reason: reason.into(),
    }
}

/// Loads a bzImage or ELF vmlinux into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, map: &MemoryMap, image: &[u8]) -> Result<LoadedKernel> {
    let ram_end = layout::low_ram_end(map);
    if image.len() >= 0x206 && &image[0x202..0x206] == b"HdrS" {
        load_bzimage(mem, ram_end, image)
    } else if image.len() >= 4 && &image[0..4] == b"\x7fELF" {
        load_elf(mem, ram_end, image)
    } else {
        Err(invalid("neither a bzImage (no HdrS magic) nor an ELF file"))
    }
}

fn load_bzimage(mem: &GuestMemoryMmap, ram_end: u64, image: &[u8]) -> Result<LoadedKernel> {
    let raw = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + SETUP_HEADER_LEN)
        .ok_or_else(|| invalid("file shorter than its setup header"))?;
    let hdr = setup_header::from_slice(raw).ok_or_else(|| invalid("unreadable setup header"))?;
    let (version, xloadflags) = (hdr.version, hdr.xloadflags);
    if version < 0x020c || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(invalid(format!(
            "bzImage boot protocol {version:#x} without a 64-bit entry (xloadflags {xloadflags:#x})"
        )));
    }
    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        u64::from(hdr.setup_sects)
    };
    let payload = (image.len() as u64)
        .checked_sub((setup_sects + 1) * 512)
        .ok_or_else(|| invalid("file shorter than its setup sectors"))?;
    // The decompressor needs `init_size` bytes from the address it relocates
    // to (`pref_address` for a relocatable kernel loaded below it).
    let load = HIGH_RAM_START;
    let (init_size, pref) = (u64::from(hdr.init_size), hdr.pref_address);
    // `pref_address` comes from the file: saturate so a hostile value fails the fit check.
    let end = (load + payload).max(pref.max(load).saturating_add(init_size));
    if end > ram_end {
        return Err(PlatformError::KernelDoesNotFit {
            addr: load,
            size: end - load,
            ram_end,
        });
    }
    let res = BzImage::load(
        mem,
        Some(GuestAddress(load)),
        &mut Cursor::new(image),
        Some(GuestAddress(HIGH_RAM_START)),
    )
    .map_err(|e| PlatformError::Loader(e.to_string()))?;
    let hdr = res.setup_header.unwrap_or(*hdr);
    let mut bytes = [0u8; SETUP_HEADER_LEN];
    bytes.copy_from_slice(hdr.as_slice());
    Ok(LoadedKernel {
        format: KernelFormat::BzImage,
        load: res.kernel_load,
        end,
        entry: GuestAddress(res.kernel_load.0 + STARTUP_64_OFFSET),
        pvh_entry: None,
        initrd_addr_max: Some(u64::from(hdr.initrd_addr_max)),
        cmdline_max: Some(hdr.cmdline_size as usize),
        x86_setup_header: Some(SetupHeaderBytes(bytes)),
        tohost: None,
    })
}

fn load_elf(mem: &GuestMemoryMmap, ram_end: u64, image: &[u8]) -> Result<LoadedKernel> {
    // EI_CLASS = ELFCLASS64, EI_DATA = little endian, e_machine = EM_X86_64.
    if image.len() < 64 || image[4] != 2 || image[5] != 1 {
        return Err(invalid("ELF file is not 64-bit little-endian"));
    }
    let machine = u16::from_le_bytes([image[18], image[19]]);
    if machine != 62 {
        return Err(invalid(format!(
            "ELF e_machine {machine} is not x86_64 (62)"
        )));
    }
    let res = Elf::load(
        mem,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(HIGH_RAM_START)),
    )
    .map_err(|e| match e {
        linux_loader::loader::Error::Elf(linux_loader::loader::elf::Error::ReadKernelImage) => {
            PlatformError::KernelDoesNotFit {
                addr: HIGH_RAM_START,
                size: image.len() as u64,
                ram_end,
            }
        }
        other => PlatformError::Loader(other.to_string()),
    })?;
    if res.kernel_end > ram_end {
        return Err(PlatformError::KernelDoesNotFit {
            addr: res.kernel_load.0,
            size: res.kernel_end.saturating_sub(res.kernel_load.0),
            ram_end,
        });
    }
    let pvh_entry = match res.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => Some(addr),
        _ => None,
    };
    Ok(LoadedKernel {
        format: KernelFormat::ElfVmlinux,
        load: res.kernel_load,
        end: res.kernel_end,
        entry: res.kernel_load,
        pvh_entry,
        initrd_addr_max: Some(DEFAULT_INITRD_ADDR_MAX),
        cmdline_max: Some(DEFAULT_CMDLINE_MAX),
        x86_setup_header: None,
        tohost: None,
    })
}

/// Writes the zero page: setup header, command line, initrd, e820, RSDP.
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    map: &MemoryMap,
    kernel: &LoadedKernel,
    cmdline: Range,
    initrd: Option<Range>,
    rsdp: GuestAddress,
) -> Result<()> {
    let mut params = boot_params::default();
    if let Some(h) = kernel.x86_setup_header {
        if let Some(hdr) = setup_header::from_slice(&h.0) {
            params.hdr = *hdr;
        }
    }
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = cmdline.start.0 as u32;
    params.hdr.cmdline_size = cmdline.size.saturating_sub(1) as u32;
    if let Some(rd) = initrd {
        params.hdr.ramdisk_image = rd.start.0 as u32;
        params.hdr.ramdisk_size = rd.size as u32;
    }
    params.acpi_rsdp_addr = rsdp.0;
    let e820 = layout::e820_entries(map);
    if e820.len() > params.e820_table.len() {
        return Err(PlatformError::BootDataTooLarge {
            what: "e820 map",
            size: e820.len() as u64,
            max: params.e820_table.len() as u64,
        });
    }
    for (slot, (addr, size, kind)) in params.e820_table.iter_mut().zip(&e820) {
        slot.addr = *addr;
        slot.size = *size;
        slot.r#type = *kind;
    }
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE)),
        mem,
    )
    .map_err(|e| PlatformError::BootConfigurator(e.to_string()))
}
