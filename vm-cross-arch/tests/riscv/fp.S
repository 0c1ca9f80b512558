#include "test.h"
#define FLAGS(v) csrr t0, fflags; li t1, v; bne t0, t1, fail; csrw fflags, zero
START
  .option norvc
  li t0, 0x2000; csrs mstatus, t0  /* FS = Initial */
  csrw fcsr, zero
  TEST(1); li t0, 0x3f800000; fmv.w.x f1, t0; li t0, 0x40000000; fmv.w.x f2, t0; fadd.s f3, f1, f2; fmv.x.w a0, f3; CHECK(a0, 0x40400000); FLAGS(0)
  TEST(2); li t0, 0x40400000; fmv.w.x f2, t0; fdiv.s f3, f1, f2; fmv.x.w a0, f3; CHECK(a0, 0x3eaaaaab); FLAGS(1)
  TEST(3); fdiv.s f3, f1, f2, rdn; fmv.x.w a0, f3; CHECK(a0, 0x3eaaaaaa); FLAGS(1)
  TEST(4); li t0, 0x3ff0000000000000; fmv.d.x f4, t0; fmv.d.x f5, zero; fdiv.d f6, f4, f5; fmv.x.d a0, f6; CHECK(a0, 0x7ff0000000000000); FLAGS(8)
  TEST(5); li t0, 0xbf800000; fmv.w.x f1, t0; fsqrt.s f3, f1; fmv.x.w a0, f3; CHECK(a0, 0x7fc00000); FLAGS(16)
  /* NaN boxing: a single operand without all-ones upper bits is the canonical NaN */
  TEST(6); li t0, 0x3f800000; fmv.d.x f1, t0; fadd.s f3, f1, f1; fmv.x.w a0, f3; CHECK(a0, 0x7fc00000); FLAGS(0)
  TEST(7); la t0, fdata; flw f1, 0(t0); fmv.x.d a0, f1; CHECK(a0, 0xffffffff3f800000)
  TEST(8); fmv.x.w a0, f1; CHECK(a0, 0x3f800000); li t0, 0xbf800000; fmv.w.x f1, t0; fmv.x.w a0, f1; CHECK(a0, 0xffffffffbf800000)
  TEST(9); fmv.d.x f1, zero; fsgnjn.s f2, f1, f1; fmv.x.d a0, f2; CHECK(a0, 0xffffffffffc00000)  /* unboxed input -> canonical NaN, sign flipped */
  /* rounding modes of conversions */
  TEST(10); li t0, 0x40200000; fmv.w.x f1, t0  /* 2.5 */
  fcvt.w.s a0, f1, rne; CHECK(a0, 2); fcvt.w.s a0, f1, rmm; CHECK(a0, 3); fcvt.w.s a0, f1, rup; CHECK(a0, 3)
  fcvt.w.s a0, f1, rdn; CHECK(a0, 2); fcvt.w.s a0, f1, rtz; CHECK(a0, 2); FLAGS(1)
  TEST(11); fneg.s f1, f1; fcvt.w.s a0, f1, rdn; CHECK(a0, -3); fcvt.w.s a0, f1, rtz; CHECK(a0, -2); FLAGS(1)
  TEST(12); csrwi frm, 3; fcvt.l.s a0, f1; CHECK(a0, -2); csrwi frm, 2; fcvt.l.s a0, f1; CHECK(a0, -3); csrwi frm, 0; FLAGS(1)
  TEST(13); csrwi frm, 5; EXPECT(2, 1f); la t0, mtrap; csrw mtvec, t0; fadd.s f3, f1, f1; j fail   /* invalid dynamic rm */
1: csrwi frm, 0
  /* saturating conversions */
  TEST(14); li t0, 0x7ff8000000000000; fmv.d.x f1, t0; fcvt.w.d a0, f1; CHECK(a0, 0x7fffffff); FLAGS(16)
  TEST(15); li t0, 0x4202a05f20000000; fmv.d.x f1, t0; fcvt.w.d a0, f1; CHECK(a0, 0x7fffffff); FLAGS(16)  /* 1e10 */
  TEST(16); li t0, 0xbff0000000000000; fmv.d.x f1, t0; fcvt.wu.d a0, f1; CHECK(a0, 0); FLAGS(16)
  TEST(17); fcvt.lu.d a0, f1; CHECK(a0, 0); FLAGS(16); fcvt.l.d a0, f1; CHECK(a0, -1); FLAGS(0)
  /* min/max NaN and signed-zero rules */
  TEST(18); li t0, 0x7fc00000; fmv.w.x f1, t0; li t0, 0x3f800000; fmv.w.x f2, t0; fmin.s f3, f1, f2; fmv.x.w a0, f3; CHECK(a0, 0x3f800000); FLAGS(0)
  TEST(19); li t0, 0x7f800001; fmv.w.x f1, t0; fmax.s f3, f1, f2; fmv.x.w a0, f3; CHECK(a0, 0x3f800000); FLAGS(16)
  TEST(20); li t0, 0x80000000; fmv.w.x f1, t0; fmv.w.x f2, zero; fmin.s f3, f2, f1; fmv.x.w a0, f3; CHECK(a0, 0xffffffff80000000); fmax.s f3, f1, f2; fmv.x.w a0, f3; CHECK(a0, 0)
  TEST(21); li t0, 0x7fc00000; fmv.w.x f1, t0; fmin.s f3, f1, f1; fmv.x.w a0, f3; CHECK(a0, 0x7fc00000); FLAGS(0)
  /* compares */
  TEST(22); li t0, 0x7fc00000; fmv.w.x f1, t0; feq.s a0, f1, f1; CHECK(a0, 0); FLAGS(0); flt.s a0, f1, f1; CHECK(a0, 0); FLAGS(16)
  TEST(23); li t0, 0x7f800001; fmv.w.x f1, t0; feq.s a0, f1, f1; FLAGS(16)
  TEST(24); li t0, 0x3f800000; fmv.w.x f1, t0; li t0, 0x40000000; fmv.w.x f2, t0; fle.s a0, f1, f2; CHECK(a0, 1); flt.s a0, f2, f1; CHECK(a0, 0)
  /* classify */
  TEST(25); li t0, 0xfff0000000000000; fmv.d.x f1, t0; fclass.d a0, f1; CHECK(a0, 1)
  li t0, 0x7ff8000000000000; fmv.d.x f1, t0; fclass.d a0, f1; CHECK(a0, 512)
  li t0, 1; fmv.d.x f1, t0; fclass.d a0, f1; CHECK(a0, 32)
  li t0, 0x80000000; fmv.w.x f1, t0; fclass.s a0, f1; CHECK(a0, 8)
  /* fused multiply-add */
  TEST(26); li t0, 2; fcvt.d.l f1, t0; li t0, 3; fcvt.d.l f2, t0; li t0, 1; fcvt.d.l f3, t0
  fmadd.d f4, f1, f2, f3; fcvt.l.d a0, f4; CHECK(a0, 7); fmsub.d f4, f1, f2, f3; fcvt.l.d a0, f4; CHECK(a0, 5)
  fnmadd.d f4, f1, f2, f3; fcvt.l.d a0, f4; CHECK(a0, -7); fnmsub.d f4, f1, f2, f3; fcvt.l.d a0, f4; CHECK(a0, -5); FLAGS(0)
  /* double -> single overflow, single -> double exact */
  TEST(27); li t0, 0x7e37e43c8800759c; fmv.d.x f1, t0; fcvt.s.d f2, f1; fmv.x.w a0, f2; CHECK(a0, 0x7f800000); FLAGS(5)
  TEST(28); li t0, 0x3f800000; fmv.w.x f1, t0; fcvt.d.s f2, f1; fmv.x.d a0, f2; CHECK(a0, 0x3ff0000000000000); FLAGS(0)
  TEST(29); li t0, 0x4000000000000000; fmv.d.x f1, t0; fsqrt.d f2, f1, rdn; fsqrt.d f3, f1, rup; fmv.x.d a0, f2; fmv.x.d a1, f3; sub a2, a1, a0; CHECK(a2, 1); FLAGS(1)
  TEST(30); li t0, -1; fcvt.s.lu f1, t0; fmv.x.w a0, f1; CHECK(a0, 0x5f800000); FLAGS(1)
  /* fsd / fld round trip, fcsr layout */
  TEST(31); la t0, fdata; li t1, 0x0123456789abcdef; fmv.d.x f1, t1; fsd f1, 8(t0); fld f2, 8(t0); fmv.x.d a0, f2; bne a0, t1, fail
  TEST(32); csrwi fflags, 0x1f; csrwi frm, 4; csrr a0, fcsr; CHECK(a0, 0x9f); csrw fcsr, zero
  /* FS = Off makes FP instructions illegal; writes make FS dirty */
  TEST(33); csrr t0, mstatus; srli t0, t0, 13; andi t0, t0, 3; CHECK(t0, 3); csrr t0, mstatus; bgez t0, fail /* SD */
  TEST(34); li t0, 0x6000; csrc mstatus, t0; EXPECT(2, 2f); fadd.d f1, f1, f1; j fail
2: li t0, 0x2000; csrs mstatus, t0
  j pass
.data
.align 3
fdata: .word 0x3f800000, 0
  .dword 0
END
