"""a2 (advanced) — shuffles for the last five steps of a shared-memory tree.

``block_sums`` sums each block's T = 128 values with the reduction's tree (sequential
addressing): log2(128) = 7 steps, each ending in a barrier of the whole block, 8 barriers
per thread with the first. Once half is 16 or less, only threads 0-15 work, all in warp
0, whose 32 lanes execute together anyway: the shared memory and the barriers of those
last five steps are there for nothing.

Task: stop the shared-memory tree when half reaches 16 (after the steps with half = 64
and 32, partial[0..31] hold the warp's values); then let warp 0 finish in registers:
value = partial[lane], and five times value += cuda.shfl_down_sync(0xFFFFFFFF, value,
delta) for delta = 16, 8, 4, 2, 1. Lane t then adds exactly what the tree's thread t
would have added, in the same order, so the sum must be bitwise the tree's.

The checker wants, on random floats: every block's sum bitwise equal to the shared-memory
tree's (a NumPy replay of its order), at most 3 barriers per thread (the skeleton's: 8),
and shfl.sync in the kernel's PTX.

    python -m dcgan_cuda.kernels.exercises check a2
"""
from numba import cuda, float32

T = 128


@cuda.jit
def block_sums(x, out):
    partial = cuda.shared.array(T, float32)
    t = cuda.threadIdx.x
    partial[t] = x[cuda.blockIdx.x * T + t]
    cuda.syncthreads()
    half = T // 2
    # TODO: the tree down to half = 32 in shared memory, the last five steps in warp 0's registers.
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        out[cuda.blockIdx.x] = partial[0]


def launch(x, out):
    """out[b] = sum of x[b*T:(b+1)*T], for float32 x of a multiple of T elements."""
    block_sums[x.shape[0] // T, T](x, out)
