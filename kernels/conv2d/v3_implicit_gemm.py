"""conv2d version 3, implicit-gemm: the GEMM ladder's last rung, its operands gathered from images.

The idea (over linear's rung 7). Every direction of a convolution is a matrix product
C = A @ B in disguise. im2col writes the disguise out (each input value copied up to
kh*kw times) and calls a GEMM; here nothing is materialised. The kernel is linear's rung 7
(128 x 128 tiles of C, 256 threads, each an 8 x 8 block in runs of 4 read with 16-byte
shared loads, unsigned indices; register_blocks is imported from it), and where rung 7
copies a slice of op(A) from a matrix, each thread here works out which image element a
position of the slice is and loads that (an implicit im2col), 0 in the padding:
    forward          C[M = N*Ho*Wo, Co] = A[M, K = Ci*kh*kw] @ B[K, Co]
                     A[(n,p,q), (c,i,j)] = x[n, c, p*s + i - pad, q*s + j - pad], B = w as (Co, K)
    backward_data    C[M = N*H*W, Ci] = A[M, K = kh*kw*Co] @ B[K, Ci]
                     A[(n,h,v), (i,j,o)] = dy[n, o, (h + pad - i)/s, (v + pad - j)/s] where both
                     divisions are exact and in range, else 0; B[(i,j,o), c] = w[o, c, i, j]
    backward_weight  C[Co, K = Ci*kh*kw] = dy^T[Co, P = N*Ho*Wo] @ A[P, K], A as in forward
The three mappings side by side (which index of the convolution becomes which GEMM size):
                     M (rows of C)        N (columns of C)      K (summed over)
    forward          pixels (n, p, q)     out channels o        (c, i, j)   Ci*kh*kw
    backward_data    pixels (n, h, v)     in channels c         (i, j, o)   kh*kw*Co
    backward_weight  out channels o       (c, i, j)             pixels (n, p, q)
How threads map to data. A block takes tiles of C in a block-stride loop (one trip each on a
GPU), walks the reduction in BK = 8 deep slices, gathers a BK x BM slice of A (stored
k-major, as in rung 7) and a BK x BN slice of B into shared memory (8.25 KB), zero past M,
N, K, syncthreads, multiplies, syncthreads. Each gather puts consecutive threads on the
operand's contiguous axis where there is one: forward's A on consecutive output pixels (x
read s floats apart), its B along k (w's rows); backward_data's A and B on consecutive
pixels and input channels, sharing one k; backward_weight's dy along pixels and its x taps
along k (runs of kw floats). A thread keeps the same tile column for the whole reduction,
so its index along the reduction advances by a constant step: it keeps the index as digits
(c, i, j) or (n, p, q) and adds the step's digits with carries (elementwise.carry_add), no
division per element. Outputs are stored with consecutive threads along y's/dx's pixels
or dw's k. The simulator runs 16 x 16 tiles, 4 x 4 per thread in runs of 2, BK = 4.

Cost (PREDICTED; no GPU run yet). The hot loop is rung 7's: per trip (two k) 128 FMAs,
8 ld.shared.v4 and 12 others, 86% FMAs (bench/ptx_hot_loop.py); a 128 x 128 tile reads
BM + BN = 256 floats per k for 16384 FMAs, 32 FLOP per byte from L2. Against version 2's
one output per thread (two shared loads per FMA: at most 1/8 of the FMA peak), expect
4-6x on the 8.6 GFLOP layers' forward (D2-D4; and G2-G4, transposed convolutions whose
forward is this file's backward_data: conv_transpose2d.py, later in the reading order,
runs each direction of a transposed layer as another direction of conv2d). 152-162
registers: one 256-thread block (8 warps) per SM.
What it still lacks, one version each: backward_data visits all kh*kw taps, though at
stride 2 only 1 in 4 lands (3/4 of its FMAs multiply zeros, and each gathered element pays
a divisibility test: version 4, sub-pixel phases); its B loads w[o, c, i, j] with
consecutive threads kh*kw floats apart (version 5, taps-major weights); a GEMM with few
tiles leaves most SMs idle (D1's weight gradient: C is 64 x 48, one tile, one block, over
P = 131072 pixels: version 6, split-K); and the block waits on each slice's gathers with
nothing to do (version 7, prefetch).
A step back, on purpose: version 2's backward_data never tested divisibility (each pixel's
loop started at its first landing tap and stepped by s), while this version's does, and
spends 655 instructions around the hot loop there against 218-261 in the other two
directions (bench/ptx_hot_loop.py). A GEMM's reduction runs over the same K = kh*kw*Co for
every row of A, so the per-pixel choice of taps has no place in it: every tap is visited,
and each gathered element tests whether it lands. The GEMM's reuse is worth more than the
test costs; version 4 then brings the skipping back inside the GEMM.
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import carry_add, digits
from ..jit import SIMULATOR, f32_2d, f32_4d, i64
from ..linear.v7_vector_loads import register_blocks
from .common import SIG, Tiling, ceil_div, kernel, tile_grid

# linear's rung 7 tiles (split_target and min_split: version 6's split-K). Versions 3-8 all
# run this tile shape; the simulator's is small (16 threads a block), so that the tests'
# tiny shapes still span several tiles in M, N and K.
GPU_TILING = Tiling(bm=128, bn=128, bk=8, tm=8, tn=8, vec=4, pad=4, split_target=132, min_split=256)
SIM_TILING = Tiling(bm=16, bn=16, bk=4, tm=4, tn=4, vec=2, pad=2, split_target=8, min_split=4)
TILING = SIM_TILING if SIMULATOR else GPU_TILING


def gathers(tiling):
    """(gather_pixel_taps, gather_weight_rows, gather_output_grads, gather_input_taps): the
    im2col gathers of forward and backward_weight for one tile shape, global memory ->
    registers, one slice's worth per call.

    Each thread loads the same tile column (or row) at every slice, walking the reduction
    axis with a carry_add; each returns its walker advanced by one slice. Past the end they
    load nothing and give zeros (so a prefetch beyond the last slice is harmless). Indices
    are cast to uint64 once they are known to be in range, as in the multiply: each signed
    one would cost its negative-index wraparound.
    """
    BM, BN, BK = tiling.bm, tiling.bn, tiling.bk
    THREADS = (BM // tiling.tm) * (BN // tiling.tn)
    # With consecutive threads on consecutive m (or n), THREADS threads fill STEP_M (STEP_N)
    # rows of a slice per pass; with k fastest, STEP_K columns. Hence the passes per slice.
    STEP_M, STEP_N, STEP_K = THREADS // BM, THREADS // BN, THREADS // BK
    PASSES_M, PASSES_N, PASSES_KM, PASSES_KN = BK // STEP_M, BK // STEP_N, BM // STEP_K, BN // STEP_K

    @cuda.jit(device=True)
    def gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end, kh, kw, dc, di, dj):
        """a_regs[r] = A[m, k_a + r*STEP_M] = x[n, c, h_base + i, v_base + j] at k = (c, i, j),
        for this thread's output pixel m = (n, p, q); 0 past M or K and in the padding."""
        height, width = x.shape[2], x.shape[3]
        for r in range(PASSES_M):
            value = float32(0.0)
            if row_ok and k_a < k_end:
                h = h_base + i
                v = v_base + j
                if h >= 0 and h < height and v >= 0 and v < width:
                    value = x[uint64(n), uint64(c), uint64(h), uint64(v)]
            a_regs[r] = value
            k_a += STEP_M
            c, i, j = carry_add(c, i, j, dc, di, dj, kh, kw)
        return k_a, c, i, j

    @cuda.jit(device=True)
    def gather_weight_rows(w, b_regs, o_first, k, k_end):
        """b_regs[r] = B[k, o] = w[o, k] for o = o_first + r*STEP_K; 0 past K or Co."""
        for r in range(PASSES_KN):
            o = o_first + r * STEP_K
            value = float32(0.0)
            if k < k_end and o < w.shape[0]:
                value = w[uint64(o), uint64(k)]
            b_regs[r] = value

    @cuda.jit(device=True)
    def gather_output_grads(dy, a_regs, pix, n, p, q, end, o_first, dn, dp, dq):
        """a_regs[r] = dy[n, o, p, q] at pixel pix = (n, p, q), o = o_first + r*STEP_K (one
        pixel, STEP_K apart in o); 0 past the reduction's end or Co. The walker moves BK pixels."""
        cout, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
        for r in range(PASSES_KM):
            o = o_first + r * STEP_K
            value = float32(0.0)
            if pix < end and o < cout:
                value = dy[uint64(n), uint64(o), uint64(p), uint64(q)]
            a_regs[r] = value
        n, p, q = carry_add(n, p, q, dn, dp, dq, out_h, out_w)
        return pix + BK, n, p, q

    @cuda.jit(device=True)
    def gather_input_taps(x, b_regs, pix, n, p, q, end, col_ok, c, i, j, sh, sw, ph, pw, dn, dp, dq, out_h, out_w):
        """b_regs[r] = A[pixel, k] = x[n, c, p*sh - ph + i, q*sw - pw + j] for this thread's tap
        k = (c, i, j) at pixels pix, pix + STEP_N, ...; 0 past the end or K, and in the padding."""
        height, width = x.shape[2], x.shape[3]
        for r in range(PASSES_N):
            value = float32(0.0)
            if pix < end and col_ok:
                h = p * sh - ph + i
                v = q * sw - pw + j
                if h >= 0 and h < height and v >= 0 and v < width:
                    value = x[uint64(n), uint64(c), uint64(h), uint64(v)]
            b_regs[r] = value
            pix += STEP_N
            n, p, q = carry_add(n, p, q, dn, dp, dq, out_h, out_w)
        return pix, n, p, q

    return gather_pixel_taps, gather_weight_rows, gather_output_grads, gather_input_taps


def build(tiling=TILING, version=3):
    """The three kernels and launchers of this version at one tile shape, as a Version's ops."""
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
    def gather_all_taps(dy, w, a_regs, b_regs, n, h, v, row_ok, c, col_ok, i, j, o, di, dj, do, sh, sw, ph, pw):
        """backward_data's two operands at one k = (i, j, o): a_regs[r] = A[m, k] = dy[n, o,
        (h + ph - i)/sh, (v + pw - j)/sw] for this thread's dx pixel m = (n, h, v) where both
        divisions are exact and land in dy (else 0), b_regs[r] = B[k, c] = w[o, c, i, j]."""
        cout, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        out_h, out_w = dy.shape[2], dy.shape[3]
        for r in range(PASSES_M):
            a_value = float32(0.0)
            b_value = float32(0.0)
            if i < kh:                           # k < K
                row = h + ph - i
                col = v + pw - j
                if row_ok and row >= 0 and col >= 0 and row % sh == 0 and col % sw == 0:
                    p = row // sh
                    q = col // sw
                    if p < out_h and q < out_w:
                        a_value = dy[uint64(n), uint64(o), uint64(p), uint64(q)]
                if col_ok:
                    b_value = w[uint64(o), uint64(c), uint64(i), uint64(j)]
            a_regs[r] = a_value
            b_regs[r] = b_value
            i, j, o = carry_add(i, j, o, di, dj, do, kw, cout)
        return i, j, o

    @kernel((f32_4d, f32_2d, f32_4d, i64, i64, i64, i64, i64, i64), name=f"forward_v{version}")
    def forward_kernel(x, w, y, sh, sw, ph, pw, kh, kw):
        """y (=) as C[M = N*Ho*Wo, Co] = A[M, K = Ci*kh*kw] @ B[K, Co]; w is the (Co, K) view.

        A block takes tiles C[m0.., n0..] in a block-stride loop (m tiles fastest:
        neighbouring blocks share B's slices). Thread t owns rows tile_row(t % ROW_THREADS, a)
        and columns tile_col(t // ROW_THREADS, b): m is the fastest across a warp because it
        is y's contiguous axis (coalesced stores).
        """
        a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)
        b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)
        acc = cuda.local.array(ACCUMULATORS, float32)
        a_regs = cuda.local.array(PASSES_M, float32)
        b_regs = cuda.local.array(PASSES_KN, float32)
        n_img = x.shape[0]
        cout, depth = w.shape
        out_h, out_w = y.shape[2], y.shape[3]
        rows = n_img * out_h * out_w
        tiles_m = (rows + BM - 1) // BM
        tiles = tiles_m * ((cout + BN - 1) // BN)
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
            k_a = t // BM
            c, i, j = digits(k_a, kh, kw)
            for e in range(ACCUMULATORS):
                acc[e] = float32(0.0)
            for k0 in range(0, depth, BK):
                k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, depth,
                                                 kh, kw, dc, di, dj)
                gather_weight_rows(w, b_regs, n0 + nn_b, k0 + kk_b, depth)
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
                            y[n, o, p, q] = acc[a * TN + b]

    @kernel(SIG, name=f"backward_data_v{version}")
    def backward_data_kernel(dy, w, dx, sh, sw, ph, pw):
        """dx (=) as C[M = N*H*W, Ci] = A[M, K = kh*kw*Co] @ B[K, Ci] (gather_all_taps).

        Every dx pixel is one row m of C, so it is written exactly once; rows that no window
        reaches (a transposed conv's output_padding) gather only zeros and get 0. Both tiles
        are loaded with consecutive threads on consecutive columns (dx pixels for A, input
        channels for B); as BM == BN, a thread's A and B elements share their k = (i, j, o):
        one walker, stepping STEP_M, serves both. Tiles and threads as in forward.
        """
        a_tile = cuda.shared.array((BK, A_ROW), float32, alignment=16)
        b_tile = cuda.shared.array((BK, B_ROW), float32, alignment=16)
        acc = cuda.local.array(ACCUMULATORS, float32)
        a_regs = cuda.local.array(PASSES_M, float32)
        b_regs = cuda.local.array(PASSES_M, float32)
        n_img, cin, height, width = dx.shape
        cout, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        rows = n_img * height * width
        depth = kh * kw * cout
        tiles_m = (rows + BM - 1) // BM
        tiles = tiles_m * ((cin + BN - 1) // BN)
        t = cuda.threadIdx.x
        col = t % BM
        di, dj, do = digits(STEP_M, kw, cout)
        for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
            m0 = (tile % tiles_m) * BM
            n0 = (tile // tiles_m) * BN
            m = m0 + col
            row_ok = m < rows
            n, h, v = digits(m, height, width)
            c = n0 + col
            col_ok = c < cin
            i, j, o = digits(t // BM, kw, cout)
            for e in range(ACCUMULATORS):
                acc[e] = float32(0.0)
            for k0 in range(0, depth, BK):
                i, j, o = gather_all_taps(dy, w, a_regs, b_regs, n, h, v, row_ok, c, col_ok, i, j, o,
                                          di, dj, do, sh, sw, ph, pw)
                for r in range(PASSES_M):
                    a_tile[uint64(t // BM + r * STEP_M), uint64(col)] = a_regs[r]
                    b_tile[uint64(t // BM + r * STEP_M), uint64(col)] = b_regs[r]
                cuda.syncthreads()
                multiply_slice(a_tile, b_tile, acc, t % ROW_THREADS, t // ROW_THREADS)
                cuda.syncthreads()
            for a in range(TM):
                m = m0 + tile_row(t % ROW_THREADS, a)
                if m < rows:
                    n, h, v = digits(m, height, width)
                    for b in range(TN):
                        c = n0 + tile_col(t // ROW_THREADS, b)
                        if c < cin:
                            dx[n, c, h, v] = acc[a * TN + b]

    @kernel((f32_4d, f32_4d, f32_2d, i64, i64, i64, i64, i64, i64), name=f"backward_weight_v{version}")
    def backward_weight_kernel(x, dy, dw, sh, sw, ph, pw, kh, kw):
        """dw (=), viewed (Co, K), as C[Co, K = Ci*kh*kw] = dy^T[Co, P = N*Ho*Wo] @ A[P, K],
        A[(n,p,q), (c,i,j)] = x[n, c, p*s + i - pad, q*s + j - pad]: the reduction runs over
        pixels. Thread t owns rows (o) tile_row(t // COL_THREADS, a) and columns (k)
        tile_col(t % COL_THREADS, b): k fastest, dw's contiguous axis.
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
        t = cuda.threadIdx.x
        # dy loads, pixels fastest (dy's contiguous axis: coalesced): this thread always loads
        # slice row kk_a, pixel kk_a + BK*slice, for output channels mm_a + r*STEP_K.
        kk_a = t % BK
        mm_a = t // BK
        dn_a, dp_a, dq_a = digits(BK, out_h, out_w)
        # x loads, k fastest: this thread always loads tile column nn (one tap (c, i, j)) at
        # pixels t // BN + STEP_N*u. A warp reads runs of kw contiguous floats, a row apart.
        nn = t % BN
        dn_b, dp_b, dq_b = digits(STEP_N, out_h, out_w)
        for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
            m0 = (tile % tiles_m) * BM
            n0 = (tile // tiles_m) * BN
            pix_a = kk_a
            n_a, p_a, q_a = digits(pix_a, out_h, out_w)
            k = n0 + nn
            col_ok = k < depth
            c, i, j = digits(k, kh, kw)
            pix_b = t // BN
            n_b, p_b, q_b = digits(pix_b, out_h, out_w)
            for e in range(ACCUMULATORS):
                acc[e] = float32(0.0)
            for r0 in range(0, pixels, BK):
                pix_a, n_a, p_a, q_a = gather_output_grads(dy, a_regs, pix_a, n_a, p_a, q_a, pixels, m0 + mm_a,
                                                           dn_a, dp_a, dq_a)
                pix_b, n_b, p_b, q_b = gather_input_taps(x, b_regs, pix_b, n_b, p_b, q_b, pixels, col_ok, c, i, j,
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
                            dw[o, k] = acc[a * TN + b]

    # ---- launchers: one block of THREADS threads per tile of C, in a block-stride loop.
    def forward(x, w, y, sh, sw, ph, pw):
        n, cout, out_h, out_w = y.shape
        cin, kh, kw = w.shape[1:]
        tiles = ceil_div(n * out_h * out_w, BM) * ceil_div(cout, BN)
        forward_kernel[tile_grid(tiles), THREADS](x, w.reshape(cout, cin * kh * kw), y, sh, sw, ph, pw, kh, kw)

    def backward_data(dy, w, dx, sh, sw, ph, pw):
        n, cin, height, width = dx.shape
        tiles = ceil_div(n * height * width, BM) * ceil_div(cin, BN)
        backward_data_kernel[tile_grid(tiles), THREADS](dy, w, dx, sh, sw, ph, pw)

    def backward_weight(x, dy, dw, sh, sw, ph, pw):
        cout, cin, kh, kw = dw.shape
        tiles = ceil_div(cout, BM) * ceil_div(cin * kh * kw, BN)
        backward_weight_kernel[tile_grid(tiles), THREADS](x, dy, dw.reshape(cout, cin * kh * kw), sh, sw, ph, pw,
                                                          kh, kw)

    return {"forward": forward, "backward_data": backward_data, "backward_weight": backward_weight}


OPS = build()
