"""Reduction version 2, split-channel: each channel over many blocks, then a fixed-order merge.

The idea (over version 1). Version 1 has one block per channel, so a layer with few
channels keeps few loads in flight. Here every channel is cut into `splits` contiguous
chunks and block (c, j) sums chunk j of channel c exactly as version 1 sums a whole
channel (strided private sums, then common.block_sum's tree), writing one partial sum into
scratch memory (common.workspace). A second, tiny kernel adds each channel's partials
left to right. Two launches instead of one, and the order of every addition is still fixed
by the code, not by the hardware: bitwise reproducible.

How threads map to data. Chunk j is the contiguous range [j*chunk, (j+1)*chunk) of the
channel's value numbers i = n*H*W + s, so a block still reads whole stretches of runs,
coalesced; inside it thread t takes values t, t + THREADS, ... of the chunk. How many
chunks: splits_for aims at about TARGET_BLOCKS blocks in all (8 blocks of 256 threads fill
an H100 SM; 132 SMs), but gives every thread at least MIN_ITEMS values, or the second
pass and the tree would cost more than they save. The second kernel is one thread per
channel, each a loop over that channel's `splits` partials.

Cost (PREDICTED, not measured). At 64 channels of 32x32 (batch 128) splits_for makes 16
chunks per channel: 1024 blocks, 16 times version 1's loads in flight, ~1 MB, about half
of the ~2 MB that streams an H100's bandwidth (version 1's Little's-law figures). If
version 1's loop keeps one load per thread in flight, this is up to ~10x faster there,
less if the compiler unrolled version 1's loop. At 128@16x16 and 256@8x8 it also makes
1024 blocks; at 512@4x4 (2048 values per channel) a chunk of MIN_ITEMS values per thread
is the whole channel, so it makes version 1's 512 blocks and only adds its second launch.
bench/roofline.py's model predicts the opposite (the reduction table in kernels/README.md:
version 2 slower than version 1): it counts bytes and launches, so it sees the second
launch, and it is blind to latency, the one thing this version is for. The two predictions
disagree until a GPU run measures both.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR, f32_1d, f32_2d, grid_1d, i64
from .common import THREADS, advance, block_sum, kernel, workspace

# About this many blocks in all, and at least MIN_ITEMS values per thread. Under the
# simulator: few blocks, but more than one per channel even for the tiny test shapes.
TARGET_BLOCKS = 8 if SIMULATOR else 1024
MIN_ITEMS = 2 if SIMULATOR else 8


def splits_for(channels, count, threads=THREADS):
    """Blocks per channel for versions 2-4: enough blocks in all to fill the GPU, but at
    least MIN_ITEMS values per thread of a block of ``threads``."""
    wanted = -(-TARGET_BLOCKS // max(channels, 1))
    worth = -(-count // (threads * MIN_ITEMS))
    return max(1, min(wanted, worth))


@cuda.jit(device=True)
def chunk_thread_sum(x, c, j, splits, channels, tid, threads):
    """Thread tid's private sum of its values in chunk j of channel c, for a block of
    ``threads`` threads: values tid, tid + threads, ... of the chunk, in that order.

    Chunk j is the contiguous range [j*chunk, (j+1)*chunk) of the channel's value numbers
    i = n*run + s, so a block still reads whole stretches of runs, coalesced."""
    rows, run = x.shape
    count = (rows // channels) * run
    chunk = (count + splits - 1) // splits
    i, end = j * chunk + tid, min((j + 1) * chunk, count)
    n, s = i // run, i % run
    dn, ds = threads // run, threads % run
    acc = float32(0.0)
    while i < end:
        acc += x[n * channels + c, s]
        n, s = advance(n, s, dn, ds, run)
        i += threads
    return acc


@cuda.jit(device=True)
def chunk_sum(x, partial, c, j, splits, channels, tid):
    """Block (c, j)'s sum of chunk j of channel c, returned to every thread."""
    partial[tid] = chunk_thread_sum(x, c, j, splits, channels, tid, THREADS)
    return block_sum(partial, tid)


@kernel((f32_2d, f32_2d, i64))
def channel_partial_sums_v2(x, partials, channels):
    """partials[c, j] = sum of chunk j of channel c; block (c, j) of a (C, splits) grid, (=)."""
    partial = cuda.shared.array(THREADS, float32)
    c, j, tid = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    total = chunk_sum(x, partial, c, j, partials.shape[1], channels, tid)
    if tid == 0:
        partials[c, j] = total


@kernel((f32_2d, f32_1d))
def sum_partials_v2(partials, out):
    """out[c] = partials[c, 0] + partials[c, 1] + ... in that order; one thread per channel, (=)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    channels, splits = partials.shape
    for c in range(start, channels, stride):
        acc = float32(0.0)
        for j in range(splits):
            acc += partials[c, j]
        out[c] = acc


def launch(x2, out, channels):
    """out (C,) = the channel sums of x2, the (N*C, H*W) view: a (C, splits) grid of
    partial sums into scratch memory, then one thread per channel adds them."""
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    partials = workspace(out, (channels, splits), "channel_sum.partials")
    channel_partial_sums_v2[(channels, splits), THREADS](x2, partials, channels)
    sum_partials_v2[grid_1d(channels)](partials, out)
