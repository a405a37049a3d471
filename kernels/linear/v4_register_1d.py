"""GEMM rung 4, 1d-blocking: each thread computes TM elements of a column of C, in registers.

The idea (over rung 3). In rung 3 every multiply-add needs two shared-memory loads, and
shared memory serves one warp-wide load per clock against four warp-wide FMAs. Let a
thread compute TM = 16 outputs of one column instead of one: per k it loads op(B)[k, n]
ONCE into a register and multiplies it with TM values of op(A), adding into TM
accumulators held in registers. Loads per FMA: (TM + 1) / TM = 17/16 = 1.06 instead of 2.

Everything that changes from rung 3. The idea is the first item; the others ride along
because a thread that owns 16 outputs no longer fits rung 3's one-thread-per-output layout:
  1. TM = 16 outputs per thread, one column, accumulated in registers (the idea).
  2. A BM x BN = 64 x 64 tile of C per block, and the slice depth BK = 8 chosen apart from
     the tile's sides: 256 threads x 16 outputs cover 64 x 64, and a slice no longer has
     to be one element per thread, so its depth is free (8 keeps the tiles at 4.25 KB).
  3. A 1-D thread index t (blocks of 256 x 1): the threads map onto the tile by arithmetic
     (col = t % BN, rows from (t // BN) * TM), one mapping for the multiply and another
     for the copy, instead of rung 3's (ty, tx) = (row, col).
  4. The copy is a loop strided by THREADS (e = t, t + 256, ...): a slice of op(A) is
     BK x BM = 512 elements for 256 threads, two each.
  5. Both shared tiles stored k-major (tile[k, i]) with rows padded by 4 floats: the
     multiply then reads, for one k, a row of each tile (the warp's 32 columns of B: 32
     banks; its one row of A: a broadcast), and the padding keeps the copy, which for a
     stored (M, K) runs k-fastest, free of conflicts (diagram below).
  6. acc = cuda.local.array(TM, float32): a per-thread array. Such an array lives in
     registers when every index into it is known at compile time, as here once the loops
     over r (TM is a constant) are unrolled; an index known only at run time would put
     it in local memory (per-thread global memory, cached in L1). ptxas reports 150
     registers and no stack for this kernel (bench/ptxas_report.py): registers.

How threads map to data. A block of THREADS = BM * BN / TM = 256 threads computes a
BM x BN = 64 x 64 tile of C; thread t owns column t % BN and rows (t // BN) * TM ..
+ TM - 1 of it. Consecutive threads take consecutive columns, so a warp reads 32
consecutive floats of the B tile (no bank conflict) and the same A value (a broadcast),
and writes c along a row. Per slice of BK = 8 the block copies BK x BM of op(A) and
BK x BN of op(B), two elements of each per thread, with consecutive threads on the
operand's contiguous axis in memory (as in rung 3). Both shared tiles are stored k-major
(tile[k, i]), rows padded by 4 floats. A copy that runs k-fastest (op(A) from a stored
(M, K)): lane L writes a_tile[L % 8, L // 8], word k*(64+4) + i, bank (4k + i) mod 32:

    banks       i=0  i=1  i=2  i=3            unpadded (rows of 64 words):
    k=0           0    1    2    3            bank = (64k + i) mod 32 = i, so the 8 lanes
    k=1           4    5    6    7            of each i share one bank: 8 passes
    ...                                       (an 8-way conflict)
    k=7          28   29   30   31            padded: 32 lanes, 32 banks, one pass

(siboehm's CUDA version takes TM = 8 and 512 threads; Numba's 64-bit index arithmetic
needs ~126 registers for that, all of an SM's 65536 for one block, with no margin.)

Cost (PREDICTED). Shared loads per FMA 1.06: the ceiling rises from 1/8 of the FMA peak
to ~1/4 (~16 TFLOP/s). Global side: a slice loads BK * (BM + BN) = 1024 floats for
BM * BN * BK = 32768 multiply-adds, 16 FLOPs per byte (rung 3: 4). bench/ptx_hot_loop.py:
one k is 16 FMAs, 17 shared loads and 14 others. Expect ~2x rung 3 on a large square
GEMM. What remains: the A loads are broadcasts that still take an issue slot each, one
per FMA nearly; rung 5 makes both operands reused from registers.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

# BM x BN tile of C per block, BK-deep slices, TM rows per thread. The simulator's tiles are
# small so that the tests' small C spans several tiles along M, N and K (32 threads a block).
BM, BN, BK, TM = (8, 8, 4, 2) if SIMULATOR else (64, 64, 8, 16)
THREADS = BM * BN // TM
PAD = 4
A_ROW = BM + PAD
B_ROW = BN + PAD


@kernel(GEMM_SIG)
def gemm_v4(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b), written (=); block (bx, by) computes the BM x BN tile at rows by*BM..,
    columns bx*BN..; thread t its column t % BN, rows (t // BN)*TM .. + TM - 1."""
    a_tile = cuda.shared.array((BK, A_ROW), float32)   # a_tile[kk, i] = op(a)[m0 + i, k0 + kk]
    b_tile = cuda.shared.array((BK, B_ROW), float32)   # b_tile[kk, j] = op(b)[k0 + kk, n0 + j]
    acc = cuda.local.array(TM, float32)
    t = cuda.threadIdx.x
    m0, n0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    col = t % BN
    row0 = (t // BN) * TM
    for r in range(TM):
        acc[r] = float32(0.0)
    for k0 in range(0, depth, BK):
        for e in range(t, BK * BM, THREADS):
            if trans_a:                  # a stored (K, M): m is contiguous
                kk, i = e // BM, e % BM
            else:                        # a stored (M, K): k is contiguous
                kk, i = e % BK, e // BK
            m, k = m0 + i, k0 + kk
            a_tile[kk, i] = op_element(a, m, k, trans_a) if m < rows and k < depth else float32(0.0)
        for e in range(t, BK * BN, THREADS):
            if trans_b:                  # b stored (N, K): k is contiguous
                kk, j = e % BK, e // BK
            else:                        # b stored (K, N): n is contiguous
                kk, j = e // BN, e % BN
            k, n = k0 + kk, n0 + j
            b_tile[kk, j] = op_element(b, k, n, trans_b) if k < depth and n < cols else float32(0.0)
        cuda.syncthreads()               # both tiles complete before anyone reads them
        for kk in range(BK):
            b_value = b_tile[kk, col]    # one load, reused by TM multiply-adds
            for r in range(TM):
                acc[r] += a_tile[kk, row0 + r] * b_value
        cuda.syncthreads()               # all reads done before the next slice overwrites them
    n = n0 + col
    for r in range(TM):
        m = m0 + row0 + r
        if m < rows and n < cols:
            c[m, n] = acc[r]


def launch(a, b, c, trans_a, trans_b):
    """One block of THREADS threads per BM x BN tile of c, columns of tiles along x."""
    rows, cols = c.shape
    gemm_v4[(ceil_div(cols, BN), ceil_div(rows, BM)), THREADS](a, b, c, trans_a, trans_b)
