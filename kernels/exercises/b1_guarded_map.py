"""b1 (beginner) — a guarded map.

Lesson 0, version 4, launches one thread per element over ceil(n / THREADS) blocks. When n
is not a multiple of THREADS, the last block has threads with no element: their index i
is n or more. ``square`` below forgets them, so it reads and writes past the end of the
arrays (on a GPU silently, corrupting whatever lies there; the simulator stops with an
IndexError, naming the thread as ``tid=[x, y, z] ctaid=[x, y, z]``: PTX's names for
threadIdx and blockIdx).

Task: make ``square`` correct for every n >= 1, keeping the launch as it is (one thread
per element, THREADS per block). The checker runs n = 1, 31, 32, 33 and 100 and wants
y == x * x exactly, every element written, nothing touched past the end.

    python -m dcgan_cuda.kernels.exercises check b1
"""
from numba import cuda

THREADS = 32


@cuda.jit
def square(x, y):
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    # TODO: in the last block, i may be x.shape[0] or more.
    y[i] = x[i] * x[i]


def launch(x, y):
    """y = x * x for float32 arrays x, y of one length n."""
    blocks = (x.shape[0] + THREADS - 1) // THREADS
    square[blocks, THREADS](x, y)
