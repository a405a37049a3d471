"""The cases the harness validates (and on a GPU times) every version of the reduction on.

    python -m dcgan_cuda.kernels.reduction [--sim] [--version N]   (kernels/harness.py runs these)
"""
from __future__ import annotations

import numpy as np

from dcgan_cuda import reference

from .common import THREADS

# The DCGAN shapes (batch 128, 64x64, ngf = ndf = 64): the only bias in either architecture
# is the paper D's final dense layer, dy (128, 1); the per-channel sums of the batchnorm
# layers (G: 512@4x4, 256@8x8, 128@16x16, 64@32x32; D: 128@16x16, 256@8x8, 512@4x4) are
# the same reduction, so they are timed here too.
GPU_SHAPES = [(128, 1), (128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32)]
SIM_SHAPES = [(3, 5), (1, 3, 1, 1), (2, 3, 5, 7), (3, 2, 9, 9)]


def cases(sim):
    return [(f"channel_sum {'x'.join(map(str, shape))}",
             lambda rng, shape=shape: rng.standard_normal(shape).astype(np.float32))
            for shape in (SIM_SHAPES if sim else GPU_SHAPES)]


def run(version, label, inputs, device):
    """channel_sum of one version and its float64 reference."""
    from . import channel_sum
    x = inputs
    d_x = device(x)
    out = device(np.full(x.shape[1], np.nan, np.float32))

    def launch():
        channel_sum(d_x, out, version)
        return out
    m = x.size // x.shape[1]
    # The reference is float64. Each thread adds k = m/THREADS values into a running sum that
    # grows like sqrt(j)*rms(x) after j of them, each addition rounding by up to eps/2 of it:
    # a uniform error of variance (eps/2)^2 * j * rms^2 / 3. Summed over j = 1..k (about
    # k^2/2) that is (eps/2)^2 rms^2 k^2 / 6 per thread, and THREADS independent threads
    # multiply it by THREADS: a deviation of (eps/2)*rms(x)*m/sqrt(6*THREADS) (the 6 is the 3
    # of the uniform times the 2 of the sum), or ~ (eps/2)*rms(x)*sqrt(m) when m is below
    # THREADS. We allow 20x that: a missed or doubled element (an error of ~rms(x)) still
    # shows.
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    atol = 10 * np.finfo(np.float32).eps * rms * max(m / np.sqrt(6 * THREADS), np.sqrt(m))
    return launch, reference.bias_backward(x.astype(np.float64)), atol, 1e-6, x.size, x.nbytes  # atol, rtol, FLOPs, bytes
