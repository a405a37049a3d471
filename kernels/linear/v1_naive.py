"""GEMM rung 1, naive: one thread per element of C, every operand straight from global memory.

The idea. The plainest parallel matrix multiply: thread (m, n) of a 2-D grid loops over
k = 0, 1, ..., K-1 and sums op(a)[m, k] * op(b)[k, n] into a register, then writes c[m, n].
No thread shares anything with another; correctness is easy to see, and that is all.

How threads map to data. Blocks of BLOCK x BLOCK threads tile C; threadIdx.x walks the
ROWS m of C and threadIdx.y its columns n, the way one first writes "x is the first
index". A warp is 32 threads of consecutive linear index threadIdx.x + BLOCK *
threadIdx.y: 16 consecutive rows in 2 columns (BLOCK = 16). So at every k, a warp reads
op(a)[m, k] for 16 different rows, addresses K floats apart in a (M, K) array: 16
separate 32-byte sectors for 16 useful floats. Its write of c hits 16 rows N floats
apart: 16 sectors again. (Rung 2 swaps the two thread indices, and only that.)

Cost (PREDICTED; bench numbers come from a GPU run). 2 FLOPs per 8 bytes requested, with
most requests scattered over whole sectors: at K = 2048 a warp moves ~16 x 32 bytes from
L1/L2 for every 32 multiply-adds of A's side alone. Bound by the load/store pipeline far
below the FMA peak: expect ~1% of the H100's 67 TFLOP/s on a large square GEMM.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

# 16 x 16 = 256 threads a block on a GPU (8 warps); 8 x 8 in the simulator, which pays per
# thread: then the tests' small C spans several blocks, edges included.
BLOCK = 8 if SIMULATOR else 16


@kernel(GEMM_SIG)
def gemm_v1(a, b, c, trans_a, trans_b):
    """c[m, n] (=) = sum over k of op(a)[m, k] * op(b)[k, n]; thread (m, n), m along x."""
    m = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    n = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    if m < rows and n < cols:          # the grid is rounded up to whole blocks
        acc = float32(0.0)
        for k in range(depth):
            acc += op_element(a, m, k, trans_a) * op_element(b, k, n, trans_b)
        c[m, n] = acc


def launch(a, b, c, trans_a, trans_b):
    """One thread per element of c: blocks of BLOCK x BLOCK, x over the rows."""
    rows, cols = c.shape
    gemm_v1[(ceil_div(rows, BLOCK), ceil_div(cols, BLOCK)), (BLOCK, BLOCK)](a, b, c, trans_a, trans_b)
