"""i2 (intermediate) — a block reduction: a tree in shared memory.

out[b] = x[b*T] + x[b*T + 1] + ... + x[b*T + T - 1]: block b of T = 64 threads sums its
64 values (x has a multiple of 64 elements). ``block_sums`` below has every thread store
its value in shared memory, and then thread 0 adds all 64 in a loop while the other 63
wait: 64 shared loads in a row by one thread.

Task: sum them as the reduction's block_sum (kernels/reduction/common.py) does: a tree
with sequential addressing. In each step the lower half of the active threads adds the
upper half's value into its own (partial[t] += partial[t + half]), then the block waits
(``cuda.syncthreads()``) before the next step halves again; after log2(64) = 6 steps
partial[0] is the sum. The checker wants the sums exact (the inputs are small integers,
so every order of additions gives the same float), and, as the access profiler counts
them, no thread making more than 2 * 6 + 1 = 13 shared loads, and no bank conflicts (the
textbook's "interleaved addressing", partial[2 * stride * t] += ..., has them).

    python -m dcgan_cuda.kernels.exercises check i2
"""
from numba import cuda, float32

T = 64


@cuda.jit
def block_sums(x, out):
    partial = cuda.shared.array(T, float32)
    t = cuda.threadIdx.x
    partial[t] = x[cuda.blockIdx.x * T + t]
    cuda.syncthreads()
    # TODO: a tree, every thread taking part, instead of thread 0's loop.
    if t == 0:
        total = float32(0.0)
        for i in range(T):
            total += partial[i]
        out[cuda.blockIdx.x] = total


def launch(x, out):
    """out[b] = sum of x[b*T:(b+1)*T], for float32 x of a multiple of T elements."""
    block_sums[x.shape[0] // T, T](x, out)
