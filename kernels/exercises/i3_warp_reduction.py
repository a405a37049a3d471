"""i3 (intermediate) — a warp-shuffle reduction.

out[w] = x[32w] + ... + x[32w + 31]: the 32 lanes of warp w sum the warp's 32 values (x
has a multiple of 64 elements; blocks of 64 threads, two warps). ``warp_sums`` below
goes through shared memory: every lane stores its value, and lane 0 adds the 32 in a loop.

Task: do it in registers with ``cuda.shfl_down_sync(mask, value, delta)``, which hands
each lane the ``value`` of lane + delta (its own, if lane + delta > 31) without shared
memory and without a barrier: the 32 lanes of a warp execute together. Five steps,
delta = 16, 8, 4, 2, 1, each adding the received value to your own, leave the warp's sum
in lane 0. The mask names the lanes taking part: all 32 (0xFFFFFFFF). The lane is
cuda.threadIdx.x % 32 here (blocks are 1-D). The simulator runs shuffles as the GPU does
(kernels/simulator_warp.py). The checker wants the sums exact (small integers), no
shared memory at all (access profiler), and shfl.sync in the kernel's PTX.

    python -m dcgan_cuda.kernels.exercises check i3
"""
from numba import cuda, float32

THREADS = 64
WARP = 32


@cuda.jit
def warp_sums(x, out):
    values = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    i = cuda.blockIdx.x * THREADS + t
    # TODO: shuffles instead of shared memory and lane 0's loop.
    values[t] = x[i]
    cuda.syncwarp()
    if t % WARP == 0:
        total = float32(0.0)
        for lane in range(WARP):
            total += values[t + lane]
        out[i // WARP] = total


def launch(x, out):
    """out[w] = sum of x[32w:32w+32], for float32 x of a multiple of 64 elements."""
    warp_sums[x.shape[0] // THREADS, THREADS](x, out)
