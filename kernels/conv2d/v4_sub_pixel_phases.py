"""conv2d version 4, sub-pixel-phases: backward_data as s*s stride-1 GEMMs, one per output phase.

The idea (over version 3). Skip the taps that miss, as version 2's per-pixel loop did,
but inside a GEMM: version 3 lost that (a GEMM sums over one K for every row). The picture,
one axis of k4 s2 pad 1: dx row h takes tap i from dy row (h + 1 - i)/2 where that divides
                   i=0    i=1    i=2    i=3
    h = 0 (even)    -     dy0     -     (dy -1: outside, 0)   even rows: taps 1, 3
    h = 1 (odd)    dy1     -     dy0     -                    odd rows:  taps 0, 2
    h = 2 (even)    -     dy1     -     dy0
    h = 3 (odd)    dy2     -     dy1     -
Even rows only ever use taps 1 and 3, odd rows taps 0 and 2: split dx by the parity of h
(and of v) and each part, a phase, is a plain stride-1 convolution with 2 x 2 taps. In
general, notation: s the stride, h = rh + s*u (rh the phase of row h, u its row within the
phase; for columns v = rw + s*uv), div integer division, taps' the taps of one phase, ti
(tj) a tap's number within its phase (i = i0 + s*ti), base_h = (rh + pad) div s the dy
row that tap 0 reads at u = 0 (in the picture: phase 0 has i0 = 1, base_h = 0; phase 1
has i0 = 0, base_h = 1). dx pixel (h, v) with h = rh + s*u is reached only by the taps
i = i0, i0 + s, ... where i0 = (rh + pad) mod s, from dy row (rh + pad) div s + u -
(i - i0)/s. So the s*s phases (rh, rw) of dx (one per blockIdx.z) are s*s independent
stride-1 convolutions with taps' = ceil((kh - i0)/s) x ceil((kw - j0)/s) taps each:
    C[M = N*rows_h*rows_w, Ci] = A[M, K = taps_h*taps_w*Co] @ B[K, Ci]
    A[(n,u,uv), (ti,tj,o)] = dy[n, o, base_h + u - ti, base_w + uv - tj]   (0 outside dy)
    B[(ti,tj,o), c] = w[o, c, i0 + s*ti, j0 + s*tj]
Version 3 visits every tap of every pixel and multiplies a zero wherever a division is not
exact; here no multiply-add is spent on a tap that does not land, no element pays a
divisibility test, and consecutive pixels of a phase read consecutive dy columns (stride
1, where version 3 read dy s floats apart at best). A phase with no taps (k1 s2: odd rows)
and rows beyond every window (a transposed conv's output_padding) are written 0; each dx
element is in exactly one phase and one row of it, so it is written exactly once (=).
forward and backward_weight are version 3's.

Cost (PREDICTED). At k4 s2 (every DCGAN layer) 2 of 4 taps per axis land: 4 of 16, so
version 3's backward_data does 4x the FMAs it needs; k5 s2 (paper) phases of 3x3, 3x2, 2x3
and 2x2 taps, 25 of 4 x 25: again 1/4 (the deep phases' blocks take longer). Expect ~4x
version 3 on the big layers' backward_data (D2-D4, and G2-G4's forward, which is this
kernel through the duality). Still strided: B's loads, consecutive threads on consecutive
c, read w[o, c, i, j] kh*kw floats apart (version 5).
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import carry_add, digits
from ..linear.v7_vector_loads import register_blocks
from .common import SIG, ceil_div, kernel, tile_grid
from .v3_implicit_gemm import TILING


@cuda.jit(device=True)
def phase_geometry(z, sh, sw, ph, pw, height, width, kh, kw):
    """Sub-pixel phase z of backward_data: (rh, rw, rows_h, rows_w, base_h, base_w, i0, j0,
    taps_h, taps_w).

    Phase (rh, rw) = (z // sw, z % sw) is the dx pixels h = rh + sh*u, v = rw + sw*uv,
    rows_h x rows_w of them (0 when the phase starts beyond the image). Only the taps
    i = i0, i0 + sh, ... (taps_h of them) reach its rows, tap i0 + sh*ti taking dx row
    rh + sh*u from dy row base_h + u - ti, as rh + ph = base_h*sh + i0; columns likewise.
    A phase that no tap reaches along either axis (k < s) has no taps at all.
    """
    rh = z // sw
    rw = z % sw
    rows_h = (height - rh + sh - 1) // sh
    rows_w = (width - rw + sw - 1) // sw
    base_h, i0 = (rh + ph) // sh, (rh + ph) % sh
    base_w, j0 = (rw + pw) // sw, (rw + pw) % sw
    taps_h = (kh - i0 + sh - 1) // sh
    taps_w = (kw - j0 + sw - 1) // sw
    if taps_w == 0:
        taps_h = 0
    return rh, rw, rows_h, rows_w, base_h, base_w, i0, j0, taps_h, taps_w


def most_phase_rows(dx_shape, sh, sw):
    """Rows of backward_data's largest sub-pixel phase, (0, 0): what a grid over phases must
    cover (blocks beyond a smaller phase's rows have no trips)."""
    n, _, height, width = dx_shape
    return n * ceil_div(height, sh) * ceil_div(width, sw)


def build(tiling=TILING, version=4):
    """backward_data in sub-pixel phases at one tile shape, as a Version's ops."""
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
    def gather_phase_taps(dy, w, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                          ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw):
        """backward_data's two operands at the same k = (ti, tj, o): a_regs[r] = A[m, k] =
        dy[n, o, p_base - ti, q_base - tj] for this thread's dx pixel m, b_regs[r] = B[k, c] =
        w[o, c, i0 + sh*ti, j0 + sw*tj] for its input channel c; 0 past K, M, Ci or outside dy."""
        out_h, out_w, cout = dy.shape[2], dy.shape[3], w.shape[0]
        for r in range(PASSES_M):
            a_value = float32(0.0)
            b_value = float32(0.0)
            if ti < taps_h:                      # k < K
                p = p_base - ti
                q = q_base - tj
                if row_ok and p >= 0 and p < out_h and q >= 0 and q < out_w:
                    a_value = dy[uint64(n), uint64(o), uint64(p), uint64(q)]
                if col_ok:
                    b_value = w[uint64(o), uint64(c), uint64(i0 + sh * ti), uint64(j0 + sw * tj)]
            a_regs[r] = a_value
            b_regs[r] = b_value
            ti, tj, o = carry_add(ti, tj, o, dti, dtj, do, radix_w, cout)
        return ti, tj, o

    @kernel(SIG, name=f"backward_data_v{version}")
    def backward_data_kernel(dy, w, dx, sh, sw, ph, pw):
        """dx (=), one sub-pixel phase per blockIdx.z, each a stride-1 implicit GEMM
        (phase_geometry, gather_phase_taps). Tiles and threads as in version 3; consecutive
        threads load consecutive pixels of the phase (consecutive dy columns) and consecutive
        input channels, sharing one walker over k = (ti, tj, o)."""
        a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)
        b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)
        acc = cuda.local.array(ACCUMULATORS, float32)
        a_regs = cuda.local.array(PASSES_M, float32)
        b_regs = cuda.local.array(PASSES_M, float32)
        n_img, cin, height, width = dx.shape
        cout, kh, kw = w.shape[0], w.shape[2], w.shape[3]
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
                ti, tj, o = gather_phase_taps(dy, w, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
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
        """A grid over the largest phase's tiles, one z per phase."""
        tiles = ceil_div(most_phase_rows(dx.shape, sh, sw), BM) * ceil_div(dx.shape[1], BN)
        backward_data_kernel[(tile_grid(tiles), 1, sh * sw), THREADS](dy, w, dx, sh, sw, ph, pw)

    return {"backward_data": backward_data}


OPS = build()
