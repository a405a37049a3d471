"""What conv2d's versions share: signatures, the kernel naming, grid arithmetic, tile shapes."""
from __future__ import annotations

from collections import namedtuple

from .. import jit
from ..jit import MAX_BLOCKS, SIM_MAX_BLOCKS, SIMULATOR

# three arrays, stride (h, w), padding (h, w)
SIG = (jit.f32_4d, jit.f32_4d, jit.f32_4d, jit.i64, jit.i64, jit.i64, jit.i64)


# jit.kernel, registering each kernel as conv2d.<function> whichever file defines it.
kernel = jit.family_kernel("conv2d")


def ceil_div(a, b):
    return -(-a // b)


def tile_grid(tiles):
    """Blocks for a block-stride loop over tiles: a few waves on a GPU; in the simulator
    only a handful, so every block also runs the loop's later trips."""
    return max(1, min(tiles, SIM_MAX_BLOCKS if SIMULATOR else MAX_BLOCKS))


# The tile shape of an implicit GEMM (versions 3 and later): a block computes a bm x bn
# tile of C in bk-deep slices, each thread a tm x tn block of it in runs of vec rows and
# columns (linear's rung 7, register_blocks); pad: floats of padding per shared row.
# split_target, min_split: how far split-K splits a small grid (version 6, split_reduction).
Tiling = namedtuple("Tiling", "bm bn bk tm tn vec pad split_target min_split")
