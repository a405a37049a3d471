"""Reduction version 4, warp-shuffle: version 2 with each block's tree in registers, one barrier.

The idea (over version 2). A warp's 32 threads can read each other's registers:
cuda.shfl_down_sync(mask, v, d) hands lane t the v of lane t + d (its own v where
t + d > 31), with no shared memory and no barrier, since the 32 lanes of a warp execute
together. The mask names the lanes that take part in a shuffle, one bit per lane (bit t:
lane t); all 32 bits set: the whole warp. So each warp sums its own 32 values in 5
shuffles (warp_sum: lane t adds lane t + 16's value, then t + 8's, ..., t + 1's, a tree of
the same shape as common.block_sum's, in registers), lane 0 of each warp writes one float
to shared memory, and after the block's only barrier warp 0 sums the warp sums the same
way. Everything else is version 2's: the chunks, each thread's strided sum, the merge
kernel.

The additions happen in a different order from version 2's, but a fixed one: bitwise
reproducible, and equal to version 2's up to rounding.

Cost (PREDICTED, not measured). block_sum's tree takes log2(THREADS) = 8 steps of a
shared-memory load, an add, a store and a barrier of the whole block (10 barriers in all),
and in its last five steps only warp 0 works, whose 32 lanes execute together anyway;
here: 10 shuffles and one barrier. But each thread first reads at least MIN_ITEMS = 8
values from global memory, which dominates, so the gain is at most a few percent at the
DCGAN shapes, largest where blocks are shortest (512 channels of 4x4).
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR, f32_2d, grid_1d, i64
from .common import THREADS, kernel, workspace
from .v2_split_channel import chunk_thread_sum, splits_for, sum_partials_v2

FULL_MASK = 0xFFFFFFFF
WARP = 32
# Threads per block of version 4: two warps under the simulator, so that the step across
# warps runs there too; on a GPU the same THREADS as the others.
SHUFFLE_THREADS = 2 * WARP if SIMULATOR else THREADS
WARPS = SHUFFLE_THREADS // WARP


@cuda.jit(device=True)
def warp_sum(value):
    """The sum of ``value`` over the 32 lanes of a warp, in lane 0 (the other lanes end with
    partial sums). Lane t adds lane t + 16's value, then t + 8's, ..., t + 1's: a tree of
    the same shape as block_sum's, in registers. Every lane of the warp must call it."""
    offset = WARP // 2
    while offset > 0:
        value += cuda.shfl_down_sync(FULL_MASK, value, offset)
        offset //= 2
    return value


@cuda.jit(device=True)
def block_sum_shuffled(value, warp_sums, tid):
    """The sum over the block of every thread's ``value``, in thread 0. The block must have
    SHUFFLE_THREADS threads (whole warps), all of which call it. Order: each warp's tree,
    then warp 0's tree over the warp sums in warp order: fixed, so bitwise reproducible.
    One barrier, against block_sum's log2(THREADS) + 2."""
    lane, warp = tid % WARP, tid // WARP
    value = warp_sum(value)
    if lane == 0:
        warp_sums[warp] = value
    cuda.syncthreads()       # every warp's sum is in shared memory before warp 0 reads them
    total = float32(0.0)
    if warp == 0:
        if lane < WARPS:
            total = warp_sums[lane]
        total = warp_sum(total)
    return total


@kernel((f32_2d, f32_2d, i64))
def channel_partial_sums_v4(x, partials, channels):
    """partials[c, j] = sum of chunk j of channel c, as version 2, with block_sum_shuffled;
    block (c, j) of a (C, splits) grid of SHUFFLE_THREADS threads, (=)."""
    warp_sums = cuda.shared.array(WARPS, float32)
    c, j, tid = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    acc = chunk_thread_sum(x, c, j, partials.shape[1], channels, tid, SHUFFLE_THREADS)
    total = block_sum_shuffled(acc, warp_sums, tid)
    if tid == 0:
        partials[c, j] = total


def launch(x2, out, channels):
    """out (C,) = the channel sums of x2, the (N*C, H*W) view: version 2's two launches,
    the first with blocks of SHUFFLE_THREADS threads that sum by shuffles."""
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count, SHUFFLE_THREADS)
    partials = workspace(out, (channels, splits), "channel_sum.partials")
    channel_partial_sums_v4[(channels, splits), SHUFFLE_THREADS](x2, partials, channels)
    sum_partials_v2[grid_1d(channels)](partials, out)
