#include "test.h"
START
  .option push
  .option rvc
  TEST(1); c.li a0, 5; c.addi a0, -3; CHECK(a0, 2)
  TEST(2); c.lui a1, 1; CHECK(a1, 0x1000)
  TEST(3); c.li a2, 1; c.slli a2, 40; c.srli a2, 39; CHECK(a2, 2)
  TEST(4); li a3, -8; c.srai a3, 2; CHECK(a3, -2); c.andi a3, 7; CHECK(a3, 6)
  TEST(5); li a4, 3; li a5, 10; c.sub a5, a4; CHECK(a5, 7); c.xor a5, a4; CHECK(a5, 4); c.or a5, a4; CHECK(a5, 7); c.and a5, a4; CHECK(a5, 3)
  TEST(6); li a4, 0x7fffffff; c.addiw a4, 1; CHECK(a4, -0x80000000); li a5, 1; c.addw a5, a4; CHECK(a5, -0x7fffffff); c.subw a5, a4; CHECK(a5, 1)
  TEST(7); c.mv a0, a5; CHECK(a0, 1); c.add a0, a5; CHECK(a0, 2)
  TEST(8); addi sp, sp, -32; c.addi16sp sp, -64; c.addi4spn a0, sp, 16; addi t0, sp, 16; bne a0, t0, fail; c.addi16sp sp, 64; addi sp, sp, 32
  TEST(9); li a1, 0x1122334455667788; c.sdsp a1, 8(sp); c.ldsp a2, 8(sp); bne a1, a2, fail; c.lwsp a3, 8(sp); CHECK(a3, 0x55667788)
  TEST(10); c.swsp zero, 8(sp); c.ldsp a2, 8(sp); CHECK(a2, 0x1122334400000000)
  TEST(11); mv s0, sp; li s1, 99; c.sd s1, 0(s0); c.ld a4, 0(s0); CHECK(a4, 99); c.sw s1, 4(s0); c.lw a5, 4(s0); CHECK(a5, 99)
  TEST(12); li s1, 0; c.beqz s1, 1f; j fail
1: c.bnez s1, fail; c.j 2f; j fail
2: la t0, 3f; c.jalr t0; j fail
3: la t0, 4f; c.jr t0; j fail
4: nop
  .option pop
  j pass
END
