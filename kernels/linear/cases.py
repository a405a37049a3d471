"""The cases the harness validates (and on a GPU times) every version of linear on.

    python -m dcgan_cuda.kernels.linear [--sim] [--version N]   (kernels/harness.py runs these)
"""
from __future__ import annotations

import numpy as np

from dcgan_cuda import reference


def cases(sim):
    """(label, make_inputs): x (batch, in), w (out, in), dy (batch, out) for each shape."""
    if sim:
        # Odd sizes that straddle tile edges, a batch of 1, and a K of 1.
        shapes = [("dense 3x13 -> 3x17", 3, 13, 17), ("dense 1x9 -> 1x2", 1, 9, 2),
                  ("dense 11x1 -> 11x5", 11, 1, 5)]
    else:
        # The paper arch's dense layers and the classifier, and one large square GEMM, where
        # the FMA peak is the bound and the ladder's rungs separate.
        shapes = [("G projection 128x100 -> 128x8192", 128, 100, 8192),
                  ("D head 128x8192 -> 128x1", 128, 8192, 1),
                  ("classifier 128x15360 -> 128x10", 128, 15360, 10),
                  ("square 2048x2048 -> 2048x2048", 2048, 2048, 2048)]
    return [(label, lambda rng, s=(batch, fan_in, fan_out): (
                rng.standard_normal((s[0], s[1])).astype(np.float32),
                (0.02 * rng.standard_normal((s[2], s[1]))).astype(np.float32),
                rng.standard_normal((s[0], s[2])).astype(np.float32)))
            for label, batch, fan_in, fan_out in shapes]


def run(version, label, inputs, device):
    """forward, backward_data and backward_weight of one version, and their float64 references."""
    from . import backward_data, backward_weight, forward
    x, w, dy = inputs
    d_x, d_w, d_dy = device(x), device(w), device(dy)
    y, dx, dw = device(np.empty_like(dy)), device(np.empty_like(x)), device(np.empty_like(w))

    def launch():
        forward(d_x, d_w, y, version)
        backward_data(d_dy, d_w, dx, version)
        backward_weight(d_x, d_dy, dw, version)
        return y, dx, dw
    x64, w64, dy64 = (t.astype(np.float64) for t in (x, w, dy))
    refs = (reference.linear_forward(x64, w64), reference.linear_backward_data(dy64, w64),
            reference.linear_backward_weight(x64, dy64))
    # Against a float64 reference. A float32 running sum of K products of size ~s rounds
    # each of its K additions by up to 2^-24 of the partial sum, a random walk that ends near
    # eps * s * K / 5 (eps = 2^-23); 4 * eps * s * K, as conv2d's tolerance, is ~20 of those
    # and still far below one dropped or doubled term. The products here: forward K = in
    # of x (1) by w (0.02), backward_data K = out of dy (1) by w (0.02), backward_weight
    # K = N of dy (1) by x (1). At least 1e-4, the bound these cases always had.
    batch, fan_in = x.shape
    fan_out = w.shape[0]
    eps = float(np.finfo(np.float32).eps)
    atol = max(1e-4, 4 * eps * max(0.02 * fan_in, 0.02 * fan_out, 1.0 * batch))
    flops = 3 * 2 * batch * fan_in * fan_out
    nbytes = 3 * 4 * (x.size + w.size + dy.size)  # each of x, w, dy is read twice and written once
    return launch, refs, atol, 1e-4, flops, nbytes   # atol, rtol, FLOPs, bytes moved
