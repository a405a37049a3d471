"""pool — adaptive max-pooling to a fixed grid, forward and backward (no atomics).

What it computes. For x (N, C, H, W) and an output grid oh x ow, output cell (a, b) of each
image and channel is the maximum over a bin of x, with PyTorch's bins
    rows  [floor(a*H/oh), ceil((a+1)*H/oh))      columns  [floor(b*W/ow), ceil((b+1)*W/ow))
(when oh does not divide H the bins overlap by a row; when oh > H rows repeat). The paper
(section 5.1) max-pools each of D's convolutional feature maps to 4x4 and classifies the
concatenation; this is that op.
    forward   y[n, c, a, b] = max of the bin;  argmax[n, c, a, b] = h*W + w of the winner,
              the first maximum in row-major order (as numpy's argmax, the reference and
              PyTorch); a NaN in the bin wins (the first NaN), so NaNs propagate.
    backward  dx[n, c, h, w] = sum of dy[n, c, a, b] over the cells (a, b) whose argmax is
              (h, w) — zero for pixels that won nothing, several terms where overlapping
              bins chose the same pixel.
Both write their outputs (=).

How threads map to data. Grid-stride loops (jit.grid_1d) over flat indices.
    forward:  one thread per output cell, looping over its bin (rows, then columns).
    backward: one thread per INPUT pixel, a gather: the pixel works out which bins contain
      it (rows a with floor(a*H/oh) <= h < ceil((a+1)*H/oh), i.e. h*oh // H <= a <=
      ((h+1)*oh - 1) // H, and likewise for columns; usually one, at most a few), loops
      over those cells in row-major order and adds dy where argmax names it. The obvious
      scatter (one thread per output cell doing dx[argmax] += dy) needs atomics as soon as
      bins overlap, and float atomics add in whatever order threads arrive: not
      reproducible. The gather writes each dx exactly once, in a fixed order — the order
      the reference adds in, so the results agree to the bit.

Napkin math (batch 128, 64x64, ndf = 64; H100 SXM: 3.35 TB/s). D's four feature maps are
(128, 64, 32, 32), (128, 128, 16, 16), (128, 256, 8, 8), (128, 512, 4, 4): 63 MB of float32
in all (the largest 33.5 MB), pooled to 4x4: 128 x 960 x 16 = 2 M cells, written as 7.9 MB
of y and 15.7 MB of int64 argmax. No arithmetic but compares (~1 per input element: 16 M
"FLOP"), so memory-bound: forward ~87 MB of traffic, ~26 us; backward reads dy and argmax
(24 MB; each cell re-read by the pixels of its bin, from cache) and writes 63 MB of dx:
~26 us. In the forward, a warp's 32 threads are 32 cells whose bins lie W/ow floats apart,
so each load instruction touches 32 sectors; the bin's next column hits the same sectors in
L1, so DRAM traffic stays near the minimum while L1 sees ~W/ow times more transactions. (The
pytorch-arch D also ends in a 1x1 logit map: pooling it to 4x4 copies each value 16 times.)
Version 1 does its index arithmetic in 64 bits (ptxas -v: 80 and 64 registers, so at most
3 and 4 blocks of 256 threads per SM); 32-bit indices are an easy later gain.

Versions:
    1  naive  forward: a thread per output cell; backward: a thread per input pixel, gathering (no atomics)
Run:
    python -m dcgan_cuda.kernels.pool --sim     validate on the CPU
    python -m dcgan_cuda.kernels.pool           validate and time on a GPU
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from dcgan_cuda import reference

from .jit import Version, f32_4d, grid_1d, i64, i64_4d, kernel


# ------------------------------------------------------------------------ version 1
@kernel((f32_4d, f32_4d, i64_4d, i64))
def adaptive_max_pool2d_forward_v1(x, y, argmax, n_cells):
    """y, argmax (N, C, oh, ow) = max / flat argmax of each bin of x (N, C, H, W); one
    thread per output cell; writes (=)."""
    height, width = x.shape[2], x.shape[3]
    channels, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n_cells, stride):
        b = i % out_w
        a = (i // out_w) % out_h
        c = (i // (out_w * out_h)) % channels
        n = i // (out_w * out_h * channels)
        h0, h1 = (a * height) // out_h, ((a + 1) * height + out_h - 1) // out_h
        w0, w1 = (b * width) // out_w, ((b + 1) * width + out_w - 1) // out_w
        best = x[n, c, h0, w0]
        best_index = h0 * width + w0
        for h in range(h0, h1):
            for w in range(w0, w1):
                v = x[n, c, h, w]
                # Strictly greater: on ties the earlier pixel keeps the cell. v != v is a
                # NaN, which wins unless a NaN already has.
                if v > best or (v != v and best == best):
                    best = v
                    best_index = h * width + w
        y[n, c, a, b] = best
        argmax[n, c, a, b] = best_index


@kernel((f32_4d, i64_4d, f32_4d, i64))
def adaptive_max_pool2d_backward_v1(dy, argmax, dx, n_pixels):
    """dx (N, C, H, W) = sum of dy over the cells whose argmax is that pixel; one thread per
    input pixel, cells visited in row-major order; writes (=)."""
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    out_h, out_w = dy.shape[2], dy.shape[3]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n_pixels, stride):
        w = i % width
        h = (i // width) % height
        c = (i // (width * height)) % channels
        n = i // (width * height * channels)
        # The cells whose bins contain (h, w): a from the first bin that ends after h to the
        # last that starts at or before it (the min guards the arithmetic, never binding).
        a_first, a_last = (h * out_h) // height, min(((h + 1) * out_h - 1) // height, out_h - 1)
        b_first, b_last = (w * out_w) // width, min(((w + 1) * out_w - 1) // width, out_w - 1)
        me = h * width + w
        acc = float32(0.0)
        for a in range(a_first, a_last + 1):
            for b in range(b_first, b_last + 1):
                if argmax[n, c, a, b] == me:
                    acc += dy[n, c, a, b]
        dx[n, c, h, w] = acc


VERSIONS = {
    1: Version("naive", "forward: a thread per output cell; backward: a thread per input pixel, "
               "gathering (no atomics)", {
                   "forward": adaptive_max_pool2d_forward_v1,
                   "backward": adaptive_max_pool2d_backward_v1}),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
# x, y, dy, dx: C-contiguous float32 (N, C, H, W); argmax: C-contiguous int64 (N, C, oh, ow).
def adaptive_max_pool2d_forward(x, y, argmax, version=DEFAULT_VERSION):
    """y, argmax (N, C, oh, ow) = adaptive max-pool of x (N, C, H, W); the grid is y's shape.
    Writes y and argmax (=)."""
    if y.shape[:2] != x.shape[:2] or argmax.shape != y.shape:
        raise ValueError(f"adaptive_max_pool2d_forward: x {x.shape}, y {y.shape}, argmax {argmax.shape}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"adaptive_max_pool2d_forward: empty input {x.shape}: no bin has a maximum")
    n = y.size
    if n:
        VERSIONS[version].ops["forward"][grid_1d(n)](x, y, argmax, n)


def adaptive_max_pool2d_backward(dy, argmax, dx, version=DEFAULT_VERSION):
    """dx (N, C, H, W) = dy (N, C, oh, ow) routed to each cell's argmax pixel, summed where
    several cells chose one pixel. Writes dx (=)."""
    if argmax.shape != dy.shape or dx.shape[:2] != dy.shape[:2]:
        raise ValueError(f"adaptive_max_pool2d_backward: dy {dy.shape}, argmax {argmax.shape}, dx {dx.shape}")
    n = dx.size
    if n:
        VERSIONS[version].ops["backward"][grid_1d(n)](dy, argmax, dx, n)


# ------------------------------------------------------------------ validate / time
def cases(sim):
    if sim:
        # divisible, overlapping bins (5 -> 3), and more outputs than inputs (2 -> 4)
        shapes = [((2, 3, 8, 8), 4), ((1, 2, 5, 7), 3), ((3, 1, 2, 3), 4)]
    else:
        # D's feature maps at batch 128, 64x64, ndf = 64 (both topologies: 4x4/stride 2/pad 1
        # and 5x5/stride 2/pad 2 give the same sizes), and the pytorch arch's 1x1 logit map.
        shapes = [((128, 64, 32, 32), 4), ((128, 128, 16, 16), 4), ((128, 256, 8, 8), 4),
                  ((128, 512, 4, 4), 4), ((128, 1, 1, 1), 4)]
    return [(f"{'x'.join(map(str, s))} -> {g}x{g}",
             lambda rng, s=s, g=g: (rng.standard_normal(s).astype(np.float32),
                                    rng.standard_normal(s[:2] + (g, g)).astype(np.float32)))
            for s, g in shapes]


def run(version, label, inputs, device):
    x, dy = inputs
    grid = dy.shape[2:]
    d_x, d_dy = device(x), device(dy)
    y, dx = device(np.empty_like(dy)), device(np.empty_like(x))
    # -1, never a pixel: an argmax the forward failed to write fails the check, and a traced
    # run that samples the forward's blocks gives the backward the same input every time.
    argmax = device(np.full(dy.shape, -1, np.int64))

    def launch():
        adaptive_max_pool2d_forward(d_x, y, argmax, version)
        adaptive_max_pool2d_backward(d_dy, argmax, dx, version)
        return y, argmax, dx
    ref_y, ref_argmax = reference.adaptive_max_pool2d_forward(x, grid)
    ref_dx = reference.adaptive_max_pool2d_backward(dy, ref_argmax, x.shape)
    # Exact: a max is one of its inputs, argmax an integer, and dx adds the same float32
    # terms in the same order as the reference (random inputs: ties have probability ~0).
    nbytes = 2 * (x.nbytes + y.nbytes + 2 * y.nbytes)  # forward x -> y + argmax; backward dy + argmax -> dx
    return launch, (ref_y, ref_argmax, ref_dx), 0.0, 0.0, x.size, nbytes   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
