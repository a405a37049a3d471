"""conv2d — strided 2-D convolution: forward, backward-data, backward-weight.

What it computes (NCHW, float32; s = stride, pad = padding, both per axis; no bias here,
the bias is elementwise.channel_bias):
    forward          y[n,o,p,q]  = sum_{c,i,j} w[o,c,i,j] * x[n, c, p*s+i-pad, q*s+j-pad]
    backward_data    dx[n,c,h,v] = sum_{o,i,j} w[o,c,i,j] * dy[n, o, (h+pad-i)/s, (v+pad-j)/s]
                                   over the taps (i, j) where both divisions are exact and in range
    backward_weight  dw[o,c,i,j] = sum_{n,p,q} dy[n,o,p,q] * x[n, c, p*s+i-pad, q*s+j-pad]
x positions outside the image read as 0 (zero padding). Every kernel here writes (=) its
whole output; none adds. dx may have rows/columns that no window touches (a transposed
conv's output_padding): they are written 0. Transposed convolution is the same three
kernels read backwards: see conv_transpose2d.py.

How threads map to data.
  v1 naive: one thread per OUTPUT element, in a grid-stride loop over the flat output.
    forward: thread = (n, o, p, q), loops over c, i, j. backward_data: thread = (n, c, h, v), a
    gather: for each tap i the dy row p = (h + pad - i) / s must be a whole number in
    [0, Ho) (divisibility test; no thread ever writes another's element, so no atomics).
    backward_weight: thread = (o, c, i, j), loops over n, p, q in a fixed order
    (deterministic).
  v2 smem-tiles: a block owns a tile of outputs and stages, phase by phase, the inputs the
    tile needs in shared memory; threads still compute one output each.
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

  v3 implicit-gemm: each direction is a matrix product C = A @ B whose operand tiles are
    gathered from the NCHW tensors on the fly (implicit im2col: nothing materialised):
        forward          C[M = N*Ho*Wo, Co]  = A[M, K = Ci*kh*kw] @ B[K, Co]    A from x, B = w as (Co, K)
        backward_data    per phase: C[N*Ho'*Wo', Ci] = A[.., taps'*Co] @ B[taps'*Co, Ci]  A from dy (below)
        backward_weight  C[Co, K = Ci*kh*kw] = dy^T[Co, P = N*Ho*Wo] @ A[P, K]  A from x
    A block of 256 threads (16 x 16) computes a BM x BN = 64 x 64 tile of C, walking the
    reduction in BK = 16 deep slices: it gathers a BK x BM slice of A (stored transposed,
    so one k's 64 values are one shared row) and a BK x BN slice of B into shared memory
    (8.25 KB), zero-filling past M, N, K and in the padding, syncthreads, and then every
    thread multiplies them into ITS OWN TM x TN = 4 x 4 block of C held in registers
    (rows ty + 16a, columns tx + 16b: interleaved, so a half-warp reads 16 consecutive
    shared words, free of bank conflicts), syncthreads, next slice. Tiles are taken in a
    block-stride loop (one trip each on a GPU, several in the simulator, which runs the
    same code with 8 x 8 tiles, 2 x 2 per thread, BK = 4: 16 threads).
    Loads and coalescing. Each gather puts consecutive threads on the operand's contiguous
    axis where there is one: forward's A on consecutive output pixels (x read s floats apart:
    every word at stride 1, every other at stride 2), its B along k (w's rows: contiguous);
    backward_data's A on consecutive pixels of one phase (dy read stride 1: see below) and
    its B on consecutive input channels (contiguous in w regrouped as (kh, kw, Co, Ci) by a
    copy kernel, taps_major); backward_weight's dy along pixels (contiguous) and its x
    taps along k (runs of kw floats, a row apart: half of each 32-byte sector at k4; there
    is no contiguous axis, x is read at stride s along pixels). A thread keeps the same
    tile column for the whole reduction, so its index along the reduction advances by a
    constant step: it keeps the index as digits (c, i, j) or (n, p, q) and adds the step's
    digits with carries (carry_add), no division per element. Outputs are stored with
    consecutive threads along y's/dx's pixels (forward, backward_data) or dw's k.
    backward_data in sub-pixel phases: dx pixel (h, v) with h = rh + s*u is reached only by
    the taps i = i0, i0 + s, ... where i0 = (rh + pad) mod s, from dy row (rh + pad) div s
    + u - (i - i0)/s. So the s*s phases (rh, rw) of dx (blockIdx.z) are s*s independent
    stride-1 convolutions with taps' = ceil((kh-i0)/s) x ceil((kw-j0)/s) taps each:
    consecutive pixels of a phase read consecutive dy columns, and no multiply-add is
    spent on a tap that does not land (the zero-insertion "GEMM over all kh*kw taps" form
    wastes 3/4 of them at s = 2). A phase with no taps (k1 s2: odd rows) and rows beyond
    every window (a transposed conv's output_padding) are written 0; each dx element is
    in exactly one phase, so it is written exactly once (=).
    Split-K: where C has too few tiles to fill the GPU, the reduction is cut into
    Tiling.split_target // tiles fixed ranges of whole slices (264 = one wave of 2 blocks
    on 132 SMs; each range at least 256 long), one per blockIdx.z; each split writes its
    partial C to a workspace (reduction.workspace), and sum_splits adds the splits
    element by element in an order fixed by the shape (8 threads an element, each taking
    every 8th split, then their 8 sums in turn): deterministic, no atomics. backward_weight needs
    it (D1: C is 64 x 48, one tile, over P = 131072 pixels: 256 splits of 512; D2: 8, D3:
    2); so does forward where M is tiny (D5: y is 128 x 1, K = 8192: 2 tiles, 32 splits
    of 256; G1's backward_data likewise). The workspace is at most ~4 MB (a few us).
  v4 vector-frags: v3's kernels, built from a bigger Tiling (implicit_gemm makes both): a
    block of 256 threads computes a 128 x 128 tile of C in BK = 8 deep slices, each thread
    an 8 x 8 block of it. A thread's 8 rows are two runs of 4 consecutive rows, 64 apart
    (4ty..4ty+3 and 64+4ty..64+4ty+3), its columns likewise, so per k its 8 + 8 operands
    are four runs of 4 floats, each read from shared memory with one 16-byte load
    (ld.shared.v4.f32; rows padded to 132 floats, so every run starts 16-byte aligned).
    Loads, gathers, phases and split-K are v3's; the grid is split to one wave of 132
    blocks (one resident block per SM, see Registers). The simulator runs 16 x 16 tiles,
    4 x 4 per thread in runs of 2.
  v5 prefetch: v4 with the slice loop pipelined. Each thread gathers a slice into
    registers (v4: 4 values of A and 4 of B) and stores them to the shared tiles at the top
    of the next trip; v3 and v4 issue those global loads after the multiply, so every
    trip begins with the whole block waiting on memory. v5 issues them right after the
    barrier, before the multiply: they are in flight while the 512 FMAs per thread run, and
    the stores at the top of the next trip find them arrived. The same code with
    Tiling.prefetch = True; the loads move, nothing else does.
  v6 narrow-channels: v5, except backward_data into Ci <= 4 channels (D1's dx; G5's
    forward through the duality), where C[M, Ci] has 131072 rows per phase and 3
    columns. One thread per dx pixel of a phase keeps all its channels in 4 registers;
    per pass over 64 output channels the block stages the phase's weights (<= 9 taps x 64
    x 4 floats, 9 KB) in shared memory, and each thread walks its taps and channels:
    dy[n, o, p, q] from global memory (consecutive threads on consecutive q: coalesced),
    the (tap, o) row of 4 weights as one 16-byte broadcast load, 4 FMAs.
  v7 fitted-tiles: v6, except that each GEMM gets the tiles that pad its C least: v5's
    128 x 128, or 64 x 64 tiles of 64 threads, each thread still v5's (8 x 8 outputs in
    runs of 4, 16-byte shared loads, prefetch; Tiling 7); on a tie the big tiles. At the
    DCGAN shapes the small tiles take the GEMMs with a side of 64 (D1's and G4's forward,
    D2's and G5's dx), D1's and G5's weight gradients (C is 64 x 48) and D5's forward
    and weight gradient (C is 128 x 1 and 1 x 8192); everything else stays v5's, and the
    narrow kernel keeps its two.

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
and D5 (0.5 FLOP/byte: memory- and launch-bound) are not.

Why v1 is slow: every multiply-add loads its two operands from global memory (8 bytes per
2 FLOPs = 4 bytes/FLOP; at D2 that is 34 GB of requests for 51 MB of data). L1/L2 catch most,
but the kernel is bound by load instructions and cache bandwidth, far from the FMA peak.
backward_weight is worse: only Co*Ci*kh*kw threads (D1: 64*3*16 = 3072, ~1% of the 270k an H100
keeps resident) each run a serial loop of N*Ho*Wo = 131072 steps.
Why v2 is faster: each value staged in shared memory is read by many threads. forward at
k4 s2 (GPU tiles 8x8 pixels x 4 channels): per input channel 18*18 patch + 4*16 weights =
388 loads feed 8*8*4*16 = 4096 multiply-adds, ~0.2 bytes/FLOP from global memory instead
of 4 (20x less). backward_data: 6*6 dy patch + 64 weights per 1024 multiply-adds;
backward_weight (16 channels x 16 taps, 32 pixels): 1024 loads per 8192 multiply-adds.
What v2 still lacks: each thread computes ONE output, so every multiply-add still needs
two shared-memory loads and shared-memory bandwidth becomes the limit (register blocking:
a thread computing a small block of outputs reuses each loaded value from a register --
the next version, via implicit GEMM); tiles of 8x8 pixels are 75% idle on the 4x4 layers;
backward_weight still has only ceil(Co/co_tile)*Ci blocks (D1: 12 for 132 SMs) -- the
reduction over N*Ho*Wo also needs splitting across blocks (with a fixed-order second pass);
and `ptxas -v` reports 94-120 registers per thread (64-bit index arithmetic), so only two
256-thread blocks fit on an SM.

Why v3 should be faster (PREDICTED from the counts below, not measured: no GPU yet; run
bench/conv_bench.py on an H100). An H100 SM does 128 FP32 FMAs per clock but reads only
128 bytes of shared memory per clock: one warp-wide 4-byte load per clock against four
warp-wide FMAs. v2 issues two shared loads per FMA (a weight and a patch value), so it can
reach at most 1/8 of the FMA peak (~8 TFLOP/s). v3 loads TM + TN = 8 values per k and
does TM*TN = 16 FMAs with them: 0.5 loads per FMA, 4x fewer, lifting the shared-memory
bound to 1/2 of the peak (~33 TFLOP/s); instruction issue (16 FMAs in 24+ instructions)
allows 2/3. Global (L1/L2) side: a 64 x 64 tile loads (64 + 64) x 16 floats = 8 KB per
slice for 64 x 64 x 16 multiply-adds = 131 kFLOP: 16 FLOP per byte (the tile's arithmetic
intensity, BM*BN / (2*(BM+BN)) FLOP/byte), 3x v2's ~5, enough that L2 bandwidth is not
the limit at ~30 TFLOP/s. The load phase is not overlapped within a block (one buffer);
the other resident block computes meanwhile. Prediction for the 8.6 GFLOP layers (D2-D4,
G2-G4, each direction; 256-2048 blocks): 20-30 TFLOP/s, 0.3-0.45 ms each, ~3x v2. For
backward_weight the bigger gain is split-K: v2 runs D1's weight gradient on 12 blocks.
What the phases save at stride 2: of the kh x kw taps that a gather over all taps visits
(v1: with a divisibility test; a GEMM over K = Co*kh*kw: as multiply-adds by zero) only
those congruent to (h + pad) mod s per axis are real. k4 s2: 2 of 4 per axis, 4 of 16
taps, so 1/4 real and 4x saved. k5 s2 (paper): 3 or 2 of 5 per axis, phases of 3x3, 3x2,
2x3 and 2x2 taps = 25 of 4 x 25: again 1/4 real (4x saved), with phases of unequal depth
(9 vs 4 taps: their blocks take longer). v2 already skipped the dead taps; v3 keeps that
and makes the survivors a dense GEMM with stride-1 reads of dy.
What the compiler made of v3 at first (bench/ptx_hot_loop.py counts one trip of a
kernel's innermost FMA loop in PTX). The multiply loop was written `for kk in range(BK)`
over `a_tile[kk, row + a*ROW_THREADS]` with signed int64 indices. Numba gives every signed
index Python's negative-index wraparound (idx < 0 ? idx + size : idx, as and/shr/add) and
lowered the range() into a loop NVVM did not unroll: per trip 16 FMAs, 8 shared loads and
20 other instructions, an FMA share of 36%, so instruction issue, not shared memory,
would have bounded it at about a third of the peak. Two changes to the source, none to
the arithmetic: indices cast to uint64 (no wraparound: each load becomes one ld.shared at
a constant offset from a pointer) and a `while` loop stepping two k per trip: 32 FMAs,
16 loads and 5 others, 60%. The gathers and the stores into the shared tiles
got the same casts: what a slice spends outside the multiply (8 global loads with
their bounds checks and index walks, 8 shared stores, 2 barriers) went from 296-359 PTX
instructions to 219-270 in v5, against its 512 FMAs. tests/test_ptx_hot_loop.py keeps
both that way.

Why v4 should be faster (PREDICTED; measure with bench/conv_bench.py). An SM's shared
memory serves one warp-wide 4-byte load per clock while it does four warp-wide FMAs. v3's
4 x 4 blocks need TM + TN = 8 loads for 16 FMAs per k: 8 clocks of shared memory per 4
of FMA, the bound at half the peak. v4's 8 x 8 blocks need 16 floats for 64 FMAs, as four
16-byte loads; per warp and k the two A runs bring 16 distinct rows' 256 bytes (2 clocks
each) and the two B runs are broadcasts (2 distinct columns: 1 clock each): 6 clocks per
16 of FMA, so shared memory is no longer the bound, and a trip of the hot loop (two k)
is 128 FMAs, 8 ld.shared.v4 and 12 others (86% FMA share). The global side improves too: a
128 x 128 tile reads BM + BN = 256 floats per k for 16384 FMAs, 32 FLOP per byte (v3: 16).
The costs: 159-168 registers, so one 256-thread block (8 warps) per SM, and nothing
overlaps a block's gathers with its FMAs but the other warps' progress (double
buffering would: v5); tiles of 128 waste more where C is narrow (Co = 64: half a
tile; Ci = 3: 3 of 128 columns). Prediction: 1.3-1.8x v3 on the 8.6 GFLOP layers.

Why v5 should be faster (PREDICTED). With one block per SM, v4's trip is: store, barrier,
512 FMAs per thread (8 warps x 512 warp-FMAs / 4 per clock: ~1000 clocks), then the
gathers, whose first use waits out a global load (~500-800 clocks from L2) with every
warp of the SM idle. Issuing the gathers before the multiply hides that latency behind
the ~1000 clocks of FMAs: up to ~1.5x on the big layers, at the cost of the 8 registers the
loads land in while the multiply runs (167-181 registers, still one block per SM, no
spills). bench/ptx_hot_loop.py shows the move: 8 global loads in flight during v5's
multiply loop, 0 during v4's. A second shared buffer (true double buffering) would also
save one of the two barriers per trip, for 8 KB more shared memory.

Registers (ptxas -v for sm_90, bench/ptxas_report.py): forward / backward_data /
backward_weight v3 106 / 127 / 114, v4 164 / 168 / 159, v5 172 / 181 / 167, v7 186 / 198 /
167; taps_major 32, sum_splits 60; no spills, no stack frame (the accumulators, fragments and gathered
values are registers). v3 at up to 128 per thread (ptxas allocates in steps of 8): a
256-thread block takes 32768 of the SM's 65536 registers: 2 blocks (16 warps, 25%
occupancy) per SM; shared memory (8.25 KB a block) does not limit. Register blocking
trades occupancy for independent FMAs (16 per thread per k). Two loaded blocks per SM
matter here (one computes while the other waits on its loads), and the counts are ptxas's
free choice: passing launch_bounds=(256, 2) to cuda.jit would pin them (checked: 118-128
registers, no spills). Having backward_data read B from the taps-major copy lets one
digit walker serve both of its loads: with two walkers it needed 154 registers.
Why v6 (PREDICTED). backward_data into Ci = 3 (D1's dx, needed for G's gradient, and
G5's forward) as a GEMM with 128-wide tiles computes 128 columns for 3: ~34 GFLOP of
tile work for 0.8 GFLOP of real work, ~1 ms per call on an H100 at v5's rate, two calls
per training step. The narrow kernel does only the real work, 4 FMAs per dy value and
per 16-byte weight load: per 4 output channels its hot loop is 16 FMAs, 4 global loads,
4 ld.shared.v4 and 18 others (42% FMAs; it is load-bound, not FMA-bound): ~0.5G
instructions for G5's forward, ~50-100 us, 10-20x fewer than v5 there. 128 registers,
no spills, 9 KB of shared memory.

Why v7 (PREDICTED). A 128 x 128 tile over a C with 64 columns computes 128 for 64: D2's
dx and G4's forward (8.6 GFLOP each, two of the six big GEMMs of a training step) and
D1's forward run at half of v5's rate, and D1's and G5's weight gradients (C = 64 x 48)
use 19% of their tile. A 64 x 64 tile fits them exactly (75% for the 64 x 48), at a price
that can be counted: per 64 x 64 x 8 slice a thread still does 512 FMAs, but it gathers
16 floats instead of 8 (half the FMAs per loaded byte: 16 FLOP/byte from L2, v3's), and
bench/ptx_hot_loop.py puts its slice overhead at 410-498 instructions against v5's
218-270. Per 512 useful FMAs that is ~1060 instructions against v5's ~1700 on a half-empty
tile: ~1.6x on those GEMMs if instruction issue is the bound. Where the big tiles fit,
they stay: the same FMAs for half the loads. 167-198 registers, no spills: 5 blocks of
64 threads per SM (10 warps, v5: 8), 4.25 KB of shared memory each; split-K aims at 660
blocks, one wave.

What v7 still lacks: a second shared buffer (one barrier per trip instead of two);
float4 global loads where rows are contiguous; D5's one-column and one-row GEMMs (2
MFLOP each) still compute 64 columns (or rows) for 1; where a grid of big tiles leaves
most SMs idle (G1's dx: 32 blocks), a tie still goes to the big tiles. Numba has no tensor cores, so whatever the tiling the ceiling
is FP32 FMA, 67 TFLOP/s.

Versions:
    1  naive       one thread per output element, operands read straight from global memory
    2  smem-tiles  a block stages input and weight tiles in shared memory, reused by its threads
    3  implicit-gemm  each direction a GEMM gathered into shared tiles; each thread a TM x TN block of C in registers
    4  vector-frags   8 x 8 outputs per thread, their operands read from shared memory 4 floats (16 bytes) per load
    5  prefetch       the next slice's global loads issued into registers before this slice's multiply-adds
    6  narrow-channels  backward-data into at most 4 channels: a thread per pixel, all its channels in registers
    7  fitted-tiles  each GEMM in the tiles that pad it least, 128 x 128 or 64 x 64, the same thread in both
Run:
    python -m dcgan_cuda.kernels.conv2d --sim              validate every version on the CPU (tiny shapes)
    python -m dcgan_cuda.kernels.conv2d --sim --version 3  only version 3
    python -m dcgan_cuda.kernels.conv2d --version 2        validate at the DCGAN shapes and time on a GPU
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import cuda, float32, uint64

from dcgan_cuda import reference
from dcgan_cuda.reference import conv2d_output_size, conv_transpose2d_output_size

from .jit import (MAX_BLOCKS, SIM_MAX_BLOCKS, SIMULATOR, Version, f32_2d, f32_4d, grid_1d,
                  i64, kernel)
from .elementwise import carry_add, digits
from .reduction import workspace

_SIG = (f32_4d, f32_4d, f32_4d, i64, i64, i64, i64)  # three arrays, stride (h, w), padding (h, w)


# ------------------------------------------------------------------------ version 1
@kernel(_SIG + (i64,))
def forward_v1(x, w, y, sh, sw, ph, pw, total):
    """y (=): one thread per output element (n, o, p, q)."""
    _, cin, height, width = x.shape
    cout, _, kh, kw = w.shape
    out_h, out_w = y.shape[2], y.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for idx in range(start, total, step):
        # q fastest: neighbouring threads write neighbouring addresses (coalesced stores).
        q = idx % out_w
        p = (idx // out_w) % out_h
        o = (idx // (out_w * out_h)) % cout
        n = idx // (out_w * out_h * cout)
        acc = float32(0.0)
        for c in range(cin):
            for i in range(kh):
                h = p * sh + i - ph
                if h >= 0 and h < height:
                    for j in range(kw):
                        v = q * sw + j - pw
                        if v >= 0 and v < width:
                            acc += w[o, c, i, j] * x[n, c, h, v]
        y[n, o, p, q] = acc


@kernel(_SIG + (i64,))
def backward_data_v1(dy, w, dx, sh, sw, ph, pw, total):
    """dx (=): one thread per input element (n, c, h, v), gathering from dy."""
    cout, _, kh, kw = w.shape
    _, cin, height, width = dx.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for idx in range(start, total, step):
        v = idx % width
        h = (idx // width) % height
        c = (idx // (width * height)) % cin
        n = idx // (width * height * cin)
        acc = float32(0.0)
        for o in range(cout):
            for i in range(kh):
                # Tap i reached x row h from dy row p only if p*s + i - pad == h exactly.
                row = h + ph - i
                if row >= 0 and row % sh == 0 and row // sh < out_h:
                    p = row // sh
                    for j in range(kw):
                        col = v + pw - j
                        if col >= 0 and col % sw == 0 and col // sw < out_w:
                            acc += w[o, c, i, j] * dy[n, o, p, col // sw]
        dx[n, c, h, v] = acc


@kernel(_SIG + (i64,))
def backward_weight_v1(x, dy, dw, sh, sw, ph, pw, total):
    """dw (=): one thread per weight (o, c, i, j), summing over n, p, q in a fixed order."""
    n_img, _, height, width = x.shape
    _, cin, kh, kw = dw.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for idx in range(start, total, step):
        j = idx % kw
        i = (idx // kw) % kh
        c = (idx // (kw * kh)) % cin
        o = idx // (kw * kh * cin)
        acc = float32(0.0)
        for n in range(n_img):
            for p in range(out_h):
                h = p * sh + i - ph
                if h >= 0 and h < height:
                    for q in range(out_w):
                        v = q * sw + j - pw
                        if v >= 0 and v < width:
                            acc += dy[n, o, p, q] * x[n, c, h, v]
        dw[o, c, i, j] = acc


def _forward_v1(x, w, y, sh, sw, ph, pw):
    forward_v1[grid_1d(y.size)](x, w, y, sh, sw, ph, pw, y.size)


def _backward_data_v1(dy, w, dx, sh, sw, ph, pw):
    backward_data_v1[grid_1d(dx.size)](dy, w, dx, sh, sw, ph, pw, dx.size)


def _backward_weight_v1(x, dy, dw, sh, sw, ph, pw):
    backward_weight_v1[grid_1d(dw.size)](x, dy, dw, sh, sw, ph, pw, dw.size)


# ------------------------------------------------------------------------ version 2
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


def _tile_grid(tiles):
    """Blocks for a block-stride loop over tiles: a few waves on a GPU; in the simulator
    only a handful, so every block also runs the loop's later trips."""
    return max(1, min(tiles, SIM_MAX_BLOCKS if SIMULATOR else MAX_BLOCKS))


def _ceil_div(a, b):
    return -(-a // b)


@kernel(_SIG + (i64,))
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


@kernel(_SIG + (i64,))
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


@kernel(_SIG + (i64, i64))
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


def _forward_v2(x, w, y, sh, sw, ph, pw):
    n, cout, out_h, out_w = y.shape
    cin, kh, kw = w.shape[1:]
    patch_area = ((TILE_H - 1) * sh + kh) * ((TILE_W - 1) * sw + kw)
    ci_chunk = _channels_per_phase("forward", cin, patch_area, CHANNEL_TILE * kh * kw)
    tiles = n * _ceil_div(cout, CHANNEL_TILE) * _ceil_div(out_h, TILE_H) * _ceil_div(out_w, TILE_W)
    forward_v2[_tile_grid(tiles), TILE_THREADS](x, w, y, sh, sw, ph, pw, ci_chunk)


def _backward_data_v2(dy, w, dx, sh, sw, ph, pw):
    n, cin, height, width = dx.shape
    cout, _, kh, kw = w.shape
    patch_area = ((TILE_H + kh - 2) // sh + 1) * ((TILE_W + kw - 2) // sw + 1)
    co_chunk = _channels_per_phase("backward_data", cout, patch_area, CHANNEL_TILE * kh * kw)
    tiles = n * _ceil_div(cin, CHANNEL_TILE) * _ceil_div(height, TILE_H) * _ceil_div(width, TILE_W)
    backward_data_v2[_tile_grid(tiles), TILE_THREADS](dy, w, dx, sh, sw, ph, pw, co_chunk)


def _backward_weight_v2(x, dy, dw, sh, sw, ph, pw):
    cout, cin, kh, kw = dw.shape
    taps = kh * kw
    if taps > BW_MAX_TAPS:
        _too_big("backward_weight", f"a {kh}x{kw} kernel", BW_PIXELS * taps, BW_X_CAPACITY)
    # As many output channels as give every tap of each a thread; spare threads become lanes.
    co_tile = min(cout, BW_MAX_CO_TILE, BW_THREADS // taps)
    lanes = BW_THREADS // (co_tile * taps)
    blocks = _ceil_div(cout, co_tile) * cin
    backward_weight_v2[_tile_grid(blocks), BW_THREADS](x, dy, dw, sh, sw, ph, pw, co_tile, lanes)


# -------------------------------------------------------------- versions 3, 4 and 5
# Implicit GEMM with register blocking. Every direction is a matrix product C = A @ B whose
# operands are gathered from the NCHW tensors on the fly (nothing is materialised). A block
# of `threads` threads computes a BM x BN tile of C, walking the reduction axis in slices
# of BK: it copies a BK x BM slice of A (stored transposed, so a thread's TM values for one
# k lie in one row) and a BK x BN slice of B into shared memory, syncthreads, and every
# thread multiplies them into its own TM x TN block of C held in registers.
#
# Versions 3, 4 and 5 are the same kernels built from three Tilings by implicit_gemm()
# below: version 4's one idea is bigger register blocks read with 16-byte loads (see "Why
# v4"), version 5's the prefetch of the next slice (Tiling.prefetch, "Why v5").
# A thread's TM rows of C are TM / VEC runs of VEC consecutive rows, the runs
# ROW_THREADS * VEC apart: with VEC = 1 (v3) rows ty, ty + 16, ty + 32, ...; with VEC = 4
# (v4) rows 4ty..4ty+3 and 64 + 4ty..64 + 4ty+3, whose four values for one k are 16
# contiguous, 16-byte aligned bytes of the shared row: one ld.shared.v4 instead of four
# loads. Columns likewise with TN and COL_THREADS.
#
# The simulator runs the same code with small tiles (16 threads a block instead of 256),
# so that the tests' tiny shapes still span several tiles in M, N and K; one test also
# runs the GPU tilings there, 256 threads a block, on shapes just past one tile.
Tiling = namedtuple("Tiling", "bm bn bk tm tn vec pad prefetch split_target min_split")
# bm, bn, bk: C's tile and the slice depth; tm, tn: C's block per thread; vec: its runs;
# pad: floats of padding per shared row; prefetch: gather the next slice before the
# multiply (v5); split_target, min_split: see split_reduction.
GPU_TILING = {
    3: Tiling(bm=64, bn=64, bk=16, tm=4, tn=4, vec=1, pad=2, prefetch=False, split_target=264, min_split=256),
    4: Tiling(bm=128, bn=128, bk=8, tm=8, tn=8, vec=4, pad=4, prefetch=False, split_target=132, min_split=256),
    # v7's small tiles: v5's thread (8 x 8 in runs of 4, prefetching) in a quarter of its
    # block, 64 threads. 167-198 registers each: 5 blocks per SM, 660 make one wave.
    7: Tiling(bm=64, bn=64, bk=8, tm=8, tn=8, vec=4, pad=4, prefetch=True, split_target=660, min_split=256),
}
SIM_TILING = {
    3: Tiling(bm=8, bn=8, bk=4, tm=2, tn=2, vec=1, pad=2, prefetch=False, split_target=8, min_split=4),
    4: Tiling(bm=16, bn=16, bk=4, tm=4, tn=4, vec=2, pad=2, prefetch=False, split_target=8, min_split=4),
    7: Tiling(bm=8, bn=8, bk=4, tm=2, tn=2, vec=2, pad=2, prefetch=True, split_target=8, min_split=4),
}
for _tilings in (GPU_TILING, SIM_TILING):
    _tilings[5] = _tilings[4]._replace(prefetch=True)
TILING = SIM_TILING if SIMULATOR else GPU_TILING


def split_reduction(length, tiles, splits=None, tiling=TILING[3]):
    """(splits, chunk): a fixed partition of a GEMM's reduction axis (length K, or P pixels)
    into ranges [z*chunk, (z+1)*chunk) of whole BK slices, one per blockIdx.z.

    Split-K: a grid of T tiles smaller than tiling.split_target blocks (one wave: 2
    resident 256-thread blocks per SM at v3's ~128 registers on 132 SMs, 1 at v4's) is
    split into as many ranges as bring it there, each at least tiling.min_split long (16 or
    32 slices), so the partial tiles written to the workspace stay small next to the work.
    Depends on the shape alone, so a layer always adds in the same order. Rounding chunk up
    to whole slices can leave fewer splits than asked for; every split's range is non-empty.
    """
    if splits is None:
        splits = max(1, min(tiling.split_target // tiles, length // tiling.min_split))
    chunk = _ceil_div(_ceil_div(length, max(1, min(splits, length))), tiling.bk) * tiling.bk
    return _ceil_div(length, chunk), chunk


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


@kernel((f32_4d, f32_4d))
def taps_major(w, wp):
    """wp[i, j, o, c] (=) = w[o, c, i, j]: the weights regrouped so that B's rows in
    backward_data, (tap, output channel) pairs, are runs of Ci contiguous floats.
    A copy (|w| <= 8 MB at DCGAN sizes: a few us), written coalesced (c fastest)."""
    kh, kw, cout, cin = wp.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for idx in range(start, kh * kw * cout * cin, step):
        c = idx % cin
        o = (idx // cin) % cout
        tap = idx // (cin * cout)
        wp[tap // kw, tap % kw, o, c] = w[o, c, tap // kw, tap % kw]


def _taps_major_copy(w):
    """w regrouped by taps_major into a workspace (kept for the next call): backward_data's B."""
    cout, cin, kh, kw = w.shape
    wp = workspace(w, (kh, kw, cout, cin), "conv2d.backward_data.taps_major")
    taps_major[grid_1d(w.size)](w, wp)
    return wp


def _most_phase_rows(dx_shape, sh, sw):
    """Rows of backward_data's largest sub-pixel phase, (0, 0): what a grid over phases must
    cover (blocks beyond a smaller phase's rows have no trips)."""
    n, _, height, width = dx_shape
    return n * _ceil_div(height, sh) * _ceil_div(width, sw)


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


def _sum_splits(partials, out):
    """out (=) = the sum of partials' splits (sum_splits), one block per SPLIT_LANES elements."""
    sum_splits[_tile_grid(_ceil_div(out.size, SPLIT_LANES)), SPLIT_LANES * SPLIT_GROUPS](partials, out)


def _named(function, name):
    function.__name__ = function.__qualname__ = name
    return function


def implicit_gemm(version, tiling):
    """The three implicit-GEMM kernels and their launchers for one Tiling, as a Version's ops.

    Numba reads the constants below from the kernels' closure at compile time, exactly as
    it reads module globals: every tile size is a literal in the compiled code, and the
    loops over them (BK, TM, TN) have constant trip counts that the compiler unrolls.
    """
    BM, BN, BK, TM, TN, VEC = tiling.bm, tiling.bn, tiling.bk, tiling.tm, tiling.tn, tiling.vec
    PREFETCH = tiling.prefetch
    ROW_THREADS = BM // TM                 # threads along a tile's rows (16 on a GPU)
    COL_THREADS = BN // TN
    THREADS = ROW_THREADS * COL_THREADS    # 256 on a GPU, 16 in the simulator
    ACCUMULATORS = TM * TN
    # Padding per shared row: a tile filled "k fastest" (consecutive threads writing down a
    # column) then spreads a warp over all 32 banks (v3: bank = 2*k + column for 16 k x 2
    # columns; v4: 4*k + column for 8 k x 4 columns) instead of piling it on a few. v4's pad
    # of 4 also keeps every row 16-byte aligned for the vector loads.
    A_ROW = BM + tiling.pad
    B_ROW = BN + tiling.pad
    # How many rows of a BK-deep slice THREADS threads fill in one pass when consecutive
    # threads take consecutive m (or n): each thread then keeps ONE m (or n) for the whole
    # reduction and its k (or pixel) advances by this step, so the gather's index arithmetic
    # is a carry-add per element instead of two divisions.
    STEP_M = THREADS // BM
    STEP_N = THREADS // BN
    STEP_K = THREADS // BK                 # columns filled per pass when k is the fastest
    # Hence each thread's loads per slice (the registers a gather fills): BK x BM filled
    # m fastest, BK x BN filled n fastest, BK x BM and BK x BN filled k fastest.
    PASSES_M = BK // STEP_M
    PASSES_N = BK // STEP_N
    PASSES_KM = BM // STEP_K
    PASSES_KN = BN // STEP_K
    assert BM == BN    # backward_data loads A's and B's element k with one walker
    assert THREADS % BM == 0 and THREADS % BN == 0 and THREADS % BK == 0
    assert BK % STEP_M == 0 and BK % STEP_N == 0 and BM % STEP_K == 0 and BN % STEP_K == 0
    assert TM % VEC == 0 and TN % VEC == 0 and A_ROW % VEC == 0 and B_ROW % VEC == 0
    assert BK % 2 == 0    # multiply_slice takes two k per trip

    @cuda.jit(device=True)
    def tile_row(r, a):
        """Row of C (within the tile) of thread row r's a-th accumulator row."""
        return (a // VEC) * (ROW_THREADS * VEC) + r * VEC + a % VEC

    @cuda.jit(device=True)
    def tile_col(c, b):
        return (b // VEC) * (COL_THREADS * VEC) + c * VEC + b % VEC

    @cuda.jit(device=True)
    def multiply_step(a_tile, b_tile, acc, row, col, kk):
        """acc[a*TN + b] += a_tile[kk, tile_row(row, a)] * b_tile[kk, tile_col(col, b)]: one k.

        A thread loads TM + TN values from shared memory into registers and does TM*TN
        multiply-adds with them: each loaded value feeds TN (or TM) FMAs. The 16 threads of
        a half-warp read 16 different runs of VEC consecutive words: no bank conflicts. The
        indices are unsigned: a signed index makes Numba add Python's negative-index
        wraparound to every load (3 integer instructions), which also hides from the
        compiler that a run's VEC words are adjacent; unsigned, each run is one load at a
        constant offset, ld.shared.v4 when VEC = 4. The loops over a and b are unrolled;
        acc and the fragments live in registers.
        """
        a_frag = cuda.local.array(TM, float32)
        b_frag = cuda.local.array(TN, float32)
        for a in range(TM):
            a_frag[a] = a_tile[uint64(kk), uint64(tile_row(row, a))]
        for b in range(TN):
            b_frag[b] = b_tile[uint64(kk), uint64(tile_col(col, b))]
        for a in range(TM):
            for b in range(TN):
                acc[a * TN + b] += a_frag[a] * b_frag[b]

    @cuda.jit(device=True)
    def multiply_slice(a_tile, b_tile, acc, row, col):
        """acc[a*TN + b] += sum over kk < BK of a_tile[kk, tile_row(row, a)] * b_tile[kk, tile_col(col, b)].

        The loop over kk is a `while` taking two steps per trip: NVVM left Numba's range()
        loop here rolled, paying a counter update and a branch for every kk, and the
        explicit second step halves what remains of them (bench/ptx_hot_loop.py counts both).
        BK is even in every Tiling.
        """
        kk = 0
        while kk < BK:
            multiply_step(a_tile, b_tile, acc, row, col, kk)
            multiply_step(a_tile, b_tile, acc, row, col, kk + 1)
            kk += 2

    # ---- the gathers: global memory -> registers, one slice's worth per call. Each thread
    # loads the same tile column (or row) at every slice, walking the reduction axis with a
    # carry_add; each returns its walker advanced by one slice. Past the end they load
    # nothing and give zeros, so a prefetch beyond the last slice is harmless. Indices are
    # cast to uint64 once they are known to be in range, as in multiply_slice (and in the
    # stores to the shared tiles): each signed one would cost its negative-index
    # wraparound, ~10% of a slice's instructions outside the multiply.
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

    @cuda.jit(device=True)
    def gather_output_grads(dy, a_regs, pix, n, p, q, end, o_first, dn, dp, dq):
        """a_regs[r] = dy[n, o, p, q] at pixel pix = (n, p, q), o = o_first + r*STEP_K (one
        pixel, STEP_K apart in o); 0 past the split's end or Co. The walker moves BK pixels."""
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
        k = (c, i, j) at pixels pix, pix + STEP_N, ...; 0 past the split's end or K, and in the padding."""
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

    # ---- the kernels. Each tile's reduction is a pipeline over slices: store the gathered
    # registers into the shared tiles, syncthreads, multiply, syncthreads; the next slice is
    # gathered after the multiply (PREFETCH off: the block then waits on global memory at
    # the next store, with nothing else to do) or before it (PREFETCH on: its loads are in
    # flight while the multiply runs, and the registers they land in are the only cost).
    def forward_kernel(x, w, out, sh, sw, ph, pw, kh, kw, chunk):
        """out (=) as C[M = N*Ho*Wo, Co] = A[M, K = Ci*kh*kw] @ B[K, Co]; w is the (Co, K) view.

        A[m, k] = x[n, c, p*s + i - pad, q*s + j - pad] (0 in the padding), m = (n, p, q),
        k = (c, i, j). A block takes tiles C[m0.., n0..] in a block-stride loop (m tiles
        fastest: neighbouring blocks share B's slices), summed over split z = blockIdx.z's
        range k in [z*chunk, (z+1)*chunk), and writes them to out[z*N + n, o, p, q]: with one
        split out is y itself, with several a workspace that sum_splits adds up. Thread t
        owns rows tile_row(t % ROW_THREADS, a) and columns tile_col(t // ROW_THREADS, b): m
        is the fastest across a warp because it is y's contiguous axis (coalesced stores).
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
            k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end, kh, kw,
                                             dc, di, dj)
            gather_weight_rows(w, b_regs, n0 + nn_b, k_start + kk_b, k_end)
            for k0 in range(k_start, k_end, BK):
                for r in range(PASSES_M):
                    a_tile[uint64(t // BM + r * STEP_M), uint64(mm)] = a_regs[r]
                for r in range(PASSES_KN):
                    b_tile[uint64(kk_b), uint64(nn_b + r * STEP_K)] = b_regs[r]
                cuda.syncthreads()               # both slices complete before anyone reads them
                if PREFETCH:
                    k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end,
                                                     kh, kw, dc, di, dj)
                    gather_weight_rows(w, b_regs, n0 + nn_b, k0 + BK + kk_b, k_end)
                multiply_slice(a_tile, b_tile, acc, t % ROW_THREADS, t // ROW_THREADS)
                if not PREFETCH:
                    k_a, c, i, j = gather_pixel_taps(x, a_regs, n, h_base, v_base, row_ok, k_a, c, i, j, k_end,
                                                     kh, kw, dc, di, dj)
                    gather_weight_rows(w, b_regs, n0 + nn_b, k0 + BK + kk_b, k_end)
                cuda.syncthreads()               # all reads done before the next slice overwrites
            for a in range(TM):
                m = m0 + tile_row(t % ROW_THREADS, a)
                if m < rows:
                    n, p, q = digits(m, out_h, out_w)
                    for b in range(TN):
                        o = n0 + tile_col(t // ROW_THREADS, b)
                        if o < cout:
                            out[split * n_img + n, o, p, q] = acc[a * TN + b]

    def backward_data_kernel(dy, wp, dx, sh, sw, ph, pw):
        """dx (=), one sub-pixel phase per blockIdx.z, each a stride-1 implicit GEMM.

        Phase (rh, rw) is the dx pixels h = rh + sh*u, v = rw + sw*uv. Only the taps
        i = i0, i0 + sh, ... (i0 = (rh + ph) mod sh) reach them, at dy row p = base_h + u - ti
        for tap i = i0 + sh*ti: C[M = N*rows_h*rows_w, Ci] = A[M, K = taps_h*taps_w*Co] @ B[K, Ci]
        with A[(n,u,uv), (ti,tj,o)] = dy[n, o, base_h + u - ti, base_w + uv - tj] (0 outside)
        and B[(ti,tj,o), c] = wp[i0 + sh*ti, j0 + sw*tj, o, c], wp = w regrouped taps-major
        (taps_major). Every dx pixel is in exactly one phase and one row m of it, so it is
        written exactly once; a phase with no taps (K = 0) and rows no tap reaches
        (output_padding) get 0. Tiles and threads as in forward.
        """
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
        # Both tiles are loaded with consecutive threads on consecutive columns: A's are
        # output pixels, and consecutive uv read consecutive dy columns (stride 1 even for a
        # stride-2 layer: the phase split turned the strided gather into a dense one); B's are
        # input channels, contiguous in wp. As BM == BN, a thread's A and B elements share
        # their k = (ti, tj, o): one walker, stepping STEP_M, serves both.
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
                if PREFETCH:
                    ti, tj, o = gather_phase_taps(dy, wp, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                                                  ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw)
                multiply_slice(a_tile, b_tile, acc, t % ROW_THREADS, t // ROW_THREADS)
                if not PREFETCH:
                    ti, tj, o = gather_phase_taps(dy, wp, a_regs, b_regs, n, p_base, q_base, row_ok, c, col_ok,
                                                  ti, tj, o, taps_h, radix_w, dti, dtj, do, i0, j0, sh, sw)
                cuda.syncthreads()
            for a in range(TM):
                m = m0 + tile_row(t % ROW_THREADS, a)
                if m < rows:
                    n, u, uv = digits(m, rows_h, rows_w)
                    for b in range(TN):
                        c = n0 + tile_col(t // ROW_THREADS, b)
                        if c < cin:
                            dx[n, c, rh + sh * u, rw + sw * uv] = acc[a * TN + b]

    def backward_weight_kernel(x, dy, partials, sh, sw, ph, pw, kh, kw, chunk):
        """partials[z*Co + o, k] (=): split z's share of dw, pixels [z*chunk, (z+1)*chunk).

        C[Co, K = Ci*kh*kw] = dy^T[Co, P = N*Ho*Wo] @ A[P, K], A[(n,p,q), (c,i,j)] =
        x[n, c, p*s + i - pad, q*s + j - pad]: the reduction runs over pixels. blockIdx.z is
        the split; the assignment of pixels to splits is fixed by `chunk`, so each partial is
        the same sum on every run. Tiles in a block-stride loop as in forward. Thread t owns
        rows (o) tile_row(t // COL_THREADS, a) and columns (k) tile_col(t % COL_THREADS, b):
        k fastest, partials' contiguous axis. With one split the launcher passes dw itself,
        viewed (Co, K).
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
        # pixels first + t // BN + STEP_N*u. A warp reads runs of kw contiguous floats, a row
        # apart (at k4 half of each 32-byte sector is used; pixel-fastest would read x s
        # floats apart, no better, and cost more index arithmetic).
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
                if PREFETCH:
                    pix_a, n_a, p_a, q_a = gather_output_grads(dy, a_regs, pix_a, n_a, p_a, q_a, end, m0 + mm_a,
                                                               dn_a, dp_a, dq_a)
                    pix_b, n_b, p_b, q_b = gather_input_taps(x, b_regs, pix_b, n_b, p_b, q_b, end, col_ok, c, i, j,
                                                             sh, sw, ph, pw, dn_b, dp_b, dq_b, out_h, out_w)
                multiply_slice(a_tile, b_tile, acc, t // COL_THREADS, t % COL_THREADS)
                if not PREFETCH:
                    pix_a, n_a, p_a, q_a = gather_output_grads(dy, a_regs, pix_a, n_a, p_a, q_a, end, m0 + mm_a,
                                                               dn_a, dp_a, dq_a)
                    pix_b, n_b, p_b, q_b = gather_input_taps(x, b_regs, pix_b, n_b, p_b, q_b, end, col_ok, c, i, j,
                                                             sh, sw, ph, pw, dn_b, dp_b, dq_b, out_h, out_w)
                cuda.syncthreads()
            for a in range(TM):
                o = m0 + tile_row(t // COL_THREADS, a)
                if o < cout:
                    for b in range(TN):
                        k = n0 + tile_col(t % COL_THREADS, b)
                        if k < depth:
                            partials[split * cout + o, k] = acc[a * TN + b]

    forward_v = kernel((f32_4d, f32_2d, f32_4d, i64, i64, i64, i64, i64, i64, i64))(
        _named(forward_kernel, f"forward_v{version}"))
    backward_data_v = kernel(_SIG)(_named(backward_data_kernel, f"backward_data_v{version}"))
    backward_weight_v = kernel((f32_4d, f32_4d, f32_2d, i64, i64, i64, i64, i64, i64, i64))(
        _named(backward_weight_kernel, f"backward_weight_v{version}"))

    def forward(x, w, y, sh, sw, ph, pw, splits=None):
        n, cout, out_h, out_w = y.shape
        cin, kh, kw = w.shape[1:]
        depth = cin * kh * kw
        tiles_m, tiles_n = _ceil_div(n * out_h * out_w, BM), _ceil_div(cout, BN)
        splits, chunk = split_reduction(depth, tiles_m * tiles_n, splits, tiling)
        out = y if splits == 1 else workspace(y, (splits * n, cout, out_h, out_w), "conv2d.forward.partials")
        grid = (_tile_grid(tiles_m * tiles_n), 1, splits)
        forward_v[grid, THREADS](x, w.reshape(cout, depth), out, sh, sw, ph, pw, kh, kw, chunk)
        if splits > 1:
            _sum_splits(out.reshape(splits * n, y.size // n), y.reshape(n, y.size // n))

    def backward_data(dy, w, dx, sh, sw, ph, pw):
        tiles = _ceil_div(_most_phase_rows(dx.shape, sh, sw), BM) * _ceil_div(dx.shape[1], BN)
        grid = (_tile_grid(tiles), 1, sh * sw)
        backward_data_v[grid, THREADS](dy, _taps_major_copy(w), dx, sh, sw, ph, pw)

    def backward_weight(x, dy, dw, sh, sw, ph, pw, splits=None):
        cout, cin, kh, kw = dw.shape
        depth = cin * kh * kw
        tiles_m, tiles_n = _ceil_div(cout, BM), _ceil_div(depth, BN)
        splits, chunk = split_reduction(dy.shape[0] * dy.shape[2] * dy.shape[3], tiles_m * tiles_n, splits, tiling)
        dw2 = dw.reshape(cout, depth)
        partials = dw2 if splits == 1 else workspace(dw, (splits * cout, depth), "conv2d.backward_weight.partials")
        grid = (_tile_grid(tiles_m * tiles_n), 1, splits)
        backward_weight_v[grid, THREADS](x, dy, partials, sh, sw, ph, pw, kh, kw, chunk)
        if splits > 1:
            _sum_splits(partials, dw2)

    return {"forward": forward, "backward_data": backward_data, "backward_weight": backward_weight}


IMPLICIT_GEMM = {version: implicit_gemm(version, tiling) for version, tiling in TILING.items()}


# ------------------------------------------------------------------------ version 6
# Narrow channels. backward_data into Ci <= NARROW channels (D1's dx and, through the
# duality, G5's forward: Ci = 3) is a GEMM C[M, Ci] per phase with M = 131072 rows and
# Ci = 3 columns: a 128-wide tile of C would spend 125 of its 128 columns on nothing. Here
# a thread owns one dx pixel of a phase and all its channels (NARROW accumulators), reads
# dy straight from global memory (consecutive threads, consecutive pixels: coalesced) and
# the phase's weights from shared memory as one 16-byte row of NARROW floats per
# (tap, output channel), the same row for every thread (a broadcast). Every other
# convolution, and any with more taps per phase than NARROW_TAPS, runs version 5.
NARROW = 4                                   # channels per thread: one 16-byte shared row
NARROW_TAPS = 9                              # taps per phase staged: k <= 3 at s1, k <= 6 at s2
NARROW_CHUNK = 4 if SIMULATOR else 64        # output channels staged per pass
NARROW_THREADS = 16 if SIMULATOR else 256
NARROW_ROWS = NARROW_TAPS * NARROW_CHUNK     # (tap, output channel) rows of the shared weights


@kernel(_SIG)
def backward_data_narrow_v6(dy, wp, dx, sh, sw, ph, pw):
    """dx (=) for Ci <= NARROW: one thread per dx pixel of phase blockIdx.z, all its channels.

    Phases, taps and the taps-major weights wp[i, j, o, c] as in the implicit GEMMs'
    backward_data. Per pass over NARROW_CHUNK output channels o0.. the block stages
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


def narrow_channels(wide_backward_data):
    """backward_data by backward_data_narrow_v6 where it applies (Ci <= NARROW, <= NARROW_TAPS
    taps per phase) and by wide_backward_data everywhere else."""
    def backward_data(dy, w, dx, sh, sw, ph, pw):
        _, cin, kh, kw = w.shape
        if cin > NARROW or _ceil_div(kh, sh) * _ceil_div(kw, sw) > NARROW_TAPS:
            return wide_backward_data(dy, w, dx, sh, sw, ph, pw)
        grid = (_tile_grid(_ceil_div(_most_phase_rows(dx.shape, sh, sw), NARROW_THREADS)), 1, sh * sw)
        backward_data_narrow_v6[grid, NARROW_THREADS](dy, _taps_major_copy(w), dx, sh, sw, ph, pw)
    return backward_data


# ------------------------------------------------------------------------ version 7
# Fitted tiles. v5's 128 x 128 tiles fit C exactly on most DCGAN layers, but where one side
# of C is 64 (D2's dx and G4's forward, 8.6 GFLOP each; D1's forward and G5's dx) half of
# every tile is padding, and the weight gradients of D1 and G5 (C is 64 x 48) use 19% of
# their one tile. Version 7 gives each GEMM the tiling that pads C least: v5's, or
# TILING[7], the same thread (8 x 8 outputs, runs of 4, prefetch) in 64 x 64 tiles of 64
# threads; on a tie the bigger tiles, which load half as much per FMA. The narrow kernel
# keeps its channels (v6).
def fitted_tiling(rows, cols, tilings=TILING):
    """The version (5 or 7) whose tiles pad a rows x cols C least; 5 on a tie."""
    def padded(tiling):
        return _ceil_div(rows, tiling.bm) * tiling.bm * _ceil_div(cols, tiling.bn) * tiling.bn
    return 7 if padded(tilings[7]) < padded(tilings[5]) else 5


def _forward_v7(x, w, y, sh, sw, ph, pw):
    n, cout, out_h, out_w = y.shape
    IMPLICIT_GEMM[fitted_tiling(n * out_h * out_w, cout)]["forward"](x, w, y, sh, sw, ph, pw)


def _fitted_backward_data(dy, w, dx, sh, sw, ph, pw):
    version = fitted_tiling(_most_phase_rows(dx.shape, sh, sw), dx.shape[1])
    IMPLICIT_GEMM[version]["backward_data"](dy, w, dx, sh, sw, ph, pw)


def _backward_weight_v7(x, dy, dw, sh, sw, ph, pw):
    cout, cin, kh, kw = dw.shape
    IMPLICIT_GEMM[fitted_tiling(cout, cin * kh * kw)]["backward_weight"](x, dy, dw, sh, sw, ph, pw)


VERSIONS = {
    1: Version("naive", "one thread per output element, operands read straight from global memory", {
        "forward": _forward_v1, "backward_data": _backward_data_v1, "backward_weight": _backward_weight_v1,
    }),
    2: Version("smem-tiles", "a block stages input and weight tiles in shared memory, reused by its threads", {
        "forward": _forward_v2, "backward_data": _backward_data_v2, "backward_weight": _backward_weight_v2,
    }),
    3: Version("implicit-gemm", "each direction a GEMM gathered into shared tiles; each thread a TM x TN block of C in registers",
               IMPLICIT_GEMM[3]),
    4: Version("vector-frags", "8 x 8 outputs per thread, their operands read from shared memory 4 floats (16 bytes) per load",
               IMPLICIT_GEMM[4]),
    5: Version("prefetch", "the next slice's global loads issued into registers before this slice's multiply-adds",
               IMPLICIT_GEMM[5]),
    6: Version("narrow-channels", "backward-data into at most 4 channels: a thread per pixel, all its channels in registers",
               dict(IMPLICIT_GEMM[5], backward_data=narrow_channels(IMPLICIT_GEMM[5]["backward_data"]))),
    7: Version("fitted-tiles", "each GEMM in the tiles that pad it least, 128 x 128 or 64 x 64, the same thread in both", {
        "forward": _forward_v7, "backward_data": narrow_channels(_fitted_backward_data),
        "backward_weight": _backward_weight_v7,
    }),
}
DEFAULT_VERSION = 1


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


# ------------------------------------------------------------------ validate / time
DIRECTIONS = ("fwd", "bwd-data", "bwd-weight")

# One convolution layer. For a transposed layer (convT) cin/cout are ITS channels and
# `size` its input size; its weight is (cin, cout, kh, kw), as in PyTorch.
Layer = namedtuple("Layer", "name transposed batch cin cout size kernel stride padding output_padding")


def layer_output_size(layer):
    (kh, kw), (sh, sw), (ph, pw), (oph, opw) = layer.kernel, layer.stride, layer.padding, layer.output_padding
    h, w = layer.size
    if layer.transposed:
        return (conv_transpose2d_output_size(h, kh, sh, ph, oph), conv_transpose2d_output_size(w, kw, sw, pw, opw))
    return conv2d_output_size(h, kh, sh, ph), conv2d_output_size(w, kw, sw, pw)


def layer_label(layer, direction):
    """e.g. 'G2 convT 512->256 4->8 fwd': stable names for tests and benchmarks."""
    def size(hw):
        return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"
    return (f"{layer.name} {'convT' if layer.transposed else 'conv'} {layer.cin}->{layer.cout} "
            f"{size(layer.size)}->{size(layer_output_size(layer))} {direction}")


def dcgan_layers(batch=128, image_size=64, width=64, nc=3, nz=100, arch="pytorch"):
    """Every convolution of DCGAN's G (transposed) and D, named by position in the model.

    pytorch arch: G1 is a 4x4 convT from 1x1, the rest k4 s2 p1; D ends in a 4x4 valid conv.
    paper arch (names prefixed 'paper-'): k5 s2 p2, output_padding 1 in G; its G1 and its
    last D layer are dense (linear.py), so its convolutions are G2.. and D1..D4.
    """
    blocks = int(np.log2(image_size // 4))
    channels = width * 2 ** (blocks - 1)                 # the 4x4 volume's channels
    if arch == "pytorch":
        prefix, k, s, p, op = "", (4, 4), (2, 2), (1, 1), (0, 0)
        layers = [Layer("G1", True, batch, nz, channels, (1, 1), (4, 4), (1, 1), (0, 0), (0, 0))]
    else:
        prefix, k, s, p, op = "paper-", (5, 5), (2, 2), (2, 2), (1, 1)
        layers = []
    size = 4
    for index in range(2, blocks + 2):                   # G2 .. G(blocks+1): doubling the size
        out = nc if index == blocks + 1 else channels // 2
        layers.append(Layer(f"{prefix}G{index}", True, batch, channels, out, (size, size), k, s, p, op))
        channels, size = out, size * 2
    cin, channels = nc, width
    for index in range(1, blocks + 1):                   # D1 .. D(blocks): halving it
        layers.append(Layer(f"{prefix}D{index}", False, batch, cin, channels, (size, size), k, s, p, (0, 0)))
        cin, channels, size = channels, channels * 2, size // 2
    if arch == "pytorch":
        layers.append(Layer(f"D{blocks + 1}", False, batch, cin, 1, (4, 4), (4, 4), (1, 1), (0, 0), (0, 0)))
    return layers


def sim_layers():
    """Tiny layers with the DCGAN strides/paddings, plus odd and rectangular ones."""
    return [
        Layer("tiny-D", False, 2, 3, 4, (8, 8), (4, 4), (2, 2), (1, 1), (0, 0)),
        Layer("tiny-Dlast", False, 2, 3, 1, (4, 4), (4, 4), (1, 1), (0, 0), (0, 0)),
        Layer("tiny-odd", False, 1, 2, 3, (7, 5), (3, 2), (2, 1), (1, 0), (0, 0)),
        Layer("tiny-G1", True, 2, 3, 4, (1, 1), (4, 4), (1, 1), (0, 0), (0, 0)),
        Layer("tiny-G", True, 2, 4, 2, (3, 3), (4, 4), (2, 2), (1, 1), (0, 0)),
        Layer("tiny-paperG", True, 1, 3, 2, (3, 3), (5, 5), (2, 2), (2, 2), (1, 1)),
    ]


def cases(sim):
    """Every layer x direction: tiny ones in the simulator; on a GPU every convolution of
    both DCGAN archs at batch 128, 64x64, width 64 (G's transposed layers run through the
    duality, as training runs them)."""
    layers = sim_layers() if sim else dcgan_layers(arch="pytorch") + dcgan_layers(arch="paper")
    return [(layer_label(layer, direction),
             lambda rng, layer=layer, direction=direction: make_inputs(rng, layer, direction))
            for layer in layers for direction in DIRECTIONS]


def make_inputs(rng, layer, direction):
    """Unit-normal x, w and dy for one layer (host float32), and a slot for its reference."""
    out_h, out_w = layer_output_size(layer)
    x = rng.standard_normal((layer.batch, layer.cin) + tuple(layer.size)).astype(np.float32)
    w_shape = ((layer.cin, layer.cout) if layer.transposed else (layer.cout, layer.cin)) + tuple(layer.kernel)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal((layer.batch, layer.cout, out_h, out_w)).astype(np.float32)
    return dict(layer=layer, direction=direction, x=x, w=w, dy=dy, reference=None)


def reference_result(inputs):
    """The float64 NumPy result of the case's direction (computed once per case)."""
    if inputs["reference"] is None:
        layer, direction = inputs["layer"], inputs["direction"]
        x, w, dy = (inputs[k].astype(np.float64) for k in ("x", "w", "dy"))
        s, p = layer.stride, layer.padding
        if layer.transposed:
            out = {"fwd": lambda: reference.conv_transpose2d_forward(x, w, None, s, p, layer.output_padding),
                   "bwd-data": lambda: reference.conv_transpose2d_backward_data(dy, w, s, p),
                   "bwd-weight": lambda: reference.conv_transpose2d_backward_weight(x, dy, w.shape, s, p)}
        else:
            out = {"fwd": lambda: reference.conv2d_forward(x, w, None, s, p),
                   "bwd-data": lambda: reference.conv2d_backward_data(dy, w, x.shape, s, p),
                   "bwd-weight": lambda: reference.conv2d_backward_weight(x, dy, w.shape, s, p)}
        inputs["reference"] = out[direction]()
    return inputs["reference"]


def tolerance(terms):
    """(atol, rtol) for a float32 sum of `terms` products of unit-normal numbers vs float64.

    The sum is ~sqrt(K) in size; each addition rounds by up to eps/2 of the running sum, so
    the errors random-walk to about eps*K/5 (relative: ~sqrt(K)*eps). 4*eps*K is ~20 such
    standard deviations: safe for any summation order, yet far below one dropped or doubled
    term (~1).
    """
    eps = float(np.finfo(np.float32).eps)
    return 4 * eps * terms, 4 * eps


def reduction_terms(layer, direction):
    """How many products each output of a direction sums (K), in the layer's own terms."""
    kh, kw = layer.kernel
    out_h, out_w = layer_output_size(layer)
    # The weight gradient sums over the conv2d output side: a transposed layer's input.
    pixels = layer.size[0] * layer.size[1] if layer.transposed else out_h * out_w
    return {"fwd": layer.cin * kh * kw,            # for convT an upper bound: a strided
            "bwd-data": layer.cout * kh * kw,      # gather hits only ~1/s^2 of the taps
            "bwd-weight": layer.batch * pixels}[direction]


def layer_flops(layer):
    """2 * multiply-adds; the same for all three directions."""
    return 2 * reduction_terms(layer, "bwd-weight") * layer.cin * layer.cout * layer.kernel[0] * layer.kernel[1]


def run(version, label, inputs, device):
    layer, direction = inputs["layer"], inputs["direction"]
    x, w, dy = device(inputs["x"]), device(inputs["w"]), device(inputs["dy"])
    s, p = layer.stride, layer.padding
    result_shape = {"fwd": inputs["dy"].shape, "bwd-data": inputs["x"].shape, "bwd-weight": inputs["w"].shape}[direction]
    out = device(np.full(result_shape, np.nan, np.float32))
    if layer.transposed:
        # The duality (DESIGN.md section 3): a transposed layer's forward is conv2d's
        # backward_data, its backward_data is conv2d's forward, and its weight gradient is
        # conv2d's with the input (x) and output gradient (dy) trading places.
        launch = {"fwd": lambda: backward_data(x, w, out, s, p, version),
                  "bwd-data": lambda: forward(dy, w, out, s, p, version),
                  "bwd-weight": lambda: backward_weight(dy, x, out, s, p, version)}[direction]
    else:
        launch = {"fwd": lambda: forward(x, w, out, s, p, version),
                  "bwd-data": lambda: backward_data(dy, w, out, s, p, version),
                  "bwd-weight": lambda: backward_weight(x, dy, out, s, p, version)}[direction]

    def ours():
        launch()
        return out
    terms = reduction_terms(layer, direction)
    nbytes = inputs["x"].nbytes + inputs["w"].nbytes + inputs["dy"].nbytes  # read two, write one
    atol, rtol = tolerance(terms)
    return ours, reference_result(inputs), atol, rtol, layer_flops(layer), nbytes


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
