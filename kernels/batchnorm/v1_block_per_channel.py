"""batchnorm version 1, block-per-channel: one block reduces one channel; grid-stride passes apply.

The idea. A batchnorm layer is two reductions and two elementwise passes, and the two
halves want different thread mappings:
  * per-channel reductions (the statistics; the backward's two sums): one block per
    channel (blockIdx.x = c), walking the channel's N runs of H*W contiguous floats with
    consecutive threads on consecutive addresses, each thread summing privately in a fixed
    order, then a tree in shared memory (kernels/reduction/'s version 1 explains both; its
    common.py holds the tree, block_sum, and the walk, advance). The variance takes
    two passes over the channel inside the same kernel: the mean first, then the sum of
    squared deviations. The one-pass formula E[x^2] - E[x]^2 subtracts two nearly equal
    numbers when |mean| >> std and loses every digit of the variance in float32 (try
    x = 1000 + N(0, 1): E[x^2] ~ 1e6, whose float32 spacing is 0.06). The block's thread 0
    then folds everything the elementwise pass needs into a few numbers per channel
    (scale = gamma*invstd; for the backward also dbeta/M and dgamma/M), so that pass does
    no square roots. The backward's two sums, sum(g) and sum(g*xhat), share one pass.
  * elementwise passes (y, dx): a grid-stride loop over all N*C*H*W elements, reading the
    per-channel coefficients of the element's channel (they stay in L1).
The coefficients pass between the two kernels through a few floats of scratch memory
(reduction.workspace). Nothing combines in a data-dependent order: results are bitwise
reproducible. Four launches a training layer: statistics and normalise forward,
backward_sums and dx backward.

What it costs (PREDICTED; no GPU run yet). The bytes decide (the family's napkin math is
in __init__.py): this version reads x three times forward (two statistics passes and
the normalise) and dy and x twice backward, 16 and 20 bytes an element against the 8 and
12 a layer must move; the repeat reads of a layer under 50 MB can come from L2.
bench/roofline.py's model, which counts bytes and launches, has its PREDICTED times in
kernels/README.md's batchnorm table: the small layers bound by their launches, the large
ones by DRAM. The model does not see latency, and that is this version's weakness: the
largest layer, (128, 64, 32, 32) = 33.5 MB, has only 64 channels, so 64 blocks for 132
SMs, each thread making 512 trips with one load in flight; its reductions may use only a
few percent of the bandwidth (the reduction family's version 1 has the same shape).
Version 2 splits the channel.
"""
from __future__ import annotations

from numba import cuda, float32, uint64

from ..elementwise import carry_add, digits
from ..jit import f32, f32_1d, f32_2d, i64
from ..reduction import THREADS, advance, block_sum, block_sum2
from .common import (INVSTD, MEAN_DY, MEAN_DY_XHAT, SCALE, activate, activation_gain, fold_into_running,
                     inverse_std, kernel, write_backward_coefficients)


@kernel((f32_2d, f32_1d, f32_1d, f32_1d, f32_1d, i64, f32, f32_1d, f32_1d, f32, f32, f32, i64))
def statistics_v1(x, gamma, mean, var, scale, channels, eps, running_mean, running_var, keep, momentum,
                  unbias, fold_running):
    """Block c: mean[c], biased var[c] (two passes), scale[c] = gamma/sqrt(var+eps); all (=).
    If fold_running, also folds them into the running buffers (in place), which saves the
    separate update_running launch. x is viewed (N*C, H*W)."""
    partial = cuda.shared.array(THREADS, float32)
    c, tid = cuda.blockIdx.x, cuda.threadIdx.x
    rows, run = x.shape
    batch = rows // channels
    count = float32(batch * run)
    dn, ds = THREADS // run, THREADS % run

    acc = float32(0.0)  # pass 1: the mean
    n, s = tid // run, tid % run
    while n < batch:
        acc += x[n * channels + c, s]
        n, s = advance(n, s, dn, ds, run)
    partial[tid] = acc
    mu = block_sum(partial, tid) / count

    acc = float32(0.0)  # pass 2: squared deviations from it (the channel is likely still in L2)
    n, s = tid // run, tid % run
    while n < batch:
        d = x[n * channels + c, s] - mu
        acc += d * d
        n, s = advance(n, s, dn, ds, run)
    partial[tid] = acc
    sigma2 = block_sum(partial, tid) / count

    if tid == 0:
        mean[c] = mu
        var[c] = sigma2
        scale[c] = gamma[c] * inverse_std(sigma2, eps)
        if fold_running:
            fold_into_running(c, mu, sigma2, running_mean, running_var, keep, momentum, unbias)


@kernel((f32_1d, f32_1d, f32_1d, f32))
def eval_scale_v1(gamma, running_var, scale, eps):
    """scale[c] = gamma[c] / sqrt(running_var[c] + eps); one thread per channel, (=)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for c in range(start, scale.shape[0], stride):
        scale[c] = gamma[c] * inverse_std(running_var[c], eps)


@kernel((f32_2d, f32_1d, f32_1d, f32_1d, f32_2d, i64, i64, f32))
def normalise_v1(x, mean, scale, beta, y, channels, n, slope):
    """y = activate((x - mean[c])*scale[c] + beta[c], slope), elementwise over x viewed
    (N*C, H*W); (=). (x - mean) first, not x*scale + (beta - mean*scale): the latter cancels
    when |mean| >> std."""
    run = x.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    if start < n:                    # then C and H*W are > 0
        # Element (image*C + c, s), its index walked as digits: no division per element
        # (elementwise.carry_add); the digits are in range, so the indices are unsigned.
        image, c, s = digits(start, channels, run)
        d_image, dc, ds = digits(stride, channels, run)
        for _ in range(start, n, stride):
            r, cc, ss = uint64(image * channels + c), uint64(c), uint64(s)
            y[r, ss] = activate((x[r, ss] - mean[cc]) * scale[cc] + beta[cc], slope)
            image, c, s = carry_add(image, c, s, d_image, dc, ds, channels, run)


@kernel((f32_1d, f32_1d, f32_1d, f32_1d, f32, f32, f32))
def update_running_v1(running_mean, running_var, mean, var, keep, momentum, unbias):
    """r = keep*r + momentum*stat (keep = 1 - momentum), var made unbiased by the host scalar
    unbias = M/(M-1); in place, one thread per channel."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for c in range(start, mean.shape[0], stride):
        fold_into_running(c, mean[c], var[c], running_mean, running_var, keep, momentum, unbias)


@kernel((f32_2d, f32_2d, f32_1d, f32_1d, f32_1d, f32_1d, f32_1d, f32_1d, f32_2d, i64, f32, i64, f32))
def backward_sums_v1(dy, x, gamma, beta, mean, var, dgamma, dbeta, coef, channels, eps, batch_stats,
                     slope):
    """Block c: dbeta[c] = sum(g), dgamma[c] = sum(g*xhat) in one pass (=), with g = dy times the
    fused activation's gain, and the dx coefficients of channel c into coef (see
    write_backward_coefficients)."""
    sums_dy = cuda.shared.array(THREADS, float32)
    sums_dy_xhat = cuda.shared.array(THREADS, float32)
    c, tid = cuda.blockIdx.x, cuda.threadIdx.x
    rows, run = x.shape
    batch = rows // channels
    mu, invstd = mean[c], inverse_std(var[c], eps)
    scale, shift = gamma[c] * invstd, beta[c]
    dn, ds = THREADS // run, THREADS % run
    acc_dy, acc_dy_xhat = float32(0.0), float32(0.0)
    n, s = tid // run, tid % run
    while n < batch:
        r = n * channels + c
        centred = x[r, s] - mu
        g = dy[r, s] * activation_gain(centred * scale + shift, slope)
        acc_dy += g
        acc_dy_xhat += g * (centred * invstd)
        n, s = advance(n, s, dn, ds, run)
    sums_dy[tid] = acc_dy
    sums_dy_xhat[tid] = acc_dy_xhat
    sum_dy, sum_dy_xhat = block_sum2(sums_dy, sums_dy_xhat, tid)
    if tid == 0:
        write_backward_coefficients(c, sum_dy, sum_dy_xhat, gamma[c], invstd, batch * run, batch_stats,
                                    dgamma, dbeta, coef)


@kernel((f32_2d, f32_2d, f32_1d, f32_1d, f32_2d, f32_2d, i64, i64, f32))
def dx_v1(dy, x, beta, mean, coef, dx, channels, n, slope):
    """dx = scale*(g - mean_g - xhat*mean_g_xhat) elementwise, g = dy times the fused
    activation's gain at z = centred*scale + beta, recomputed here rather than stored by the
    forward; coefficients per channel; (=)."""
    run = x.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    if start < n:                    # the index walked as digits, as in normalise_v1
        image, c, s = digits(start, channels, run)
        d_image, dc, ds = digits(stride, channels, run)
        for _ in range(start, n, stride):
            r, cc, ss = uint64(image * channels + c), uint64(c), uint64(s)
            centred = x[r, ss] - mean[cc]
            g = dy[r, ss] * activation_gain(centred * coef[SCALE, cc] + beta[cc], slope)
            xhat = centred * coef[INVSTD, cc]
            dx[r, ss] = coef[SCALE, cc] * (g - coef[MEAN_DY, cc] - xhat * coef[MEAN_DY_XHAT, cc])
            image, c, s = carry_add(image, c, s, d_image, dc, ds, channels, run)


# ------------------------------------------------------------------------ launches
# x2, dy2 are the (N*C, H*W) views of x and dy (reduction.channel_view); running is the
# statistics kernels' trailing arguments (__init__.py's _running_arguments).
def statistics(x2, gamma, mean, var, scale, channels, eps, running):
    statistics_v1[channels, THREADS](x2, gamma, mean, var, scale, channels, eps, *running)


def backward_sums(dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels, eps, batch_stats, slope):
    backward_sums_v1[channels, THREADS](dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels,
                                        eps, batch_stats, slope)


# The elementwise kernels are launched by __init__.py's launchers with grid_1d; version 2
# keeps them and replaces only the two reductions.
ELEMENTWISE = {"eval_scale": eval_scale_v1, "normalise": normalise_v1, "dx": dx_v1,
               "update_running": update_running_v1}
OPS = dict(statistics=statistics, backward_sums=backward_sums, **ELEMENTWISE)
