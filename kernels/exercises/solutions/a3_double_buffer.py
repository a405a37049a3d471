"""a3, a solution: load the next slice into the other pair while multiplying this one."""
from numba import cuda, float32

TILE = 8


@cuda.jit
def matmul(a, b, c):
    a_tiles = cuda.shared.array((2, TILE, TILE), float32)
    b_tiles = cuda.shared.array((2, TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    slices = a.shape[1] // TILE
    a_tiles[0, ty, tx] = a[row, tx]
    b_tiles[0, ty, tx] = b[ty, col]
    cuda.syncthreads()
    acc = float32(0.0)
    for t in range(slices):
        now = t % 2
        if t + 1 < slices:           # the other pair was last read in trip t - 1, before its barrier
            k0 = (t + 1) * TILE
            a_tiles[1 - now, ty, tx] = a[row, k0 + tx]
            b_tiles[1 - now, ty, tx] = b[k0 + ty, col]
        for kk in range(TILE):
            acc += a_tiles[now, ty, kk] * b_tiles[now, kk, tx]
        cuda.syncthreads()           # this pair is free, the other one full
    c[row, col] = acc


def launch(a, b, c):
    matmul[(b.shape[1] // TILE, a.shape[0] // TILE), (TILE, TILE)](a, b, c)


def blocks_per_sm(threads_per_block, registers_per_thread, shared_bytes_per_block):
    warps = -(-threads_per_block // 32)
    registers_per_warp = -(-registers_per_thread * 32 // 256) * 256
    return min(2048 // threads_per_block, 32,
               65536 // (registers_per_warp * warps),
               233472 // (shared_bytes_per_block + 1024))


# 256 threads of 128 registers: 4096 registers a warp, 32768 a block: 2 blocks, single- or
# double-buffered (shared memory would allow 6 and 3): registers, so no occupancy is lost.
OCCUPANCY_LIMIT = "registers"
