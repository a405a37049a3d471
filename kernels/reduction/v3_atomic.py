"""Reduction version 3, atomic: version 2's blocks add into out with atomicAdd. NOT deterministic.

The idea (beside version 2, not after it). Instead of writing its partial sum to scratch
memory for a second kernel to merge, block (c, j) adds it straight into out[c] with
cuda.atomic.add: the hardware makes each read-add-write indivisible, so no addition is
lost. But the `splits` blocks of a channel add in whatever order the GPU schedules them,
and float addition is not associative ((a + b) + c and a + (b + c) can differ in the last
bit), so the last bits of out[c] can change from run to run. out must be zeroed before the
blocks add into it: still two launches (zero_v3, then the atomic kernel), as many as
version 2's, and the zeroing makes this version, too, write its output (=).

It is here to be compared (and, on a GPU, timed), and is never on the training path:
the training CLI refuses it (the family's NONDETERMINISTIC), because a run that cannot be
repeated bit for bit cannot be debugged or resumed bit for bit.

How threads map to data: version 2's (chunk_sum, splits_for), one block per chunk.

Cost (PREDICTED, not measured). The same as version 2 to within a few percent: the same
blocks read the same bytes, and the zeroing launch replaces the merge kernel, both tiny.
The atomics are one per block, far too few to contend. Atomics only pay where the merge
is large, which a per-channel sum never is.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import f32_1d, f32_2d, grid_1d, i64
from .common import THREADS, kernel
from .v2_split_channel import chunk_sum, splits_for


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


def launch(x2, out, channels):
    """out (C,) = the channel sums of x2, the (N*C, H*W) view: zeroed, then every block of
    a (C, splits) grid atomically adds its chunk's sum."""
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    zero_v3[grid_1d(channels)](out)
    channel_sum_atomic_v3[(channels, splits), THREADS](x2, out, channels, splits)
