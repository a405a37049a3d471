"""conv2d version 5, taps-major: backward_data's weights regrouped so that its B loads coalesce.

The idea (over version 4). backward_data's B[(ti, tj, o), c] = w[o, c, i, j] is loaded
with consecutive threads on consecutive input channels c, which in w's (Co, Ci, kh, kw)
layout are kh*kw floats apart: a warp's 32 loads touch 32 sectors (16 floats apart at k4:
each 32-byte sector brings one useful float of eight). A copy kernel (taps_major) first
regroups w as wp[i, j, o, c] = w[o, c, i, j]; then B's row (tap, output channel) is a run
of Ci contiguous floats and the same loads coalesce. The copy moves |w| twice (at most
8 MB at DCGAN sizes: a few microseconds, once per call), against B loads that every
block of the GEMM repeats. forward and backward_weight are version 3's.

Cost (PREDICTED). backward_data's B traffic from L2 drops ~8x at k4 (a sector per 8
useful floats instead of 1); it was half of each slice's loads. Expect 1.2-1.5x version 4
on the big layers' backward_data, more where Ci is large and A's reuse hides less.
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import carry_add, digits
from ..jit import f32_4d, grid_1d
from ..linear.v7_vector_loads import register_blocks
from ..reduction import workspace
from .common import SIG, ceil_div, kernel, tile_grid
from .v3_implicit_gemm import TILING
from .v4_sub_pixel_phases import most_phase_rows, phase_geometry


@kernel((f32_4d, f32_4d))
def taps_major(w, wp):
    """wp[i, j, o, c] (=) = w[o, c, i, j]: the weights regrouped so that B's rows in
    backward_data, (tap, output channel) pairs, are runs of Ci contiguous floats.
    A copy, written coalesced (c fastest)."""
    kh, kw, cout, cin = wp.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for idx in range(start, kh * kw * cout * cin, step):
        c = idx % cin
        o = (idx // cin) % cout
        tap = idx // (cin * cout)
        wp[tap // kw, tap % kw, o, c] = w[o, c, tap // kw, tap % kw]


def taps_major_copy(w):
    """w regrouped by taps_major into a workspace (kept for the next call): backward_data's B."""
    cout, cin, kh, kw = w.shape
    wp = workspace(w, (kh, kw, cout, cin), "conv2d.backward_data.taps_major")
    taps_major[grid_1d(w.size)](w, wp)
    return wp


def build(tiling=TILING, version=5):
    """backward_data in sub-pixel phases, B from the taps-major weights, at one tile shape."""
    BM, BN, BK, TM, TN = tiling.bm, tiling.bn, tiling.bk, tiling.tm, tiling.tn
    ROW_THREADS, COL_THREADS = BM // TM, BN // TN
    THREADS = ROW_THREADS * COL_THREADS
    ACCUMULATORS = TM * TN
    A_ROW, B_ROW = BM + tiling.pad, BN + tiling.pad
    STEP_M = THREADS // BM
    PASSES_M = BK // STEP_M
    assert BM == BN    # A's and B's element k are loaded with one walker
    tile_row, tile_col, multiply_slice = register_blocks(tiling)

    @cuda.jit(device=True)
    def gather_phase_taps(dy, wp, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                          ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw):
        """backward_data's two operands at the same k = (ti, tj, o): a_regs[r] = A[m, k] =
        dy[n, o, p_base - ti, q_base - tj] for this thread's dx pixel m, b_regs[r] = B[k, c] =
        wp[i0 + sh*ti, j0 + sw*tj, o, c] for its input channel c; 0 past K, M, Ci or outside dy."""
        out_h, out_w, cout = dy.shape[2], dy.shape[3], wp.shape[2]
        for r in range(PASSES_M):
            a_value = float32(0.0)
            b_value = float32(0.0)
            if ti < taps_h:                      # k < K
                p = p_base - ti
                q = q_base - tj
                if row_ok and p >= 0 and p < out_h and q >= 0 and q < out_w:
                    a_value = dy[uint64(n), uint64(o), uint64(p), uint64(q)]
                if col_ok:
                    b_value = wp[uint64(i0 + sh * ti), uint64(j0 + sw * tj), uint64(o), uint64(c)]
            a_regs[r] = a_value
            b_regs[r] = b_value
            ti, tj, o = carry_add(ti, tj, o, dti, dtj, do, radix_w, cout)
        return ti, tj, o

    @kernel(SIG, name=f"backward_data_v{version}")
    def backward_data_kernel(dy, wp, dx, sh, sw, ph, pw):
        """dx (=), one sub-pixel phase per blockIdx.z, each a stride-1 implicit GEMM
        (phase_geometry, gather_phase_taps), B from wp = w regrouped taps-major (taps_major).
        Tiles and threads as in version 3; consecutive threads load consecutive pixels of the
        phase (consecutive dy columns) and consecutive input channels (contiguous in wp),
        sharing one walker over k = (ti, tj, o)."""
        a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)
        b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)
        acc = cuda.local.array(ACCUMULATORS, float32)
        a_regs = cuda.local.array(PASSES_M, float32)
        b_regs = cuda.local.array(PASSES_M, float32)
        n_img, cin, height, width = dx.shape
        kh, kw, cout = wp.shape[0], wp.shape[1], wp.shape[2]
        # taps_h is 0 for a phase without taps along either axis: then ti < taps_h is k < K.
        rh, rw, rows_h, rows_w, base_h, base_w, i0, j0, taps_h, taps_w = phase_geometry(
            cuda.blockIdx.z, sh, sw, ph, pw, height, width, kh, kw)
        rows = n_img * rows_h * rows_w
        depth = taps_h * taps_w * cout
        tiles_m = (rows + BM - 1) // BM          # 0 for a phase beyond the image: no trips
        tiles = tiles_m * ((cin + BN - 1) // BN)
        t = cuda.threadIdx.x
        col = t % BM
        radix_w = max(taps_w, 1)                 # no slices run without taps, but no division by 0
        dti, dtj, do = digits(STEP_M, radix_w, cout)
        for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
            m0 = (tile % tiles_m) * BM
            n0 = (tile // tiles_m) * BN
            m = m0 + col
            row_ok = m < rows
            n, u, uv = digits(m, rows_h, rows_w)
            p_base = base_h + u
            q_base = base_w + uv
            c = n0 + col
            col_ok = c < cin
            ti, tj, o = digits(t // BM, radix_w, cout)
            for e in range(ACCUMULATORS):
                acc[e] = float32(0.0)
            for k0 in range(0, depth, BK):
                ti, tj, o = gather_phase_taps(dy, wp, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                                              ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw)
                for r in range(PASSES_M):
                    a_tile[uint64(t // BM + r * STEP_M), uint64(col)] = a_regs[r]
                    b_tile[uint64(t // BM + r * STEP_M), uint64(col)] = b_regs[r]
                cuda.syncthreads()
                multiply_slice(a_tile, b_tile, acc, t % ROW_THREADS, t // ROW_THREADS)
                cuda.syncthreads()
            for a in range(TM):
                m = m0 + tile_row(t % ROW_THREADS, a)
                if m < rows:
                    n, u, uv = digits(m, rows_h, rows_w)
                    for b in range(TN):
                        c = n0 + tile_col(t // ROW_THREADS, b)
                        if c < cin:
                            dx[n, c, rh + sh * u, rw + sw * uv] = acc[a * TN + b]

    def backward_data(dy, w, dx, sh, sw, ph, pw):
        """The taps-major copy, then a grid over the largest phase's tiles, one z per phase."""
        tiles = ceil_div(most_phase_rows(dx.shape, sh, sw), BM) * ceil_div(dx.shape[1], BN)
        backward_data_kernel[(tile_grid(tiles), 1, sh * sw), THREADS](dy, taps_major_copy(w), dx, sh, sw, ph, pw)

    return {"backward_data": backward_data}


OPS = build()
