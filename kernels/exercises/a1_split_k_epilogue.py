"""a1 (advanced) — a fused epilogue with split-K, and the trap in it.

The discriminator's first layer is a convolution followed by LeakyReLU with no batchnorm
between them, so (unlike every other activation, which batchnorm/ fuses) it costs a
launch of its own that reads and writes the whole activation. conv2d's forward is a
matrix product (an implicit GEMM), and on layers whose sum over k is long it is computed
split-K. This exercise is that situation on a plain matrix product, small enough to read:

    z = a @ b             a (M, K), b (K, N), float32
    y = leaky_relu(z)     y = z where z > 0, else SLOPE * z

``forward`` below takes three launches: ``partial_products`` (block (x, y, s) computes,
for its 8 x 8 outputs, the sum over the s-th slice of k into partials[s]),
``sum_splits`` (adds the SPLITS partial sums of each output, in order s = 0, 1, ...),
and ``leaky_relu`` over y.

Part 1. Make the forward two launches: no separate activation kernel. **The split-K
trap:** the activation is not linear, so it cannot be applied to each split's partial
sum (leaky_relu(p0) + leaky_relu(p1) is not leaky_relu(p0 + p1) when their signs
differ); it belongs where the full sum first exists, after the splits are added.

Part 2. The backward (data side): dz = dy * leaky_relu'(z), da = dz @ b.T, where
leaky_relu'(z) is 1 where z > 0, else SLOPE; and z > 0 exactly where y > 0, so y (which
the forward stored anyway) tells the slope. ``backward_data`` below writes dz with one
kernel and multiplies with another. Make it one launch: apply the slope to dy as the
product loads it (a prologue).

Part 3. ``forward_bytes_saved(m, n)``: how many bytes of global-memory traffic your fused
forward saves against the three-launch one, for y of shape (m, n) (count each float a
kernel reads or writes once, 4 bytes; the partials are the same in both).

SLOPE is 0.25 here (DCGAN uses 0.2) so that, with small integer inputs, every result is
exact in float32 and the checker compares bit for bit.

    python -m dcgan_cuda.kernels.exercises check a1
"""
import numpy as np
from numba import cuda, float32

SLOPE = float32(0.25)
SPLITS = 3
BLOCK = (8, 8)


def _grid(rows, cols, depth=1):
    return ((cols + BLOCK[0] - 1) // BLOCK[0], (rows + BLOCK[1] - 1) // BLOCK[1], depth)


@cuda.jit
def partial_products(a, b, partials):
    """partials[s, r, c] = sum of a[r, k] * b[k, c] over the s-th slice of k."""
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    s = cuda.blockIdx.z
    depth = a.shape[1]
    chunk = (depth + partials.shape[0] - 1) // partials.shape[0]
    if r < a.shape[0] and c < b.shape[1]:
        acc = float32(0.0)
        for k in range(s * chunk, min((s + 1) * chunk, depth)):
            acc += a[r, k] * b[k, c]
        partials[s, r, c] = acc


@cuda.jit
def sum_splits(partials, y):
    """y[r, c] = partials[0, r, c] + partials[1, r, c] + ..., in that order."""
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if r < y.shape[0] and c < y.shape[1]:
        acc = float32(0.0)
        for s in range(partials.shape[0]):
            acc += partials[s, r, c]
        y[r, c] = acc


@cuda.jit
def leaky_relu(y):
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if r < y.shape[0] and c < y.shape[1]:
        v = y[r, c]
        y[r, c] = v if v > float32(0.0) else SLOPE * v


def forward(a, b, y):
    """y = leaky_relu(a @ b), split-K. TODO (part 1): two launches."""
    partials = np.empty((SPLITS, a.shape[0], b.shape[1]), np.float32)
    partial_products[_grid(a.shape[0], b.shape[1], SPLITS), BLOCK](a, b, partials)
    sum_splits[_grid(*y.shape), BLOCK](partials, y)
    leaky_relu[_grid(*y.shape), BLOCK](y)


@cuda.jit
def activation_grad(dy, y, dz):
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if r < dy.shape[0] and c < dy.shape[1]:
        dz[r, c] = dy[r, c] if y[r, c] > float32(0.0) else SLOPE * dy[r, c]


@cuda.jit
def matmul_bt(dz, b, da):
    """da[r, k] = sum over c of dz[r, c] * b[k, c]   (da = dz @ b.T)."""
    k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if r < da.shape[0] and k < da.shape[1]:
        acc = float32(0.0)
        for c in range(dz.shape[1]):
            acc += dz[r, c] * b[k, c]
        da[r, k] = acc


def backward_data(dy, y, b, da):
    """da = (dy * leaky_relu'(z)) @ b.T, the slope read off y. TODO (part 2): one launch."""
    dz = np.empty_like(dy)
    activation_grad[_grid(*dy.shape), BLOCK](dy, y, dz)
    matmul_bt[_grid(*da.shape), BLOCK](dz, b, da)


def forward_bytes_saved(m, n):
    """TODO (part 3): global-memory bytes the fused forward saves, for y of shape (m, n)."""
    return None
