"""GEMM rung 3, smem-tiles: a block stages TILE x TILE tiles of op(A) and op(B) in shared memory.

The idea (over rung 2). Neighbouring threads of rung 2 read the same values again and
again from global memory: every element of A is loaded N times, every element of B M
times. Here a TILE x TILE block of threads computes a TILE x TILE tile of C together. For
each slice k0 .. k0 + TILE of the reduction, the block copies a TILE x TILE tile of op(A)
and one of op(B) into shared memory (one element per thread), waits at a barrier
(syncthreads: no thread reads a tile before all have written it), and every thread does
TILE multiply-adds out of shared memory, then waits again before the tiles are
overwritten. Each global load now feeds TILE multiply-adds.

Edges: M, N, K need not be multiples of TILE; out-of-range tile elements are loaded as 0,
so they add exactly 0 to the sums, and threads outside C write nothing.

Coalescing every transpose. A warp's loads coalesce when consecutive threadIdx.x read
consecutive addresses, i.e. walk the array's contiguous (last) axis. For op(A) = a (M, K)
that axis is k; for op(A) = a.T with a stored (K, M) it is m. So thread (ty, tx) copies
tile element (m, k) = (ty, tx) in the first case and (tx, ty) in the second: the same
tile, the two thread indices swapped. Likewise for B. The price is that a transposed copy
writes a column of the shared tile. Shared memory has 32 banks, one per 4-byte word
modulo 32; with rows of TILE = 16 floats, 16 threads writing down a column would use only
2 banks, an 8-way conflict (8 accesses in turn). Each row is padded to TILE + 1 floats, so
a column spreads over all banks.

Cost (PREDICTED). Global traffic drops TILE-fold (TILE/4 FLOPs per byte instead of 1/4),
but every FMA still needs two loads, now from shared memory, which serves one warp-wide
load per clock against four warp-wide FMAs: the same 1/8-of-peak ceiling as rung 2, met
with far fewer L1/L2 misses. Expect 1.2-1.5x rung 2; the loads per FMA are rung 4's target.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR
from .common import GEMM_SIG, ceil_div, kernel, op_element

# Side of a block and of its tile of C. 16x16 = 256 threads = 8 warps per block on a GPU.
# Under the simulator 8: it costs about the same there (~1 ms per simulated thread either
# way: the thread count is the area of C rounded up to tiles), but the tests' small
# shapes (sides 1-40, C at most 256 elements) then span several tiles along M, N and K at
# once, which is where the edge and the tile-loop logic can go wrong.
TILE = 8 if SIMULATOR else 16
# A shared tile's row length: one float of padding so that a column of the tile (written
# by a transposed load) falls into TILE different banks instead of two.
TILE_PAD = TILE + 1


@kernel(GEMM_SIG)
def gemm_v3(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b); block (bx, by) computes the TILE x TILE tile of c at rows
    by*TILE.., columns bx*TILE..; thread (ty, tx) owns c[row0 + ty, col0 + tx]; writes (=)."""
    a_tile = cuda.shared.array((TILE, TILE_PAD), float32)  # a_tile[i, j] = op(a)[row0 + i, k0 + j]
    b_tile = cuda.shared.array((TILE, TILE_PAD), float32)  # b_tile[i, j] = op(b)[k0 + i, col0 + j]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0, col0 = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    # Which tile element this thread copies: (i, j) = (ty, tx) when the tile's column index
    # is the contiguous axis in memory, (tx, ty) when its row index is (a transposed
    # operand), so that consecutive tx always read consecutive addresses.
    a_i, a_j = (tx, ty) if trans_a else (ty, tx)
    b_i, b_j = (tx, ty) if trans_b else (ty, tx)
    acc = float32(0.0)
    for k0 in range(0, depth, TILE):
        m, k = row0 + a_i, k0 + a_j
        a_tile[a_i, a_j] = op_element(a, m, k, trans_a) if m < rows and k < depth else float32(0.0)
        k, n = k0 + b_i, col0 + b_j
        b_tile[b_i, b_j] = op_element(b, k, n, trans_b) if k < depth and n < cols else float32(0.0)
        cuda.syncthreads()  # both tiles complete before anyone reads them
        for kk in range(TILE):
            acc += a_tile[ty, kk] * b_tile[kk, tx]
        cuda.syncthreads()  # everyone done reading before the next slice overwrites them
    if row0 + ty < rows and col0 + tx < cols:
        c[row0 + ty, col0 + tx] = acc


def launch(a, b, c, trans_a, trans_b):
    """TILE x TILE threads per block, one per element of c, blocks tiling c with its columns
    along x (so a warp writes along a row)."""
    rows, cols = c.shape
    gemm_v3[(ceil_div(cols, TILE), ceil_div(rows, TILE)), (TILE, TILE)](a, b, c, trans_a, trans_b)
