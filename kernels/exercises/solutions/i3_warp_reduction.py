"""i3, a solution: five shuffles down, the sum in lane 0."""
from numba import cuda

THREADS = 64
WARP = 32


@cuda.jit
def warp_sums(x, out):
    i = cuda.blockIdx.x * THREADS + cuda.threadIdx.x
    value = x[i]
    delta = WARP // 2
    while delta > 0:
        value += cuda.shfl_down_sync(0xFFFFFFFF, value, delta)
        delta //= 2
    if cuda.threadIdx.x % WARP == 0:
        out[i // WARP] = value


def launch(x, out):
    warp_sums[x.shape[0] // THREADS, THREADS](x, out)
