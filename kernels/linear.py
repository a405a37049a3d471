"""linear — dense layers as one SGEMM: C = op(A) @ op(B), op = identity or transpose.

What it computes. For x (N, in), w (out, in) and the gradient dy (N, out):
    forward          y  = x @ w.T     gemm(x,  w,  y,  trans_a=0, trans_b=1)   M=N,   N=out, K=in
    backward_data    dx = dy @ w      gemm(dy, w,  dx, trans_a=0, trans_b=0)   M=N,   N=in,  K=out
    backward_weight  dw = dy.T @ x    gemm(dy, x,  dw, trans_a=1, trans_b=0)   M=out, N=in,  K=N
i.e. c[m, n] = sum over k = 0, 1, ..., K-1 of op(a)[m, k] * op(b)[k, n], where op(a) is a
(M, K) when not transposed and a.T for a stored (K, M); likewise op(b) is (K, N). Every
kernel here writes its output (=); the bias is added by elementwise.channel_bias, and the
caller accumulates gradients. Transposes cost nothing: they are index arithmetic, never a
copy. Each c[m, n] is summed by one thread in increasing k, so results are bitwise
reproducible (and both versions sum in the same order).

How threads map to data. A 2-D grid of 2-D blocks: threadIdx.x walks the columns n of C,
threadIdx.y its rows m, so the 32 threads of a warp write consecutive addresses of a row.
    v1 naive: one thread per c[m, n], reading op(a)[m, k] and op(b)[k, n] straight from
      global memory for k = 0..K-1. Each element of A is read N times and each of B M times
      (the L1/L2 caches absorb part of it): 2 FLOPs per 8 bytes loaded.
    v2 smem-tiles (siboehm's "shared memory cache-blocking"): a TILE x TILE block computes a
      TILE x TILE tile of C. For each slice k0..k0+TILE of K, the block copies a TILE x TILE
      tile of op(A) and one of op(B) into shared memory (one element per thread), waits at a
      barrier, and every thread does TILE multiply-adds out of shared memory, then waits
      again before the tiles are overwritten. Each global load now feeds TILE
      multiply-adds: TILE/4 FLOPs per byte from global memory instead of 1/4.
      Edges: M, N, K need not be multiples of TILE; out-of-range tile elements are loaded
      as 0, so they add exactly 0 to the sums, and threads outside C write nothing.
      Coalescing: a warp's loads coalesce when consecutive threadIdx.x read consecutive
      addresses, i.e. walk the contiguous (last) axis of the array in memory. For op(A) =
      a (M, K) that axis is k; for op(A) = a.T with a stored (K, M) it is m. So the thread
      (ty, tx) loads tile element (m, k) = (ty, tx) in the first case and (tx, ty) in the
      second — the same tile, with the roles of the two thread indices swapped — and likewise
      for B (stored (K, N): n is contiguous; stored (N, K) for a transpose: k is). Every
      global load of every transpose case is thus coalesced. The price is that a
      transposed load writes a column of the shared tile. Shared memory has 32 banks, one
      per 4-byte word modulo 32; with rows of TILE = 16 floats, a warp's 16 threads writing
      down a column would use only 2 banks, an 8-way conflict (8 serialised accesses). Each
      row is padded to TILE + 1 floats, so a column spreads over the banks instead.

Napkin math (H100 SXM: 67 TFLOP/s FP32, 3.35 TB/s, so a kernel needs ~20 FLOP per byte
of DRAM traffic to be compute-bound). The pytorch-arch DCGAN has no dense layer; the paper
arch has two, here at batch 128, ngf = ndf = 64 (the paper's ngf = 128 doubles them):
    G projection z (128, 100) -> (128, 8192):
      forward   M=128, N=8192, K=100:  2*128*8192*100 = 0.21 GFLOP; minimum bytes x 51 KB +
                w 3.3 MB + y 4.2 MB = 7.5 MB: 28 FLOP/byte, compute-bound but only just:
                3.1 us of FP32 at peak vs 2.2 us of DRAM. Either is below a launch (~5-20 us).
      bwd data  M=128, N=100, K=8192:  0.21 GFLOP. Only 8x7 = 56 tiles of 16x16 for 132 SMs,
                each thread a sequential loop of 8192: this shape wants split-K (several
                blocks per tile, partial sums combined in a fixed order) — a later version.
                (z needs no gradient in training; the latent-space experiments do.)
      bwd weight M=8192, N=100, K=128: 0.21 GFLOP, 3584 tiles: a healthy GEMM.
    D head flatten (128, 8192) -> (128, 1):
      forward   M=128, N=1, K=8192: a matrix-vector product. 2*128*8192 = 2.1 MFLOP on
                4.2 MB of x: 0.5 FLOP/byte, memory-bound (1.3 us at 3.35 TB/s, 0.03 us of
                compute). Tiling cannot help (each x element is used once), and a 16x16
                tile wastes 15 of its 16 columns: 8 blocks for 132 SMs. A GEMV deserves
                its own kernel (a block per row reducing over K in shared memory).
      bwd data  dx (128, 8192) = dy (128, 1) @ w (1, 8192): K=1, an outer product; 2 MFLOP,
                writes 4.2 MB: memory-bound.
      bwd weight dw (1, 8192) = dy.T @ x: K=128, reads 4.2 MB: memory-bound.
    Evaluation classifier on D's features max-pooled to 4x4 ((64+128+256+512)*16 = 15360
      features) -> 10 classes: x (128, 15360) @ w.T: 39 MFLOP on 8.5 MB, memory-bound too.
At these sizes the dense layers are a small part of a ~320 GFLOP training step; the point
of this file is the SGEMM itself, which the classifier and any implicit-GEMM convolution
reuse.

Versions:
    1  naive  one thread per element of C, operands straight from global memory
    2  smem-tiles  TILE x TILE tiles of op(A) and op(B) in shared memory, coalesced for every transpose
Run:
    python -m dcgan_cuda.kernels.linear --sim     validate on the CPU
    python -m dcgan_cuda.kernels.linear           validate and time on a GPU
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from dcgan_cuda import reference

from .jit import SIMULATOR, Version, f32_2d, i64, kernel

# Side of a block and of its tile of C. 16x16 = 256 threads = 8 warps per block on a GPU.
# Under the simulator 8: it costs about the same there (~1 ms per simulated thread either
# way: the thread count is the area of C rounded up to tiles), but the tests' small
# shapes (sides 1-40, C at most 256 elements) then span several tiles along M, N and K at
# once, which is where the edge and the tile-loop logic can go wrong.
TILE = 8 if SIMULATOR else 16
# A shared tile's row length: one float of padding so that a column of the tile (written
# by a transposed load) falls into TILE different banks instead of two.
TILE_PAD = TILE + 1


def _op_shape(array, trans):
    """(rows, cols) of op(array): the transpose's shape when trans."""
    rows, cols = array.shape
    return (cols, rows) if trans else (rows, cols)


@cuda.jit(device=True)
def op_element(array, row, col, trans):
    """op(array)[row, col]: array[col, row] when trans (the array stores the transpose)."""
    if trans:
        return array[col, row]
    return array[row, col]


# ------------------------------------------------------------------------ version 1
@kernel((f32_2d, f32_2d, f32_2d, i64, i64))
def gemm_v1(a, b, c, trans_a, trans_b):
    """c[m, n] = sum_k op(a)[m, k] * op(b)[k, n]; thread (m, n) of a 2-D grid; writes (=)."""
    n = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    m = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    if m < rows and n < cols:
        acc = float32(0.0)
        for k in range(depth):
            acc += op_element(a, m, k, trans_a) * op_element(b, k, n, trans_b)
        c[m, n] = acc


# ------------------------------------------------------------------------ version 2
@kernel((f32_2d, f32_2d, f32_2d, i64, i64))
def gemm_v2(a, b, c, trans_a, trans_b):
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


VERSIONS = {
    1: Version("naive", "one thread per element of C, operands straight from global memory",
               {"gemm": gemm_v1}),
    2: Version("smem-tiles", "TILE x TILE tiles of op(A) and op(B) in shared memory, "
               "coalesced for every transpose", {"gemm": gemm_v2}),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
# 2-D float32 C-contiguous arrays (CuPy on a GPU, NumPy under the simulator), outputs
# allocated by the caller.
def gemm(a, b, c, trans_a, trans_b, version=DEFAULT_VERSION):
    """c = op(a) @ op(b), op(t) = t.T if its flag is set else t. Writes c (=)."""
    trans_a, trans_b = int(bool(trans_a)), int(bool(trans_b))
    m, k = _op_shape(a, trans_a)
    k_b, n = _op_shape(b, trans_b)
    if k != k_b or c.shape != (m, n):
        raise ValueError(f"gemm: op(a) {m}x{k} @ op(b) {k_b}x{n} does not fit c {c.shape}")
    if m == 0 or n == 0:
        return
    # One thread per element of c, TILE x TILE threads per block (both versions), blocks
    # tiling c with its columns along x (so a warp writes along a row). Grid y allows
    # 65535 blocks, i.e. ~1 M rows of c: far more than any M here (at most 8192).
    grid = (-(-n // TILE), -(-m // TILE))
    VERSIONS[version].ops["gemm"][grid, (TILE, TILE)](a, b, c, trans_a, trans_b)


def forward(x, w, y, version=DEFAULT_VERSION):
    """y (N, out) = x (N, in) @ w (out, in).T. Writes y (=); no bias."""
    gemm(x, w, y, 0, 1, version)


def backward_data(dy, w, dx, version=DEFAULT_VERSION):
    """dx (N, in) = dy (N, out) @ w (out, in). Writes dx (=)."""
    gemm(dy, w, dx, 0, 0, version)


def backward_weight(x, dy, dw, version=DEFAULT_VERSION):
    """dw (out, in) = dy (N, out).T @ x (N, in). Writes dw (=)."""
    gemm(dy, x, dw, 1, 0, version)


# ------------------------------------------------------------------ validate / time
def cases(sim):
    if sim:
        # Odd sizes that straddle tile edges, a batch of 1, and a K of 1.
        shapes = [("dense 3x13 -> 3x17", 3, 13, 17), ("dense 1x9 -> 1x2", 1, 9, 2),
                  ("dense 11x1 -> 11x5", 11, 1, 5)]
    else:
        shapes = [("G projection 128x100 -> 128x8192", 128, 100, 8192),
                  ("D head 128x8192 -> 128x1", 128, 8192, 1),
                  ("classifier 128x15360 -> 128x10", 128, 15360, 10)]
    return [(label, lambda rng, s=(batch, fan_in, fan_out): (
                rng.standard_normal((s[0], s[1])).astype(np.float32),
                (0.02 * rng.standard_normal((s[2], s[1]))).astype(np.float32),
                rng.standard_normal((s[0], s[2])).astype(np.float32)))
            for label, batch, fan_in, fan_out in shapes]


def run(version, label, inputs, device):
    x, w, dy = inputs
    d_x, d_w, d_dy = device(x), device(w), device(dy)
    y, dx, dw = device(np.empty_like(dy)), device(np.empty_like(x)), device(np.empty_like(w))

    def launch():
        forward(d_x, d_w, y, version)
        backward_data(d_dy, d_w, dx, version)
        backward_weight(d_x, d_dy, dw, version)
        return y, dx, dw
    x64, w64, dy64 = (t.astype(np.float64) for t in (x, w, dy))
    refs = (reference.linear_forward(x64, w64), reference.linear_backward_data(dy64, w64),
            reference.linear_backward_weight(x64, dy64))
    # Against a float64 reference. A float32 running sum of K products of size ~s rounds
    # each of its K additions by up to 2^-24 of the partial sum, a random walk of size
    # ~s*sqrt(k); the errors add up to ~2^-24 * s * K/sqrt(2) in a typical case. The worst
    # product of sizes here (s = 0.02 for w, K = 15360 in the classifier; s = 1, K = 128 for
    # the weight gradients) gives ~1e-5: atol 1e-4 leaves a margin of ~8x.
    batch, fan_in = x.shape
    fan_out = w.shape[0]
    flops = 3 * 2 * batch * fan_in * fan_out
    nbytes = 3 * 4 * (x.size + w.size + dy.size)  # each of x, w, dy is read twice and written once
    return launch, refs, 1e-4, 1e-4, flops, nbytes


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
