"""GEMM rung 5, 2d-blocking: each thread computes a TM x TN block of C, in registers.

The idea (over rung 4). Reuse both operands from registers. Per k a thread loads TM values
of op(A) and TN values of op(B) into registers (its "fragments") and does all TM * TN
multiply-adds between them: with TM = TN = 8, 16 shared loads feed 64 FMAs, 0.25 loads
per FMA (rung 4: 17/16 = 1.06).

How threads map to data. A block of 256 threads (16 x 16) computes a BM x BN = 128 x 128
tile of C in slices of BK = 8; thread (row, col) = (t // 16, t % 16) owns the 8 x 8
outputs at tile rows row + 16a and columns col + 16b (a, b = 0..7): interleaved, so that
16 consecutive threads read 16 consecutive words of a shared row (no bank conflict) and
a warp's stores of c run along rows. The copy into shared memory is rung 4's, 4 elements
of each operand per thread per slice.

Cost (PREDICTED). Shared memory stops being the tighter bound and becomes an equal one:
per k a warp's 16 loads (each one wavefront: a broadcast of A, 16 consecutive words of B)
take 16 clocks of the SM's shared-memory port, and its 64 FMAs take 16 clocks of the FMA
units (4 warp-FMAs a clock). On paper the FMA peak is reachable, with no slack: every
instruction that is neither costs issue time, and rung 7 cuts the port's share. Global side: 128 x 128 tiles load BM + BN = 256
floats per k for 16384 FMAs, 32 FLOPs per byte. What bounds it now is instruction issue:
written the way Python reads, with signed indices and `for kk in range(BK)`, the
compiler keeps the loop rolled and guards every shared index with Python's
negative-index wraparound (bench/ptx_hot_loop.py counts one trip: see rung 6). Expect
1.5-2x rung 4, limited by that overhead; 64 accumulators and 16 fragments take 162
registers (ptxas), so one 256-thread block per SM.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

# The simulator's tiles: 16 x 16, 4 x 4 per thread, 16 threads a block.
BM, BN, BK, TM, TN = (16, 16, 4, 4, 4) if SIMULATOR else (128, 128, 8, 8, 8)
ROW_THREADS, COL_THREADS = BM // TM, BN // TN
THREADS = ROW_THREADS * COL_THREADS
ACCUMULATORS = TM * TN                   # a local array's size must be a constant, not an expression
PAD = 4                                  # see rung 4: k-fastest copies spread over all banks
A_ROW = BM + PAD
B_ROW = BN + PAD
PASSES_A = BK * BM // THREADS            # elements of each slice a thread copies
PASSES_B = BK * BN // THREADS


@kernel(GEMM_SIG)
def gemm_v5(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b), written (=); block (bx, by) computes the BM x BN tile at rows by*BM..,
    columns bx*BN..; thread (row, col) the outputs (row + ROW_THREADS*a, col + COL_THREADS*b)."""
    a_tile = cuda.shared.array((BK, A_ROW), float32)   # a_tile[kk, i] = op(a)[m0 + i, k0 + kk]
    b_tile = cuda.shared.array((BK, B_ROW), float32)   # b_tile[kk, j] = op(b)[k0 + kk, n0 + j]
    acc = cuda.local.array(ACCUMULATORS, float32)
    a_frag = cuda.local.array(TM, float32)
    b_frag = cuda.local.array(TN, float32)
    t = cuda.threadIdx.x
    m0, n0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    row, col = t // COL_THREADS, t % COL_THREADS
    for e in range(TM * TN):
        acc[e] = float32(0.0)
    for k0 in range(0, depth, BK):
        for p in range(PASSES_A):
            e = t + p * THREADS
            if trans_a:                  # a stored (K, M): m is contiguous
                kk, i = e // BM, e % BM
            else:                        # a stored (M, K): k is contiguous
                kk, i = e % BK, e // BK
            m, k = m0 + i, k0 + kk
            a_tile[kk, i] = op_element(a, m, k, trans_a) if m < rows and k < depth else float32(0.0)
        for p in range(PASSES_B):
            e = t + p * THREADS
            if trans_b:                  # b stored (N, K): k is contiguous
                kk, j = e % BK, e // BK
            else:                        # b stored (K, N): n is contiguous
                kk, j = e // BN, e % BN
            k, n = k0 + kk, n0 + j
            b_tile[kk, j] = op_element(b, k, n, trans_b) if k < depth and n < cols else float32(0.0)
        cuda.syncthreads()               # both tiles complete before anyone reads them
        for kk in range(BK):
            for i in range(TM):
                a_frag[i] = a_tile[kk, row + i * ROW_THREADS]
            for j in range(TN):
                b_frag[j] = b_tile[kk, col + j * COL_THREADS]
            for i in range(TM):
                for j in range(TN):
                    acc[i * TN + j] += a_frag[i] * b_frag[j]
        cuda.syncthreads()               # all reads done before the next slice overwrites them
    for i in range(TM):
        m = m0 + row + i * ROW_THREADS
        if m < rows:
            for j in range(TN):
                n = n0 + col + j * COL_THREADS
                if n < cols:
                    c[m, n] = acc[i * TN + j]


def launch(a, b, c, trans_a, trans_b):
    """One block of THREADS threads per BM x BN tile of c, columns of tiles along x."""
    rows, cols = c.shape
    gemm_v5[(ceil_div(cols, BN), ceil_div(rows, BM)), THREADS](a, b, c, trans_a, trans_b)
