#include "test.h"
#define PTE_V 1
#define PTE_R 2
#define PTE_W 4
#define PTE_X 8
#define PTE_U 16
#define PTE_A 64
#define PTE_D 128
/* a PTE for physical address (in a register) with flags */
#define MKPTE(dst, pa, flags) srli dst, pa, 12; slli dst, dst, 10; ori dst, dst, flags
START
  .option norvc
  la t0, mtrap; csrw mtvec, t0
  la s6, l2; la s7, l1; la s8, l0
  /* L2[2]: 1 GiB identity leaf for 0x80000000 (code, data, tables) */
  li t1, 0x80000000; MKPTE(t2, t1, PTE_V|PTE_R|PTE_W|PTE_X|PTE_A|PTE_D); sd t2, 16(s6)
  /* L2[1] -> L1 -> L0 for 0x40000000 */
  MKPTE(t2, s7, PTE_V); sd t2, 8(s6)
  MKPTE(t2, s8, PTE_V); sd t2, 0(s7)
  la t1, page0; MKPTE(t2, t1, PTE_V|PTE_R|PTE_W); sd t2, 0(s8)           /* 0x40000000 rw, A/D clear */
  la t1, page1; MKPTE(t2, t1, PTE_V|PTE_R|PTE_A); sd t2, 8(s8)           /* 0x40001000 read-only */
  la t1, page2; MKPTE(t2, t1, PTE_V|PTE_R|PTE_W|PTE_U|PTE_A|PTE_D); sd t2, 16(s8) /* 0x40002000 user */
  /* L1[1]: a table "outside RAM" at 0x1000 for 0x40200000 */
  li t1, 0x1000; MKPTE(t2, t1, PTE_V); sd t2, 8(s7)
  /* L1[2]: a misaligned 2 MiB leaf for 0x40400000 */
  li t1, 0x80001000; MKPTE(t2, t1, PTE_V|PTE_R|PTE_A); sd t2, 16(s7)
  la t1, page0; li t2, 0x1234; sd t2, 0(t1)
  srli t0, s6, 12; li t1, 8 << 60; or t0, t0, t1; csrw satp, t0; sfence.vma

  TEST(1); EXPECT(9, 1f); la a0, 11f; j go_s
11: li t0, 0x40000000; ld a1, 0(t0); li t1, 0x1234; bne a1, t1, fail
  li t1, 0x77; sd t1, 8(t0); ecall
1: ld t0, 0(s8); andi t1, t0, PTE_A; beqz t1, fail; andi t1, t0, PTE_D; beqz t1, fail
  la t0, page0; ld t1, 8(t0); CHECK(t1, 0x77)
  TEST(2); EXPECT(13, 2f); la a0, 21f; j go_s
21: li t0, 0xc0000000; ld a1, 0(t0); j fail
2: li t0, 0xc0000000; bne s5, t0, fail
  TEST(3); EXPECT(15, 3f); la a0, 31f; j go_s
31: li t0, 0x40001000; ld a1, 0(t0); sd a1, 0(t0); j fail
3: TEST(4); EXPECT(13, 4f); la a0, 41f; j go_s
41: li t0, 0x40002000; ld a1, 0(t0); j fail
4: TEST(5); EXPECT(9, 5f); la a0, 51f; j go_s
51: li t0, 1 << 18; csrs sstatus, t0; li t0, 0x40002000; ld a1, 0(t0); sd a1, 8(t0); ecall
5: li t0, 1 << 18; csrc mstatus, t0
  TEST(6); EXPECT(5, 6f); la a0, 61f; j go_s
61: li t0, 0x40200000; ld a1, 0(t0); j fail
6: TEST(7); EXPECT(12, 7f); la a0, 71f; j go_s
71: li t0, 0x40000000; jr t0
7: li t0, 0x40000000; bne s5, t0, fail
  TEST(8); EXPECT(12, 8f); la a0, 81f; j go_u    /* U cannot run S pages */
81: j fail
8: la t0, 81b; bne s5, t0, fail
  TEST(9); EXPECT(13, 9f); la a0, 91f; j go_s
91: li t0, 0x0000008000000000; ld a1, 0(t0); j fail
9: TEST(10); EXPECT(13, 10f); la a0, 101f; j go_s
101: li t0, 0x40400000; ld a1, 0(t0); j fail
  /* remap 0x40000000 to page1 from M, sfence in S, see the new data */
10: TEST(11); la t1, page1; li t2, 0xabc; sd t2, 0(t1); MKPTE(t2, t1, PTE_V|PTE_R|PTE_A); sd t2, 0(s8)
  EXPECT(9, 11f); la a0, 111f; j go_s
111: sfence.vma; li t0, 0x40000000; ld a1, 0(t0); li t1, 0xabc; bne a1, t1, fail; ecall
11: /* MPRV: M-mode loads through S translation */
  TEST(12); li t0, 0x1800; csrc mstatus, t0; li t0, 0x800 | (1 << 17); csrs mstatus, t0
  li t0, 0x40000000; ld a1, 0(t0); li t1, 0xabc; bne a1, t1, fail
  EXPECT(13, 12f); li t0, 0xc0000000; ld a1, 0(t0); j fail
12: li t0, 1 << 17; csrc mstatus, t0
  /* MXR: execute-only page becomes readable */
  TEST(13); la t1, page1; MKPTE(t2, t1, PTE_V|PTE_X|PTE_A); sd t2, 8(s8); sfence.vma
  EXPECT(13, 13f); la a0, 131f; j go_s
131: li t0, 0x40001000; ld a1, 0(t0); j fail
13: li t0, 1 << 19; csrs mstatus, t0; EXPECT(9, 14f); la a0, 141f; j go_s
141: li t0, 0x40001000; ld a1, 0(t0); ecall
14: li t0, 1 << 19; csrc mstatus, t0
  j pass
.data
.align 12
l2: .fill 512, 8, 0
l1: .fill 512, 8, 0
l0: .fill 512, 8, 0
page0: .fill 512, 8, 0
page1: .fill 512, 8, 0
page2: .fill 512, 8, 0
END
