/* Shared scaffolding of the ISA tests (riscv-tests "tohost" convention):
 * gp holds the current test number; PASS writes 1 to tohost, FAIL writes
 * (gp << 1) | 1. Any unexpected trap fails with the test number in gp. */
#define TESTNUM gp

#define CHECK(reg, val) li t6, val; bne reg, t6, fail
#define TEST(n) li TESTNUM, n
/* The next trap must have cause c; its handler continues at label l. */
#define EXPECT(c, l) li s1, c; la s2, l

.macro START
  .section .text.init
  .globl _start
_start:
  la t0, unexpected_trap
  csrw mtvec, t0
  li sp, 0x80800000
  li TESTNUM, 0
.endm

.macro END
pass:
  fence
  li a0, 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
fail:
  fence
  slli a0, TESTNUM, 1
  ori a0, a0, 1
  la t0, tohost
  sd a0, 0(t0)
2: j 2b
  .align 2
unexpected_trap:
  j fail
/* M-mode handler for EXPECTed traps: checks mcause, saves mepc (s3),
 * mstatus (s4) and mtval (s5), continues at s2 in M-mode. */
  .align 2
mtrap:
  csrr t0, mcause
  bne t0, s1, fail
  csrr s3, mepc
  csrr s4, mstatus
  csrr s5, mtval
  jr s2
/* The same for traps delegated to S-mode (continues in S-mode). */
  .align 2
strap:
  csrr t0, scause
  bne t0, s1, fail
  csrr s3, sepc
  csrr s4, sstatus
  csrr s5, stval
  jr s2
/* Enter S-mode (go_s) or U-mode (go_u) at the address in a0. */
go_s:
  li t0, 0x1800
  csrc mstatus, t0
  li t0, 0x800
  csrs mstatus, t0
  csrw mepc, a0
  mret
go_u:
  li t0, 0x1800
  csrc mstatus, t0
  csrw mepc, a0
  mret
  .section .tohost, "aw", @progbits
  .align 6
  .globl tohost
tohost: .dword 0
  .align 6
  .globl fromhost
fromhost: .dword 0
.endm
