#include "test.h"
START
  .option norvc
  /* run a function, rewrite it, fence.i, run the new code */
  TEST(1); call func; CHECK(a0, 1)
  la t0, func; li t1, 0x00200513; sw t1, 0(t0); fence.i   /* li a0, 2 */
  call func; CHECK(a0, 2)
  /* rewrite the next instruction in a loop (stores invalidate decoded code) */
  TEST(2); li s0, 0; li s3, 3
1: la t0, patch; li t1, 0x00138393; sw t1, 0(t0); fence.i  /* addi t2, t2, 1 */
  li t2, 0
patch: addi t2, t2, 100
  CHECK(t2, 1)
  la t0, patch; li t1, 0x06438393; sw t1, 0(t0); fence.i  /* back to addi t2, t2, 100 */
  addi s0, s0, 1; blt s0, s3, 1b
  j pass
  .align 2
func:
  li a0, 1
  ret
END
