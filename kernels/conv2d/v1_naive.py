"""conv2d version 1, naive: one thread per output element, operands straight from global memory.

The idea. Each direction of the convolution, written as the formula reads, one thread per
element of its OUTPUT, in a grid-stride loop over the flat output:
    forward          thread = (n, o, p, q) of y, looping over c, i, j;
    backward_data    thread = (n, c, h, v) of dx, a gather: for each tap i the dy row
                     p = (h + pad - i) / s must be a whole number in [0, Ho) (a
                     divisibility test), so no thread ever writes another's element and
                     no atomics are needed;
    backward_weight  thread = (o, c, i, j) of dw, looping over n, p, q in a fixed order
                     (deterministic).
The flat index's fastest digit is the output's last axis, so neighbouring threads write
neighbouring addresses (coalesced stores).

Why it is slow (PREDICTED; no GPU run yet): every multiply-add loads its two operands from
global memory (8 bytes per 2 FLOPs = 4 bytes/FLOP; at D2 that is 34 GB of requests for
51 MB of data). L1/L2 catch most, but the kernel is bound by load instructions and cache
bandwidth, far from the FMA peak. backward_weight is worse: only Co*Ci*kh*kw threads (D1:
64*3*16 = 3072, ~1% of the 270k an H100 keeps resident) each run a serial loop of
N*Ho*Wo = 131072 steps.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import grid_1d, i64
from .common import SIG, kernel


@kernel(SIG + (i64,))
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


@kernel(SIG + (i64,))
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


@kernel(SIG + (i64,))
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


# ------------------------------------------------------------------------ launchers
# One thread per output element in a grid-stride loop (jit.grid_1d: a few waves of blocks).
def forward(x, w, y, sh, sw, ph, pw):
    forward_v1[grid_1d(y.size)](x, w, y, sh, sw, ph, pw, y.size)


def backward_data(dy, w, dx, sh, sw, ph, pw):
    backward_data_v1[grid_1d(dx.size)](dy, w, dx, sh, sw, ph, pw, dx.size)


def backward_weight(x, dy, dw, sh, sw, ph, pw):
    backward_weight_v1[grid_1d(dw.size)](x, dy, dw, sh, sw, ph, pw, dw.size)


OPS = {"forward": forward, "backward_data": backward_data, "backward_weight": backward_weight}
