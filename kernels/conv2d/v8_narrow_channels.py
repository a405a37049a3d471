"""conv2d version 8, narrow-channels: backward_data into at most 4 channels by a thread per pixel.

The idea (over version 7). backward_data into Ci <= NARROW = 4 channels (D1's dx, needed
for G's gradient; G5's forward through the duality: Ci = 3) is a GEMM C[M, Ci] per phase
with M = 131072 rows and 3 columns: a 128-wide tile computes 128 columns for 3. Here a
thread owns one dx pixel of a phase and all its channels in NARROW registers, reads dy
straight from global memory (consecutive threads, consecutive pixels of the phase:
coalesced) and the phase's weights from shared memory as one 16-byte row of NARROW floats
per (tap, output channel), the same row for every thread (a broadcast). Per pass over 64
output channels the block stages the phase's weights (<= 9 taps x 64 x 4 floats, 9 KB).
Every other convolution, and any with more than NARROW_TAPS taps per phase, runs version
7's kernels; forward and backward_weight are version 7's.

Cost (PREDICTED). As a 128-wide GEMM, G5's forward is ~34 GFLOP of tile work for 0.8 GFLOP
of real work: 4 phases x 131072 rows x 128 columns x K = 2 x 2 taps x 64 channels = 17 G
FMAs, 34 GFLOP (3 columns instead of 128: 0.8). At the FMA peak that is 34 / 67 TFLOP/s =
0.5 ms; at the ~50% of peak expected of version 7, ~1 ms per call, two calls per training
step. The narrow kernel does only the real work (and a fourth, padding channel), 4 FMAs
per dy value and per 16-byte weight load: per 4 output channels its hot loop is 16 FMAs,
4 global loads, 4 ld.shared.v4 and 18 others, 42 instructions (42% FMAs; load-bound, not
FMA-bound). A thread (one dx pixel) runs it 4 taps x 64 / 4 = 64 times: 2688
instructions, x 524288 pixels = 1.4 G thread instructions, 44 M warp instructions; at 4
warp instructions per clock per SM, 132 SMs, ~1.9 GHz (~1 T a second), ~45 us of issue,
~50-100 us with the loads: 10-20x less than version 7 there. 128 registers, no spills, 9 KB of shared
memory.
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import digits
from ..jit import SIMULATOR
from .common import SIG, ceil_div, kernel, tile_grid
from .v4_sub_pixel_phases import most_phase_rows, phase_geometry
from . import v7_prefetch
from .v5_taps_major import taps_major_copy

NARROW = 4                                   # channels per thread: one 16-byte shared row
NARROW_TAPS = 9                              # taps per phase staged: k <= 3 at s1, k <= 6 at s2
NARROW_CHUNK = 4 if SIMULATOR else 64        # output channels staged per pass
NARROW_THREADS = 16 if SIMULATOR else 256
NARROW_ROWS = NARROW_TAPS * NARROW_CHUNK     # (tap, output channel) rows of the shared weights


@kernel(SIG)
def backward_data_narrow_v8(dy, wp, dx, sh, sw, ph, pw):
    """dx (=) for Ci <= NARROW: one thread per dx pixel of phase blockIdx.z, all its channels.

    Phases, taps and the taps-major weights wp[i, j, o, c] as in versions 4 and 5. Per
    pass over NARROW_CHUNK output channels o0.. the block stages
    w_s[t*NARROW_CHUNK + oo, c] = wp[i0 + sh*ti, j0 + sw*tj, o0 + oo, c] for the phase's
    taps t = ti*taps_w + tj (0 past Ci and Co), then each thread adds, for each of its taps
    that lands inside dy, dy[n, o, p_base - ti, q_base - tj] * w_s[t*NARROW_CHUNK + o - o0, :].
    Pixels are taken in a block-stride loop; a block's threads keep in step (barriers).
    """
    w_s = cuda.shared.array((NARROW_ROWS, NARROW), float32, alignment=16)
    acc = cuda.local.array(NARROW, float32)
    n_img, cin, height, width = dx.shape
    kh, kw, cout = wp.shape[0], wp.shape[1], wp.shape[2]
    out_h, out_w = dy.shape[2], dy.shape[3]
    rh, rw, rows_h, rows_w, base_h, base_w, i0, j0, taps_h, taps_w = phase_geometry(
        cuda.blockIdx.z, sh, sw, ph, pw, height, width, kh, kw)
    taps = taps_h * taps_w
    rows = n_img * rows_h * rows_w
    t = cuda.threadIdx.x
    for m0 in range(cuda.blockIdx.x * NARROW_THREADS, rows, cuda.gridDim.x * NARROW_THREADS):
        m = m0 + t
        row_ok = m < rows
        n, u, uv = digits(m, rows_h, rows_w)
        p_base = base_h + u
        q_base = base_w + uv
        for c in range(NARROW):
            acc[c] = float32(0.0)
        for o0 in range(0, cout, NARROW_CHUNK):
            for e in range(t, NARROW_ROWS * NARROW, NARROW_THREADS):
                c = e % NARROW
                oo = (e // NARROW) % NARROW_CHUNK
                tap = e // (NARROW * NARROW_CHUNK)
                value = float32(0.0)
                if tap < taps and o0 + oo < cout and c < cin:
                    value = wp[uint64(i0 + sh * (tap // taps_w)), uint64(j0 + sw * (tap % taps_w)),
                               uint64(o0 + oo), uint64(c)]
                w_s[uint64(tap * NARROW_CHUNK + oo), uint64(c)] = value
            cuda.syncthreads()                   # the chunk's weights staged before anyone reads them
            if row_ok:
                chunk = min(NARROW_CHUNK, cout - o0)
                for ti in range(taps_h):
                    p = p_base - ti
                    for tj in range(taps_w):
                        q = q_base - tj
                        if p >= 0 and p < out_h and q >= 0 and q < out_w:
                            row = (ti * taps_w + tj) * NARROW_CHUNK
                            oo = 0
                            while oo < chunk:
                                a = dy[uint64(n), uint64(o0 + oo), uint64(p), uint64(q)]
                                for c in range(NARROW):
                                    acc[c] += a * w_s[uint64(row + oo), uint64(c)]
                                oo += 1
            cuda.syncthreads()                   # all reads done before the next chunk overwrites
        if row_ok:
            for c in range(NARROW):
                if c < cin:
                    dx[n, c, rh + sh * u, rw + sw * uv] = acc[c]


# ------------------------------------------------------------------------ launchers
def narrow_channels(wide_backward_data):
    """backward_data by backward_data_narrow_v8 where it applies (Ci <= NARROW, <= NARROW_TAPS
    taps per phase) and by wide_backward_data everywhere else."""
    def backward_data(dy, w, dx, sh, sw, ph, pw):
        _, cin, kh, kw = w.shape
        if cin > NARROW or ceil_div(kh, sh) * ceil_div(kw, sw) > NARROW_TAPS:
            return wide_backward_data(dy, w, dx, sh, sw, ph, pw)
        grid = (tile_grid(ceil_div(most_phase_rows(dx.shape, sh, sw), NARROW_THREADS)), 1, sh * sw)
        backward_data_narrow_v8[grid, NARROW_THREADS](dy, taps_major_copy(w), dx, sh, sw, ph, pw)
    return backward_data


OPS = dict(v7_prefetch.OPS, backward_data=narrow_channels(v7_prefetch.OPS["backward_data"]))
