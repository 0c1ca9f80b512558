#include "test.h"
START
  la s0, data
  TEST(1); li a0, 5; sd a0, 0(s0); li a1, 3; amoadd.d a2, a1, (s0); CHECK(a2, 5); ld a3, 0(s0); CHECK(a3, 8)
  TEST(2); li a1, -1; amoswap.w a2, a1, (s0); CHECK(a2, 8); lw a3, 0(s0); CHECK(a3, -1)
  TEST(3); li a1, 1; amomin.w a2, a1, (s0); CHECK(a2, -1); lw a3, 0(s0); CHECK(a3, -1)
  TEST(4); amominu.w a2, a1, (s0); lw a3, 0(s0); CHECK(a3, 1)
  TEST(5); li a1, -2; amomax.w a2, a1, (s0); lw a3, 0(s0); CHECK(a3, 1); amomaxu.w a2, a1, (s0); lw a3, 0(s0); CHECK(a3, -2)
  TEST(6); addi s3, s0, 8; li a1, 0xf0; sd a1, 0(s3); li a1, 0x3c; amoand.d a2, a1, (s3); ld a3, 0(s3); CHECK(a3, 0x30)
  TEST(7); li a1, 0x0f; amoor.d a2, a1, (s3); ld a3, 0(s3); CHECK(a3, 0x3f); amoxor.d a2, a1, (s3); ld a3, 0(s3); CHECK(a3, 0x30)
  /* LR/SC: success, then failure without a reservation */
  TEST(8); addi s1, s0, 16; li a0, 41; sd a0, 0(s1); lr.d a1, (s1); addi a1, a1, 1; sc.d a2, a1, (s1); CHECK(a2, 0); ld a3, 0(s1); CHECK(a3, 42)
  TEST(9); li a1, 7; sc.d a2, a1, (s1); bnez a2, 1f; j fail
1: ld a3, 0(s1); CHECK(a3, 42)
  TEST(10); lr.w a1, (s1); CHECK(a1, 42); sc.w a2, zero, (s1); CHECK(a2, 0); lw a3, 0(s1); CHECK(a3, 0)
  /* a misaligned AMO traps (store/AMO address misaligned, cause 6) */
  TEST(11); la t0, 2f; csrw mtvec, t0; addi a0, s0, 1; amoadd.w a1, a1, (a0); j fail
  .align 2
2: csrr t0, mcause; CHECK(t0, 6); csrr t0, mtval; bne t0, a0, fail
  j pass
.data
.align 4
data: .dword 0, 0, 0, 0
END
