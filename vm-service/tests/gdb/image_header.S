# The 64-byte Linux riscv Image header (text_offset 2 MiB) that the test
# Images of tests/gdb and tests/profile start with; `_end` is their end.
    .option norvc
    .section .text.head, "ax"
    .globl _start
_start:
    j entry
    .word 0
    .dword 0x200000          # text_offset
    .dword _end - _start
    .dword 0
    .word 2
    .word 0
    .dword 0
    .ascii "RISCV\0\0\0"
    .ascii "RSC\x05"
    .word 0

