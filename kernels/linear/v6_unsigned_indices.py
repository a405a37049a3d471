"""GEMM rung 6, unsigned-indices: rung 5's arithmetic, in a hot loop the compiler can keep clean.

The idea (over rung 5). What the compiler makes of a Python index. Numba gives a SIGNED
index into an array Python's meaning: a negative index counts from the end. So every
shared-memory load of rung 5 carries `idx < 0 ? idx + size : idx` (an and, a shift and an
add in PTX), which also hides from the compiler that neighbouring loads are neighbours;
and NVVM leaves Numba's `for kk in range(BK)` rolled, paying a counter and a branch per k.
Two changes to the source and none to the arithmetic, both about what the compiler makes
of it:
  1. every index known to be >= 0 is cast to uint64 (no wraparound: a load becomes one
     ld.shared at a constant offset from a pointer), in the multiply and in the copies.
     This is the idea the rung is named after, and it removes most of rung 5's overhead;
  2. the slice loop is a `while` that takes two k per trip (multiply_step twice). It rides
     along because NVVM does not unroll Numba's range(BK) loop (rung 5's PTX shows it
     rolled): each trip pays a counter and a branch, and two k per trip, written by hand,
     pays them half as often.
One more thing looks new and is not an idea: the multiply lives in device functions built
by a factory, register_blocks(tiling), once per tile shape, so that rung 7 and conv2d can
import the same multiply at their own shapes. Read them as if written inside the kernel,
with BK, TM, TN as constants; the kernel itself reads as rung 5 did. bench/ptx_hot_loop.py
counts one trip of the hot loop in PTX for both rungs; tests/test_ptx_hot_loop.py keeps
this one clean.

Cost (PREDICTED). Per trip (two k) 128 FMAs, 32 shared loads and 10 other instructions, 75%
FMAs (rung 5, per k: 64 FMAs, 16 loads and 76 others, 41%; bench/ptx_hot_loop.py): instruction
issue no longer dominates. What is left is rung 5's balance: 0.25 shared loads per FMA keep
the shared-memory port busy 16 clocks per 16 clocks of FMAs, level with them, so it binds
as soon as anything delays it (rung 7 takes it to 6 clocks per 16). Expect ~1.5x rung 5.
"""
from __future__ import annotations

from collections import namedtuple

from numba import cuda, float32, uint64

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

Tiling = namedtuple("Tiling", "bm bn bk tm tn pad")
# Rung 5's tiles: BM x BN of C per block, BK-deep slices, TM x TN per thread.
TILING = (Tiling(bm=16, bn=16, bk=4, tm=4, tn=4, pad=4) if SIMULATOR
          else Tiling(bm=128, bn=128, bk=8, tm=8, tn=8, pad=4))


def register_blocks(tiling):
    """(tile_row, tile_col, multiply_slice): a thread's TM x TN block of C for one tile shape.

    Numba reads the sizes below from the functions' closure at compile time, as it reads
    module globals: each is a literal in the compiled code, and the loops over TM and TN
    have constant trip counts, which the compiler unrolls.
    """
    BK, TM, TN = tiling.bk, tiling.tm, tiling.tn
    ROW_THREADS, COL_THREADS = tiling.bm // TM, tiling.bn // TN
    assert BK % 2 == 0                   # multiply_slice takes two k per trip

    @cuda.jit(device=True)
    def tile_row(r, a):
        """Row of the tile held by thread row r's a-th accumulator row: interleaved."""
        return r + a * ROW_THREADS

    @cuda.jit(device=True)
    def tile_col(c, b):
        return c + b * COL_THREADS

    @cuda.jit(device=True)
    def multiply_step(a_tile, b_tile, acc, row, col, kk):
        """acc[a*TN + b] += a_tile[kk, tile_row(row, a)] * b_tile[kk, tile_col(col, b)]: one k,
        TM + TN loads from shared memory, TM*TN multiply-adds from registers."""
        a_frag = cuda.local.array(TM, float32)
        b_frag = cuda.local.array(TN, float32)
        for a in range(TM):
            a_frag[a] = a_tile[uint64(kk), uint64(tile_row(row, a))]
        for b in range(TN):
            b_frag[b] = b_tile[uint64(kk), uint64(tile_col(col, b))]
        for a in range(TM):
            for b in range(TN):
                acc[a * TN + b] += a_frag[a] * b_frag[b]

    @cuda.jit(device=True)
    def multiply_slice(a_tile, b_tile, acc, row, col):
        """multiply_step for kk = 0 .. BK-1, two per trip of a `while`."""
        kk = 0
        while kk < BK:
            multiply_step(a_tile, b_tile, acc, row, col, kk)
            multiply_step(a_tile, b_tile, acc, row, col, kk + 1)
            kk += 2

    return tile_row, tile_col, multiply_slice


BM, BN, BK, TM, TN = TILING.bm, TILING.bn, TILING.bk, TILING.tm, TILING.tn
ROW_THREADS, COL_THREADS = BM // TM, BN // TN
THREADS = ROW_THREADS * COL_THREADS
ACCUMULATORS = TM * TN                   # a local array's size must be a constant, not an expression
A_ROW = BM + TILING.pad
B_ROW = BN + TILING.pad
PASSES_A = BK * BM // THREADS
PASSES_B = BK * BN // THREADS
tile_row, tile_col, multiply_slice = register_blocks(TILING)


@kernel(GEMM_SIG)
def gemm_v6(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b), written (=); tiles and threads as rung 5, indices unsigned."""
    a_tile = cuda.shared.array((BK, A_ROW), float32)   # a_tile[kk, i] = op(a)[m0 + i, k0 + kk]
    b_tile = cuda.shared.array((BK, B_ROW), float32)   # b_tile[kk, j] = op(b)[k0 + kk, n0 + j]
    acc = cuda.local.array(ACCUMULATORS, float32)
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
            value = float32(0.0)
            if m < rows and k < depth:
                value = op_element(a, uint64(m), uint64(k), trans_a)
            a_tile[uint64(kk), uint64(i)] = value
        for p in range(PASSES_B):
            e = t + p * THREADS
            if trans_b:                  # b stored (N, K): k is contiguous
                kk, j = e % BK, e // BK
            else:                        # b stored (K, N): n is contiguous
                kk, j = e // BN, e % BN
            k, n = k0 + kk, n0 + j
            value = float32(0.0)
            if k < depth and n < cols:
                value = op_element(b, uint64(k), uint64(n), trans_b)
            b_tile[uint64(kk), uint64(j)] = value
        cuda.syncthreads()               # both tiles complete before anyone reads them
        multiply_slice(a_tile, b_tile, acc, row, col)
        cuda.syncthreads()               # all reads done before the next slice overwrites them
    for i in range(TM):
        m = m0 + tile_row(row, i)
        if m < rows:
            for j in range(TN):
                n = n0 + tile_col(col, j)
                if n < cols:
                    c[m, n] = acc[i * TN + j]


def launch(a, b, c, trans_a, trans_b):
    """One block of THREADS threads per BM x BN tile of c, columns of tiles along x."""
    rows, cols = c.shape
    gemm_v6[(ceil_div(cols, BN), ceil_div(rows, BM)), THREADS](a, b, c, trans_a, trans_b)
