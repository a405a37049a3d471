"""reduction — block reductions in shared memory: the per-channel sum (a bias gradient).

What it computes:
    channel_sum   out[c] = sum over n, h, w of x[n, c, h, w]      (x (N, C, H, W) or (N, C))
It writes its output (=). Batchnorm and the loss reuse this file's building blocks:
``block_sum`` / ``block_sum2`` (a tree in shared memory), ``advance`` (walking one channel's
values without a division per element) and ``workspace`` (scratch for a two-pass version).

How threads map to data (version 1). One block of THREADS threads per channel. A channel of
an NCHW tensor is N runs of H*W contiguous floats, one run per image, C*H*W floats apart.
Number the channel's M = N*H*W values i = n*H*W + s; thread t takes i = t, t + THREADS,
t + 2*THREADS, ...: consecutive threads read consecutive addresses within a run, so each
warp's loads coalesce. Each thread adds its values into a private register in that fixed
order; then the block combines its THREADS partial sums with a tree in shared memory:

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

Why a fixed order matters. Float addition is not associative: (a + b) + c and a + (b + c)
can differ in the last bit. Here every value reaches the total along the same path on every
run (same thread, same loop order, same tree), so the result is bitwise reproducible, and
so is a whole training run on the same GPU. Atomics (atomicAdd of each block's partial
into out[c]) combine in whatever order the hardware schedules blocks: no second kernel
sums the partials, but out must be zeroed before the blocks add into it, so it is still
two launches (zero_v3, then the atomic kernel), as many as version 2's, and different in
the last bits from run to run. Version 3 does exactly that, to be compared and measured,
never used on the training path (the zeroing launch makes it, too, write (=)).

Napkin math. In the pytorch-arch DCGAN no layer has a bias (batchnorm follows every
convolution); in the paper arch only D's final dense layer has one: dy (128, 1), 512 bytes,
pure launch overhead. The same pattern is batchnorm's sum(dy) per channel, up to
dy (128, 64, 32, 32) = 8.4 M floats: 8.4 M FLOP (one add each) on 33.5 MB, ~10 us at an
H100 SXM's 3.35 TB/s, so memory- (really: latency-) bound. And that is where version 1
falls short: 64 channels make 64 blocks of 256 threads, which occupy 64 of 132 SMs with 8
warps each (of 64 possible). By Little's law (bytes in flight = bandwidth x latency), to
stream 3.35 TB/s with ~600 ns of HBM latency the GPU must keep ~2 MB of loads in flight,
~15 KB per SM (kernels/README.md's figures); one block with one
4-byte load per thread in flight has 1 KB, 64 blocks 64 KB: a few percent of the bandwidth,
unless the compiler unrolls the 512 trips of each thread's loop to overlap their loads.
Version 2 splits every channel over several blocks so that there are ~1000 blocks (8 per
SM, full occupancy), each writing one partial sum into scratch memory, then sums each
channel's partials in a fixed order in a second, tiny kernel: two launches, still
deterministic.

Version 4 keeps version 2's blocks and changes only how a block adds up its partial sums.
block_sum's tree takes log2(THREADS) = 8 steps of a shared-memory load, an add, a store
and a barrier of the whole block (10 barriers in all), and in its last five steps only
warp 0 works, whose 32 lanes execute together anyway. A warp shuffle lets a lane read
another lane's register directly (warp_sum): each warp sums its own 32 values in 5
shuffles with no barrier, lane 0 of each warp writes one float to shared memory, and after
the block's only barrier warp 0 sums the 8 warp sums the same way. The additions happen
in a different order from version 2's, but a fixed one: bitwise reproducible, and equal
to version 2's up to rounding. PREDICTED, not measured: each thread first reads at least
MIN_ITEMS = 8 values from global memory, which dominates, so the gain is at most a few
percent at the DCGAN shapes, largest where blocks are shortest (512 channels of 4x4).

Versions:
    1  block-per-channel  one block per channel: strided private sums, then a shared-memory tree
    2  split-channel  each channel split over many blocks; partials summed in fixed order by a second kernel
    3  atomic  blocks of version 2 atomicAdd into out: NOT deterministic, never on the training path
    4  warp-shuffle  version 2 with each block's tree in warp shuffles: one barrier instead of log2(THREADS) + 2
Run:
    python -m dcgan_cuda.kernels.reduction --sim     validate on the CPU
    python -m dcgan_cuda.kernels.reduction           validate and time on a GPU
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from dcgan_cuda import reference

from .jit import SIMULATOR, Version, f32_1d, f32_2d, grid_1d, i64, kernel

# Threads per block of every block reduction in this folder. A power of two (the tree halves
# it), a multiple of the 32-thread warp. Under the simulator each thread is an OS thread and
# every barrier costs all of them, so it is small; loops then make several trips, which is
# what the tests want to exercise anyway.
THREADS = 32 if SIMULATOR else 256

# Version 2: aim for about this many blocks in all (8 blocks of 256 threads fill an H100
# SM; 132 SMs), but give every thread at least MIN_ITEMS values, or the second pass and
# the tree cost more than they save. Under the simulator: few blocks, but more than one
# per channel even for the tiny test shapes.
TARGET_BLOCKS = 8 if SIMULATOR else 1024
MIN_ITEMS = 2 if SIMULATOR else 8


# -------------------------------------------------------------- shared building blocks
@cuda.jit(device=True)
def block_sum(partial, tid):
    """Sum of partial[0..THREADS) (shared memory, one value per thread), returned to every
    thread. Sequential addressing: active threads stay contiguous, no bank conflicts.

    The block must have exactly THREADS threads, and every one of them must call it (it
    contains barriers). It ends with a barrier, so the caller may overwrite ``partial`` at once.
    """
    cuda.syncthreads()  # every thread's partial is in shared memory before anyone reads it
    half = THREADS // 2
    while half > 0:
        if tid < half:
            partial[tid] += partial[tid + half]
        cuda.syncthreads()
        half //= 2
    total = partial[0]
    cuda.syncthreads()  # everyone has read partial[0] before it may be reused
    return total


@cuda.jit(device=True)
def block_sum2(first, second, tid):
    """Two block sums in one tree (half the barriers of two calls to block_sum)."""
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if tid < half:
            first[tid] += first[tid + half]
            second[tid] += second[tid + half]
        cuda.syncthreads()
        half //= 2
    total_first, total_second = first[0], second[0]
    cuda.syncthreads()
    return total_first, total_second


@cuda.jit(device=True)
def advance(n, s, dn, ds, run):
    """One step of a walk over a channel's values, numbered i = n*run + s (image n, offset s
    in its run of H*W floats), by step = dn*run + ds (dn, ds = divmod(step, run), computed
    once). Saves an integer division per element: 64-bit division is a long instruction
    sequence on a GPU, a compare and an add are not."""
    n += dn
    s += ds
    if s >= run:
        s -= run
        n += 1
    return n, s


_workspaces = {}


def workspace(like, shape, role):
    """Scratch float32 memory for values that pass between the kernels of one launcher call
    (allocation only, no arithmetic); ``role`` names the use ("batchnorm.scale"), so two
    scratch arrays of one call never share memory.

    Under the simulator (``like`` a NumPy array) a fresh NaN-filled array every call, so a
    slot a kernel forgets to write shows up. On a GPU one buffer per (shape, device, stream),
    kept for the life of the process: its contents live only from one kernel of a launcher to
    the next, and launches on one stream run in order, so reuse is safe; and a CUDA graph
    captured around a training step keeps pointing at memory that nobody else gets. (A fresh
    CuPy allocation per call would go back to CuPy's pool when the launcher returns, and a
    graph replay would then write into whatever array got it next.)"""
    if isinstance(like, np.ndarray):
        return np.full(shape, np.nan, np.float32)
    import cupy
    key = (role, tuple(shape), cupy.cuda.Device().id, cupy.cuda.get_current_stream().ptr)
    buffer = _workspaces.get(key)
    if buffer is None:
        buffer = _workspaces[key] = cupy.empty(shape, cupy.float32)
    return buffer


def channel_view(x):
    """x (N, C, ...) as the 2-D view (N*C, H*W) the kernels index: row n*C + c is image n's
    run of channel c (a (N, C) array becomes runs of length 1)."""
    rows = x.shape[0] * x.shape[1]
    return x.reshape(rows, x.size // rows if rows else 1)


# ------------------------------------------------------------------------ version 1
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


# ------------------------------------------------------------------------ version 2
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


def splits_for(channels, count, threads=THREADS):
    """Blocks per channel for versions 2-4: enough blocks in all to fill the GPU, but at
    least MIN_ITEMS values per thread of a block of ``threads``."""
    wanted = -(-TARGET_BLOCKS // max(channels, 1))
    worth = -(-count // (threads * MIN_ITEMS))
    return max(1, min(wanted, worth))


def _channel_sum_block(x2, out, channels):
    channel_sum_v1[channels, THREADS](x2, out, channels)


def _channel_sum_split(x2, out, channels):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    partials = workspace(out, (channels, splits), "channel_sum.partials")
    channel_partial_sums_v2[(channels, splits), THREADS](x2, partials, channels)
    sum_partials_v2[grid_1d(channels)](partials, out)


# ------------------------------------------------------------------------ version 3
@kernel((f32_1d,))
def zero_v3(out):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for c in range(start, out.shape[0], stride):
        out[c] = float32(0.0)


@kernel((f32_2d, f32_1d, i64, i64))
def channel_sum_atomic_v3(x, out, channels, splits):
    """out[c] += sum of chunk j of channel c, by atomicAdd; block (c, j). NOT deterministic:
    the splits blocks of a channel add in whatever order they finish, and float addition is
    not associative, so the last bits of out[c] can change from run to run."""
    partial = cuda.shared.array(THREADS, float32)
    c, j, tid = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    total = chunk_sum(x, partial, c, j, splits, channels, tid)
    if tid == 0:
        cuda.atomic.add(out, c, total)


def _channel_sum_atomic(x2, out, channels):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    zero_v3[grid_1d(channels)](out)
    channel_sum_atomic_v3[(channels, splits), THREADS](x2, out, channels, splits)


# ------------------------------------------------------------------------ version 4
# A warp's 32 threads can read each other's registers: cuda.shfl_down_sync(mask, v, d)
# hands lane t the v of lane t + d (its own v where t + d > 31), with no shared memory and
# no barrier, since the 32 lanes of a warp execute together. The last five steps of
# block_sum's tree (halves 16, 8, 4, 2, 1) all happen inside warp 0, so they can be
# shuffles; and if every warp first sums its own 32 values that way, the block only needs
# shared memory (and a barrier) to hand each warp's sum to warp 0.
# The mask names the lanes that take part in a shuffle, one bit per lane (bit t: lane t);
# all 32 bits set: the whole warp.
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


def _channel_sum_shuffled(x2, out, channels):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count, SHUFFLE_THREADS)
    partials = workspace(out, (channels, splits), "channel_sum.partials")
    channel_partial_sums_v4[(channels, splits), SHUFFLE_THREADS](x2, partials, channels)
    sum_partials_v2[grid_1d(channels)](partials, out)


VERSIONS = {
    1: Version("block-per-channel",
               "one block per channel: strided private sums, then a shared-memory tree",
               {"channel_sum": _channel_sum_block}),
    2: Version("split-channel",
               "each channel split over many blocks; partials summed in fixed order by a second kernel",
               {"channel_sum": _channel_sum_split}),
    3: Version("atomic",
               "blocks of version 2 atomicAdd into out: NOT deterministic, never on the training path",
               {"channel_sum": _channel_sum_atomic}),
    4: Version("warp-shuffle",
               "version 2 with each block's tree in warp shuffles: one barrier instead of log2(THREADS) + 2",
               {"channel_sum": _channel_sum_shuffled}),
}
# Versions whose result may differ in the last bits from run to run.
NONDETERMINISTIC = {3}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
def channel_sum(x, out, version=DEFAULT_VERSION):
    """out (C,) = x summed over every axis but 1; x (N, C, H, W) or (N, C). Writes (=)."""
    VERSIONS[version].ops["channel_sum"](channel_view(x), out, x.shape[1])


# ------------------------------------------------------------------ validate / time
# The DCGAN shapes (batch 128, 64x64, ngf = ndf = 64): the only bias in either architecture
# is the paper D's final dense layer, dy (128, 1); the per-channel sums of the batchnorm
# layers (G: 512@4x4, 256@8x8, 128@16x16, 64@32x32; D: 128@16x16, 256@8x8, 512@4x4) are
# the same reduction, so they are timed here too.
GPU_SHAPES = [(128, 1), (128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32)]
SIM_SHAPES = [(3, 5), (1, 3, 1, 1), (2, 3, 5, 7), (3, 2, 9, 9)]


def cases(sim):
    return [(f"channel_sum {'x'.join(map(str, shape))}",
             lambda rng, shape=shape: rng.standard_normal(shape).astype(np.float32))
            for shape in (SIM_SHAPES if sim else GPU_SHAPES)]


def run(version, label, inputs, device):
    x = inputs
    d_x = device(x)
    out = device(np.full(x.shape[1], np.nan, np.float32))

    def launch():
        channel_sum(d_x, out, version)
        return out
    m = x.size // x.shape[1]
    # The reference is float64. Each thread adds k = m/THREADS values into a running sum that
    # grows like sqrt(j)*rms(x) after j of them, each addition rounding by up to eps/2 of it:
    # a uniform error of variance (eps/2)^2 * j * rms^2 / 3. Summed over j = 1..k (about
    # k^2/2) that is (eps/2)^2 rms^2 k^2 / 6 per thread, and THREADS independent threads
    # multiply it by THREADS: a deviation of (eps/2)*rms(x)*m/sqrt(6*THREADS) (the 6 is the 3
    # of the uniform times the 2 of the sum), or ~ (eps/2)*rms(x)*sqrt(m) when m is below
    # THREADS. We allow 20x that: a missed or doubled element (an error of ~rms(x)) still
    # shows.
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    atol = 10 * np.finfo(np.float32).eps * rms * max(m / np.sqrt(6 * THREADS), np.sqrt(m))
    return launch, reference.bias_backward(x.astype(np.float64)), atol, 1e-6, x.size, x.nbytes  # atol, rtol, FLOPs, bytes


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
