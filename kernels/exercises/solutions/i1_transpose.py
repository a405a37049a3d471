"""i1, a solution: read a tile row by row, write it column by column, through a padded tile."""
from numba import cuda, float32

TILE, ROWS_PER_PASS = 32, 8
PADDED = TILE + 1        # a shared array's shape must be constants, not expressions


@cuda.jit
def transpose(x, y):
    tile = cuda.shared.array((TILE, PADDED), float32)     # one float more: a column spreads over all 32 banks
    rows, cols = x.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    r0, c0 = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
    for j in range(0, TILE, ROWS_PER_PASS):              # tile[i, k] = x[r0 + i, c0 + k]
        if r0 + ty + j < rows and c0 + tx < cols:
            tile[ty + j, tx] = x[r0 + ty + j, c0 + tx]
    cuda.syncthreads()                                    # the whole tile is in before anyone reads it
    for j in range(0, TILE, ROWS_PER_PASS):              # y[c0 + i, r0 + k] = tile[k, i]
        if c0 + ty + j < cols and r0 + tx < rows:
            y[c0 + ty + j, r0 + tx] = tile[tx, ty + j]


def launch(x, y):
    rows, cols = x.shape
    grid = ((cols + TILE - 1) // TILE, (rows + TILE - 1) // TILE)
    transpose[grid, (TILE, ROWS_PER_PASS)](x, y)
