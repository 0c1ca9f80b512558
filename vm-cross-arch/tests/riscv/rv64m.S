#include "test.h"
START
  TEST(1); li a0, -3; li a1, 7; mul a2, a0, a1; CHECK(a2, -21)
  TEST(2); li a0, -1; li a1, -1; mulhu a2, a0, a1; CHECK(a2, -2)
  TEST(3); li a0, -1; li a1, -1; mulh a2, a0, a1; CHECK(a2, 0)
  TEST(4); li a0, -1; li a1, -1; mulhsu a2, a0, a1; CHECK(a2, -1)
  TEST(5); li a0, 7; li a1, 0; div a2, a0, a1; CHECK(a2, -1)
  TEST(6); divu a2, a0, a1; CHECK(a2, -1)
  TEST(7); rem a2, a0, a1; CHECK(a2, 7)
  TEST(8); remu a2, a0, a1; CHECK(a2, 7)
  TEST(9); li a0, 0x8000000000000000; li a1, -1; div a2, a0, a1; CHECK(a2, 0x8000000000000000)
  TEST(10); rem a2, a0, a1; CHECK(a2, 0)
  TEST(11); li a0, -7; li a1, 2; div a2, a0, a1; CHECK(a2, -3)
  TEST(12); rem a2, a0, a1; CHECK(a2, -1)
  TEST(13); li a0, 0x80000000; li a1, -1; divw a2, a0, a1; CHECK(a2, 0xffffffff80000000)
  TEST(14); remw a2, a0, a1; CHECK(a2, 0)
  TEST(15); li a0, 0xffffffff; li a1, 2; divuw a2, a0, a1; CHECK(a2, 0x7fffffff)
  TEST(16); remuw a2, a0, a1; CHECK(a2, 1)
  TEST(17); li a0, 0x10000; mulw a2, a0, a0; CHECK(a2, 0)
  TEST(18); li a0, 0x12345; li a1, 0x10000; mulw a2, a0, a1; CHECK(a2, 0x23450000)
  TEST(19); li a0, 5; li a1, 0; divw a2, a0, a1; CHECK(a2, -1); remuw a2, a0, a1; CHECK(a2, 5)
  j pass
END
