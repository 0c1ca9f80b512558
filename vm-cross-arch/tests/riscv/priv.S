#include "test.h"
START
  .option norvc
  la t0, mtrap; csrw mtvec, t0
  TEST(1); EXPECT(11, 1f); ecall; j fail
1: TEST(2); EXPECT(3, 2f)
3: ebreak; j fail
2: la t0, 3b; bne s3, t0, fail
  TEST(3); EXPECT(2, 4f); .word 0xffffffff; j fail
4: li t1, 0xffffffff; bne s5, t1, fail
  /* S-mode may not read mstatus; the trap records MPP = S */
  TEST(4); EXPECT(2, 5f); la a0, 51f; j go_s
51: csrr t0, mstatus; j fail
5: srli t0, s4, 11; andi t0, t0, 3; CHECK(t0, 1)
  TEST(5); EXPECT(9, 6f); la a0, 61f; j go_s
61: ecall; j fail
6: TEST(6); EXPECT(2, 7f); la a0, 71f; j go_s
71: mret; j fail
  /* U-mode: no S CSRs, no wfi, no sret, no sfence.vma; MPP = U */
7: TEST(7); EXPECT(2, 8f); la a0, 81f; j go_u
81: csrr t0, sstatus; j fail
8: srli t0, s4, 11; andi t0, t0, 3; CHECK(t0, 0)
  TEST(8); EXPECT(2, 9f); la a0, 91f; j go_u
91: wfi; j fail
9: TEST(9); EXPECT(2, 10f); la a0, 101f; j go_u
101: sret; j fail
10: TEST(10); EXPECT(2, 11f); la a0, 111f; j go_u
111: sfence.vma; j fail
11: TEST(11); EXPECT(8, 12f); la a0, 121f; j go_u
121: ecall; j fail
  /* Delegate ecall-from-U to S: U -> S handler, then S -> M with ecall */
12: TEST(12); li t0, 1 << 8; csrw medeleg, t0; la t0, strap; csrw stvec, t0
  EXPECT(8, 13f); la a0, 14f; j go_s
14: la t0, 15f; csrw sepc, t0; li t0, 0x100; csrc sstatus, t0; sret
15: ecall; j fail
13: /* in S-mode now: SPP shows U */
  andi t0, s4, 0x100; bnez t0, fail
  la t0, 15b; bne s3, t0, fail
  EXPECT(9, 16f); ecall; j fail
16: csrw medeleg, zero
  /* TSR makes sret illegal in S */
  TEST(13); li t0, 1 << 22; csrs mstatus, t0; EXPECT(2, 17f); la a0, 171f; j go_s
171: sret; j fail
17: li t0, 1 << 22; csrc mstatus, t0
  /* counter enables */
  TEST(14); csrw mcounteren, zero; EXPECT(2, 18f); la a0, 181f; j go_s
181: rdtime t0; j fail
18: li t0, 7; csrw mcounteren, t0; EXPECT(9, 19f); la a0, 191f; j go_s
191: rdtime t0; rdcycle t1; ecall
19: /* MPP is WARL: 2 is not a mode */
  TEST(15); li t0, 0x1800; csrc mstatus, t0; li t0, 0x1000; csrs mstatus, t0; csrr t0, mstatus; srli t0, t0, 11; andi t0, t0, 3; li t1, 2; beq t0, t1, fail
  /* sstatus is a view of mstatus */
  TEST(16); csrsi sstatus, 2; csrr t0, mstatus; andi t0, t0, 2; beqz t0, fail; csrci mstatus, 2; csrr t0, sstatus; andi t0, t0, 2; bnez t0, fail
  /* writes to read-only CSRs are illegal */
  TEST(17); EXPECT(2, 20f); csrw mhartid, t0; j fail
20: TEST(18); EXPECT(2, 21f); csrr t0, 0x7ff; j fail
21: TEST(19); csrwi mscratch, 5; csrrw t0, mscratch, zero; CHECK(t0, 5); csrr t0, mscratch; CHECK(t0, 0)
  j pass
END
