#include "test.h"
#define CLINT 0x2000000
#define MTIMECMP (CLINT + 0x4000)
#define MTIME (CLINT + 0xbff8)
START
  .option norvc
  /* 1: machine timer interrupt wakes wfi and is taken */
  TEST(1); la t0, mtrap; csrw mtvec, t0
  li t0, MTIME; ld t1, 0(t0); addi t1, t1, 200; li t0, MTIMECMP; sd t1, 0(t0)
  li t0, 0x80; csrw mie, t0
  li s1, 0x8000000000000007; la s2, 1f
  csrsi mstatus, 8
2: wfi; j 2b
1: /* MIE was cleared on entry, MPIE holds the old value */
  csrr t0, mstatus; andi t1, t0, 8; bnez t1, fail; andi t1, t0, 0x80; beqz t1, fail
  li t0, MTIMECMP; li t1, -1; sd t1, 0(t0)
  csrr t0, mip; andi t0, t0, 0x80; bnez t0, fail
  /* 2: software interrupt through the CLINT's msip */
  TEST(2); li t0, 8; csrw mie, t0; li s1, 0x8000000000000003; la s2, 3f
  li t0, CLINT; li t1, 1; sw t1, 0(t0)
  csrsi mstatus, 8
4: j 4b
3: li t0, CLINT; sw zero, 0(t0); csrr t0, mip; andi t0, t0, 8; bnez t0, fail
  /* 3: pending but globally disabled: wfi still returns, no trap */
  TEST(3); li t0, CLINT; li t1, 1; sw t1, 0(t0); csrci mstatus, 8; wfi
  csrr t0, mip; andi t0, t0, 8; beqz t0, fail; li t0, CLINT; sw zero, 0(t0)
  /* 4: vectored mode: the timer lands at base + 4 * 7 */
  TEST(4); la t0, vtable; ori t0, t0, 1; csrw mtvec, t0; li t0, 0x80; csrw mie, t0
  li t0, MTIME; ld t1, 0(t0); addi t1, t1, 100; li t0, MTIMECMP; sd t1, 0(t0)
  csrsi mstatus, 8
5: wfi; j 5b
vdone:
  li t0, MTIMECMP; li t1, -1; sd t1, 0(t0); la t0, mtrap; csrw mtvec, t0; csrw mie, zero
  /* 5: a supervisor software interrupt delegated to S */
  TEST(5); li t0, 2; csrw mideleg, t0; la t0, strap; csrw stvec, t0
  li s1, 0x8000000000000001; la s2, 6f; la a0, 61f; j go_s
61: li t0, 2; csrs sie, t0; csrsi sstatus, 2; csrs sip, t0
62: j 62b
6: li t0, 2; csrc sip, t0; csrr t0, scause; bgez t0, fail
  li s1, 9; la s2, 7f; ecall
7: csrw mideleg, zero
  /* 6: M sets STIP for S (as firmware does) */
  TEST(6); li t0, 0x20; csrw mideleg, t0; li s1, 0x8000000000000005; la s2, 8f; la a0, 81f; csrs mip, t0; j go_s
81: li t0, 0x20; csrs sie, t0; csrsi sstatus, 2
82: j 82b
8: li s1, 9; la s2, 9f; ecall
9: li t0, 0x20; csrc mip, t0; csrw mideleg, zero
  j pass
  .align 6
vtable:
  j fail      /* 0 */
  j fail      /* 1 */
  j fail      /* 2 */
  j fail      /* 3 */
  j fail      /* 4 */
  j fail      /* 5 */
  j fail      /* 6 */
  j vdone     /* 7: machine timer */
END
