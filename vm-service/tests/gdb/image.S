# A riscv64 kernel Image for the gdb stub tests: it calls `add_one` five
# times (s0 counts, s1 counts down), stores the sum in `result`, loads
# `magic_word` into t2, prints "gdb-test-done" through the SBI console and
# powers off (SBI SRST).
#include "image_header.S"

    .text
    .globl entry
entry:
    la sp, stack_top
    li s0, 0
    li s1, 5
1:  call add_one
    addi s1, s1, -1
    bnez s1, 1b
    la t0, result
    sd s0, 0(t0)
    .globl stored
stored:
    la t1, magic_word
    ld t2, 0(t1)
    .globl loaded
loaded:
    la s2, msg
2:  lbu a0, 0(s2)
    beqz a0, 3f
    li a7, 1
    ecall
    addi s2, s2, 1
    j 2b
3:  li a7, 0x53525354
    li a6, 0
    li a0, 0
    li a1, 0
    ecall
4:  j 4b

    .globl add_one
add_one:
    addi s0, s0, 1
    ret

    .data
    .globl result
result: .dword 0
    .globl magic_word
magic_word: .dword 0x1122334455667788
msg: .asciz "gdb-test-done\n"
    .bss
    .balign 16
    .space 4096
stack_top:
