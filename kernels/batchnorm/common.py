"""What batchnorm's versions share: the kernel naming and the per-channel formulas.

The formulas are device functions (called from kernels, compiled into them): the
inverse standard deviation, the fused activation and its gain, the running statistics'
update, and the coefficients the backward's elementwise pass reads. Every version calls
these same functions, so the versions differ only in how their threads share the work,
never in the arithmetic of a channel.
"""
from __future__ import annotations

import math

from numba import cuda, float32

from .. import jit

# Rows of the backward's per-channel coefficients (a (4, C) scratch array).
INVSTD, SCALE, MEAN_DY, MEAN_DY_XHAT = 0, 1, 2, 3


# jit.kernel, registering each kernel as batchnorm.<function> whichever file defines it.
kernel = jit.family_kernel("batchnorm")


@cuda.jit(device=True)
def inverse_std(var, eps):
    return float32(1.0) / math.sqrt(var + eps)


@cuda.jit(device=True)
def activate(z, slope):
    """The activation fused after the normalisation: z where z > 0, slope*z elsewhere."""
    return z if z > float32(0.0) else z * slope


@cuda.jit(device=True)
def activation_gain(z, slope):
    """d activate / dz: 1 where z > 0, slope elsewhere."""
    return float32(1.0) if z > float32(0.0) else slope


@cuda.jit(device=True)
def fold_into_running(c, mu, sigma2, running_mean, running_var, keep, momentum, unbias):
    """running = keep*running + momentum*statistic (keep = 1 - momentum), the variance made
    unbiased by the host scalar unbias = M/(M-1); in place."""
    running_mean[c] = running_mean[c] * keep + momentum * mu
    running_var[c] = running_var[c] * keep + momentum * (sigma2 * unbias)


@cuda.jit(device=True)
def write_backward_coefficients(c, sum_dy, sum_dy_xhat, gamma, invstd, count, batch_stats,
                                dgamma, dbeta, coef):
    """dbeta, dgamma (=) and the coefficients of dx = scale*(dy - mean_dy - xhat*mean_dy_xhat).
    With running statistics the two centring terms vanish: dx = scale*dy exactly."""
    dbeta[c] = sum_dy
    dgamma[c] = sum_dy_xhat
    coef[INVSTD, c] = invstd
    coef[SCALE, c] = gamma * invstd
    if batch_stats:
        coef[MEAN_DY, c] = sum_dy / float32(count)
        coef[MEAN_DY_XHAT, c] = sum_dy_xhat / float32(count)
    else:
        coef[MEAN_DY, c] = float32(0.0)
        coef[MEAN_DY_XHAT, c] = float32(0.0)
