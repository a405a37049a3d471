"""b1, a solution: the bounds guard."""
from numba import cuda

THREADS = 32


@cuda.jit
def square(x, y):
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i < x.shape[0]:          # the last block's threads past the end do nothing
        y[i] = x[i] * x[i]


def launch(x, y):
    blocks = (x.shape[0] + THREADS - 1) // THREADS
    square[blocks, THREADS](x, y)
