#include "test.h"
START
  .option norvc
  TEST(1); li a0, 5; addi a1, a0, -7; CHECK(a1, -2)
  TEST(2); li a0, -1; srli a1, a0, 60; CHECK(a1, 15)
  TEST(3); li a0, -16; srai a1, a0, 2; CHECK(a1, -4)
  TEST(4); li a0, 1; slli a1, a0, 63; srli a1, a1, 63; CHECK(a1, 1)
  TEST(5); li a0, -1; li a1, 1; slt a2, a0, a1; sltu a3, a0, a1; add a2, a2, a2; add a2, a2, a3; CHECK(a2, 2)
  TEST(6); li a0, 0x7fffffff; addiw a1, a0, 1; CHECK(a1, -0x80000000)
  TEST(7); li a0, 0xffffffff80000000; sraiw a1, a0, 4; CHECK(a1, 0xfffffffff8000000)
  TEST(8); li a0, 0x80000000; srliw a1, a0, 31; CHECK(a1, 1)
  TEST(9); li a0, 3; li a1, 5; subw a2, a0, a1; CHECK(a2, -2)
  TEST(10); li a0, 1; li a1, 33; sllw a2, a0, a1; CHECK(a2, 2)
  TEST(11); lui a0, 0x80000; CHECK(a0, 0xffffffff80000000)
  TEST(12); 8: auipc a0, 0; la a1, 8b; bne a0, a1, fail
  /* loads/stores of every width with sign/zero extension */
  TEST(13); la a0, data; li a1, 0x8877665544332211; sd a1, 0(a0)
  lb a2, 7(a0); CHECK(a2, 0xffffffffffffff88)
  TEST(14); lbu a2, 7(a0); CHECK(a2, 0x88)
  TEST(15); lh a2, 6(a0); CHECK(a2, 0xffffffffffff8877)
  TEST(16); lhu a2, 6(a0); CHECK(a2, 0x8877)
  TEST(17); lw a2, 4(a0); CHECK(a2, 0xffffffff88776655)
  TEST(18); lwu a2, 4(a0); CHECK(a2, 0x88776655)
  TEST(19); sb zero, 0(a0); sh zero, 2(a0); ld a2, 0(a0); CHECK(a2, 0x8877665500002200)
  TEST(20); sw zero, 4(a0); ld a2, 0(a0); CHECK(a2, 0x0000000000002200)
  /* misaligned access is handled (the privileged spec allows it) */
  TEST(21); li a1, 0x0102030405060708; sd a1, 1(a0); ld a2, 1(a0); CHECK(a2, 0x0102030405060708)
  TEST(22); lw a2, 3(a0); CHECK(a2, 0x03040506)
  /* branches */
  TEST(23); li a0, -1; li a1, 1; blt a0, a1, 1f; j fail
1: bltu a0, a1, fail; bge a1, a0, 2f; j fail
2: bgeu a0, a1, 3f; j fail
3: beq a0, a0, 4f; j fail
4: bne a0, a0, fail
  /* jal / jalr link and target */
  TEST(24); jal ra, 5f; j fail
5: la t0, 6f; jalr t1, 0(t0); j fail
6: auipc t2, 0; addi t2, t2, -4; bne t1, t2, fail
  TEST(25); la t0, 7f; addi t0, t0, 1; jalr zero, 0(t0); j fail  /* jalr clears bit 0 */
7: nop
  /* x0 stays zero */
  TEST(26); li a0, 7; add zero, a0, a0; addi zero, zero, 5; CHECK(zero, 0)
  TEST(27); li a0, 0x12345678; xori a1, a0, -1; not a2, a0; bne a1, a2, fail; ori a1, a0, 0xf; andi a1, a1, 0xff; CHECK(a1, 0x7f)
  TEST(28); csrr a0, mhartid; CHECK(a0, 0)
  TEST(29); csrr a0, misa; srli a0, a0, 62; CHECK(a0, 2)
  TEST(30); rdinstret a0; nop; nop; rdinstret a1; sub a2, a1, a0; CHECK(a2, 3)
  TEST(31); li a0, 5; sltu a1, a0, a0; CHECK(a1, 0); sltiu a1, a0, 6; CHECK(a1, 1); slt a1, a0, a0; CHECK(a1, 0); slti a1, a0, -1; CHECK(a1, 0)
  j pass
.data
.align 3
data: .dword 0, 0
END
