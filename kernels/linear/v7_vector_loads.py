"""GEMM rung 7, vector-loads: a thread's rows and columns in runs of 4, read 16 bytes per load.

The idea (over rung 6). A thread's TM = 8 rows of C are two runs of VEC = 4 consecutive
rows, 64 apart (4r .. 4r+3 and 64+4r .. 64+4r+3 for thread row r), its columns likewise.
Then its 4 values of one run, for one k, are 16 contiguous bytes of a shared row, and
with unsigned indices (rung 6) and 16-byte aligned rows (alignment=16, rows padded to
BM + 4 floats) the compiler merges the four loads into one ld.shared.v4.f32. Per k a
thread issues 4 loads instead of 16 for the same 64 FMAs.

Bank conflicts: 16 threads of a half-warp read 16 different runs of 4 words, 256
consecutive bytes: two shared-memory wavefronts for the 16 x 4 floats, the least possible.

What stays scalar. Global loads: Numba cannot promise NVVM that a row of a global array
is 16-byte aligned, so the copies into shared memory stay ld.global.f32 (the PTX shows
it); siboehm's CUDA version of this step also vectorises those.

Cost (PREDICTED). One trip of the hot loop (two k) is 128 FMAs, 8 ld.shared.v4 and 10
others, 88% FMAs (rung 6: 75%; bench/ptx_hot_loop.py). Per k and warp the shared-memory
port is busy 6 clocks per 16 clocks of FMAs: the warp's 32 lanes are 2 thread rows x 16
thread columns, so each of its 2 loads of A runs is a broadcast of 2 addresses (1
wavefront) and each of its 2 loads of B runs is 16 x 16 bytes (2 wavefronts): 2 + 2 x 2 = 6
(rung 6: 16 scalar loads, 16 wavefronts). Expect ~1.2x rung 6: at these sizes ~60-70% of
the FMA peak on a large square GEMM is the ceiling of a kernel that waits on its copies
each slice. conv2d's prefetch version (7) hides part of that wait by issuing the next
slice's global loads before the multiply; double buffering, a second pair of shared tiles
so that one barrier per slice suffices, is not done in this project's kernels
(exercise a3 does it on a small GEMM).
This is the rung conv2d's implicit GEMM builds on (register_blocks is imported there).
"""
from __future__ import annotations

from collections import namedtuple

from numba import cuda, float32, uint64

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

Tiling = namedtuple("Tiling", "bm bn bk tm tn vec pad")
# vec: the length of a thread's runs of rows (and of columns). The simulator's tiles: 16 x 16,
# 4 x 4 per thread in runs of 2, 16 threads a block.
TILING = (Tiling(bm=16, bn=16, bk=4, tm=4, tn=4, vec=2, pad=2) if SIMULATOR
          else Tiling(bm=128, bn=128, bk=8, tm=8, tn=8, vec=4, pad=4))


def register_blocks(tiling):
    """(tile_row, tile_col, multiply_slice): a thread's TM x TN block of C for one tile shape,
    its rows and columns in runs of VEC. (conv2d's implicit GEMMs use this too, at their
    own tile shapes; with VEC = 1 it is rung 6's interleaved block.)

    Numba reads the sizes below from the functions' closure at compile time, as it reads
    module globals: each is a literal in the compiled code, and the loops over TM and TN
    have constant trip counts, which the compiler unrolls.
    """
    BK, TM, TN, VEC = tiling.bk, tiling.tm, tiling.tn, tiling.vec
    ROW_THREADS, COL_THREADS = tiling.bm // TM, tiling.bn // TN
    assert BK % 2 == 0                   # multiply_slice takes two k per trip
    assert TM % VEC == 0 and TN % VEC == 0 and (tiling.bm + tiling.pad) % VEC == 0

    @cuda.jit(device=True)
    def tile_row(r, a):
        """Row of the tile held by thread row r's a-th accumulator row: runs of VEC rows,
        ROW_THREADS * VEC apart."""
        return (a // VEC) * (ROW_THREADS * VEC) + r * VEC + a % VEC

    @cuda.jit(device=True)
    def tile_col(c, b):
        return (b // VEC) * (COL_THREADS * VEC) + c * VEC + b % VEC

    @cuda.jit(device=True)
    def multiply_step(a_tile, b_tile, acc, row, col, kk):
        """acc[a*TN + b] += a_tile[kk, tile_row(row, a)] * b_tile[kk, tile_col(col, b)]: one k.

        TM + TN floats from shared memory, as (TM + TN) / VEC loads of VEC adjacent words
        (ld.shared.v4 at VEC = 4), and TM*TN multiply-adds from registers."""
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
def gemm_v7(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b), written (=); tiles as rung 6, each thread's block in runs of VEC."""
    a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)   # a_tile[kk, i] = op(a)[m0 + i, k0 + kk]
    b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)   # b_tile[kk, j] = op(b)[k0 + kk, n0 + j]
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
    gemm_v7[(ceil_div(cols, BN), ceil_div(rows, BM)), THREADS](a, b, c, trans_a, trans_b)
