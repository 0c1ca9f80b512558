//! Boot-flow tests for x86_64 with synthetic bzImage and ELF kernels (x86
//! hosts only, like linux-loader's x86 support).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{self, ACPI, CMDLINE, E820_RAM, HIGH_RAM_START, ZERO_PAGE};
use super::X86_64Platform;
use crate::platform::{
    BootData, BootState, KernelFormat, MachineSize, MemoryMap, PlatformError, PlatformTraits,
};

/// A bzImage with boot protocol 2.15, a 64-bit entry and `payload` bytes of kernel.
pub(crate) fn fake_bzimage(payload: usize, init_size: u32, cmdline_size: u32) -> Vec<u8> {
    let setup_sects = 4u8;
    let mut v = vec![0u8; (usize::from(setup_sects) + 1) * 512 + payload];
    v[0x1f1] = setup_sects;
    v[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    v[0x202..0x206].copy_from_slice(b"HdrS");
    v[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    v[0x211] = 0x01; // loadflags: LOADED_HIGH
    v[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    v[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    v[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
    v[0x234] = 1; // relocatable
    v[0x236..0x238].copy_from_slice(&0x0003u16.to_le_bytes()); // xloadflags: KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    v[0x238..0x23c].copy_from_slice(&cmdline_size.to_le_bytes());
    v[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
    v[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    for (i, b) in v[5 * 512..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    v
}

/// A one-segment x86_64 ELF vmlinux at physical 16 MiB, optionally with a PVH note.
pub(crate) fn fake_elf(machine: u16, pvh_entry: Option<u32>) -> Vec<u8> {
    let phnum: u16 = if pvh_entry.is_some() { 2 } else { 1 };
    let data_off = 0x1000usize;
    let seg = 0x2000usize;
    let mut v = vec![0u8; data_off + seg + 0x100];
    v[0..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // ELFCLASS64
    v[5] = 1; // little endian
    v[6] = 1; // EV_CURRENT
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&machine.to_le_bytes());
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // e_entry
    v[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    v[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    v[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    v[56..58].copy_from_slice(&phnum.to_le_bytes());
    let ph =
        |v: &mut Vec<u8>, at: usize, kind: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
            v[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            v[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            v[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
            v[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
            v[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            v[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
            v[at + 48..at + 56].copy_from_slice(&4u64.to_le_bytes());
        };
    ph(
        &mut v,
        64,
        1,
        data_off as u64,
        0x100_0000,
        seg as u64,
        seg as u64 * 2,
    );
    if let Some(entry) = pvh_entry {
        // Note: namesz 4 ("Xen\0"), descsz 4, type XEN_ELFNOTE_PHYS32_ENTRY (18).
        let note = data_off + seg;
        ph(&mut v, 64 + 56, 4, note as u64, 0, 20, 20);
        v[note..note + 4].copy_from_slice(&4u32.to_le_bytes());
        v[note + 4..note + 8].copy_from_slice(&4u32.to_le_bytes());
        v[note + 8..note + 12].copy_from_slice(&18u32.to_le_bytes());
        v[note + 12..note + 16].copy_from_slice(b"Xen\0");
        v[note + 16..note + 20].copy_from_slice(&entry.to_le_bytes());
    }
    v[data_off] = 0xf4; // hlt
    v
}

fn machine(mem: u64) -> (MemoryMap, GuestMemoryMmap) {
    let map = X86_64Platform
        .memory_map(&MachineSize {
            vcpus: 2,
            mem_size: mem,
            virtio_devices: 3,
        })
        .unwrap();
    let gm = map.create_guest_memory().unwrap();
    (map, gm)
}

fn read_u32(gm: &GuestMemoryMmap, addr: u64) -> u32 {
    gm.read_obj(GuestAddress(addr)).unwrap()
}

#[test]
fn bzimage_boot_writes_zero_page_and_acpi() {
    let (map, gm) = machine(256 << 20);
    let image = fake_bzimage(0x4000, 0x80_0000, 2047);
    let initrd = vec![0x5au8; 0x3000];
    let boot = X86_64Platform
        .boot(&gm, &map, &image, Some(&initrd), "console=ttyS0 quiet")
        .unwrap();

    assert_eq!(boot.kernel.format, KernelFormat::BzImage);
    assert_eq!(boot.kernel.load, GuestAddress(HIGH_RAM_START));
    assert_eq!(boot.kernel.entry, GuestAddress(HIGH_RAM_START + 0x200));
    // The decompressor works at pref_address for init_size bytes.
    assert_eq!(boot.kernel.end, 0x100_0000 + 0x80_0000);
    let mut first = [0u8; 4];
    gm.read_slice(&mut first, GuestAddress(HIGH_RAM_START))
        .unwrap();
    assert_eq!(first, [0, 1, 2, 3]);

    let BootState::X86_64Linux { regs, system } = boot.boot_vcpu else {
        panic!("wrong boot state {:?}", boot.boot_vcpu)
    };
    assert_eq!(
        (regs.rip, regs.rsi, regs.rsp),
        (boot.kernel.entry.0, ZERO_PAGE, layout::BOOT_STACK)
    );
    // The boot tables the registers point at are in guest memory.
    assert_eq!(system.cr3, layout::PML4_ADDR);
    let gdt_code: u64 = gm.read_obj(GuestAddress(system.gdt.base + 8)).unwrap();
    assert_eq!(gdt_code, super::entry::BOOT_GDT[1]);

    // Zero page: magic, loader, command line, initrd, RSDP, e820.
    let zp = ZERO_PAGE;
    assert_eq!(
        gm.read_obj::<u16>(GuestAddress(zp + 0x1fe)).unwrap(),
        0xaa55
    );
    assert_eq!(read_u32(&gm, zp + 0x202), 0x5372_6448);
    assert_eq!(gm.read_obj::<u8>(GuestAddress(zp + 0x210)).unwrap(), 0xff);
    assert_eq!(read_u32(&gm, zp + 0x228), CMDLINE.start.0 as u32);
    let mut cmd = [0u8; 20];
    gm.read_slice(&mut cmd, CMDLINE.start).unwrap();
    assert_eq!(&cmd, b"console=ttyS0 quiet\0");
    let rd = boot.initrd.unwrap();
    assert_eq!(read_u32(&gm, zp + 0x218), rd.start.0 as u32);
    assert_eq!(read_u32(&gm, zp + 0x21c), 0x3000);
    assert!(rd.start.0 >= boot.kernel.end && rd.end() <= 256 << 20);
    assert_eq!(rd.start.0 % 0x1000, 0);
    assert_eq!(gm.read_obj::<u8>(rd.start).unwrap(), 0x5a);
    let BootData::X86 { rsdp, acpi, .. } = boot.data else {
        panic!("no ACPI")
    };
    assert_eq!(gm.read_obj::<u64>(GuestAddress(zp + 0x70)).unwrap(), rsdp.0);
    assert!(ACPI.contains(acpi.start.0, acpi.size));
    let mut sig = [0u8; 8];
    gm.read_slice(&mut sig, rsdp).unwrap();
    assert_eq!(&sig, b"RSD PTR ");
    let e820_count = gm.read_obj::<u8>(GuestAddress(zp + 0x1e8)).unwrap();
    assert_eq!(e820_count, 3);
    let e820 = |i: u64| {
        let base = zp + 0x2d0 + i * 20;
        (
            gm.read_obj::<u64>(GuestAddress(base)).unwrap(),
            gm.read_obj::<u64>(GuestAddress(base + 8)).unwrap(),
            read_u32(&gm, base + 16),
        )
    };
    assert_eq!(
        e820(2),
        (HIGH_RAM_START, (256 << 20) - HIGH_RAM_START, E820_RAM)
    );

    assert_eq!(
        X86_64Platform.vcpu_start(&map, &boot, 0).unwrap(),
        boot.boot_vcpu
    );
    assert!(matches!(
        X86_64Platform.vcpu_start(&map, &boot, 1).unwrap(),
        BootState::Secondary { .. }
    ));
    assert!(matches!(
        X86_64Platform.vcpu_start(&map, &boot, 2),
        Err(PlatformError::NoSuchVcpu { index: 2, vcpus: 2 })
    ));
}

#[test]
fn elf_vmlinux_loads_at_its_physical_address_with_pvh_note() {
    let (map, gm) = machine(128 << 20);
    let boot = X86_64Platform
        .boot(&gm, &map, &fake_elf(62, Some(0x100_0040)), None, "")
        .unwrap();
    assert_eq!(boot.kernel.format, KernelFormat::ElfVmlinux);
    assert_eq!(boot.kernel.entry, GuestAddress(0x100_0000));
    assert_eq!(boot.kernel.pvh_entry, Some(GuestAddress(0x100_0040)));
    assert_eq!(gm.read_obj::<u8>(GuestAddress(0x100_0000)).unwrap(), 0xf4);
    assert!(boot.initrd.is_none());
    let plain = X86_64Platform
        .load_kernel(&gm, &map, &fake_elf(62, None))
        .unwrap();
    assert_eq!(plain.pvh_entry, None);
}

#[test]
fn bad_kernels_and_inputs_are_typed_errors() {
    let (map, gm) = machine(64 << 20);
    let invalid = |img: &[u8]| {
        matches!(
            X86_64Platform.load_kernel(&gm, &map, img),
            Err(PlatformError::InvalidKernel { .. })
        )
    };
    assert!(invalid(b"not a kernel"));
    assert!(invalid(&[]));
    assert!(invalid(&fake_elf(243, None)), "riscv ELF must be refused");
    let mut no64 = fake_bzimage(0x1000, 0x1000, 255);
    no64[0x236] = 0;
    assert!(invalid(&no64));
    let mut truncated = fake_bzimage(0, 0x1000, 255);
    truncated.truncate(0x300);
    assert!(invalid(&truncated));

    // init_size larger than RAM.
    let huge = fake_bzimage(0x1000, 0x1000_0000, 255);
    assert!(matches!(
        X86_64Platform.load_kernel(&gm, &map, &huge),
        Err(PlatformError::KernelDoesNotFit { .. })
    ));

    // A hostile pref_address must not overflow the size computation.
    let mut hostile = fake_bzimage(0x1000, 0x1000, 255);
    hostile[0x258..0x260].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        X86_64Platform.load_kernel(&gm, &map, &hostile),
        Err(PlatformError::KernelDoesNotFit { .. })
    ));

    // The kernel's own cmdline_size wins over the layout's room.
    let small_cmdline = fake_bzimage(0x1000, 0x1000, 15);
    assert!(matches!(
        X86_64Platform.boot(&gm, &map, &small_cmdline, None, "0123456789abcdef"),
        Err(PlatformError::CmdlineTooLong {
            len: 17,
            max: 16,
            ..
        })
    ));
    assert!(X86_64Platform
        .boot(&gm, &map, &small_cmdline, None, "0123456789abcde")
        .is_ok());

    let image = fake_bzimage(0x1000, 0x1000, 255);
    let initrd = vec![0u8; 60 << 20];
    assert!(matches!(
        X86_64Platform.boot(&gm, &map, &image, Some(&initrd), ""),
        Err(PlatformError::InitrdDoesNotFit { .. })
    ));
    let long = "x".repeat(CMDLINE.size as usize);
    assert!(matches!(
        X86_64Platform.boot(&gm, &map, &image, None, &long),
        Err(PlatformError::CmdlineTooLong { .. })
    ));
}
