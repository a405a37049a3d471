"""dropout — the denoising autoencoder's kernels: inverted dropout forward and backward and
Gaussian input noise, with random numbers made on the device from a counter, and the
gradient of its squared reconstruction error.

What it computes, element by element (i runs over every element of a flat array; u(key, i)
is a uniform number in [0, 1), z(key, i) a standard normal one):
    dropout_forward   y  = u(key, i) >= p ? x  / (1 - p) : 0
    dropout_backward  dx = u(key, i) >= p ? dy / (1 - p) : 0     (the same key: the same mask)
    gaussian_noise    y  = x + sigma * z(key, i)                  (the denoising corruption)
    squared_error_forward   loss = mean (y - t)^2                 (one block, fixed order)
    squared_error_backward  dy = g * 2 (y - t) / n                (g: the upstream gradient)
Every kernel writes its output (=).

Where the random numbers come from. A counter-based generator: the number of element i is
a hash of (key, i), computed by the thread that handles element i. Nothing random lives on
the host or in memory: a launch takes one 32-bit key, the backward recomputes the forward's
mask from the same key instead of storing it (a mask would cost a byte or a float an
element, written and read again), any grid shape gives the same numbers, and a run is
reproducible bitwise. The hash is lowbias32 (two rounds, see reference.hash32): xor-shifts
and multiplications, done in 64-bit registers masked to 32 bits so that the simulator's
NumPy integers never overflow and the GPU computes exactly the same. z uses Box-Muller on
the numbers of indices 2i and 2i + 1.

How threads map to data: the grid-stride loop of elementwise.py (read that first): thread t
of T handles elements t, t + T, ...; consecutive threads read consecutive addresses.

Napkin math. Dropout reads 4 bytes and writes 4 an element, plus ~12 integer operations
for the hash: still memory-bound (an H100 SXM does ~33 T integer operations/s against
3.35 TB/s, ~10 operations per byte). The dedup autoencoder's largest dropout, 256 images x
512 units = 0.5 MB each way, is far below a launch's cost (~10 us): at these sizes the
launch is the bill, which is why the mask is recomputed rather than stored.

Versions:
    1  counter-hash  one thread per element of a grid-stride loop, numbers hashed from (key, i)
Run:
    python -m dcgan_cuda.kernels.dropout --sim     validate on the CPU
    python -m dcgan_cuda.kernels.dropout           validate and time on a GPU
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, uint64

from dcgan_cuda import reference

from .jit import Version, f32, f32_1d, grid_1d, i64, kernel, scalar
from .reduction import THREADS, block_sum

# Constants as uint64 globals: Numba then types every step of the hash as uint64 (a plain
# Python int would mix int64 in, and int64 with uint64 becomes float64).
MASK32 = np.uint64(0xFFFFFFFF)
MUL_A = np.uint64(0x7FEB352D)
MUL_B = np.uint64(0x846CA68B)
SHIFT_A, SHIFT_B, SHIFT_TOP = np.uint64(16), np.uint64(15), np.uint64(8)
ONE = np.uint64(1)
# The largest index the 32-bit counter can name; Gaussian noise uses two numbers an element.
MAX_ELEMENTS = 1 << 31


@cuda.jit(device=True)
def lowbias32(x):
    x = x & MASK32
    x = x ^ (x >> SHIFT_A)
    x = (x * MUL_A) & MASK32
    x = x ^ (x >> SHIFT_B)
    x = (x * MUL_B) & MASK32
    return x ^ (x >> SHIFT_A)


@cuda.jit(device=True)
def uniform(key, index):
    """reference.counter_uniform: the top 24 bits of hash32(key, index), times 2**-24."""
    h = lowbias32(lowbias32(index) ^ (key & MASK32))
    return float32(h >> SHIFT_TOP) * float32(2.0 ** -24)


# ------------------------------------------------------------------------ version 1
@kernel((f32_1d, f32_1d, f32, f32, i64, i64))
def dropout_forward_v1(x, y, p, scale, key, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    k = uint64(key)
    for i in range(start, n, stride):
        y[i] = x[i] * scale if uniform(k, uint64(i)) >= p else float32(0.0)


@kernel((f32_1d, f32_1d, f32, f32, i64, i64))
def dropout_backward_v1(dy, dx, p, scale, key, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    k = uint64(key)
    for i in range(start, n, stride):
        dx[i] = dy[i] * scale if uniform(k, uint64(i)) >= p else float32(0.0)


@kernel((f32_1d, f32_1d, f32, i64, i64))
def gaussian_noise_v1(x, y, sigma, key, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    k = uint64(key)
    for i in range(start, n, stride):
        j = uint64(i) + uint64(i)
        u1 = uniform(k, j) + float32(2.0 ** -24)   # in (0, 1]: log(u1) is finite
        u2 = uniform(k, j + ONE)
        z = math.sqrt(float32(-2.0) * math.log(u1)) * math.cos(float32(2.0 * math.pi) * u2)
        y[i] = x[i] + sigma * z


@kernel((f32_1d, f32_1d, f32_1d, i64))
def squared_error_forward_v1(y, t, loss, n):
    """loss[0] = mean (y - t)^2; one block, each thread a strided share, then the reduction's
    tree (loss.py's pattern): a fixed order, so the same value every run."""
    partial = cuda.shared.array(THREADS, float32)
    tid = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(tid, n, THREADS):
        d = y[i] - t[i]
        acc += d * d
    partial[tid] = acc
    total = block_sum(partial, tid)
    if tid == 0:
        loss[0] = total / float32(n)


@kernel((f32_1d, f32_1d, f32_1d, f32_1d, f32, i64))
def squared_error_backward_v1(y, t, dloss, dy, two_over_n, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    scale = dloss[0] * two_over_n   # the upstream gradient stays on the device: no sync
    for i in range(start, n, stride):
        dy[i] = scale * (y[i] - t[i])


VERSIONS = {
    1: Version("counter-hash", "one thread per element of a grid-stride loop, numbers hashed from (key, i)", {
        "dropout_forward": dropout_forward_v1, "dropout_backward": dropout_backward_v1,
        "gaussian_noise": gaussian_noise_v1, "squared_error_forward": squared_error_forward_v1,
        "squared_error_backward": squared_error_backward_v1,
    }),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
# C-contiguous float32 arrays of any shape (CuPy on a GPU, NumPy under the simulator);
# outputs allocated by the caller. key: an integer in [0, 2**32).
def _check(n, key):
    if n > MAX_ELEMENTS:
        raise ValueError(f"{n} elements: the counter names at most {MAX_ELEMENTS}")
    if not 0 <= int(key) < 2**32:
        raise ValueError(f"key {key} is not a 32-bit unsigned integer")


def dropout_forward(x, y, p, key, version=DEFAULT_VERSION):
    _check(x.size, key)
    VERSIONS[version].ops["dropout_forward"][grid_1d(x.size)](
        x.reshape(-1), y.reshape(-1), scalar(p), scalar(1.0 / (1.0 - p)), int(key), x.size)


def dropout_backward(dy, dx, p, key, version=DEFAULT_VERSION):
    _check(dy.size, key)
    VERSIONS[version].ops["dropout_backward"][grid_1d(dy.size)](
        dy.reshape(-1), dx.reshape(-1), scalar(p), scalar(1.0 / (1.0 - p)), int(key), dy.size)


def gaussian_noise(x, y, sigma, key, version=DEFAULT_VERSION):
    _check(x.size, key)
    VERSIONS[version].ops["gaussian_noise"][grid_1d(x.size)](
        x.reshape(-1), y.reshape(-1), scalar(sigma), int(key), x.size)


def squared_error_forward(y, t, loss, version=DEFAULT_VERSION):
    """loss[0] = mean (y - t)^2 (loss: a 1-element array)."""
    VERSIONS[version].ops["squared_error_forward"][1, THREADS](y.reshape(-1), t.reshape(-1), loss, y.size)


def squared_error_backward(y, t, dloss, dy, version=DEFAULT_VERSION):
    """dy = dloss[0] * 2 (y - t) / n, the gradient of mean (y - t)^2; dloss: a 1-element
    array (the upstream gradient, as the loss kernels take it)."""
    VERSIONS[version].ops["squared_error_backward"][grid_1d(y.size)](
        y.reshape(-1), t.reshape(-1), dloss.reshape(-1), dy.reshape(-1), scalar(2.0 / y.size), y.size)


# ------------------------------------------------------------------ validate / time
def cases(sim):
    shape = (3, 37) if sim else (256, 4096)
    return [(f"{op} {'x'.join(map(str, shape))}",
             lambda rng, op=op: (op, rng.standard_normal(shape).astype(np.float32)))
            for op in ("dropout", "gaussian_noise", "squared_error")]


def run(version, label, inputs, device):
    op, x = inputs
    key, p, sigma = 12345, 0.3, 0.5
    d_x, out, grad = device(x), device(np.empty_like(x)), device(np.empty_like(x))
    if op == "squared_error":
        t = np.tanh(x[::-1].copy())
        d_t, d_one, d_loss = device(t), device(np.ones(1, np.float32)), device(np.zeros(1, np.float32))

        def launch():
            squared_error_forward(d_x, d_t, d_loss, version)
            squared_error_backward(d_x, d_t, d_one, grad, version)
            return d_loss, grad
        # the gradient: one subtraction and one product in float32, as the reference. The
        # mean, against float64: each thread adds n/THREADS float32 terms in a row (4096 at
        # the GPU shape), an error growing like sqrt(4096) eps ~ 4e-6 relative, 1e-4 allowed
        ref = (reference.squared_error_forward(x.astype(np.float64), t.astype(np.float64)).reshape(1),
               reference.squared_error_backward(x, t))
        return launch, ref, 1e-6, 1e-4, 5 * x.size, 4 * x.nbytes   # atol, rtol, FLOPs, bytes moved
    if op == "gaussian_noise":
        def launch():
            gaussian_noise(d_x, out, sigma, key, version)
            return out
        # logf, sqrtf and cosf differ from NumPy's float32 functions by a few ulp
        return launch, reference.gaussian_noise(x, sigma, key), 1e-5, 1e-5, 20 * x.size, 2 * x.nbytes   # atol, rtol, FLOPs, bytes moved

    def launch():
        dropout_forward(d_x, out, p, key, version)
        dropout_backward(d_x, grad, p, key, version)
        return out, grad
    ref = reference.dropout_forward(x, p, key)
    # the mask is integer arithmetic and the scale one float32 product: exact
    return launch, (ref, reference.dropout_backward(x, p, key)), 0.0, 0.0, 2 * x.size, 4 * x.nbytes   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
