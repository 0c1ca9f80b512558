# A riscv64 kernel Image for the profiler test: `cold_loop` runs 2,000
# iterations, `hot_loop` 300,000, then it powers off (SBI SRST).
#include "image_header.S"

    .text
    .globl entry
entry:
    li a0, 2000
    call cold_loop
    li a0, 300000
    call hot_loop
    li a7, 0x53525354
    li a6, 0
    li a0, 0
    li a1, 0
    ecall
1:  j 1b

    .globl cold_loop
    .type cold_loop, @function
cold_loop:
    addi a0, a0, -1
    bnez a0, cold_loop
    ret
    .size cold_loop, . - cold_loop

    .globl hot_loop
    .type hot_loop, @function
hot_loop:
    addi a0, a0, -1
    bnez a0, hot_loop
    ret
    .size hot_loop, . - hot_loop
    .data
    .dword 0
