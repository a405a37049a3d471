"""GEMM rung 2, coalesced: the same thread per element of C, with the warp laid along a row.

The idea (over rung 1). Which thread index walks which axis decides how a warp's 32
loads fall into memory. Here threadIdx.x walks the COLUMNS n of C: a warp's 32 threads
are 16 consecutive columns of 2 rows, so at every k
    op(b)[k, n]  16 consecutive floats of a row of b (stored (K, N)): 2 sectors, all used;
    op(a)[m, k]  2 addresses, each read by 16 threads: a broadcast, 2 sectors;
    c[m, n]      16 consecutive floats: 2 sectors.
Rung 1 needed 16 sectors for each of A's loads and for the store. Nothing else changes:
the arithmetic, the order of the sum, even the results, bit for bit.
(A transposed operand, b stored (N, K) for the forward y = x @ w.T, is read down a column
again: coalescing a transpose needs the staging of rung 3.)

Cost (PREDICTED). An H100 SM does 4 warp-wide FMAs per clock but its L1 serves about one
warp-wide 4-byte load (128 bytes) per clock. Two loads per FMA therefore cap this kernel
at 1/8 of the FMA peak (~8 TFLOP/s) even if every load hit L1; rung 1's scattered loads
take ~16 L1 wavefronts each (~1-2% of the peak). Expect ~5-8% of the peak on a large
square GEMM: 3-5x rung 1.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

BLOCK = 8 if SIMULATOR else 16


@kernel(GEMM_SIG)
def gemm_v2(a, b, c, trans_a, trans_b):
    """c[m, n] (=) = sum over k of op(a)[m, k] * op(b)[k, n]; thread (m, n), n along x."""
    n = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    m = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    if m < rows and n < cols:
        acc = float32(0.0)
        for k in range(depth):
            acc += op_element(a, m, k, trans_a) * op_element(b, k, n, trans_b)
        c[m, n] = acc


def launch(a, b, c, trans_a, trans_b):
    """One thread per element of c: blocks of BLOCK x BLOCK, x over the columns. Grid y
    allows 65535 blocks, ~1 M rows of c: far more than any M here (at most 8192)."""
    rows, cols = c.shape
    gemm_v2[(ceil_div(cols, BLOCK), ceil_div(rows, BLOCK)), (BLOCK, BLOCK)](a, b, c, trans_a, trans_b)
