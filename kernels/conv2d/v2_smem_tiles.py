"""conv2d version 2, smem-tiles: a block stages input and weight tiles in shared memory.

The idea (over version 1). Each value a block needs is read from global memory once and
then by many threads from shared memory. A block owns a tile of outputs and stages, chunk
by chunk of channels, the inputs the tile needs; threads still compute one output each.
    forward: a block = TILE_H x TILE_W output pixels of one image x CHANNEL_TILE output
    channels (one thread each). Per chunk of input channels it copies the input patch
    ((TILE-1)*s + k rows/cols, zero-filled where it hangs over the border, so the inner loop
    needs no bounds checks) and the weight slice [co-tile, ci-chunk, kh, kw] to shared memory,
    syncthreads, accumulates, syncthreads.
    backward_data: the same for a TILE_H x TILE_W tile of dx pixels x CHANNEL_TILE input
    channels, staging a dy patch per chunk of output channels; the gather visits only the
    taps i = (h+pad) mod s, (h+pad) mod s + s, ... that land on whole dy rows, so it has no
    divisibility test at all.
    backward_weight: a block = (co-tile, one input channel c): co_tile*kh*kw weights. It walks
    the N*Ho*Wo output pixels in fixed-order chunks of BW_PIXELS, staging dy[n, co-tile, pixels]
    and the matching x taps (an im2col slice) in shared memory. When the block has more
    threads than weights, `lanes` threads share a weight, each summing every lanes-th pixel;
    their partial sums are added in shared memory in lane order: deterministic, no atomics.

Why it should be faster (PREDICTED; no GPU run yet): each value staged in shared memory is
read by many threads. forward at k4 s2 (GPU tiles 8x8 pixels x 4 channels): per input
channel 18*18 patch + 4*16 weights = 388 loads feed 8*8*4*16 = 4096 multiply-adds, ~0.2
bytes/FLOP from global memory instead of 4 (20x less). backward_data: 6*6 dy patch + 64
weights per 1024 multiply-adds; backward_weight (co_tile = min(Co, BW_MAX_CO_TILE,
BW_THREADS // taps) = 256 // 16 = 16 channels of a 4x4 kernel, one thread per weight, over
32 pixels): 16*32 dy + 32*16 x = 1024 loads per 16*16*32 = 8192 multiply-adds.
What it still lacks: each thread computes ONE output, so every multiply-add still needs
two shared-memory loads and shared-memory bandwidth becomes the limit: register blocking
(the GEMM ladder, kernels/linear) is version 3's starting point. Tiles of 8x8 pixels are
75% idle on the 4x4 layers; backward_weight has only ceil(Co/co_tile)*Ci blocks (D1: 12
for 132 SMs), so its reduction over N*Ho*Wo also needs splitting across blocks (version
6); and `ptxas -v` reports 94-120 registers per thread (64-bit index arithmetic), so only
two 256-thread blocks fit on an SM.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import SIMULATOR, i64
from .common import SIG, ceil_div, kernel, tile_grid


# Tiles of forward / backward_data: TILE_H x TILE_W pixels x CHANNEL_TILE channels, one
# thread per output. Under the simulator (one OS thread per GPU thread) the tiles are
# smaller, so tests with images of up to 9x9 still cover several tiles and ragged edges.
TILE_H = 4 if SIMULATOR else 8
TILE_W = 4 if SIMULATOR else 8
CHANNEL_TILE = 2 if SIMULATOR else 4
TILE_THREADS = TILE_H * TILE_W * CHANNEL_TILE          # 256 on a GPU, 32 in the simulator
# Shared-memory staging buffers, in floats. The launcher stages as many channels per phase
# as fit (at least one; a shape where even one channel's patch does not fit is refused).
PATCH_CAPACITY = 256 if SIMULATOR else 4096            # 16 KB: 12 channels of an 18x18 patch
WEIGHT_CAPACITY = 128 if SIMULATOR else 2048           # 8 KB
# backward_weight: BW_THREADS threads per block, BW_PIXELS output pixels staged per phase.
BW_THREADS = 32 if SIMULATOR else 256
BW_PIXELS = 8 if SIMULATOR else 32
BW_MAX_CO_TILE = 32 if SIMULATOR else 64
BW_MAX_TAPS = 32 if SIMULATOR else 64                  # kh*kw; <= BW_THREADS (one thread per tap at least)
BW_DY_CAPACITY = BW_MAX_CO_TILE * BW_PIXELS            # 8 KB on a GPU
BW_X_CAPACITY = BW_PIXELS * BW_MAX_TAPS                # 8 KB


@kernel(SIG + (i64,))
def forward_v2(x, w, y, sh, sw, ph, pw, ci_chunk):
    """y (=): a block computes a TILE_H x TILE_W x CHANNEL_TILE tile of y, staging ci_chunk
    input channels of its input patch and weights in shared memory per phase."""
    patch = cuda.shared.array(PATCH_CAPACITY, float32)
    weights = cuda.shared.array(WEIGHT_CAPACITY, float32)
    n_img, cin, height, width = x.shape
    cout, _, kh, kw = w.shape
    out_h, out_w = y.shape[2], y.shape[3]
    taps = kh * kw
    patch_h = (TILE_H - 1) * sh + kh
    patch_w = (TILE_W - 1) * sw + kw
    patch_area = patch_h * patch_w
    tiles_h = (out_h + TILE_H - 1) // TILE_H
    tiles_w = (out_w + TILE_W - 1) // TILE_W
    co_tiles = (cout + CHANNEL_TILE - 1) // CHANNEL_TILE
    tiles = n_img * co_tiles * tiles_h * tiles_w
    t = cuda.threadIdx.x
    local_co = t // (TILE_H * TILE_W)
    ty = (t // TILE_W) % TILE_H
    tx = t % TILE_W
    for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
        # Spatial tiles vary fastest: consecutive blocks share the image and weights (L2 hits).
        p0 = ((tile // tiles_w) % tiles_h) * TILE_H
        q0 = (tile % tiles_w) * TILE_W
        co0 = ((tile // (tiles_w * tiles_h)) % co_tiles) * CHANNEL_TILE
        n = tile // (tiles_w * tiles_h * co_tiles)
        h0 = p0 * sh - ph      # top-left corner of the patch, possibly in the padding
        v0 = q0 * sw - pw
        p, q, o = p0 + ty, q0 + tx, co0 + local_co
        acc = float32(0.0)
        for c0 in range(0, cin, ci_chunk):
            chunk = min(ci_chunk, cin - c0)
            # Phase 1: every thread copies a strided share of the patch and weights.
            for e in range(t, chunk * patch_area, TILE_THREADS):
                c = e // patch_area
                r = e % patch_area
                h = h0 + r // patch_w
                v = v0 + r % patch_w
                value = float32(0.0)
                if h >= 0 and h < height and v >= 0 and v < width:
                    value = x[n, c0 + c, h, v]
                patch[e] = value
            for e in range(t, CHANNEL_TILE * chunk * taps, TILE_THREADS):
                oc = e // (chunk * taps)
                c = (e // taps) % chunk
                tap = e % taps
                value = float32(0.0)
                if co0 + oc < cout:
                    value = w[co0 + oc, c0 + c, tap // kw, tap % kw]
                weights[e] = value
            cuda.syncthreads()
            # Phase 2: the patch is zero-padded, so no bounds checks in the hot loop.
            if p < out_h and q < out_w and o < cout:
                for c in range(chunk):
                    for i in range(kh):
                        prow = (c * patch_h + ty * sh + i) * patch_w + tx * sw
                        wrow = ((local_co * chunk + c) * kh + i) * kw
                        for j in range(kw):
                            acc += weights[wrow + j] * patch[prow + j]
            # Nobody may overwrite the buffers for the next chunk while others still read.
            cuda.syncthreads()
        if p < out_h and q < out_w and o < cout:
            y[n, o, p, q] = acc


@kernel(SIG + (i64,))
def backward_data_v2(dy, w, dx, sh, sw, ph, pw, co_chunk):
    """dx (=): a block computes a TILE_H x TILE_W x CHANNEL_TILE tile of dx, staging co_chunk
    output channels of the dy patch it gathers from, and their weights, per phase."""
    patch = cuda.shared.array(PATCH_CAPACITY, float32)
    weights = cuda.shared.array(WEIGHT_CAPACITY, float32)
    n_img, cin, height, width = dx.shape
    cout, _, kh, kw = w.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    taps = kh * kw
    # dx rows h0..h0+TILE_H-1 read dy rows ceil((h0+pad-kh+1)/s) .. floor((h0+TILE_H-1+pad)/s):
    # never more than (TILE_H+kh-2)//s + 1 of them.
    patch_h = (TILE_H + kh - 2) // sh + 1
    patch_w = (TILE_W + kw - 2) // sw + 1
    patch_area = patch_h * patch_w
    tiles_h = (height + TILE_H - 1) // TILE_H
    tiles_w = (width + TILE_W - 1) // TILE_W
    ci_tiles = (cin + CHANNEL_TILE - 1) // CHANNEL_TILE
    tiles = n_img * ci_tiles * tiles_h * tiles_w
    t = cuda.threadIdx.x
    local_ci = t // (TILE_H * TILE_W)
    ty = (t // TILE_W) % TILE_H
    tx = t % TILE_W
    for tile in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
        h0 = ((tile // tiles_w) % tiles_h) * TILE_H
        v0 = (tile % tiles_w) * TILE_W
        ci0 = ((tile // (tiles_w * tiles_h)) % ci_tiles) * CHANNEL_TILE
        n = tile // (tiles_w * tiles_h * ci_tiles)
        p_lo = -((kh - 1 - h0 - ph) // sh)   # ceil((h0 + ph - kh + 1) / sh), also when negative
        q_lo = -((kw - 1 - v0 - pw) // sw)
        h, v, c = h0 + ty, v0 + tx, ci0 + local_ci
        # Only taps congruent to (h + pad) mod s hit a whole dy row: start there, step by s.
        i_first = (h + ph) % sh
        j_first = (v + pw) % sw
        acc = float32(0.0)
        for o0 in range(0, cout, co_chunk):
            chunk = min(co_chunk, cout - o0)
            for e in range(t, chunk * patch_area, TILE_THREADS):
                o = e // patch_area
                r = e % patch_area
                p = p_lo + r // patch_w
                q = q_lo + r % patch_w
                value = float32(0.0)
                if p >= 0 and p < out_h and q >= 0 and q < out_w:
                    value = dy[n, o0 + o, p, q]
                patch[e] = value
            for e in range(t, chunk * CHANNEL_TILE * taps, TILE_THREADS):
                o = e // (CHANNEL_TILE * taps)
                cl = (e // taps) % CHANNEL_TILE
                tap = e % taps
                value = float32(0.0)
                if ci0 + cl < cin:
                    value = w[o0 + o, ci0 + cl, tap // kw, tap % kw]
                weights[e] = value
            cuda.syncthreads()
            if h < height and v < width and c < cin:
                for o in range(chunk):
                    for i in range(i_first, kh, sh):
                        # h + ph - i is a multiple of sh (maybe negative: then the row is
                        # padding, staged as zeros); floor division is exact.
                        prow = (o * patch_h + (h + ph - i) // sh - p_lo) * patch_w - q_lo
                        wrow = ((o * CHANNEL_TILE + local_ci) * kh + i) * kw
                        for j in range(j_first, kw, sw):
                            acc += weights[wrow + j] * patch[prow + (v + pw - j) // sw]
            cuda.syncthreads()
        if h < height and v < width and c < cin:
            dx[n, c, h, v] = acc


@kernel(SIG + (i64, i64))
def backward_weight_v2(x, dy, dw, sh, sw, ph, pw, co_tile, lanes):
    """dw (=): a block computes co_tile x kh x kw weights of one input channel, staging
    BW_PIXELS output pixels of dy and of x's matching taps per phase; `lanes` threads per
    weight split each phase's pixels and are summed in shared memory in lane order."""
    dy_tile = cuda.shared.array(BW_DY_CAPACITY, float32)
    x_taps = cuda.shared.array(BW_X_CAPACITY, float32)
    partial = cuda.shared.array(BW_THREADS, float32)
    n_img, cin, height, width = x.shape
    cout, _, kh, kw = dw.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    taps = kh * kw
    plane = out_h * out_w
    pixels = n_img * plane
    outputs = co_tile * taps                       # weights per block
    blocks = ((cout + co_tile - 1) // co_tile) * cin
    t = cuda.threadIdx.x
    lane = t // outputs
    mine = t % outputs
    local_co = mine // taps
    tap = mine % taps
    active = lane < lanes                          # threads beyond lanes*outputs only load
    for blk in range(cuda.blockIdx.x, blocks, cuda.gridDim.x):
        c = blk % cin
        co0 = (blk // cin) * co_tile
        acc = float32(0.0)
        for r0 in range(0, pixels, BW_PIXELS):
            for e in range(t, co_tile * BW_PIXELS, BW_THREADS):
                oc = e // BW_PIXELS
                r = r0 + e % BW_PIXELS
                value = float32(0.0)
                if r < pixels and co0 + oc < cout:
                    pq = r % plane
                    value = dy[r // plane, co0 + oc, pq // out_w, pq % out_w]
                dy_tile[e] = value
            for e in range(t, BW_PIXELS * taps, BW_THREADS):
                r = r0 + e // taps
                value = float32(0.0)
                if r < pixels:
                    pq = r % plane
                    h = (pq // out_w) * sh + (e % taps) // kw - ph
                    v = (pq % out_w) * sw + (e % taps) % kw - pw
                    if h >= 0 and h < height and v >= 0 and v < width:
                        value = x[r // plane, c, h, v]
                x_taps[e] = value
            cuda.syncthreads()
            if active:
                for k in range(lane, BW_PIXELS, lanes):
                    acc += dy_tile[local_co * BW_PIXELS + k] * x_taps[k * taps + tap]
            cuda.syncthreads()
        partial[t] = acc
        cuda.syncthreads()
        if active and lane == 0 and co0 + local_co < cout:
            total = float32(0.0)
            for k in range(lanes):                 # fixed order: bitwise reproducible
                total += partial[k * outputs + mine]
            dw[co0 + local_co, c, tap // kw, tap % kw] = total
        cuda.syncthreads()                         # partial is reused by the next block's sum


# ------------------------------------------------------------------------ launchers
def _too_big(op, what, need, capacity):
    raise ValueError(f"conv2d v2 {op}: {what} needs {need} floats of shared memory, more than the "
                     f"{capacity} its tiles hold; use version 1 for this shape")


def _channels_per_phase(op, channels, patch_area, weights_per_channel):
    """How many channels one phase stages: as many as both shared buffers hold."""
    if patch_area > PATCH_CAPACITY:
        _too_big(op, "one channel's input patch", patch_area, PATCH_CAPACITY)
    if weights_per_channel > WEIGHT_CAPACITY:
        _too_big(op, "one channel's weights", weights_per_channel, WEIGHT_CAPACITY)
    return min(channels, PATCH_CAPACITY // patch_area, WEIGHT_CAPACITY // weights_per_channel)


def forward(x, w, y, sh, sw, ph, pw):
    n, cout, out_h, out_w = y.shape
    cin, kh, kw = w.shape[1:]
    patch_area = ((TILE_H - 1) * sh + kh) * ((TILE_W - 1) * sw + kw)
    ci_chunk = _channels_per_phase("forward", cin, patch_area, CHANNEL_TILE * kh * kw)
    tiles = n * ceil_div(cout, CHANNEL_TILE) * ceil_div(out_h, TILE_H) * ceil_div(out_w, TILE_W)
    forward_v2[tile_grid(tiles), TILE_THREADS](x, w, y, sh, sw, ph, pw, ci_chunk)


def backward_data(dy, w, dx, sh, sw, ph, pw):
    n, cin, height, width = dx.shape
    cout, _, kh, kw = w.shape
    patch_area = ((TILE_H + kh - 2) // sh + 1) * ((TILE_W + kw - 2) // sw + 1)
    co_chunk = _channels_per_phase("backward_data", cout, patch_area, CHANNEL_TILE * kh * kw)
    tiles = n * ceil_div(cin, CHANNEL_TILE) * ceil_div(height, TILE_H) * ceil_div(width, TILE_W)
    backward_data_v2[tile_grid(tiles), TILE_THREADS](dy, w, dx, sh, sw, ph, pw, co_chunk)


def backward_weight(x, dy, dw, sh, sw, ph, pw):
    cout, cin, kh, kw = dw.shape
    taps = kh * kw
    if taps > BW_MAX_TAPS:
        _too_big("backward_weight", f"a {kh}x{kw} kernel", BW_PIXELS * taps, BW_X_CAPACITY)
    # As many output channels as give every tap of each a thread; spare threads become lanes.
    co_tile = min(cout, BW_MAX_CO_TILE, BW_THREADS // taps)
    lanes = BW_THREADS // (co_tile * taps)
    blocks = ceil_div(cout, co_tile) * cin
    backward_weight_v2[tile_grid(blocks), BW_THREADS](x, dy, dw, sh, sw, ph, pw, co_tile, lanes)


OPS = {"forward": forward, "backward_data": backward_data, "backward_weight": backward_weight}
