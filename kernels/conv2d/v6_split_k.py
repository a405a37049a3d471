"""conv2d version 6, split-k: a GEMM with too few tiles for the GPU splits its reduction over blocks.

The idea (over version 5). Where C has too few tiles to fill the GPU, the reduction is cut
into fixed ranges of whole slices, one per blockIdx.z (split_reduction: enough splits to
reach tiling.split_target blocks, one wave of 132 on an H100, each split at least
min_split = 256 long). Each split writes its partial C to a workspace
(reduction.workspace), and sum_splits adds the splits element by element in an order
fixed by the shape: deterministic, no atomics (float atomics would add in whatever order
the blocks finish, and training would lose its bitwise reproducibility). The kernels are
version 3's forward and backward_weight, each summing its own range into its own slice
of the output; backward_data (version 5's) needs none: its phases are grid z already, and
its GEMMs are never short of tiles at the DCGAN shapes.

Where it matters (PREDICTED). backward_weight at D1: C is 64 x 48 (one tile, one block on
one SM of 132) over P = 131072 pixels: 132 splits of ~1000; D2: 8 tiles, D3: 2; the
forward where M is tiny: D5 (y is 128 x 1, K = 8192: 1 tile, 32 splits of 256), G1's
backward_data through the duality (a forward). For those one-block GEMMs up to ~100x
version 5; the workspace is at most ~4 MB (a few microseconds to write and sum). The big
layers' GEMMs already have 132 or more tiles and do not split: unchanged.
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import digits
from ..jit import SIMULATOR, f32_2d, f32_4d, i64
from ..linear.v7_vector_loads import register_blocks
from ..reduction import workspace
from .common import ceil_div, kernel, tile_grid
from .v3_implicit_gemm import TILING, gathers


def split_reduction(length, tiles, splits=None, tiling=TILING):
    """(splits, chunk): a fixed partition of a GEMM's reduction axis (length K, or P pixels)
    into ranges [z*chunk, (z+1)*chunk) of whole BK slices, one per blockIdx.z.

    A grid of T tiles smaller than tiling.split_target blocks (one wave: 1 resident
    256-thread block per SM on 132 SMs at this tile shape's ~160 registers) is split into
    as many ranges as bring it there, each at least tiling.min_split long (16 or
    32 slices), so the partial tiles written to the workspace stay small next to the work.
    Depends on the shape alone, so a layer always adds in the same order. Rounding chunk up
    to whole slices can leave fewer splits than asked for; every split's range is non-empty.
    """
    if splits is None:
        splits = max(1, min(tiling.split_target // tiles, length // tiling.min_split))
    chunk = ceil_div(ceil_div(length, max(1, min(splits, length))), tiling.bk) * tiling.bk
    return ceil_div(length, chunk), chunk


SPLIT_LANES = 4 if SIMULATOR else 32      # consecutive elements per block: a warp's coalesced 128 bytes
SPLIT_GROUPS = 2 if SIMULATOR else 8      # threads per element, each adding every SPLIT_GROUPS-th split


@kernel((f32_2d, f32_2d))
def sum_splits(partials, out):
    """out[r, e] (=) = partials[r, e] + partials[R + r, e] + ... over the splits; R = out's
    rows: Co for dw viewed (Co, K), N for y viewed (N, Co*Ho*Wo).

    A block takes SPLIT_LANES consecutive elements (consecutive threads on consecutive e:
    coalesced) with SPLIT_GROUPS threads each: group g adds the splits g, g + G, g + 2G, ...
    in that order, then group 0 adds the G sums in group order. The order depends on the
    shape alone: bitwise reproducible. Why several threads per element: the weight
    gradients of D1 and G5 have 3072 elements and 132 (v5) or 512 (v7) splits; one thread
    per element, as this kernel was first written, is 12 blocks for 132 SMs, each thread
    a chain of 512 loads from L2 (~300 clocks each, a few in flight): ~20 us, as long as
    the GEMM. With 8 threads an element, 96 blocks and 64 loads a thread.
    """
    sums = cuda.shared.array((SPLIT_GROUPS, SPLIT_LANES), float32)
    rows, cols = out.shape
    total_elements = rows * cols
    splits = partials.shape[0] // rows
    lane = cuda.threadIdx.x % SPLIT_LANES
    group = cuda.threadIdx.x // SPLIT_LANES
    for first in range(cuda.blockIdx.x * SPLIT_LANES, total_elements, cuda.gridDim.x * SPLIT_LANES):
        idx = first + lane
        r = idx // cols
        e = idx % cols
        total = float32(0.0)
        if idx < total_elements:
            for z in range(group, splits, SPLIT_GROUPS):
                total += partials[uint64(z * rows + r), uint64(e)]
        sums[uint64(group), uint64(lane)] = total
        cuda.syncthreads()                       # every group's sum written
        if group == 0 and idx < total_elements:
            for g in range(1, SPLIT_GROUPS):
                total += sums[uint64(g), uint64(lane)]
            out[uint64(r), uint64(e)] = total
        cuda.syncthreads()                       # read before the next trip overwrites


def launch_sum_splits(partials, out):
    """out (=) = the sum of partials' splits (sum_splits), one block per SPLIT_LANES elements."""
    sum_splits[tile_grid(ceil_div(out.size, SPLIT_LANES)), SPLIT_LANES * SPLIT_GROUPS](partials, out)


def build(tiling=TILING, version=6):
    """forward and backward_weight with split-K at one tile shape, as a Version's ops."""
    BM, BN, BK, TM, TN = tiling.bm, tiling.bn, tiling.bk, tiling.tm, tiling.tn
    ROW_THREADS, COL_THREADS = BM // TM, BN // TN
    THREADS = ROW_THREADS * COL_THREADS
    ACCUMULATORS = TM * TN
    # Padding per shared row: a slice filled k fastest (consecutive threads down a column)
    # then spreads a warp over the banks; 4 floats also keep each row 16-byte aligned.
    A_ROW, B_ROW = BM + tiling.pad, BN + tiling.pad
    STEP_M, STEP_N, STEP_K = THREADS // BM, THREADS // BN, THREADS // BK
    PASSES_M, PASSES_N, PASSES_KM, PASSES_KN = BK // STEP_M, BK // STEP_N, BM // STEP_K, BN // STEP_K
    tile_row, tile_col, multiply_slice = register_blocks(tiling)
    gather_pixel_taps, gather_weight_rows, gather_output_grads, gather_input_taps = gathers(tiling)

    @kernel((f32_4d, f32_2d, f32_4d, i64, i64, i64, i64, i64, i64, i64), name=f"forward_v{version}")
    def forward_kernel(x, w, out, sh, sw, ph, pw, kh, kw, chunk):
        """out (=) as C[M = N*Ho*Wo, Co] = A[M, K = Ci*kh*kw] @ B[K, Co]; w is the (Co, K) view.

        Version 3's kernel, summing only split z = blockIdx.z's range k in [z*chunk,
        (z+1)*chunk) and writing it to out[z*N + n, o, p, q]: with one split out is y
        itself, with several a workspace that sum_splits adds up.
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
            for k0 in range(k_start, k_end, BK):
                k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end,
                                                 kh, kw, dc, di, dj)
                gather_weight_rows(w, b_regs, n0 + nn_b, k0 + kk_b, k_end)
                for r in range(PASSES_M):
                    a_tile[uint64(t // BM + r * STEP_M), uint64(mm)] = a_regs[r]
                for r in range(PASSES_KN):
                    b_tile[uint64(kk_b), uint64(nn_b + r * STEP_K)] = b_regs[r]
                cuda.syncthreads()               # both slices complete before anyone reads them
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
        """partials[z*Co + o, k] (=): split z = blockIdx.z's share of dw, pixels [z*chunk,
        (z+1)*chunk) of version 3's reduction. The assignment of pixels to splits is fixed by
        `chunk`, so each partial is the same sum on every run. With one split the launcher
        passes dw itself, viewed (Co, K).
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
            for r0 in range(first, end, BK):
                pix_a, n_a, p_a, q_a = gather_output_grads(dy, a_regs, pix_a, n_a, p_a, q_a, end, m0 + mm_a,
                                                           dn_a, dp_a, dq_a)
                pix_b, n_b, p_b, q_b = gather_input_taps(x, b_regs, pix_b, n_b, p_b, q_b, end, col_ok, c, i, j,
                                                         sh, sw, ph, pw, dn_b, dp_b, dq_b, out_h, out_w)
                for r in range(PASSES_KM):
                    a_tile[uint64(kk_a), uint64(mm_a + r * STEP_K)] = a_regs[r]
                for r in range(PASSES_N):
                    b_tile[uint64(t // BN + r * STEP_N), uint64(nn)] = b_regs[r]
                cuda.syncthreads()
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

    return {"forward": forward, "backward_weight": backward_weight}


OPS = build()
