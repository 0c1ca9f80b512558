#include "test.h"
/* Zfh/Zfhmin (assembled by gcc), Zfa and Zimop/Zcmop (spelled with .insn:
 * gcc 12 / binutils 2.40 do not know them). Expected values are IEEE
 * binary16/32/64 constants from the specifications. */
#define FLAGS(v) csrr t0, fflags; li t1, v; bne t0, t1, fail; csrw fflags, zero
#define HALF(reg, bits) li t0, bits; fmv.h.x reg, t0
/* Zfa */
#define FLI_S(rd, i) .insn r 0x53, 0, 0x78, rd, x##i, x1
#define FLI_D(rd, i) .insn r 0x53, 0, 0x79, rd, x##i, x1
#define FLI_H(rd, i) .insn r 0x53, 0, 0x7a, rd, x##i, x1
#define FMINM_S(rd, a, b) .insn r 0x53, 2, 0x14, rd, a, b
#define FMAXM_D(rd, a, b) .insn r 0x53, 3, 0x15, rd, a, b
#define FROUND_D(rd, a, rm) .insn r 0x53, rm, 0x21, rd, a, x4
#define FROUNDNX_D(rd, a, rm) .insn r 0x53, rm, 0x21, rd, a, x5
#define FROUND_H(rd, a, rm) .insn r 0x53, rm, 0x22, rd, a, x4
#define FCVTMOD_W_D(rd, a) .insn r 0x53, 1, 0x61, rd, a, x8
#define FLEQ_S(rd, a, b) .insn r 0x53, 4, 0x50, rd, a, b
#define FLTQ_S(rd, a, b) .insn r 0x53, 5, 0x50, rd, a, b
#define FLTQ_H(rd, a, b) .insn r 0x53, 5, 0x52, rd, a, b
#define FMVH_X_D(rd, a) .insn r 0x53, 0, 0x71, rd, a, x1
START
  .option norvc
  li t0, 0x2000; csrs mstatus, t0  /* FS = Initial */
  csrw fcsr, zero
  /* flh NaN-boxes into the 64-bit register; fsh stores 16 bits */
  TEST(1); la t0, hdata; flh f1, 0(t0); fmv.x.d a0, f1; CHECK(a0, 0xffffffffffff3c00)
  TEST(2); la t0, hdata; li t1, 0xbc00; fmv.h.x f2, t1; fsh f2, 2(t0); lw a0, 0(t0); CHECK(a0, 0xffffffffbc003c00)
  /* arithmetic, rounding, flags */
  TEST(3); HALF(f1, 0x3c00); HALF(f2, 0x4000); fadd.h f3, f1, f2; fmv.x.h a0, f3; CHECK(a0, 0x4200); FLAGS(0)
  TEST(4); HALF(f2, 0x4200); fdiv.h f3, f1, f2; fmv.x.h a0, f3; CHECK(a0, 0x3555); FLAGS(1)
  fdiv.h f3, f1, f2, rup; fmv.x.h a0, f3; CHECK(a0, 0x3556); FLAGS(1)
  TEST(5); HALF(f1, 0x4000); fsqrt.h f3, f1; fmv.x.h a0, f3; CHECK(a0, 0x3da8); FLAGS(1)
  TEST(6); HALF(f1, 0x4000); HALF(f2, 0x4200); HALF(f3, 0x3c00); fmadd.h f4, f1, f2, f3; fmv.x.h a0, f4; CHECK(a0, 0x4700)
  fnmsub.h f4, f1, f2, f3; fmv.x.h a0, f4; CHECK(a0, 0xffffffffffffc500); FLAGS(0)  /* -(2*3) + 1 = -5 */
  TEST(7); HALF(f1, 0x7bff); HALF(f2, 0x4000); fmul.h f3, f1, f2, rtz; fmv.x.h a0, f3; CHECK(a0, 0x7bff); FLAGS(5)
  /* NaN boxing: a half inside a single box (upper 48 bits not all ones) reads as the canonical NaN */
  TEST(8); li t0, 0x3c00; fmv.w.x f1, t0; fadd.h f3, f1, f1; fmv.x.d a0, f3; CHECK(a0, 0xffffffffffff7e00); FLAGS(0)
  TEST(9); li t0, 0xbc00; fmv.h.x f1, t0; fmv.x.h a0, f1; CHECK(a0, 0xffffffffffffbc00); fmv.x.d a0, f1; CHECK(a0, 0xffffffffffffbc00)
  TEST(10); fneg.h f2, f1; fmv.x.h a0, f2; CHECK(a0, 0x3c00); fabs.h f2, f1; fmv.x.h a0, f2; CHECK(a0, 0x3c00)
  /* conversions between formats */
  TEST(11); HALF(f1, 0x3e00); fcvt.s.h f2, f1; fmv.x.w a0, f2; CHECK(a0, 0x3fc00000); fcvt.d.h f2, f1; fmv.x.d a0, f2; CHECK(a0, 0x3ff8000000000000); FLAGS(0)
  TEST(12); li t0, 0x477ff000; fmv.w.x f1, t0; fcvt.h.s f2, f1; fmv.x.h a0, f2; CHECK(a0, 0x7c00); FLAGS(5)  /* 65520 ties to infinity */
  TEST(13); li t0, 0x3e45798ee2308c3a; fmv.d.x f1, t0; fcvt.h.d f2, f1; fmv.x.h a0, f2; CHECK(a0, 0); FLAGS(3)  /* 1e-8 underflows */
  TEST(14); HALF(f1, 0x7c01); fcvt.d.h f2, f1; fmv.x.d a0, f2; CHECK(a0, 0x7ff8000000000000); FLAGS(16)  /* signaling NaN */
  /* integer conversions */
  TEST(15); HALF(f1, 0xc100); fcvt.w.h a0, f1, rne; CHECK(a0, -2); fcvt.w.h a0, f1, rmm; CHECK(a0, -3); FLAGS(1)
  fcvt.wu.h a0, f1; CHECK(a0, 0); FLAGS(16)
  TEST(16); li t0, 2049; fcvt.h.w f1, t0; fmv.x.h a0, f1; CHECK(a0, 0x6800); FLAGS(1)
  li t0, 70000; fcvt.h.l f1, t0; fmv.x.h a0, f1; CHECK(a0, 0x7c00); FLAGS(5)
  /* compare, min/max, classify */
  TEST(17); HALF(f1, 0x3c00); HALF(f2, 0x4000); flt.h a0, f1, f2; CHECK(a0, 1); fle.h a0, f2, f1; CHECK(a0, 0); feq.h a0, f1, f1; CHECK(a0, 1)
  HALF(f3, 0x7e00); flt.h a0, f3, f1; CHECK(a0, 0); FLAGS(16); feq.h a0, f3, f1; CHECK(a0, 0); FLAGS(0)
  TEST(18); fmin.h f4, f3, f2; fmv.x.h a0, f4; CHECK(a0, 0x4000); fmax.h f4, f1, f2; fmv.x.h a0, f4; CHECK(a0, 0x4000)
  TEST(19); HALF(f1, 0x0001); fclass.h a0, f1; CHECK(a0, 32); HALF(f1, 0xfc00); fclass.h a0, f1; CHECK(a0, 1); HALF(f1, 0x7d00); fclass.h a0, f1; CHECK(a0, 256)
  /* Zfa: fli */
  TEST(20); FLI_S(f1, 9); fmv.x.w a0, f1; CHECK(a0, 0x3ea00000); FLI_D(f1, 1); fmv.x.d a0, f1; CHECK(a0, 0x0010000000000000)
  FLI_H(f1, 29); fmv.x.h a0, f1; CHECK(a0, 0x7c00); FLI_H(f1, 2); fmv.x.h a0, f1; CHECK(a0, 0x0100); FLI_S(f1, 0); fmv.x.w a0, f1; CHECK(a0, 0xffffffffbf800000); FLAGS(0)
  /* Zfa: NaN-propagating min/max */
  TEST(21); li t0, 0x7fc00000; fmv.w.x f1, t0; li t0, 0x3f800000; fmv.w.x f2, t0; FMINM_S(f3, f1, f2); fmv.x.w a0, f3; CHECK(a0, 0x7fc00000); FLAGS(0)
  li t0, 0x7ff0000000000001; fmv.d.x f1, t0; fmv.d.x f2, zero; FMAXM_D(f3, f2, f1); fmv.x.d a0, f3; CHECK(a0, 0x7ff8000000000000); FLAGS(16)
  /* Zfa: round to integral */
  TEST(22); li t0, 0x4004000000000000; fmv.d.x f1, t0; FROUND_D(f2, f1, 0); fmv.x.d a0, f2; CHECK(a0, 0x4000000000000000); FLAGS(0)
  FROUNDNX_D(f2, f1, 3); fmv.x.d a0, f2; CHECK(a0, 0x4008000000000000); FLAGS(1)
  HALF(f1, 0x3e00); FROUND_H(f2, f1, 3); fmv.x.h a0, f2; CHECK(a0, 0x4000); FLAGS(0)
  /* Zfa: modular conversion (2^32 + 5.5 -> 5, invalid; -7.75 -> -7, inexact) */
  TEST(23); li t0, 0x41f0000000580000; fmv.d.x f1, t0; FCVTMOD_W_D(a0, f1); CHECK(a0, 5); FLAGS(16)
  li t0, 0xc01f000000000000; fmv.d.x f1, t0; FCVTMOD_W_D(a0, f1); CHECK(a0, -7); FLAGS(1)
  /* Zfa: quiet compares */
  TEST(24); li t0, 0x7fc00000; fmv.w.x f1, t0; FLEQ_S(a0, f1, f1); CHECK(a0, 0); FLAGS(0)
  li t0, 0x7f800001; fmv.w.x f1, t0; FLTQ_S(a0, f1, f2); CHECK(a0, 0); FLAGS(16)
  HALF(f1, 0x3c00); HALF(f2, 0x4000); FLTQ_H(a0, f1, f2); CHECK(a0, 1); FLAGS(0)
  /* fmvh.x.d is RV32-only: illegal on RV64 */
  TEST(25); la t0, mtrap; csrw mtvec, t0; EXPECT(2, 1f); FMVH_X_D(a0, f1); j fail
1: la t0, unexpected_trap; csrw mtvec, t0
  /* Zimop: mop.r.0 and mop.rr.7 write zero; Zcmop: c.mop.1 and c.mop.15 do nothing */
  TEST(26); li a0, 5; li a1, 6; .insn r 0x73, 4, 0x40, a0, a1, x28; CHECK(a0, 0)
  li a0, 5; .insn r 0x73, 4, 0x67, a0, a1, a1; CHECK(a0, 0)
  li ra, 7; li a5, 8; .hword 0x6081; .hword 0x6781; CHECK(ra, 7); CHECK(a5, 8)
  j pass
.data
.align 3
hdata: .hword 0x3c00, 0
  .word 0
END
