"""a3 (advanced) — double-buffered tiles: one barrier per slice instead of two.

``matmul`` is the shared-memory tiled product of the GEMM ladder (linear/, rung 3) at a
tiny size: c = a @ b, blocks of TILE x TILE threads, one output each, and a loop over
slices of k: load the slice's a and b tiles into shared memory, barrier, multiply,
barrier. The second barrier is there because the next trip overwrites the tiles that
slower threads may still be reading.

Part 1. Give the kernel two pairs of tiles (a shared array (2, TILE, TILE) for each
operand). Load slice 0 into pair 0 before the loop; in trip t, load slice t + 1 into
pair (t + 1) % 2 while multiplying pair t % 2, then one barrier. Why one is enough: the
pair written in trip t was last read in trip t - 1, before the barrier that ended it.
The checker wants c exact (small integers) and at most (K / TILE) + 1 barriers per
thread (the skeleton's: 2 K / TILE).

Part 2. The second pair doubles the kernel's shared memory, which can cost occupancy:
the blocks an SM keeps resident. Write ``blocks_per_sm`` for an H100 (compute capability
9.0), by these rules: an SM holds at most 2048 threads and 32 blocks; it has 65536
registers, given to each warp (32 threads; a block of n threads has ceil(n / 32) warps)
in whole units of 256, so a warp of r registers per thread takes 32 r rounded up to a
multiple of 256; it has 233472 bytes (228 KB) of shared memory, of which every block
also takes 1024 bytes for the system. The number of blocks is the smallest of the four
limits. Then answer ``OCCUPANCY_LIMIT``: for a big-tile GEMM kernel with round numbers
(256 threads, 128 registers per thread, 32 KB of shared memory single-buffered, 64 KB
double-buffered; a made-up kernel, not one of this project's: conv2d's big tiles use
152-181 registers and 8.25 KB, which gives the same answer), which limit sets the
double-buffered kernel's blocks per SM: "threads", "blocks", "registers" or "shared
memory"? (So: does double buffering cost it occupancy?)

    python -m dcgan_cuda.kernels.exercises check a3
"""
from numba import cuda, float32

TILE = 8


@cuda.jit
def matmul(a, b, c):
    """c = a @ b for M, N and K multiples of TILE; block (TILE, TILE), thread (tx, ty) owns c[row, col]."""
    a_tile = cuda.shared.array((TILE, TILE), float32)
    b_tile = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    acc = float32(0.0)
    # TODO (part 1): two pairs of tiles, one barrier per trip.
    for k0 in range(0, a.shape[1], TILE):
        a_tile[ty, tx] = a[row, k0 + tx]
        b_tile[ty, tx] = b[k0 + ty, col]
        cuda.syncthreads()
        for kk in range(TILE):
            acc += a_tile[ty, kk] * b_tile[kk, tx]
        cuda.syncthreads()
    c[row, col] = acc


def launch(a, b, c):
    """c = a @ b, float32, every dimension a multiple of TILE."""
    matmul[(b.shape[1] // TILE, a.shape[0] // TILE), (TILE, TILE)](a, b, c)


def blocks_per_sm(threads_per_block, registers_per_thread, shared_bytes_per_block):
    """TODO (part 2): resident blocks per H100 SM, by the rules in the docstring."""
    return None


OCCUPANCY_LIMIT = None   # TODO (part 2): "threads", "blocks", "registers" or "shared memory"
