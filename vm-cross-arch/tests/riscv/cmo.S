/* Zicbom/Zicboz (64-byte blocks, xenvcfg enables, permission checks),
 * exact minstret/mcycle writes and mcountinhibit, the "no triggers" answer
 * of tselect/tdata1/tinfo, Sstc, Svinval, Svpbmt and Svnapot. Expected values are
 * the specifications' (Zicbo*, privileged ISA 1.12+, Sdtrig, Sstc). */
#include "test.h"
#define MENVCFG 0x30a
#define SENVCFG 0x10a
#define STIMECMP 0x14d
#define CBZE (1 << 7)
#define CBCFE (1 << 6)
#define CBIE (3 << 4)
#define PBMTE (1 << 62)
#define STCE (1 << 63)
#define SINVAL_VMA .word 0x16000073
#define SFENCE_W_INVAL .word 0x18000073
#define SFENCE_INVAL_IR .word 0x18100073
#define PTE_VRWAD (1 | 2 | 4 | 64 | 128)
#define MKPTE(dst, pa, flags) srli dst, pa, 12; slli dst, dst, 10; ori dst, dst, flags
START
  .option norvc
  la t0, mtrap; csrw mtvec, t0
  /* cbo.zero in M zeroes exactly the aligned 64-byte block */
  TEST(1); la a0, blocks; li t0, -1; li t1, 0
1: add t2, a0, t1; sd t0, 0(t2); addi t1, t1, 8; li t2, 192; blt t1, t2, 1b
  addi a1, a0, 64 + 13; cbo.zero (a1)
  ld t1, 56(a0); CHECK(t1, -1)
  ld t1, 64(a0); CHECK(t1, 0)
  ld t1, 120(a0); CHECK(t1, 0)
  ld t1, 128(a0); CHECK(t1, -1)
  TEST(2); cbo.clean (a0); cbo.flush (a0); cbo.inval (a0); prefetch.r 0(a0); prefetch.w 64(a0); prefetch.i 0(a0)
  /* S-mode without menvcfg enables: illegal */
  TEST(3); csrw MENVCFG, zero; EXPECT(2, 3f); la a0, 31f; j go_s
31: la t0, blocks; cbo.zero (t0); j fail
3: TEST(4); EXPECT(2, 4f); la a0, 41f; j go_s
41: la t0, blocks; cbo.clean (t0); j fail
4: TEST(5); EXPECT(2, 5f); la a0, 51f; j go_s
51: la t0, blocks; cbo.inval (t0); j fail
  /* enabled in menvcfg: S may, U still needs senvcfg */
5: TEST(6); li t0, CBZE | CBCFE | CBIE; csrw MENVCFG, t0; csrr t1, MENVCFG; CHECK(t1, CBZE | CBCFE | CBIE)
  EXPECT(9, 6f); la a0, 61f; j go_s
61: la t0, blocks; li t1, 5; sd t1, 0(t0); cbo.zero (t0); cbo.clean (t0); cbo.flush (t0); cbo.inval (t0); ld t1, 0(t0); bnez t1, fail; ecall
6: TEST(7); csrw SENVCFG, zero; EXPECT(2, 7f); la a0, 71f; j go_u
71: la t0, blocks; cbo.zero (t0); j fail
7: TEST(8); li t0, CBZE; csrw SENVCFG, t0; EXPECT(8, 8f); la a0, 81f; j go_u
81: la t0, blocks; cbo.zero (t0); ecall
  /* reserved CBIE = 10 reads back as 00 */
8: TEST(9); li t0, 2 << 4; csrw MENVCFG, t0; csrr t1, MENVCFG; CHECK(t1, 0)
  /* Sv39: 0x40000000 -> ro page (read-only), 0x40001000 unmapped */
  TEST(10); li t0, CBZE | CBCFE | CBIE | PBMTE; csrw MENVCFG, t0
  la s6, l2; la s7, l1; la s8, l0
  li t1, 0x80000000; MKPTE(t2, t1, PTE_VRWAD | 8); sd t2, 16(s6)
  MKPTE(t2, s7, 1); sd t2, 8(s6)
  MKPTE(t2, s8, 1); sd t2, 0(s7)
  la t1, ro; MKPTE(t2, t1, 1 | 2 | 64); sd t2, 0(s8)
  srli t0, s6, 12; li t1, 8 << 60; or t0, t0, t1; csrw satp, t0; sfence.vma
  EXPECT(15, 10f); la a0, 101f; j go_s
101: li t0, 0x40000000 + 72; cbo.zero (t0); j fail
10: li t0, 0x40000000 + 72; bne s5, t0, fail
  TEST(11); EXPECT(9, 11f); la a0, 111f; j go_s
111: li t0, 0x40000000; cbo.clean (t0); cbo.flush (t0); cbo.inval (t0); ecall
11: TEST(12); EXPECT(15, 12f); la a0, 121f; j go_s
121: li t0, 0x40001000; cbo.flush (t0); j fail
12: li t0, 0x40001000; bne s5, t0, fail
  /* Svpbmt: PBMT = NC is legal with PBMTE, reserved without; 3 is reserved */
  TEST(13); la t1, ro; MKPTE(t2, t1, 1 | 2 | 64); li t3, 1 << 61; or t2, t2, t3; sd t2, 0(s8); sfence.vma
  EXPECT(9, 13f); la a0, 131f; j go_s
131: li t0, 0x40000000; ld t1, 0(t0); ecall
13: TEST(14); li t0, PBMTE; csrc MENVCFG, t0; sfence.vma; EXPECT(13, 14f); la a0, 141f; j go_s
141: li t0, 0x40000000; ld t1, 0(t0); j fail
14: TEST(15); li t0, PBMTE; csrs MENVCFG, t0; li t3, 3 << 61; or t2, t2, t3; sd t2, 0(s8); sfence.vma
  EXPECT(13, 15f); la a0, 151f; j go_s
151: li t0, 0x40000000; ld t1, 0(t0); j fail
15: csrw satp, zero; sfence.vma
  /* Svinval in S; sfence.w.inval is illegal in U */
  TEST(16); EXPECT(9, 16f); la a0, 161f; j go_s
161: SFENCE_W_INVAL; SINVAL_VMA; SFENCE_INVAL_IR; ecall
16: TEST(17); EXPECT(2, 17f); la a0, 171f; j go_u
171: SFENCE_W_INVAL; j fail
  /* minstret/mcycle writes replace the writing instruction's increment */
17: TEST(18); li t0, 100; csrw minstret, t0; csrr t1, minstret; CHECK(t1, 100)
  TEST(19); li t0, 500; csrw mcycle, t0; csrr t1, mcycle; CHECK(t1, 500)
  TEST(20); csrwi 0x320, 5; csrr t1, 0x320; CHECK(t1, 5)
  csrr a1, minstret; nop; nop; csrr a2, minstret; bne a1, a2, fail
  csrr a1, mcycle; nop; csrr a2, mcycle; bne a1, a2, fail
  li t0, 7; csrw minstret, t0; csrr a1, minstret; CHECK(a1, 7)
  TEST(21); csrwi 0x320, 0; csrr a1, minstret; CHECK(a1, 7); csrr a2, minstret; CHECK(a2, 10) /* csrr, li, bne retired */
  /* no triggers: tselect reads 0, tdata1 (type 0) reads 0, tinfo = 1 */
  TEST(22); csrwi 0x7a0, 0; csrr t1, 0x7a0; CHECK(t1, 0)
  csrr t1, 0x7a1; CHECK(t1, 0); li t0, -1; csrw 0x7a1, t0; csrr t1, 0x7a1; CHECK(t1, 0)
  csrr t1, 0x7a2; CHECK(t1, 0); csrr t1, 0x7a3; CHECK(t1, 0); csrr t1, 0x7a4; CHECK(t1, 1)
  csrwi 0x7a0, 1; csrr t1, 0x7a0; CHECK(t1, 0)
  /* Sstc: S needs menvcfg.STCE and mcounteren.TM; stimecmp drives STIP */
  TEST(23); li t0, STCE; csrc MENVCFG, t0; csrwi mcounteren, 2; EXPECT(2, 23f); la a0, 231f; j go_s
231: csrr t1, STIMECMP; j fail
23: TEST(24); li t0, STCE; csrs MENVCFG, t0; csrwi mcounteren, 0; EXPECT(2, 24f); la a0, 241f; j go_s
241: csrr t1, STIMECMP; j fail
24: TEST(25); csrwi mcounteren, 2; EXPECT(9, 25f); la a0, 251f; j go_s
251: li t1, -1; csrw STIMECMP, t1; csrr t2, STIMECMP; bne t1, t2, fail; ecall
25: TEST(26); csrr t1, mip; andi t1, t1, 1 << 5; CHECK(t1, 0)
  csrw STIMECMP, zero; csrr t1, mip; andi t1, t1, 1 << 5; CHECK(t1, 1 << 5)
  li t0, -1; csrw STIMECMP, t0; csrr t1, mip; andi t1, t1, 1 << 5; CHECK(t1, 0)
  /* misa: B (Zba+Zbb+Zbs) is set */
  TEST(27); csrr t1, misa; srli t1, t1, 1; andi t1, t1, 1; CHECK(t1, 1)
  /* Svnapot: 16 level-0 PTEs with N map 0x40010000.. onto 64 KiB at 0x80200000 */
  TEST(28); li t1, 0x80200000 + 0x8000; MKPTE(t2, t1, PTE_VRWAD); li t3, 1 << 63; or t2, t2, t3
  addi t4, s8, 0x80; addi t5, s8, 0x100
28: sd t2, 0(t4); addi t4, t4, 8; bltu t4, t5, 28b
  li t0, 0x80203008; li t1, 0x5a5a; sd t1, 0(t0)
  srli t0, s6, 12; li t1, 8 << 60; or t0, t0, t1; csrw satp, t0; sfence.vma
  EXPECT(9, 29f); la a0, 281f; j go_s
281: li t0, 0x40013008; ld t1, 0(t0); li t2, 0x5a5a; bne t1, t2, fail; ecall
  /* N with ppn[3:0] != 1000 is reserved */
29: TEST(29); li t1, 0x80200000; MKPTE(t2, t1, PTE_VRWAD); li t3, 1 << 63; or t2, t2, t3; sd t2, 0x98(s8); sfence.vma
  EXPECT(13, 30f); la a0, 291f; j go_s
291: li t0, 0x40013008; ld t1, 0(t0); j fail
30: csrw satp, zero; sfence.vma
  /* cbo.zero outside RAM (the UART's MMIO page): store access fault, tval = rs1 */
  TEST(31); EXPECT(7, 31f); li t0, 0x10000010; cbo.zero (t0); j fail
31: li t0, 0x10000010; bne s5, t0, fail
  j pass
.data
.align 12
l2: .fill 512, 8, 0
l1: .fill 512, 8, 0
l0: .fill 512, 8, 0
ro: .fill 512, 8, 0
.align 6
blocks: .fill 24, 8, 0
END
