# An x86_64 guest for the gdb stub tests, entered like a Linux vmlinux (64-bit
# mode, identity-mapped page tables, a stack): it calls `add_one` five times
# (rbx counts, r12 counts down), stores the sum in `result`, prints
# "gdb-test-done" on COM1 and asks for a reset through the i8042.
    .intel_syntax noprefix
    .text
    .globl _start
_start:
    xor ebx, ebx
    mov r12d, 5
1:  call add_one
    dec r12d
    jnz 1b
    mov [rip + result], rbx
    lea rsi, [rip + msg]
    mov dx, 0x3f8
2:  lodsb
    test al, al
    jz 3f
    out dx, al
    jmp 2b
3:  mov al, 0xfe
    out 0x64, al
4:  hlt
    jmp 4b

    .globl add_one
add_one:
    inc rbx
    ret

    .data
    .globl result
result: .quad 0
    .globl magic_word
magic_word: .quad 0x1122334455667788
msg: .asciz "gdb-test-done\n"
