"""access_patterns — the textbook memory-access patterns, and what each costs a warp.

Each kernel below does almost nothing but move floats, in one pattern. Run under the
access profiler (access_profiler.py) they show the two rules most of GPU performance
tuning is about, with the exact figures Nsight Compute would report (32 threads a warp,
float32 = 4 bytes; a request is one warp executing one load or store):

Global memory moves 32-byte sectors.
    copy             thread i reads x[i]          4 sectors per request: 128 bytes, all used
    strided_copy     thread i reads x[s*i]        s = 2: 8 sectors (half of each wasted),
                                                  s >= 8: 32 sectors (one per thread, 1/8 used)
    copy with offset thread i reads x[i + 1]      5 sectors: the 128 bytes straddle a boundary
Shared memory has 32 banks of 4 bytes; k different words in one bank = k passes.
    shared_strided   thread t reads tile[s*t]     s = 1: 1 pass; s = 2: 2 (2-way conflict);
                                                  s = 32: 32 (every thread in bank 0)
    column_read      thread t reads tile[t][c]    a 32 x 32 tile: 32-way; 32 x 33 (padded): 1
    broadcast        every thread reads tile[5]   1 pass: one word, sent to all
Transposing a matrix puts the two together:
    transpose_naive  reads rows (coalesced), writes columns: 32 sectors per store request
    transpose_shared reads rows into a padded shared tile, writes rows of the transpose:
                     4 sectors per request both ways, and no bank conflict thanks to the pad
And the compiler's part:
    fragment_read    each thread reads 4 neighbouring floats of a 16-byte aligned shared
                     row: the compiler emits ONE ld.shared.v4.f32 (16 bytes a thread), so a
                     warp makes 1 request of 4 wavefronts where 4 scalar loads would be 4

Run:
    python -m dcgan_cuda.kernels.access_patterns --sim                 every pattern's figures
    python -m dcgan_cuda.kernels.access_patterns --sim --trace DIR     ... and PNGs of each
"""
from __future__ import annotations

import os
import sys

import numpy as np
from numba import cuda, float32, uint64

TILE = 32          # the transpose's tile: one warp wide
ROWS = 8           # a transpose block is TILE x ROWS threads, each moving TILE / ROWS elements


@cuda.jit
def copy(x, y, offset):
    """y[i] = x[i + offset]: offset 0 is the coalesced copy, 1 shifts every read by a float."""
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i + offset]


@cuda.jit
def strided_copy(x, y, stride):
    """y[i] = x[stride * i]: consecutive threads read floats `stride` apart."""
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[stride * i]


@cuda.jit
def shared_strided(out, stride):
    """Fill a shared row (conflict-free: thread t writes word t, t + 32, ...), then thread t
    reads word (stride * t) mod 1024."""
    tile = cuda.shared.array(1024, float32)
    t = cuda.threadIdx.x
    for k in range(t, 1024, cuda.blockDim.x):
        tile[k] = k
    cuda.syncthreads()
    out[t] = tile[(stride * t) % 1024]


@cuda.jit
def column_read(out, column):
    """Thread t reads row t, column `column` of a 32 x 32 tile (32-way conflict) and of a
    32 x 33 tile (padded: row t starts 33 t words in, bank (t + column) mod 32)."""
    square = cuda.shared.array((32, 32), float32)
    padded = cuda.shared.array((32, 33), float32)
    t = cuda.threadIdx.x
    for c in range(32):
        square[c, t] = c
        padded[c, t] = c
    cuda.syncthreads()
    out[t] = square[t, column] + padded[t, column]


@cuda.jit
def broadcast(out):
    """Every thread reads the same shared word: a broadcast, one pass."""
    tile = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    tile[t] = t
    cuda.syncthreads()
    out[t] = tile[5]


@cuda.jit
def transpose_naive(x, y):
    """y = x.T for a square x: each thread reads x along a row (coalesced) and writes y
    down a column (each lane in its own sector)."""
    col = cuda.blockIdx.x * TILE + cuda.threadIdx.x
    for r in range(cuda.threadIdx.y, TILE, ROWS):
        row = cuda.blockIdx.y * TILE + r
        y[col, row] = x[row, col]


@cuda.jit
def transpose_shared(x, y):
    """y = x.T through a padded shared tile: read x along rows, write y along rows."""
    tile = cuda.shared.array((TILE, TILE + 1), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    for r in range(ty, TILE, ROWS):
        tile[r, tx] = x[cuda.blockIdx.y * TILE + r, cuda.blockIdx.x * TILE + tx]
    cuda.syncthreads()
    for r in range(ty, TILE, ROWS):
        y[cuda.blockIdx.x * TILE + r, cuda.blockIdx.y * TILE + tx] = tile[tx, r]


@cuda.jit
def fragment_read(x, out):
    """Each thread sums 4 neighbouring floats of a 16-byte aligned shared row, read by a
    loop the compiler unrolls and merges into one 16-byte load (unsigned indices: a signed
    one would add a negative-index check per load and hide that the four are adjacent)."""
    tile = cuda.shared.array(128, float32, alignment=16)
    t = cuda.threadIdx.x
    for k in range(t, 128, 32):
        tile[k] = x[k]
    cuda.syncthreads()
    frag = cuda.local.array(4, float32)
    for a in range(4):
        frag[a] = tile[uint64(4 * t + a)]
    out[t] = frag[0] + frag[1] + frag[2] + frag[3]


def cases():
    """[(label, kernel, grid, block, make_args)]: every pattern at a size one warp shows."""
    def floats(n):
        return np.arange(n, dtype=np.float32)

    def square(n):
        return np.arange(n * n, dtype=np.float32).reshape(n, n)

    return [
        ("copy", copy, 1, 32, lambda: (floats(64), np.zeros(32, np.float32), 0)),
        ("copy, offset by one float", copy, 1, 32, lambda: (floats(64), np.zeros(32, np.float32), 1)),
        ("strided copy, stride 2", strided_copy, 1, 32, lambda: (floats(64), np.zeros(32, np.float32), 2)),
        ("strided copy, stride 8", strided_copy, 1, 32, lambda: (floats(256), np.zeros(32, np.float32), 8)),
        ("shared, stride 1", shared_strided, 1, 32, lambda: (np.zeros(32, np.float32), 1)),
        ("shared, stride 2", shared_strided, 1, 32, lambda: (np.zeros(32, np.float32), 2)),
        ("shared, stride 32", shared_strided, 1, 32, lambda: (np.zeros(32, np.float32), 32)),
        ("column of 32x32 and 32x33 tiles", column_read, 1, 32, lambda: (np.zeros(32, np.float32), 3)),
        ("broadcast", broadcast, 1, 32, lambda: (np.zeros(32, np.float32),)),
        ("transpose, naive", transpose_naive, (2, 2), (TILE, ROWS),
         lambda: (square(2 * TILE), np.zeros((2 * TILE, 2 * TILE), np.float32))),
        ("transpose, shared tile", transpose_shared, (2, 2), (TILE, ROWS),
         lambda: (square(2 * TILE), np.zeros((2 * TILE, 2 * TILE), np.float32))),
        ("fragment read (16-byte loads)", fragment_read, 1, 32, lambda: (floats(128), np.zeros(32, np.float32))),
    ]


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m dcgan_cuda.kernels.access_patterns",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sim", action="store_true", help="run under Numba's CUDA simulator (required: it traces)")
    parser.add_argument("--trace", metavar="DIR", help="also draw each pattern's accesses as PNGs into DIR")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        if not args.sim:
            parser.error("the access profiler runs under the simulator: add --sim")
        from .jit import restart_in_simulator
        restart_in_simulator("dcgan_cuda.kernels.access_patterns")
    from . import jit  # noqa: F401  (the simulator's fixes)
    from .access_profiler import draw_banks, draw_threads, resolve, trace_launch
    labelled = [(label, trace_launch(kernel, grid, block, *make_args())) for label, kernel, grid, block, make_args
                in cases()]
    resolve([profile for _, profile in labelled])    # one compiler run for every kernel's vector widths
    for label, profile in labelled:
        print(f"--- {label}")
        print(profile.summary())
        if args.trace:
            os.makedirs(args.trace, exist_ok=True)
            stem = os.path.join(args.trace, label.split(" (")[0].replace(", ", "_").replace(" ", "_"))
            for path in draw_threads(profile, stem + ".png", warp=0) + draw_banks(profile, stem + "_banks.png"):
                print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
