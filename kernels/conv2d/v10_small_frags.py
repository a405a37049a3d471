"""conv2d version 10, small-frags: version 6 with 4 x 4 register blocks in 64 x 64 tiles.

The idea (beside version 6, not after it). The other way to spend registers: each thread
a 4 x 4 block of C (rows r, r + 16, r + 32, r + 48: linear's rung 6 interleaving, scalar
shared loads), a 64 x 64 tile per 256-thread block, BK = 16 deep slices. This was the
first implicit GEMM the project wrote (its version 3 until the GEMM ladder was
numbered); it is kept to measure the trade the ladder makes at rung 5: fewer registers per
thread (96-128, so two resident blocks per SM: 16 warps, twice version 6's) against
half the FMAs per loaded value. The kernels are version 6's forward and backward_weight
(split-K) and version 5's backward_data (phases, taps-major), built at this tile shape;
nothing new to read.

Cost (PREDICTED). 4 + 4 shared loads per 16 FMAs per k: 8 clocks of the SM's shared-memory
port per 4 clocks of FMAs, a ceiling at half the FMA peak (version 6: 6 clocks per 16, no
ceiling below the peak); a 64 x 64 tile reads 16 FLOP per byte from L2 (version 6: 32).
Against that, the second resident block computes while the first waits on its gathers.
Expected 0.6-0.8x version 6 on the big layers; a GPU run says which way the trade goes.
Where it belongs: after version 9 in reading order, as an experiment off the main line.
Version 9 is the predicted fastest in every direction; stop there unless you want to see
the other side of the register trade.
"""
from __future__ import annotations

from ..jit import SIMULATOR
from . import v5_taps_major, v6_split_k
from .common import Tiling

# split_target 264: one wave of two resident blocks per SM on 132 SMs.
GPU_TILING = Tiling(bm=64, bn=64, bk=16, tm=4, tn=4, vec=1, pad=2, split_target=264, min_split=256)
SIM_TILING = Tiling(bm=8, bn=8, bk=4, tm=2, tn=2, vec=1, pad=2, split_target=8, min_split=4)
TILING = SIM_TILING if SIMULATOR else GPU_TILING

OPS = dict(v6_split_k.build(TILING, version=10),
           backward_data=v5_taps_major.build(TILING, version=10)["backward_data"])
