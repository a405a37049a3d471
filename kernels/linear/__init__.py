"""linear — dense layers as one SGEMM, C = op(A) @ op(B), grown one idea per version.

What it computes. For a batch of B rows, x (B, in), w (out, in) and the gradient dy (B, out):
    forward          y  = x @ w.T     gemm(x,  w,  y,  trans_a=0, trans_b=1)   M=B,   N=out, K=in
    backward_data    dx = dy @ w      gemm(dy, w,  dx, trans_a=0, trans_b=0)   M=B,   N=in,  K=out
    backward_weight  dw = dy.T @ x    gemm(dy, x,  dw, trans_a=1, trans_b=0)   M=out, N=in,  K=B
i.e. c[m, n] = sum over k = 0, 1, ..., K-1 of op(a)[m, k] * op(b)[k, n], where op(a) is a
(M, K) when not transposed and a.T for a stored (K, M); likewise op(b) is (K, N). Every
kernel here writes its output (=); the bias is added by elementwise.channel_bias, and the
caller accumulates gradients. Transposes cost nothing: they are index arithmetic, never a
copy. In every version each c[m, n] is summed by one thread in increasing k, so all
versions give the same bits, run after run.

The ladder. This is the course's matrix multiply, grown the way siboehm's SGEMM worklog
grows it, one idea per file (each file opens with its idea and its predicted gain):
    v1_naive.py             one thread per c[m, n], threadIdx.x along the rows m
    v2_coalesced.py         the same with threadIdx.x along the columns n: a warp reads a row
    v3_smem_tiles.py        TILE x TILE tiles of op(A) and op(B) staged in shared memory
    v4_register_1d.py       each thread 16 outputs of a column, one B load for 16 FMAs
    v5_register_2d.py       each thread an 8 x 8 block of C: 16 loads for 64 FMAs
    v6_unsigned_indices.py  the same, unsigned indices and two k per trip: a clean hot loop
    v7_vector_loads.py      the block's rows and columns in runs of 4: 16-byte shared loads
conv2d's implicit GEMM (kernels/conv2d/) is the last rung with its operands gathered from
an image instead of read from a matrix. How threads map to data is in each file; the
shared kernel signature, op_element and the kernel naming are in common.py.

Napkin math (H100 SXM: 67 TFLOP/s FP32, 3.35 TB/s, so a kernel needs ~20 FLOP per byte
of DRAM traffic to be compute-bound). The ladder's predictions are for a large square
GEMM (the GPU cases include M = N = K = 2048: 17 GFLOP, 50 MB, 340 FLOP/byte): there the
FMA peak is the bound, and each rung removes what kept the one before from it. The
pytorch-arch DCGAN has no dense layer; the paper arch has two, here at batch 128,
ngf = ndf = 64 (the paper's ngf = 128 doubles them):
    G projection z (128, 100) -> (128, 8192):
      forward   M=128, N=8192, K=100:  2*128*8192*100 = 0.21 GFLOP; minimum bytes x 51 KB +
                w 3.3 MB + y 4.2 MB = 7.5 MB: 28 FLOP/byte, compute-bound but only just:
                3.1 us of FP32 at peak vs 2.2 us of DRAM; either is below what a launch
                costs. With 128 x 128 tiles (v5-v7) only 64 blocks for 132 SMs.
      bwd data  M=128, N=100, K=8192:  0.21 GFLOP. Only 8x7 = 56 tiles of 16x16 for 132 SMs
                (v5-v7: one), each thread a sequential loop of 8192: this shape wants
                split-K (several blocks per tile, partial sums combined in a fixed order),
                which conv2d's version 6 adds; this ladder stops before it.
                (z needs no gradient in training; the latent-space experiments do.)
      bwd weight M=8192, N=100, K=128: 0.21 GFLOP, 3584 tiles of 16x16: a healthy GEMM.
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
At these sizes the dense layers are a small part of a ~320 GFLOP training step (conv2d's
160 GFLOP counts each layer's three directions once, G's ~80 and D's ~80; D runs three
times a step, on real images, on fakes and for the generator's gradient: 80 + 3 x 80 =
320); the point of this family is the SGEMM itself, which the classifier and conv2d's implicit GEMMs reuse.

Versions:
    1  naive              one thread per element of C, threadIdx.x along its rows: uncoalesced
    2  coalesced          one thread per element of C, threadIdx.x along its columns: a warp reads a row
    3  smem-tiles         TILE x TILE tiles of op(A) and op(B) in shared memory, coalesced for every transpose
    4  1d-blocking        a thread computes 16 elements of a column of C: one B load feeds 16 FMAs
    5  2d-blocking        a thread computes an 8 x 8 block of C from 8 + 8 values loaded per k
    6  unsigned-indices   v5 with unsigned indices and two k per trip: the hot loop is FMAs and loads
    7  vector-loads       the block's rows and columns in runs of 4, read from shared memory 16 bytes per load
Run:
    python -m dcgan_cuda.kernels.linear --sim     validate every version on the CPU (threads simulated)
    python -m dcgan_cuda.kernels.linear           validate and time on a GPU
"""
from __future__ import annotations

from ..jit import Version
from . import (v1_naive, v2_coalesced, v3_smem_tiles, v4_register_1d, v5_register_2d,
               v6_unsigned_indices, v7_vector_loads)
from .cases import cases, run  # noqa: F401  (the harness's entry points)

TILE = v3_smem_tiles.TILE   # the tests size their shapes by it

VERSIONS = {
    1: Version("naive", "one thread per element of C, threadIdx.x along its rows: uncoalesced",
               {"gemm": v1_naive.launch}),
    2: Version("coalesced", "one thread per element of C, threadIdx.x along its columns: a warp reads a row",
               {"gemm": v2_coalesced.launch}),
    3: Version("smem-tiles", "TILE x TILE tiles of op(A) and op(B) in shared memory, "
               "coalesced for every transpose", {"gemm": v3_smem_tiles.launch}),
    4: Version("1d-blocking", "a thread computes 16 elements of a column of C: one B load feeds 16 FMAs",
               {"gemm": v4_register_1d.launch}),
    5: Version("2d-blocking", "a thread computes an 8 x 8 block of C from 8 + 8 values loaded per k",
               {"gemm": v5_register_2d.launch}),
    6: Version("unsigned-indices", "v5 with unsigned indices and two k per trip: the hot loop is FMAs and loads",
               {"gemm": v6_unsigned_indices.launch}),
    7: Version("vector-loads", "the block's rows and columns in runs of 4, read from shared memory 16 bytes per load",
               {"gemm": v7_vector_loads.launch}),
}
DEFAULT_VERSION = 1


def _op_shape(array, trans):
    """(rows, cols) of op(array): the transpose's shape when trans."""
    rows, cols = array.shape
    return (cols, rows) if trans else (rows, cols)


# ------------------------------------------------------------------------ launchers
# 2-D float32 C-contiguous arrays (CuPy on a GPU, NumPy under the simulator), outputs
# allocated by the caller. Each version's launch() picks its grid and block.
def gemm(a, b, c, trans_a, trans_b, version=DEFAULT_VERSION):
    """c = op(a) @ op(b), op(t) = t.T if its flag is set else t. Writes c (=)."""
    trans_a, trans_b = int(bool(trans_a)), int(bool(trans_b))
    m, k = _op_shape(a, trans_a)
    k_b, n = _op_shape(b, trans_b)
    if k != k_b or c.shape != (m, n):
        raise ValueError(f"gemm: op(a) {m}x{k} @ op(b) {k_b}x{n} does not fit c {c.shape}")
    if m == 0 or n == 0:
        return
    VERSIONS[version].ops["gemm"](a, b, c, trans_a, trans_b)


def forward(x, w, y, version=DEFAULT_VERSION):
    """y (N, out) = x (N, in) @ w (out, in).T. Writes y (=); no bias."""
    gemm(x, w, y, 0, 1, version)


def backward_data(dy, w, dx, version=DEFAULT_VERSION):
    """dx (N, in) = dy (N, out) @ w (out, in). Writes dx (=)."""
    gemm(dy, w, dx, 0, 0, version)


def backward_weight(x, dy, dw, version=DEFAULT_VERSION):
    """dw (out, in) = dy (N, out).T @ x (N, in). Writes dw (=)."""
    gemm(dy, x, dw, 1, 0, version)
