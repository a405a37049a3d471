"""Reduction version 1, block-per-channel: one block per channel, private sums, then a tree.

The idea. Many threads each add up a share of the channel's values into a private
register, in a fixed order; then the block combines its THREADS private sums with a tree
in shared memory (common.block_sum), halving the number of working threads at each step.

How threads map to data. One block of THREADS threads per channel. A channel of an NCHW
tensor is N runs of H*W contiguous floats, one run per image, C*H*W floats apart. Number
the channel's M = N*H*W values i = n*H*W + s; thread t takes i = t, t + THREADS,
t + 2*THREADS, ...: consecutive threads read consecutive addresses within a run, so each
warp's loads coalesce. Each thread adds its values into a private register in that fixed
order (common.advance steps from one value to the next without dividing); then the tree:

    step 1: threads 0..T/2-1 add partial[t + T/2] into partial[t]      barrier
    step 2: threads 0..T/4-1 add partial[t + T/4] into partial[t]      barrier
    ...     log2(T) steps; partial[0] is the sum.

Why this shape of tree ("sequential addressing"): the active threads are always the
lowest-numbered ones, so whole warps either work or sit out (no divergence inside a warp
until fewer than 32 remain), and in each step the 32 threads of a warp touch 32 consecutive
words, one per shared-memory bank: no bank conflicts. The textbook alternative,
"interleaved addressing" (thread t adds partial[t + stride] into partial[t] when
t % (2*stride) == 0, stride = 1, 2, 4, ...), for 8 threads, p = partial:

    sequential (this file)                       interleaved
    step 1: t0-t3  p0+=p4 p1+=p5 p2+=p6 p3+=p7   t0,t2,t4,t6  p0+=p1 p2+=p3 p4+=p5 p6+=p7
    step 2: t0-t1  p0+=p2 p1+=p3                 t0,t4        p0+=p2 p4+=p6
    step 3: t0     p0+=p1                        t0           p0+=p4

On the right the working threads are scattered (every other, every fourth...), so every
warp has idle lanes at every step (divergence). Rewriting it so that threads 0, 1, 2, ...
do the work (thread t adds p[2*stride*t + stride] into p[2*stride*t]) packs the lanes
together, but now lane t touches word 2*stride*t: at stride 1 lanes 0 and 16 read words 0
and 32, the same bank (2-way conflict), at stride 2 lanes 0, 8, 16, 24 (4-way), and so on.
On the left, a step's lanes touch consecutive words, one per bank, at every step.

Cost (PREDICTED, not measured). The sum reads every value once: at 64 channels of 32x32
(batch 128) 33.5 MB, ~10 us at an H100 SXM's 3.35 TB/s if the loads stream. They do not:
64 channels make 64 blocks of 256 threads, which occupy 64 of 132 SMs with 8 warps each
(of 64 possible). By Little's law (bytes in flight = bandwidth x latency), to stream 3.35
TB/s with ~600 ns of HBM latency the GPU must keep ~2 MB of loads in flight, ~15 KB per SM
(kernels/README.md's figures); one block with one 4-byte load per thread in flight has
1 KB, 64 blocks 64 KB: a few percent of the bandwidth, unless the compiler unrolls the 512
trips of each thread's loop to overlap their loads. Where there are many channels (512 of
4x4) the blocks fill the GPU and each is short: launch cost dominates. Version 2 attacks
the few-channel case. The reduction table in kernels/README.md does not show this
weakness: bench/roofline.py's model counts bytes and launches, not latency, so it
PREDICTS this version bound by its launches or by DRAM at every shape (a floor: see "Where
the model is blind" there).
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import f32_1d, f32_2d, i64
from .common import THREADS, advance, block_sum, kernel


@kernel((f32_2d, f32_1d, i64))
def channel_sum_v1(x, out, channels):
    """out[c] = sum of channel c of x (viewed (N*C, H*W)); block c, writes (=)."""
    partial = cuda.shared.array(THREADS, float32)
    c, tid = cuda.blockIdx.x, cuda.threadIdx.x
    rows, run = x.shape
    batch = rows // channels
    n, s = tid // run, tid % run
    dn, ds = THREADS // run, THREADS % run
    acc = float32(0.0)
    while n < batch:
        acc += x[n * channels + c, s]
        n, s = advance(n, s, dn, ds, run)
    partial[tid] = acc
    total = block_sum(partial, tid)
    if tid == 0:
        out[c] = total


def launch(x2, out, channels):
    """out (C,) = the channel sums of x2, the (N*C, H*W) view: one block per channel."""
    channel_sum_v1[channels, THREADS](x2, out, channels)
