"""conv2d version 9, fitted-tiles: each GEMM in the tiles that pad it least, 128 x 128 or 64 x 64.

The idea (over version 8). Version 7's 128 x 128 tiles fit C exactly on most DCGAN layers,
but where one side of C is 64 (D2's dx and G4's forward, 8.6 GFLOP each; D1's forward and
G5's dx) half of every tile is padding, and the weight gradients of D1 and G5 (C is
64 x 48) use 19% of their one tile. Here each GEMM gets the tile shape that pads C least
(fitted_tiling): version 7's, or the same thread (8 x 8 outputs in runs of 4, 16-byte
shared loads, prefetch) in 64 x 64 tiles of 64 threads; on a tie the bigger tiles, which
load half as much per FMA. The small tiles are version 7's kernels built at that shape
(v7_prefetch.build), nothing new to read; the narrow kernel keeps its channels (version
8). At the DCGAN shapes the small tiles take the GEMMs with a side of 64 (D1's and G4's
forward, D2's and G5's dx), D1's and G5's weight gradients (C is 64 x 48) and D5's
forward and weight gradient (C is 128 x 1 and 1 x 8192); everything else stays version 7's.

Cost (PREDICTED). A 128 x 128 tile over a C with 64 columns computes 128 for 64: those
GEMMs run at half of version 7's rate. A 64 x 64 tile fits them exactly (75% for the
64 x 48), at a price that can be counted: per 64 x 64 x 8 slice a thread still does 512
FMAs, but gathers 16 floats instead of 8 (half the FMAs per loaded byte: 16 FLOP/byte
from L2), and bench/ptx_hot_loop.py puts its slice overhead at 410-498 instructions
against version 7's 219-270. A slice's multiply is 4 trips of (128 FMAs + 8 loads + 12
others) = 592 instructions for 512 FMAs. Small tile: 592 + 410-498 = ~1000-1090 per 512
useful FMAs. Big tile on a C half padding: 592 + 219-270 = 811-862 for 256 useful FMAs,
~1620-1720 per 512: ~1.6x on those GEMMs if instruction issue is the bound.
167-198 registers, no spills: 5 blocks of 64 threads per SM (10 warps; version 7: 8),
4.25 KB of shared memory each; split-K aims at 660 blocks, one wave.
What it still lacks: a second shared buffer (one barrier per trip instead of two); float4
global loads where rows are contiguous; D5's one-column and one-row GEMMs (2 MFLOP each)
still compute 64 columns (or rows) for 1; where a grid of big tiles leaves most SMs idle
(G1's dx: 32 blocks), a tie still goes to the big tiles. Numba has no tensor cores, so
whatever the tiling the ceiling is the FP32 FMA peak, 67 TFLOP/s.
"""
from __future__ import annotations

from ..jit import SIMULATOR
from . import v7_prefetch
from .common import Tiling, ceil_div
from .v4_sub_pixel_phases import most_phase_rows
from .v8_narrow_channels import narrow_channels

# Version 7's thread in a quarter of its block: 64 threads. 167-198 registers each: 5 blocks
# per SM, 660 make one wave (split_target).
GPU_TILING = Tiling(bm=64, bn=64, bk=8, tm=8, tn=8, vec=4, pad=4, split_target=660, min_split=256)
SIM_TILING = Tiling(bm=8, bn=8, bk=4, tm=2, tn=2, vec=2, pad=2, split_target=8, min_split=4)
TILING = SIM_TILING if SIMULATOR else GPU_TILING
BIG = v7_prefetch.OPS
SMALL = v7_prefetch.build(TILING, version=9)


def fitted_tiling(rows, cols, big=v7_prefetch.TILING, small=TILING):
    """The version whose tiles pad a rows x cols C least: 9 (the small tiles) or 7; 7 on a tie."""
    def padded(tiling):
        return ceil_div(rows, tiling.bm) * tiling.bm * ceil_div(cols, tiling.bn) * tiling.bn
    return 9 if padded(small) < padded(big) else 7


def _ops(rows, cols):
    return SMALL if fitted_tiling(rows, cols) == 9 else BIG


# ------------------------------------------------------------------------ launchers
def forward(x, w, y, sh, sw, ph, pw):
    n, cout, out_h, out_w = y.shape
    _ops(n * out_h * out_w, cout)["forward"](x, w, y, sh, sw, ph, pw)


def fitted_backward_data(dy, w, dx, sh, sw, ph, pw):
    _ops(most_phase_rows(dx.shape, sh, sw), dx.shape[1])["backward_data"](dy, w, dx, sh, sw, ph, pw)


def backward_weight(x, dy, dw, sh, sw, ph, pw):
    cout, cin, kh, kw = dw.shape
    _ops(cout, cin * kh * kw)["backward_weight"](x, dy, dw, sh, sw, ph, pw)


OPS = {"forward": forward, "backward_data": narrow_channels(fitted_backward_data),
       "backward_weight": backward_weight}
