#include "test.h"
START
  .option norvc
  la t0, mtrap; csrw mtvec, t0
  /* jumps to addresses with no memory: fetch access faults */
  TEST(1); EXPECT(1, 1f); li t0, 0x10; jr t0
1: li t0, 0x10; bne s3, t0, fail
  TEST(2); EXPECT(1, 2f); li t0, 0xffffffffffff0000; jr t0
2: TEST(3); EXPECT(1, 3f); li t0, 0x7ffffffe; jr t0   /* just below RAM */
  /* illegal encodings: c.unimp (all zero) and a reserved major opcode */
3: TEST(4); EXPECT(2, 4f); .word 0; j fail
4: TEST(5); EXPECT(2, 5f); .word 0x0000007f; j fail
  /* loads and stores far outside any device window */
5: TEST(6); EXPECT(5, 6f); li t0, 0x0100000000000000; ld t1, 0(t0); j fail
6: TEST(7); EXPECT(7, 7f); li t0, 0xff00000000000000; sd t1, 0(t0); j fail
  /* a page table root outside RAM: S-mode fetch is an access fault */
7: TEST(8); li t0, (8 << 60) | 1; csrw satp, t0; EXPECT(1, 8f); la a0, 81f; j go_s
81: j fail
8: csrw satp, zero
  /* a page table whose root is RAM but whose next level is far away */
  TEST(9); la t1, root; li t2, 0x3fffffffff; slli t2, t2, 10; ori t2, t2, 1; sd t2, 16(t1)
  srli t0, t1, 12; li t3, 8 << 60; or t0, t0, t3; csrw satp, t0; sfence.vma
  EXPECT(1, 9f); la a0, 81b; j go_s
9: csrw satp, zero
  /* an AMO to MMIO space is an access fault, not a host error */
  TEST(10); EXPECT(7, 10f); li t0, 0x10000000; amoadd.w t1, t1, (t0); j fail
  /* the CLINT ignores harts that do not exist */
10: TEST(11); li t0, 0x2000000 + 0x4000 + 8 * 50; sd zero, 0(t0); ld t1, 0(t0); CHECK(t1, 0)
  /* running off into zeroed RAM is an illegal instruction */
  TEST(12); EXPECT(2, 12f); la t0, zeros; jr t0
12: la t0, zeros; bne s3, t0, fail
  j pass
.data
.align 12
root: .fill 512, 8, 0
zeros: .fill 16, 8, 0
END
