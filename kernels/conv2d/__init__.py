"""conv2d — strided 2-D convolution: forward, backward-data, backward-weight, one file per version.

What it computes (NCHW, float32; s = stride, pad = padding, both per axis; no bias here,
the bias is elementwise.channel_bias):
    forward          y[n,o,p,q]  = sum_{c,i,j} w[o,c,i,j] * x[n, c, p*s+i-pad, q*s+j-pad]
    backward_data    dx[n,c,h,v] = sum_{o,i,j} w[o,c,i,j] * dy[n, o, (h+pad-i)/s, (v+pad-j)/s]
                                   over the taps (i, j) where both divisions are exact and in range
    backward_weight  dw[o,c,i,j] = sum_{n,p,q} dy[n,o,p,q] * x[n, c, p*s+i-pad, q*s+j-pad]
x positions outside the image read as 0 (zero padding). Every kernel writes (=) its whole
output; none adds. dx may have rows/columns that no window touches: they are written 0.
That happens with a transposed convolution's output_padding, the extra rows and columns
(at the bottom and right) that pick its output size where the stride leaves it ambiguous:
at stride 2 both 2h and 2h + 1 rows convolve down to h, and output_padding = 1 asks for
2h + 1, a last row that no window of the matching conv2d reads. Transposed convolution is the same three kernels read
backwards: see conv_transpose2d.py.

The versions, one idea each, one file each (the file opens with its idea, how its threads
map to data, and its predicted gain, labelled PREDICTED until a GPU measures it):
    v1_naive.py             one thread per output element, operands from global memory
    v2_smem_tiles.py        a block stages input and weight tiles in shared memory
    v3_implicit_gemm.py     each direction a GEMM: linear's last rung (kernels/linear,
                            read it first) with its operands gathered from the images
    v4_sub_pixel_phases.py  backward_data as s*s stride-1 GEMMs: no tap that misses
    v5_taps_major.py        backward_data's weights regrouped so its B loads coalesce
    v6_split_k.py           a GEMM with too few tiles splits its reduction over blocks,
                            summed in a fixed order (deterministic, no atomics)
    v7_prefetch.py          the next slice's global loads in flight during the multiply
    v8_narrow_channels.py   backward_data into at most 4 channels: a thread per pixel
    v9_fitted_tiles.py      each GEMM in the tiles that pad it least, 128 x 128 or 64 x 64
    v10_small_frags.py      version 6 at 4 x 4 per thread: occupancy against reuse
Versions that change one direction take the others from the version before (the
VERSIONS table in the code below says which); common.py holds the kernel naming and
grid arithmetic, cases.py the layers the harness validates and times.

Napkin math at the DCGAN shapes (pytorch arch, batch 128, 64x64, ngf = ndf = 64).
FLOPs = 2*N*Co*Ho*Wo*Ci*kh*kw per direction (all three directions do the same multiply-adds),
counted in conv2d terms (for a transposed layer, its own input is the conv2d "output"):
    D1 conv  3->64    64->32   0.81 GFLOP   min bytes 40 MB
    D2 conv  64->128  32->16   8.6  GFLOP   51 MB    (2*128*128*16*16*64*16: 4.3 G multiply-adds)
    D3 conv  128->256 16->8    8.6  GFLOP   27 MB
    D4 conv  256->512 8->4     8.6  GFLOP   21 MB
    D5 conv  512->1   4->1     2.1  MFLOP   4.2 MB
    G1..G5 (transposed) mirror them: 0.21, 8.6, 8.6, 8.6, 0.81 GFLOP.
About 53 GFLOP per direction over G and D, 160 GFLOP for all three. On an H100 SXM (67
TFLOP/s FP32, 3.35 TB/s) D2 forward needs >= 128 us of FMA work but only 15 us to move its
51 MB once: at 170 FLOP per byte of compulsory traffic the big layers are compute-bound, if
the kernel reuses what it loads. Only D1/G5 (20 FLOP/byte, right at the ridge 67/3.35)
and D5 (0.5 FLOP/byte: memory- and launch-bound) are not. Numba has no tensor cores:
whatever the version, the ceiling is the FP32 FMA peak.

Versions:
    1  naive          one thread per output element, operands read straight from global memory
    2  smem-tiles     a block stages input and weight tiles in shared memory, reused by its threads
    3  implicit-gemm  each direction a GEMM: the GEMM ladder's last rung, its operands gathered from the images
    4  sub-pixel-phases  backward-data as one stride-1 GEMM per output phase: no multiply-add on a tap that misses
    5  taps-major     backward-data's weights regrouped (kh, kw, Co, Ci), so its weight loads coalesce
    6  split-k        a GEMM with too few tiles splits its reduction over blocks, summed in a fixed order
    7  prefetch       the next slice's global loads issued into registers before this slice's multiply-adds
    8  narrow-channels  backward-data into at most 4 channels: a thread per pixel, all its channels in registers
    9  fitted-tiles   each GEMM in the tiles that pad it least, 128 x 128 or 64 x 64, the same thread in both
    10 small-frags    version 6 with 4 x 4 outputs per thread in 64 x 64 tiles: two blocks per SM
Run:
    python -m dcgan_cuda.kernels.conv2d --sim              validate every version on the CPU (tiny shapes)
    python -m dcgan_cuda.kernels.conv2d --sim --version 3  only version 3
    python -m dcgan_cuda.kernels.conv2d --version 2        validate at the DCGAN shapes and time on a GPU
"""
from __future__ import annotations

from dcgan_cuda.reference import conv2d_output_size

from ..jit import SIMULATOR, Version
from . import (v1_naive, v2_smem_tiles, v3_implicit_gemm, v4_sub_pixel_phases, v5_taps_major, v6_split_k,
               v7_prefetch, v8_narrow_channels, v9_fitted_tiles, v10_small_frags)
from .cases import (DIRECTIONS, Layer, cases, dcgan_layers, layer_flops, layer_label,  # noqa: F401
                    layer_output_size, make_inputs, reduction_terms, reference_result, run, sim_layers,
                    tolerance)
from .common import Tiling  # noqa: F401
from .v6_split_k import split_reduction  # noqa: F401
from .v8_narrow_channels import NARROW, NARROW_TAPS  # noqa: F401
from .v9_fitted_tiles import fitted_tiling  # noqa: F401

# Each version's ops: what it changes, and the rest from the version it builds on.
_v3 = v3_implicit_gemm.OPS
_v4 = dict(_v3, **v4_sub_pixel_phases.OPS)
_v5 = dict(_v4, **v5_taps_major.OPS)
_v6 = dict(_v5, **v6_split_k.OPS)
VERSIONS = {
    1: Version("naive", "one thread per output element, operands read straight from global memory",
               v1_naive.OPS),
    2: Version("smem-tiles", "a block stages input and weight tiles in shared memory, reused by its threads",
               v2_smem_tiles.OPS),
    3: Version("implicit-gemm", "each direction a GEMM: the GEMM ladder's last rung, its operands gathered "
               "from the images", _v3),
    4: Version("sub-pixel-phases", "backward-data as one stride-1 GEMM per output phase: no multiply-add on a "
               "tap that misses", _v4),
    5: Version("taps-major", "backward-data's weights regrouped (kh, kw, Co, Ci), so its weight loads coalesce",
               _v5),
    6: Version("split-k", "a GEMM with too few tiles splits its reduction over blocks, summed in a fixed order",
               _v6),
    7: Version("prefetch", "the next slice's global loads issued into registers before this slice's multiply-adds",
               v7_prefetch.OPS),
    8: Version("narrow-channels", "backward-data into at most 4 channels: a thread per pixel, all its channels "
               "in registers", v8_narrow_channels.OPS),
    9: Version("fitted-tiles", "each GEMM in the tiles that pad it least, 128 x 128 or 64 x 64, the same thread "
               "in both", v9_fitted_tiles.OPS),
    10: Version("small-frags", "version 6 with 4 x 4 outputs per thread in 64 x 64 tiles: two blocks per SM",
                v10_small_frags.OPS),
}
DEFAULT_VERSION = 1

# The tile shape of each version that has implicit-GEMM kernels of its own (version 9: its
# small tiles; its big ones are version 7's), on a GPU and in the simulator.
GPU_TILING = {**{v: v3_implicit_gemm.GPU_TILING for v in (3, 4, 5, 6, 7)},
              9: v9_fitted_tiles.GPU_TILING, 10: v10_small_frags.GPU_TILING}
SIM_TILING = {**{v: v3_implicit_gemm.SIM_TILING for v in (3, 4, 5, 6, 7)},
              9: v9_fitted_tiles.SIM_TILING, 10: v10_small_frags.SIM_TILING}
TILING = SIM_TILING if SIMULATOR else GPU_TILING
# The files whose build() makes a version's implicit-GEMM kernels at any tile shape.
BUILDERS = {3: v3_implicit_gemm.build, 4: v4_sub_pixel_phases.build, 5: v5_taps_major.build,
            6: v6_split_k.build, 7: v7_prefetch.build}
# The ops with split-K, whose forward and backward_weight also take splits= (a test's
# choice instead of split_reduction's), by version; 9: its small tiles.
SPLIT_K = {6: v6_split_k.OPS, 7: v7_prefetch.OPS, 9: v9_fitted_tiles.SMALL, 10: v10_small_frags.OPS}


# ------------------------------------------------------------------------ launchers
# x, w, y, dy, dx, dw: C-contiguous float32 NCHW arrays (CuPy on a GPU, NumPy under the
# simulator), outputs allocated by the caller and entirely overwritten. stride and padding
# are (h, w) pairs of ints.
def _check(x_shape, w_shape, y_shape, stride, padding):
    """The shapes must be those of one convolution: then every kernel index is in range."""
    (sh, sw), (ph, pw) = stride, padding
    if min(sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"conv2d: stride {stride} must be >= 1 and padding {padding} >= 0")
    n, cin, height, width = x_shape
    cout, wcin, kh, kw = w_shape
    expected = (n, cout, conv2d_output_size(height, kh, sh, ph), conv2d_output_size(width, kw, sw, pw))
    if wcin != cin or tuple(y_shape) != expected or min(expected) < 1:
        raise ValueError(f"conv2d: x {tuple(x_shape)}, w {tuple(w_shape)}, stride {stride}, padding "
                         f"{padding} give y {expected}, but the output side is {tuple(y_shape)}")


def forward(x, w, y, stride, padding, version=DEFAULT_VERSION):
    """y = conv2d(x, w): x (N,Ci,H,W), w (Co,Ci,kh,kw) -> y (N,Co,Ho,Wo), written (=)."""
    _check(x.shape, w.shape, y.shape, stride, padding)
    VERSIONS[version].ops["forward"](x, w, y, *stride, *padding)


def backward_data(dy, w, dx, stride, padding, version=DEFAULT_VERSION):
    """dx = dL/dx: dy (N,Co,Ho,Wo), w (Co,Ci,kh,kw) -> dx (N,Ci,H,W), written (=).

    dx's shape is that of x; rows/columns that no window touches get 0.
    """
    _check(dx.shape, w.shape, dy.shape, stride, padding)
    VERSIONS[version].ops["backward_data"](dy, w, dx, *stride, *padding)


def backward_weight(x, dy, dw, stride, padding, version=DEFAULT_VERSION):
    """dw = dL/dw: x (N,Ci,H,W), dy (N,Co,Ho,Wo) -> dw (Co,Ci,kh,kw), written (=)."""
    _check(x.shape, dw.shape, dy.shape, stride, padding)
    VERSIONS[version].ops["backward_weight"](x, dy, dw, *stride, *padding)
