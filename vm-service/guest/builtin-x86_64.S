/*
 * The built-in x86_64 guest: what `vm-service run` boots when no kernel is
 * given. It is entered like a Linux kernel through the 64-bit boot protocol
 * (long mode, RSI = boot_params) and shows, on COM1, what it found:
 *
 *   - the memory size, summed from the e820 map in boot_params;
 *   - the vCPU count, from the MADT found through boot_params.acpi_rsdp_addr
 *     (or the legacy RSDP scan of 0xE0000-0xFFFFF);
 *   - the secondary vCPUs it started with INIT/SIPI through the local APIC;
 *   - the first virtio-mmio device slot (an MMIO device it reads);
 *
 * then asks for a reset through the i8042 controller, which the VMM treats as
 * the guest's request to stop. A machine without an i8042 (QEMU's microvm)
 * ignores that, so the guest then triple-faults on purpose: a reset either way.
 *
 * Rebuild with `cargo xtask builtin-guest`; CI checks the committed ELF matches.
 */
        .intel_syntax noprefix

        .equ COM1,              0x3f8
        .equ BP_ACPI_RSDP,      0x070   /* boot_params.acpi_rsdp_addr */
        .equ BP_E820_ENTRIES,   0x1e8   /* boot_params.e820_entries */
        .equ BP_E820_TABLE,     0x2d0   /* boot_params.e820_table */
        .equ LAPIC_BASE,        0xfee00000
        .equ LAPIC_SVR,         0xf0
        .equ LAPIC_ICR_LOW,     0x300
        .equ AP_TRAMPOLINE,     0x6000  /* SIPI vector 6: below 1 MiB, page aligned, unused by the boot layout */
        .equ VIRTIO_MMIO_BASE,  0xd0000000 /* first virtio-mmio slot of the x86_64 platform */
        .equ AP_SPIN_LIMIT,     2000000
        .equ SI_RSDP,           0x20    /* hvm_start_info.rsdp_paddr */
        .equ SI_MEMMAP,         0x28    /* hvm_start_info.memmap_paddr */
        .equ SI_MEMMAP_ENTRIES, 0x30    /* hvm_start_info.memmap_entries */
        .equ XEN_ELFNOTE_PHYS32_ENTRY, 18

        /* The PVH entry point, for loaders that look for it. */
        .section .note.Xen, "a", @note
        .balign 4
        .long   4                               /* name size: "Xen\0" */
        .long   4                               /* descriptor size */
        .long   XEN_ELFNOTE_PHYS32_ENTRY
        .asciz  "Xen"
        .long   pvh_start

        .section .text
        .code64
        .globl _start
_start:
        cli
        mov     r15, rsi                        /* boot_params */
        xor     r14d, r14d                      /* no PVH start info */
common_start:
        lea     rsp, [rip + stack_top]

        lea     rsi, [rip + msg_banner]
        call    puts

        call    map_low_4g

        /* memory: sum of RAM entries of the e820 (or PVH) map, rounded up to MiB */
        test    r15, r15
        jz      pvh_memmap
        movzx   ecx, byte ptr [r15 + BP_E820_ENTRIES]
        lea     rbx, [r15 + BP_E820_TABLE]
        mov     edx, 20                         /* e820 entry size */
        jmp     sum_ram
pvh_memmap:
        mov     ecx, [r14 + SI_MEMMAP_ENTRIES]
        mov     rbx, [r14 + SI_MEMMAP]
        mov     edx, 24                         /* hvm_memmap_table_entry size */
sum_ram:
        xor     r12, r12
1:      test    ecx, ecx
        jz      2f
        cmp     dword ptr [rbx + 16], 1
        jne     3f
        add     r12, [rbx + 8]
3:      add     rbx, rdx
        dec     ecx
        jmp     1b
2:      lea     rsi, [rip + msg_memory]
        call    puts
        lea     rax, [r12 + 0xfffff]
        shr     rax, 20
        call    put_dec
        lea     rsi, [rip + msg_mib]
        call    puts

        /* vCPUs: enabled local APIC entries of the MADT */
        call    find_madt
        mov     r13, rax                        /* MADT or 0 */
        lea     rsi, [rip + msg_vcpus]
        call    puts
        test    r13, r13
        jz      no_madt
        call    count_cpus
        mov     r14, rax                        /* vCPU count */
        call    put_dec
        lea     rsi, [rip + msg_nl]
        call    puts

        /* start the secondaries: INIT, then SIPI twice, then wait */
        cmp     r14, 1
        jbe     after_smp
        call    start_aps
        lea     rsi, [rip + msg_started]
        call    puts
        movzx   eax, word ptr [AP_TRAMPOLINE + (ap_count - ap_trampoline)]
        inc     eax                             /* plus the boot vCPU */
        call    put_dec
        lea     rsi, [rip + msg_nl]
        call    puts
        jmp     after_smp
no_madt:
        lea     rsi, [rip + msg_unknown]
        call    puts

after_smp:
        /* virtio-mmio: read magic, version and device id of slot 0 */
        lea     rsi, [rip + msg_virtio]
        call    puts
        mov     rax, VIRTIO_MMIO_BASE
        call    put_hex
        mov     ebx, VIRTIO_MMIO_BASE
        mov     eax, dword ptr [rbx]
        cmp     eax, 0x74726976                 /* "virt" */
        jne     no_virtio
        lea     rsi, [rip + msg_version]
        call    puts
        mov     eax, dword ptr [rbx + 4]
        call    put_dec
        lea     rsi, [rip + msg_device]
        call    puts
        mov     eax, dword ptr [rbx + 8]
        call    put_dec
        lea     rsi, [rip + msg_nl]
        call    puts
        jmp     shutdown
no_virtio:
        lea     rsi, [rip + msg_none]
        call    puts

shutdown:
        lea     rsi, [rip + msg_bye]
        call    puts
        mov     al, 0xfe                        /* i8042: pulse reset line */
        out     0x64, al
        lidt    [rip + no_idt]                  /* no i8042: triple fault instead */
        ud2

/* Identity-map the low 4 GiB with 2 MiB pages (the boot tables map 1 GiB;
 * the local APIC and the virtio-mmio window live above it). */
map_low_4g:
        lea     rdi, [rip + pd_tables]
        xor     ecx, ecx
1:      mov     rax, rcx
        shl     rax, 21
        or      rax, 0x83                       /* present, writable, 2 MiB */
        mov     [rdi + rcx * 8], rax
        inc     ecx
        cmp     ecx, 2048
        jne     1b
        lea     rdi, [rip + pdpt]
        lea     rax, [rip + pd_tables]
        xor     ecx, ecx
2:      lea     rdx, [rax + 3]
        mov     [rdi + rcx * 8], rdx
        add     rax, 4096
        inc     ecx
        cmp     ecx, 4
        jne     2b
        lea     rax, [rip + pdpt]
        or      rax, 3
        lea     rdi, [rip + pml4]
        mov     [rdi], rax
        mov     cr3, rdi
        ret

/* RAX = MADT address, or 0. */
find_madt:
        xor     eax, eax
        test    r15, r15
        jz      1f
        mov     rax, [r15 + BP_ACPI_RSDP]
1:      test    rax, rax
        jnz     have_rsdp
        test    r14, r14
        jz      scan_rsdp
        mov     rax, [r14 + SI_RSDP]
        test    rax, rax
        jnz     have_rsdp
scan_rsdp:
        mov     eax, 0xe0000
1:      mov     rdx, 0x2052545020445352         /* "RSD PTR " */
        cmp     [rax], rdx
        je      have_rsdp
        add     eax, 16
        cmp     eax, 0x100000
        jb      1b
        xor     eax, eax
        ret
have_rsdp:
        mov     rdx, [rax + 24]                 /* XsdtAddress */
        test    rdx, rdx
        jz      not_found
        mov     ecx, [rdx + 4]                  /* XSDT length */
        sub     ecx, 36
        shr     ecx, 3
        lea     rbx, [rdx + 36]
2:      test    ecx, ecx
        jz      not_found
        mov     rax, [rbx]
        cmp     dword ptr [rax], 0x43495041     /* "APIC" */
        je      3f
        add     rbx, 8
        dec     ecx
        jmp     2b
3:      ret
not_found:
        xor     eax, eax
        ret

/* R13 = MADT. RAX = number of enabled processor local (x2)APIC entries. */
count_cpus:
        mov     ecx, [r13 + 4]
        lea     rdx, [r13 + rcx]                /* end */
        lea     rbx, [r13 + 44]                 /* first entry */
        xor     eax, eax
1:      cmp     rbx, rdx
        jae     4f
        movzx   ecx, byte ptr [rbx + 1]         /* entry length */
        test    ecx, ecx
        jz      4f                              /* malformed: stop */
        cmp     byte ptr [rbx], 0               /* processor local APIC */
        jne     2f
        test    byte ptr [rbx + 4], 1
        jz      3f
        inc     eax
        jmp     3f
2:      cmp     byte ptr [rbx], 9               /* processor local x2APIC */
        jne     3f
        test    byte ptr [rbx + 8], 1
        jz      3f
        inc     eax
3:      add     rbx, rcx
        jmp     1b
4:      ret

/* Copy the real-mode trampoline below 1 MiB, send INIT + SIPI + SIPI to all
 * other vCPUs and wait (bounded) until R14 - 1 of them have checked in. */
start_aps:
        lea     rsi, [rip + ap_trampoline]
        mov     edi, AP_TRAMPOLINE
        mov     ecx, ap_trampoline_end - ap_trampoline
        rep movsb
        mov     ebx, LAPIC_BASE
        or      dword ptr [rbx + LAPIC_SVR], 0x100     /* software-enable the LAPIC */
        mov     dword ptr [rbx + LAPIC_ICR_LOW], 0x000c4500     /* INIT, all excluding self */
        call    icr_wait
        mov     dword ptr [rbx + LAPIC_ICR_LOW], 0x000c4600 | (AP_TRAMPOLINE >> 12)
        call    icr_wait
        mov     dword ptr [rbx + LAPIC_ICR_LOW], 0x000c4600 | (AP_TRAMPOLINE >> 12)
        call    icr_wait
        lea     rdx, [r14 - 1]
        mov     ecx, AP_SPIN_LIMIT
1:      movzx   eax, word ptr [AP_TRAMPOLINE + (ap_count - ap_trampoline)]
        cmp     rax, rdx
        jae     2f
        pause
        dec     ecx
        jnz     1b
2:      ret

icr_wait:
        mov     ecx, 100000
1:      test    dword ptr [rbx + LAPIC_ICR_LOW], 0x1000  /* delivery pending */
        jz      2f
        pause
        dec     ecx
        jnz     1b
2:      ret

/* Print the NUL-terminated string at RSI. */
puts:
        mov     dx, COM1
1:      lodsb
        test    al, al
        jz      2f
        out     dx, al
        jmp     1b
2:      ret

/* Print RAX in decimal. */
put_dec:
        lea     rdi, [rip + numbuf + 31]
        mov     byte ptr [rdi], 0
        mov     ecx, 10
1:      xor     edx, edx
        div     rcx
        add     dl, '0'
        dec     rdi
        mov     [rdi], dl
        test    rax, rax
        jnz     1b
        mov     rsi, rdi
        jmp     puts

/* Print RAX as 0x-prefixed hexadecimal. */
put_hex:
        lea     rdi, [rip + numbuf + 31]
        mov     byte ptr [rdi], 0
1:      mov     edx, eax
        and     edx, 15
        lea     rcx, [rip + hexdigits]
        mov     dl, [rcx + rdx]
        dec     rdi
        mov     [rdi], dl
        shr     rax, 4
        jnz     1b
        dec     rdi
        mov     byte ptr [rdi], 'x'
        dec     rdi
        mov     byte ptr [rdi], '0'
        mov     rsi, rdi
        jmp     puts

/* PVH entry: 32-bit protected mode, paging off, EBX = hvm_start_info.
 * Build the 4 GiB identity map, enter long mode, join the common path. */
        .code32
pvh_start:
        cli
        mov     esi, ebx
        mov     edi, offset pd_tables
        xor     ecx, ecx
1:      mov     eax, ecx
        shl     eax, 21
        or      eax, 0x83                       /* present, writable, 2 MiB */
        mov     [edi + ecx * 8], eax
        mov     eax, ecx
        shr     eax, 11                         /* bits 32+ of the 2 MiB frame */
        mov     [edi + ecx * 8 + 4], eax
        inc     ecx
        cmp     ecx, 2048
        jne     1b
        mov     edi, offset pdpt
        mov     eax, offset pd_tables + 3
        xor     ecx, ecx
2:      mov     [edi + ecx * 8], eax
        add     eax, 4096
        inc     ecx
        cmp     ecx, 4
        jne     2b
        mov     dword ptr [pml4], offset pdpt + 3
        mov     eax, offset pml4
        mov     cr3, eax
        mov     eax, cr4
        or      eax, 0x20                       /* PAE */
        mov     cr4, eax
        mov     ecx, 0xc0000080                 /* EFER */
        rdmsr
        or      eax, 0x100                      /* LME */
        wrmsr
        mov     eax, cr0
        or      eax, 0x80000001                 /* PG | PE */
        mov     cr0, eax
        lgdt    [pvh_gdt_desc]
        .byte   0xea                            /* ljmp 0x08:pvh_long */
        .long   pvh_long
        .word   0x08
        .code64
pvh_long:
        mov     eax, 0x10
        mov     ds, eax
        mov     es, eax
        mov     ss, eax
        xor     r15d, r15d                      /* no boot_params */
        mov     r14d, esi                       /* hvm_start_info */
        jmp     common_start

/* Secondary vCPUs start here in real mode (copied to AP_TRAMPOLINE): check
 * in by incrementing the counter, then halt for good. */
        .code16
ap_trampoline:
        cli
        xor     ax, ax
        mov     ds, ax
        lock inc word ptr [AP_TRAMPOLINE + (ap_count - ap_trampoline)]
1:      hlt
        jmp     1b
        .balign 2
ap_count:
        .word   0
ap_trampoline_end:
        .code64

        .section .rodata
msg_banner:  .asciz "vm-service built-in guest: booted in 64-bit mode\r\n"
msg_memory:  .asciz "memory: "
msg_mib:     .asciz " MiB\r\n"
msg_vcpus:   .asciz "vCPUs: "
msg_started: .asciz "vCPUs started: "
msg_unknown: .asciz "unknown (no MADT)\r\n"
msg_virtio:  .asciz "virtio-mmio @ "
msg_version: .asciz ": magic ok, version "
msg_device:  .asciz ", device id "
msg_none:    .asciz ": no device\r\n"
msg_bye:     .asciz "guest: requesting shutdown\r\n"
msg_nl:      .asciz "\r\n"
hexdigits:   .ascii "0123456789abcdef"
            .balign 8
pvh_gdt:    .quad 0
            .quad 0x00af9a000000ffff            /* 0x08: 64-bit code */
            .quad 0x00cf92000000ffff            /* 0x10: data */
pvh_gdt_desc:
            .word pvh_gdt_desc - pvh_gdt - 1
            .long pvh_gdt
no_idt:     .word 0
            .quad 0

        .section .bss
        .balign 4096
pml4:       .skip 4096
pdpt:       .skip 4096
pd_tables:  .skip 4096 * 4
numbuf:     .skip 32
            .balign 16
            .skip 4096
stack_top:
