"""conv2d version 7, prefetch: each slice's global loads issued before the previous slice's multiply.

The idea (over version 6). Versions 3-6 run each trip of the slice loop as: gather (global
loads into registers), store to the shared tiles, barrier, multiply, barrier. With one
256-thread block per SM (their ~160-180 registers allow no second), a trip's gathers
leave every warp of the SM waiting on memory: the first use of a loaded value waits out
the whole load (~450 clocks from L2, ~1000 from HBM: kernels/README.md's latency figures),
and nothing else is there to run. Here the
first slice is gathered before the loop, and each later one right after the barrier that
publishes the previous one, BEFORE its multiply: the loads are in flight while the
multiply's 512 FMAs per thread run, and the stores at the top of the next trip find them
arrived. The loads move; nothing else does. All three directions (version 5's
backward_data, version 6's forward and backward_weight with their split-K).

Cost (PREDICTED). A trip is ~1000 clocks of FMAs (8 warps x 512 warp-FMAs / 4 a clock);
hiding a ~450-1000 clock load behind them is worth up to ~1.5x on the big layers, for the
registers the next slice lands in while the multiply runs (167-181 against 152-168, still
one block per SM, no spills). bench/ptx_hot_loop.py shows the move: 8 global loads in
flight during the multiply loop, against none in version 6. A second pair of shared
tiles (double buffering) would also save one barrier per trip, for 8 KB more shared
memory: not done here.
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import carry_add, digits
from ..jit import f32_2d, f32_4d, i64
from ..linear.v7_vector_loads import register_blocks
from ..reduction import workspace
from .common import SIG, ceil_div, kernel, tile_grid
from .v3_implicit_gemm import TILING, gathers
from .v4_sub_pixel_phases import most_phase_rows, phase_geometry
from .v5_taps_major import taps_major_copy
from .v6_split_k import launch_sum_splits, split_reduction


def build(tiling=TILING, version=7):
    """All three directions, each slice's gathers issued before the previous slice's multiply."""
    BM, BN, BK, TM, TN = tiling.bm, tiling.bn, tiling.bk, tiling.tm, tiling.tn
    ROW_THREADS, COL_THREADS = BM // TM, BN // TN
    THREADS = ROW_THREADS * COL_THREADS
    ACCUMULATORS = TM * TN
    # Padding per shared row: a slice filled k fastest (consecutive threads down a column)
    # then spreads a warp over the banks; 4 floats also keep each row 16-byte aligned.
    A_ROW, B_ROW = BM + tiling.pad, BN + tiling.pad
    STEP_M, STEP_N, STEP_K = THREADS // BM, THREADS // BN, THREADS // BK
    PASSES_M, PASSES_N, PASSES_KM, PASSES_KN = BK // STEP_M, BK // STEP_N, BM // STEP_K, BN // STEP_K
    assert BM == BN    # backward_data loads A's and B's element k with one walker
    tile_row, tile_col, multiply_slice = register_blocks(tiling)
    gather_pixel_taps, gather_weight_rows, gather_output_grads, gather_input_taps = gathers(tiling)

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
        """dx (=): version 5's kernel (one sub-pixel phase per blockIdx.z, B from the
        taps-major wp), with each slice gathered during the previous slice's multiply."""
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
            ti, tj, o = gather_phase_taps(dy, wp, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                                          ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw)
            for k0 in range(0, depth, BK):
                for r in range(PASSES_M):
                    a_tile[uint64(t // BM + r * STEP_M), uint64(col)] = a_regs[r]
                    b_tile[uint64(t // BM + r * STEP_M), uint64(col)] = b_regs[r]
                cuda.syncthreads()
                ti, tj, o = gather_phase_taps(dy, wp, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                                              ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw)
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

    @kernel((f32_4d, f32_2d, f32_4d, i64, i64, i64, i64, i64, i64, i64), name=f"forward_v{version}")
    def forward_kernel(x, w, out, sh, sw, ph, pw, kh, kw, chunk):
        """out (=) as C[M = N*Ho*Wo, Co] = A[M, K = Ci*kh*kw] @ B[K, Co]; w is the (Co, K) view.

        Version 6's kernel (split z = blockIdx.z's range of k, into out[z*N + n, o, p, q]),
        with each slice gathered during the previous slice's multiply.
        """
        a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)
        b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)
        acc = cuda.local.array(ACCUMULATORS, float32)
        a_regs = cuda.local.array(PASSES_M, float32)
        b_regs = cuda.local.array(PASSES_KN, float32)
        n_img = x.shape[0]
        cout, depth = w.shape
        out_h, out_w = out.shape[2], out.shape[3]
        rows = n_img * out_h * out_w
        tiles_m = (rows + BM - 1) // BM
        tiles = tiles_m * ((cout + BN - 1) // BN)
        split = cuda.blockIdx.z
        k_start = split * chunk
        k_end = min(k_start + chunk, depth)
        t = cuda.threadIdx.x
        dc, di, dj = digits(STEP_M, kh, kw)
        # A loads, m fastest: a warp reads 32 neighbouring output pixels' taps, x addresses s
        # apart (stride 1: fully coalesced; stride 2: every other word of each sector). This
        # thread always loads tile column mm (one output pixel) at k = k_a, k_a + STEP_M, ...
        mm = t % BM
        # B loads, k fastest: w's (Co, K) rows are contiguous along k (coalesced); the shared
        # tile is written down its columns, hence the padding.
        kk_b = t % BK
        nn_b = t // BK
        for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
            m0 = (tile % tiles_m) * BM
            n0 = (tile // tiles_m) * BN
            m = m0 + mm
            row_ok = m < rows
            n, p, q = digits(m, out_h, out_w)
            h_base = p * sh - ph
            v_base = q * sw - pw
            k_a = k_start + t // BM
            c, i, j = digits(k_a, kh, kw)
            for e in range(ACCUMULATORS):
                acc[e] = float32(0.0)
            k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end,
                                             kh, kw, dc, di, dj)
            gather_weight_rows(w, b_regs, n0 + nn_b, k_start + kk_b, k_end)
            for k0 in range(k_start, k_end, BK):
                for r in range(PASSES_M):
                    a_tile[uint64(t // BM + r * STEP_M), uint64(mm)] = a_regs[r]
                for r in range(PASSES_KN):
                    b_tile[uint64(kk_b), uint64(nn_b + r * STEP_K)] = b_regs[r]
                cuda.syncthreads()               # both slices complete before anyone reads them
                # The next slice's loads, in flight while this slice's multiply-adds run.
                k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end,
                                                 kh, kw, dc, di, dj)
                gather_weight_rows(w, b_regs, n0 + nn_b, k0 + BK + kk_b, k_end)
                multiply_slice(a_tile, b_tile, acc, t % ROW_THREADS, t // ROW_THREADS)
                cuda.syncthreads()               # all reads done before the next slice overwrites
            for a in range(TM):
                m = m0 + tile_row(t % ROW_THREADS, a)
                if m < rows:
                    n, p, q = digits(m, out_h, out_w)
                    for b in range(TN):
                        o = n0 + tile_col(t // ROW_THREADS, b)
                        if o < cout:
                            out[split * n_img + n, o, p, q] = acc[a * TN + b]

    @kernel((f32_4d, f32_4d, f32_2d, i64, i64, i64, i64, i64, i64, i64), name=f"backward_weight_v{version}")
    def backward_weight_kernel(x, dy, partials, sh, sw, ph, pw, kh, kw, chunk):
        """partials[z*Co + o, k] (=): version 6's kernel (split z's share of dw, pixels
        [z*chunk, (z+1)*chunk)), with each slice gathered during the previous slice's multiply.
        """
        a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)     # a_tile[pixel, o] = dy
        b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)     # b_tile[pixel, k] = x's tap
        acc = cuda.local.array(ACCUMULATORS, float32)
        a_regs = cuda.local.array(PASSES_KM, float32)
        b_regs = cuda.local.array(PASSES_N, float32)
        n_img, cin = x.shape[0], x.shape[1]
        cout, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
        depth = cin * kh * kw
        pixels = n_img * out_h * out_w
        tiles_m = (cout + BM - 1) // BM
        tiles = tiles_m * ((depth + BN - 1) // BN)
        split = cuda.blockIdx.z
        first = split * chunk
        end = min(first + chunk, pixels)
        t = cuda.threadIdx.x
        # dy loads, pixels fastest (dy's contiguous axis: coalesced): this thread always loads
        # slice row kk_a, pixel first + kk_a + BK*slice, for output channels mm_a + r*STEP_K.
        kk_a = t % BK
        mm_a = t // BK
        dn_a, dp_a, dq_a = digits(BK, out_h, out_w)
        # x loads, k fastest: this thread always loads tile column nn (one tap (c, i, j)) at
        # pixels first + t // BN + STEP_N*u. A warp reads runs of kw contiguous floats, a row apart.
        nn = t % BN
        dn_b, dp_b, dq_b = digits(STEP_N, out_h, out_w)
        for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
            m0 = (tile % tiles_m) * BM
            n0 = (tile // tiles_m) * BN
            pix_a = first + kk_a
            n_a, p_a, q_a = digits(pix_a, out_h, out_w)
            k = n0 + nn
            col_ok = k < depth
            c, i, j = digits(k, kh, kw)
            pix_b = first + t // BN
            n_b, p_b, q_b = digits(pix_b, out_h, out_w)
            for e in range(ACCUMULATORS):
                acc[e] = float32(0.0)
            pix_a, n_a, p_a, q_a = gather_output_grads(dy, a_regs, pix_a, n_a, p_a, q_a, end, m0 + mm_a,
                                                       dn_a, dp_a, dq_a)
            pix_b, n_b, p_b, q_b = gather_input_taps(x, b_regs, pix_b, n_b, p_b, q_b, end, col_ok, c, i, j,
                                                     sh, sw, ph, pw, dn_b, dp_b, dq_b, out_h, out_w)
            for r0 in range(first, end, BK):
                for r in range(PASSES_KM):
                    a_tile[uint64(kk_a), uint64(mm_a + r * STEP_K)] = a_regs[r]
                for r in range(PASSES_N):
                    b_tile[uint64(t // BN + r * STEP_N), uint64(nn)] = b_regs[r]
                cuda.syncthreads()
                pix_a, n_a, p_a, q_a = gather_output_grads(dy, a_regs, pix_a, n_a, p_a, q_a, end, m0 + mm_a,
                                                           dn_a, dp_a, dq_a)
                pix_b, n_b, p_b, q_b = gather_input_taps(x, b_regs, pix_b, n_b, p_b, q_b, end, col_ok, c, i, j,
                                                         sh, sw, ph, pw, dn_b, dp_b, dq_b, out_h, out_w)
                multiply_slice(a_tile, b_tile, acc, t // COL_THREADS, t % COL_THREADS)
                cuda.syncthreads()
            for a in range(TM):
                o = m0 + tile_row(t // COL_THREADS, a)
                if o < cout:
                    for b in range(TN):
                        k = n0 + tile_col(t % COL_THREADS, b)
                        if k < depth:
                            partials[split * cout + o, k] = acc[a * TN + b]

    # ---- launchers: one block of THREADS threads per tile of C in a block-stride loop, times
    # the splits (blockIdx.z); with several, a workspace of partial results and sum_splits.
    def forward(x, w, y, sh, sw, ph, pw, splits=None):
        n, cout, out_h, out_w = y.shape
        cin, kh, kw = w.shape[1:]
        depth = cin * kh * kw
        tiles = ceil_div(n * out_h * out_w, BM) * ceil_div(cout, BN)
        splits, chunk = split_reduction(depth, tiles, splits, tiling)
        out = y if splits == 1 else workspace(y, (splits * n, cout, out_h, out_w), "conv2d.forward.partials")
        forward_kernel[(tile_grid(tiles), 1, splits), THREADS](x, w.reshape(cout, depth), out, sh, sw, ph, pw,
                                                               kh, kw, chunk)
        if splits > 1:
            launch_sum_splits(out.reshape(splits * n, y.size // n), y.reshape(n, y.size // n))

    def backward_data(dy, w, dx, sh, sw, ph, pw):
        tiles = ceil_div(most_phase_rows(dx.shape, sh, sw), BM) * ceil_div(dx.shape[1], BN)
        backward_data_kernel[(tile_grid(tiles), 1, sh * sw), THREADS](dy, taps_major_copy(w), dx, sh, sw, ph, pw)

    def backward_weight(x, dy, dw, sh, sw, ph, pw, splits=None):
        cout, cin, kh, kw = dw.shape
        depth = cin * kh * kw
        tiles = ceil_div(cout, BM) * ceil_div(depth, BN)
        splits, chunk = split_reduction(dy.shape[0] * dy.shape[2] * dy.shape[3], tiles, splits, tiling)
        dw2 = dw.reshape(cout, depth)
        partials = dw2 if splits == 1 else workspace(dw, (splits * cout, depth), "conv2d.backward_weight.partials")
        backward_weight_kernel[(tile_grid(tiles), 1, splits), THREADS](x, dy, partials, sh, sw, ph, pw, kh, kw, chunk)
        if splits > 1:
            launch_sum_splits(partials, dw2)

    return {"forward": forward, "backward_data": backward_data, "backward_weight": backward_weight}


OPS = build()
