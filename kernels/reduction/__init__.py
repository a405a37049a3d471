"""reduction — summing many numbers in parallel: the per-channel sum (a bias gradient), one file per version.

What it computes:
    channel_sum   out[c] = sum over n, h, w of x[n, c, h, w]      (x (N, C, H, W) or (N, C))
It writes its output (=). Batchnorm, the loss and dropout reuse this family's building
blocks (common.py): ``block_sum`` / ``block_sum2`` (a tree in shared memory), ``advance``
(walking one channel's values without a division per element), ``channel_view`` and
``workspace`` (scratch for a two-pass version); and version 2's ``splits_for``.

The versions, one idea each, one file each (the file opens with its idea, how its threads
map to data, and its predicted gain, labelled PREDICTED until a GPU measures it):
    v1_block_per_channel.py  one block per channel: each thread a strided private sum,
                             then a tree in shared memory (and why this shape of tree)
    v2_split_channel.py      each channel split over many blocks to fill the GPU; the
                             partial sums merged in a fixed order by a second kernel
    v3_atomic.py             version 2's blocks atomicAdd into out (an atomic add: see
                             kernels/README.md's glossary): shorter code, but the order
                             of the additions is the hardware's (study only)
    v4_warp_shuffle.py       version 2 with each block's tree in warp shuffles: lanes read
                             each other's registers, one barrier instead of ten
common.py holds the shared device helpers and the kernel naming, cases.py the shapes the
harness validates and times.

Why a fixed order matters. Float addition is not associative: (a + b) + c and a + (b + c)
can differ in the last bit. In versions 1, 2 and 4 every value reaches the total along the
same path on every run (same thread, same loop order, same tree, same merge), so the
result is bitwise reproducible, and so is a whole training run on the same GPU. Atomics
(version 3) combine in whatever order the hardware schedules blocks, different in the last
bits from run to run: it is kept to be compared (and, on a GPU, timed), never used on the
training path (NONDETERMINISTIC).

Napkin math. In the pytorch-arch DCGAN no layer has a bias (batchnorm follows every
convolution); in the paper arch only D's final dense layer has one: dy (128, 1), 512 bytes,
pure launch overhead. The same pattern is batchnorm's sum(dy) per channel, up to
dy (128, 64, 32, 32) = 8.4 M floats: 8.4 M FLOP (one add each) on 33.5 MB, ~10 us at an
H100 SXM's 3.35 TB/s, so memory- (really: latency-) bound: what decides the speed is how
many loads the threads keep in flight, which is what versions 1 and 2 are about.

Versions:
    1  block-per-channel  one block per channel: strided private sums, then a shared-memory tree
    2  split-channel  each channel split over many blocks; partials summed in fixed order by a second kernel
    3  atomic  blocks of version 2 atomicAdd into out: NOT deterministic, never on the training path
    4  warp-shuffle  version 2 with each block's tree in warp shuffles: one barrier instead of log2(THREADS) + 2
Run:
    python -m dcgan_cuda.kernels.reduction --sim              validate every version on the CPU
    python -m dcgan_cuda.kernels.reduction --sim --version 4  only version 4
    python -m dcgan_cuda.kernels.reduction                    validate and time on a GPU
"""
from __future__ import annotations

from ..jit import Version
from . import v1_block_per_channel, v2_split_channel, v3_atomic, v4_warp_shuffle
from .cases import GPU_SHAPES, SIM_SHAPES, cases, run  # noqa: F401  (the harness's entry points)
from .common import THREADS, advance, block_sum, block_sum2, channel_view, workspace  # noqa: F401
from .v1_block_per_channel import channel_sum_v1  # noqa: F401
from .v2_split_channel import (MIN_ITEMS, TARGET_BLOCKS, channel_partial_sums_v2, chunk_sum,  # noqa: F401
                               chunk_thread_sum, splits_for, sum_partials_v2)
from .v3_atomic import channel_sum_atomic_v3, zero_v3  # noqa: F401
from .v4_warp_shuffle import (FULL_MASK, SHUFFLE_THREADS, WARP, WARPS, block_sum_shuffled,  # noqa: F401
                              channel_partial_sums_v4, warp_sum)

VERSIONS = {
    1: Version("block-per-channel",
               "one block per channel: strided private sums, then a shared-memory tree",
               {"channel_sum": v1_block_per_channel.launch}),
    2: Version("split-channel",
               "each channel split over many blocks; partials summed in fixed order by a second kernel",
               {"channel_sum": v2_split_channel.launch}),
    3: Version("atomic",
               "blocks of version 2 atomicAdd into out: NOT deterministic, never on the training path",
               {"channel_sum": v3_atomic.launch}),
    4: Version("warp-shuffle",
               "version 2 with each block's tree in warp shuffles: one barrier instead of log2(THREADS) + 2",
               {"channel_sum": v4_warp_shuffle.launch}),
}
# Versions whose result may differ in the last bits from run to run.
NONDETERMINISTIC = {3}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
def channel_sum(x, out, version=DEFAULT_VERSION):
    """out (C,) = x summed over every axis but 1; x (N, C, H, W) or (N, C). Writes (=)."""
    VERSIONS[version].ops["channel_sum"](channel_view(x), out, x.shape[1])
