"""lesson0_threads — the first kernels: one thread, a block of threads, a grid of blocks.

Read this file first. It computes the simplest thing there is, element by element,

    y[i] = a * x[i] + b          (and who[i] = the number of the thread that computed y[i])

six times, each version adding one idea about how a GPU runs threads. ``who`` is the
lesson's picture: the tests and ``--sim`` check it against the mapping each version
claims (``--sim`` prints only the verdict); to see which thread did what, print it:

    NUMBA_ENABLE_CUDASIM=1 python -c "
    import numpy as np
    from dcgan_cuda.kernels.lesson0_threads import scale_shift
    x = np.arange(40, dtype=np.float32); y = np.empty_like(x); who = np.empty(40, np.int32)
    scale_shift(x, y, 2.0, 1.0, who, version=2); print(who)"

(version 2 under the simulator: 32 threads, chunks of 2, so who is 0 0 1 1 2 2 ... 19 19;
try versions 3-5. Under the simulator the arrays may be NumPy arrays: it copies them.)

A kernel is a function that every thread of a launch runs. Written in Numba's CUDA
dialect of Python, it looks like a loop body: it receives arrays (already on the GPU),
returns nothing, and writes its results into arrays. Launching it says how many threads
to run: ``kernel[blocks, threads_per_block](x, y, ...)``. The threads of a launch are
organised in two levels, and each thread can ask where it is:

    cuda.threadIdx.x   this thread's number inside its block: 0 .. blockDim.x - 1
    cuda.blockDim.x    threads per block (the second launch number)
    cuda.blockIdx.x    this block's number inside the grid: 0 .. gridDim.x - 1
    cuda.gridDim.x     blocks in the grid (the first launch number)

(Each also has .y and .z, for grids and blocks laid out in 2 or 3 dimensions: version 6.)
A **block** runs on one **SM** (streaming multiprocessor: a GPU's core; an H100 has 132),
its threads can share fast on-chip memory and wait for each other (later lessons); blocks
are independent of each other and run in any order. The **grid** is all the blocks of a
launch. Nothing else tells a thread what to do: every difference between threads comes
from these numbers.

Versions, one idea each:

1. one-thread: ``kernel[1, 1]``. One thread loops over all n elements, as a CPU would.
   Correct, and the slowest way to use a GPU: a single thread waits ~600 ns (about a
   thousand clock cycles: kernels/README.md's latency figures) for every load from
   memory, with nothing else to do in the meantime.
2. chunked-block: ``kernel[1, T]``. T threads of one block; thread t takes its own
   contiguous chunk of ceil(n / T) elements. The obvious way to split work, and it is the
   wrong one on a GPU, because of warps (below).
3. strided-block: ``kernel[1, T]``. Thread t takes elements t, t + T, t + 2T, ... At every
   step, neighbouring threads touch neighbouring elements.
4. guarded-grid: ``kernel[ceil(n / T), T]``. One thread per element, over as many blocks as
   it takes: thread (block, t) computes element i = blockIdx.x * blockDim.x + threadIdx.x.
   The last block usually runs past the end of the array, so each thread checks
   ``if i < n`` first: the **bounds guard**. Without it those threads read and write past
   the array (on a GPU, silently; the simulator stops with an IndexError).
5. grid-stride: a grid of a fixed size (jit.grid_1d: at most 4096 blocks of 256 threads,
   31 per SM, about 4 waves of 8 resident blocks per SM; a wave is as many blocks as the
   GPU holds at once), and each thread loops: i = its global number, then i += the
   number of threads in the grid (blockDim.x * gridDim.x). One launch shape covers any n, and each thread amortises its
   start-up over several elements. Numba spells the two numbers ``cuda.grid(1)`` and
   ``cuda.gridsize(1)``; every kernel in this folder after this file uses this loop.
6. 2d-grid: the same array seen as a matrix (rows, cols), with blocks of (32, BY) threads
   and a 2-D grid: x picks the column (threadIdx.x / blockIdx.x step along a row), y
   picks the row (threadIdx.y / blockIdx.y step from one row to the next), and a guard
   on each axis. x goes along the row on purpose: see warps.

Warps, and why 32 matters. A GPU does not run a block's threads one by one: it runs them
32 at a time, in **warps**. Threads are numbered inside the block (t = threadIdx.x +
blockDim.x * threadIdx.y in a 2-D block); threads 0-31 are warp 0, 32-63 warp 1, ... The
32 threads of a warp execute the same instruction together, so when they load, their 32
addresses reach the memory system as one **request**, and memory moves data in
**sectors** of 32 bytes. If the 32 threads read 32 consecutive floats (128 bytes), the
request costs 4 sectors: the access is **coalesced**. If each thread reads a float far
from its neighbours', every thread costs a sector of its own: 32 sectors, 8 times the
traffic for the same data. That is the whole difference between versions 2 and 3: in
version 2 the threads of a warp are a chunk apart, in version 3 one float apart. The
access profiler (access_profiler.py) counts it from the simulator: ``python -m
dcgan_cuda.kernels.lesson0_threads --sim`` prints, at n = 300 with 32 threads, 30 sectors
per load request for version 2 (each of the 30 threads with work reads its own sector)
and 3.8 for version 3 (4 for a full warp; the last request is partly empty): the same
1200 bytes of x cost 300 sectors against 38. Blocks should be a multiple of 32 threads, or
the last warp of each block runs partly empty; version 6's blocks are 32 wide so that
each warp is one run of a matrix row.

Reading the --sim table. ``gld sec/req`` / ``gst sec/req``: 32-byte sectors per global
load / store request of a warp; ``shared wf/req`` and ``conflicts``: shared memory, which
these kernels do not use; ``per thread gld/sld``: the most global loads / shared loads any
one thread made (version 1's one thread: all 300; version 2's: a chunk of 10). Version 6's
3.50: each row of 100 floats is 4 requests of 32 + 32 + 32 + 4 lanes, and a row starts at
byte 400 r, mid-sector when r is odd (400 = 12.5 sectors), so the three rows cost 13, 16
and 13 sectors: 42 in 12 requests.

Napkin math (n = 2^20 floats on an H100 SXM; PREDICTED, not measured): each element
moves 12 bytes (read x, write y and who) for 2 FLOP, so the kernel is bound by memory
bandwidth: 12.6 MB at 3.35 TB/s is ~4 us for versions 4-6, less than the ~10 us it takes
to launch a kernel from Python (an estimate: see kernels/README.md).
Version 1's one thread has no other thread to hide its memory latency behind: 2^20 trips
of a loop that each wait for a load (the compiler may overlap a few), on the order of a
second. Versions 2 and 3 run one block, on one SM of 132, with 8 warps to hide latency:
on the order of a millisecond, and version 2 moves up to 8x the sectors for its loads.
The lesson0_threads table in kernels/README.md PREDICTS much less for versions 1-3
(about a millisecond for version 1, less for 2 and 3): bench/roofline.py's model counts
what the accesses ask of memory and of one SM's load path, not how long a thread waits
for each (latency), so for a kernel that cannot hide its latency it gives a floor. Both
are predictions until a GPU run measures them.

Versions:
    1  one-thread  one thread loops over every element
    2  chunked-block  one block; thread t takes a contiguous chunk (uncoalesced)
    3  strided-block  one block; thread t takes t, t + T, ... (coalesced)
    4  guarded-grid  one thread per element over ceil(n / T) blocks, with the bounds guard
    5  grid-stride  a fixed grid; each thread strides by the grid's size
    6  2d-grid  the array as a matrix, 2-D blocks and grid, a guard per axis
Run:
    python -m dcgan_cuda.kernels.lesson0_threads --sim     validate on the CPU (and count sectors)
    python -m dcgan_cuda.kernels.lesson0_threads           validate and time on a GPU
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .jit import SIMULATOR, Version, f32, f32_1d, f32_2d, grid_1d, i32_1d, kernel, types

# Threads per block of versions 2-5. A multiple of 32 (whole warps); under the simulator,
# where every thread is an OS thread, one warp.
THREADS = 32 if SIMULATOR else 256
# Version 6's blocks: 32 threads along a row (one warp per row of the block) by BLOCK_ROWS.
BLOCK_ROWS = 2 if SIMULATOR else 8
i32_2d = types.int32[:, ::1]


# ------------------------------------------------------------------------ version 1
# @kernel(signature) is this project's cuda.jit with the argument types fixed in advance
# (here: two 1-D float32 arrays, two float32 scalars, a 1-D int32 array), compiled the first
# time it is launched (jit.py). The exercises use plain @cuda.jit, which infers the types.
@kernel((f32_1d, f32_1d, f32, f32, i32_1d))
def scale_shift_v1(x, y, a, b, who):
    """Launched as [1, 1]: the only thread computes every element."""
    for i in range(x.shape[0]):
        y[i] = a * x[i] + b
        who[i] = 0


# ------------------------------------------------------------------------ version 2
@kernel((f32_1d, f32_1d, f32, f32, i32_1d))
def scale_shift_v2(x, y, a, b, who):
    """Launched as [1, T]: thread t takes elements [t * chunk, (t + 1) * chunk)."""
    t = cuda.threadIdx.x
    n = x.shape[0]
    chunk = (n + cuda.blockDim.x - 1) // cuda.blockDim.x     # ceil(n / T)
    for i in range(t * chunk, min((t + 1) * chunk, n)):
        y[i] = a * x[i] + b
        who[i] = t


# ------------------------------------------------------------------------ version 3
@kernel((f32_1d, f32_1d, f32, f32, i32_1d))
def scale_shift_v3(x, y, a, b, who):
    """Launched as [1, T]: thread t takes elements t, t + T, t + 2T, ..."""
    t = cuda.threadIdx.x
    for i in range(t, x.shape[0], cuda.blockDim.x):
        y[i] = a * x[i] + b
        who[i] = t


# ------------------------------------------------------------------------ version 4
@kernel((f32_1d, f32_1d, f32, f32, i32_1d))
def scale_shift_v4(x, y, a, b, who):
    """Launched as [ceil(n / T), T]: one thread per element, the extra ones do nothing."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i < x.shape[0]:                   # the bounds guard
        y[i] = a * x[i] + b
        who[i] = i


# ------------------------------------------------------------------------ version 5
@kernel((f32_1d, f32_1d, f32, f32, i32_1d))
def scale_shift_v5(x, y, a, b, who):
    """Launched with any grid: each thread strides over the array by the grid's size."""
    start = cuda.grid(1)                 # = blockIdx.x * blockDim.x + threadIdx.x
    stride = cuda.gridsize(1)            # = blockDim.x * gridDim.x
    for i in range(start, x.shape[0], stride):
        y[i] = a * x[i] + b
        who[i] = start


# ------------------------------------------------------------------------ version 6
@kernel((f32_2d, f32_2d, f32, f32, i32_2d))
def scale_shift_v6(x, y, a, b, who):
    """x, y (rows, cols); blocks of (32, BLOCK_ROWS) threads, a grid covering the matrix."""
    col = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    row = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if row < x.shape[0] and col < x.shape[1]:
        y[row, col] = a * x[row, col] + b
        block = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
        who[row, col] = (block * cuda.blockDim.x * cuda.blockDim.y
                         + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)


# ------------------------------------------------------------------------ launchers
# Each returns nothing and writes y and who (=); x, y are float32 of n elements, who int32.
def _one_thread(x, y, a, b, who):
    scale_shift_v1[1, 1](x, y, a, b, who)


def _chunked_block(x, y, a, b, who):
    scale_shift_v2[1, THREADS](x, y, a, b, who)


def _strided_block(x, y, a, b, who):
    scale_shift_v3[1, THREADS](x, y, a, b, who)


def _guarded_grid(x, y, a, b, who):
    scale_shift_v4[-(-x.size // THREADS), THREADS](x, y, a, b, who)


def _grid_stride(x, y, a, b, who):
    scale_shift_v5[grid_1d(x.size)](x, y, a, b, who)


def matrix_shape(n):
    """The (rows, cols) that version 6 sees a flat array of n elements as: rows of up to 100
    floats (not a multiple of 32, so the guard along the row matters)."""
    cols = min(n, 100)
    return -(-n // cols), cols


def _2d_grid(x, y, a, b, who):
    rows, cols = x.shape
    grid = (-(-cols // 32), -(-rows // BLOCK_ROWS))
    scale_shift_v6[grid, (32, BLOCK_ROWS)](x, y, a, b, who)


VERSIONS = {
    1: Version("one-thread", "one thread loops over every element", {"scale_shift": _one_thread}),
    2: Version("chunked-block", "one block; thread t takes a contiguous chunk (uncoalesced)",
               {"scale_shift": _chunked_block}),
    3: Version("strided-block", "one block; thread t takes t, t + T, ... (coalesced)",
               {"scale_shift": _strided_block}),
    4: Version("guarded-grid", "one thread per element over ceil(n / T) blocks, with the bounds guard",
               {"scale_shift": _guarded_grid}),
    5: Version("grid-stride", "a fixed grid; each thread strides by the grid's size",
               {"scale_shift": _grid_stride}),
    6: Version("2d-grid", "the array as a matrix, 2-D blocks and grid, a guard per axis",
               {"scale_shift": _2d_grid}),
}
DEFAULT_VERSION = 5


def scale_shift(x, y, a, b, who, version=DEFAULT_VERSION):
    """y = a * x + b and who = the thread that computed each element, for 1-D float32 x and
    y of one size and int32 who (version 6 takes them as matrices: matrix_shape)."""
    VERSIONS[version].ops["scale_shift"](x, y, np.float32(a), np.float32(b), who)


def expected_who(version, shape):
    """The thread number each version assigns to each element: what ``who`` must hold."""
    if version == 6:
        rows, cols = shape
        r, c = np.indices(shape)
        blocks_per_row = -(-cols // 32)
        block = (r // BLOCK_ROWS) * blocks_per_row + c // 32
        return (block * 32 * BLOCK_ROWS + (r % BLOCK_ROWS) * 32 + c % 32).astype(np.int32)
    n = shape[0]
    i = np.arange(n)
    if version == 1:
        return np.zeros(n, np.int32)
    if version == 2:
        return (i // -(-n // THREADS)).astype(np.int32)
    if version == 3:
        return (i % THREADS).astype(np.int32)
    if version == 4:
        return i.astype(np.int32)
    blocks, threads = grid_1d(n)
    return (i % (blocks * threads)).astype(np.int32)


# ------------------------------------------------------------------ validate / time
# Under the simulator n = 300: not a multiple of 32, several trips of every loop, version
# 4's last block partly past the end. On a GPU about a million elements (version 1's one
# thread takes about a second there).
SIM_N, GPU_N = 300, (1 << 20) + 3


def cases(sim):
    n = SIM_N if sim else GPU_N
    return [(f"scale_shift n={n}", lambda rng: rng.standard_normal(n).astype(np.float32))]


def run(version, label, inputs, device):
    x = inputs
    shape = matrix_shape(x.size) if version == 6 else x.shape
    if version == 6:        # pad to whole rows: the matrix's last row may be partly empty
        x = np.concatenate([x, np.zeros(shape[0] * shape[1] - x.size, np.float32)]).reshape(shape)
    a, b = 1.5, -0.25
    d_x = device(x)
    y = device(np.full(shape, np.nan, np.float32))
    who = device(np.full(shape, -1, np.int32))

    def launch():
        scale_shift(d_x, y, a, b, who, version)
        return y, who
    # y is one rounding of a*x + b away from float64 (a fused multiply-add on a GPU: one
    # rounding instead of two); who must be exactly the mapping the version claims.
    reference = (x.astype(np.float64) * a + b, expected_who(version, shape))
    return launch, reference, 1e-6, 1e-6, 2 * x.size, 12 * x.size   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
