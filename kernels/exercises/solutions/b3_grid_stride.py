"""b3, a solution: start at the thread's global number, step by the grid's size."""
from numba import cuda, float32

BLOCKS, THREADS = 2, 32


@cuda.jit
def relu(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = max(x[i], float32(0.0))


def launch(x, y):
    relu[BLOCKS, THREADS](x, y)
