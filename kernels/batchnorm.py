"""batchnorm — per-channel statistics, normalise, backward, running statistics.

What it computes, per channel c over the M = N*H*W values of x[:, c]:
    forward_train   mean = sum(x)/M,  var = sum((x - mean)^2)/M           (biased)
                    y = (x - mean) * scale + beta,  scale = gamma / sqrt(var + eps)
    forward_eval    the same map with the running mean and var
    update_running  r_mean = (1-momentum)*r_mean + momentum*mean      (momentum: 0.1 by default)
                    r_var = (1-momentum)*r_var + momentum*var*M/(M-1)  (the unbiased variance)
    backward        xhat = (x - mean)*invstd,  dbeta = sum(dy),  dgamma = sum(dy*xhat)
                    training (batch statistics):  dx = gamma*invstd*(dy - dbeta/M - xhat*dgamma/M)
                    eval (running statistics):    dx = gamma*invstd*dy
    where invstd = 1/sqrt(var + eps). Why the training dx: y depends on x_i directly and, in
    training, through mean (d mean/d x_i = 1/M) and invstd (d var/d x_i = 2*(x_i - mean)/M,
    so d invstd/d x_i = -invstd^3*(x_i - mean)/M = -invstd^2*xhat_i/M). With g = gamma*dy
    (dL/dxhat), the three paths give dx_i = invstd*(g_i - sum(g)/M - xhat_i*sum(g*xhat)/M),
    and sum(g) = gamma*dbeta, sum(g*xhat) = gamma*dgamma. In eval mean and invstd are
    constants, and only the direct path is left.
forward_* and backward write their outputs (=); update_running updates the running
buffers in place (r = (1-momentum)*r + momentum*stat). In training the statistics kernel
does that update itself, by the same formula, when forward_train is given the running
buffers.

The activation that follows every batchnorm in DCGAN is fused into it: every kernel takes
the activation's negative slope (1 = none, 0 = ReLU, 0.2 = LeakyReLU(0.2)),
    y = activate(z) = z if z > 0 else slope*z,   z = (x - mean)*scale + beta
and the backward multiplies dy by activate'(z) before anything else, recomputing z from x,
which it reads anyway. Unfused, the activation is one more launch each way and moves 8
bytes/element forward (read z, write y) and 12 backward (read dy and z, write dz). At the
DCGAN shapes below, with G's batchnorms run once each way per training step and D's three
times (real, fake, and the generator's step), that is ~38 M elements each way (G's 15.7 M
once plus 3 x D's 7.3 M; the napkin math below counts each layer once: 23 M), ~0.75 GB
(~0.2 ms at an H100's bandwidth) that the fused layer never touches; and the
pre-activation z need not be kept for the backward at all.

How threads map to data. Two kinds of kernel, as the two halves of the work differ:
  * per-channel reductions (statistics; the backward's two sums): one block per channel,
    walking the channel's N runs of H*W contiguous floats with consecutive threads on
    consecutive addresses, each thread summing privately in a fixed order, then a tree in
    shared memory (reduction.py explains both). The variance takes two passes over the
    channel inside the same kernel: the mean first, then the sum of squared deviations. The
    one-pass formula E[x^2] - E[x]^2 subtracts two nearly equal numbers when |mean| >> std
    and loses every digit of the variance in float32 (try x = 1000 + N(0, 1): E[x^2] ~ 1e6,
    whose float32 spacing is 0.06). The block's thread 0 then folds everything the
    elementwise pass needs into a few numbers per channel (scale = gamma*invstd; for the
    backward also dbeta/M and dgamma/M), so that pass does no square roots.
  * elementwise passes (y, dx): a grid-stride loop over all N*C*H*W elements, reading the
    per-channel coefficients of the element's channel (they stay in L1).
The coefficients pass between the two kernels through a few floats of scratch memory
(reduction.workspace). Nothing combines in a data-dependent order: results are bitwise
reproducible.

Napkin math at the DCGAN shapes (batch 128, 64x64, ngf = ndf = 64). G normalises
(128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32); D the middle
three of those (D's first layer has no batchnorm): 23 M elements counting each layer once
(G 15.7 M, D 7.3 M; D runs three times a step, which makes it ~38 M, x1.6, as above; the
figures below are per pass of each layer), ~10 FLOP each forward and ~12 backward, ~0.5
GFLOP in all: nothing for a GPU. The bytes
decide: forward must read x and write y (8 bytes/element, 184 MB per step, 55 us at an
H100 SXM's 3.35 TB/s), backward must read dy and x and write dx (12 bytes/element, 83 us).
Version 1 reads x three times forward and dy, x twice backward (16 and 20 bytes/element;
the repeat reads of a layer under 50 MB can come from L2). The largest layer,
(128, 64, 32, 32) = 33.5 MB, has only 64 channels: 64 blocks on 132 SMs, each thread
making 512 trips with one load in flight, so the reductions of version 1 use a few percent
of the bandwidth there (see reduction.py). Version 2 splits each channel over several
blocks (~1000 blocks in all): each block computes the mean and the sum of squared
deviations M2 of its chunk (two passes over a chunk that sits in L1/L2), and a second
kernel merges the chunks of a channel in a fixed order with Chan's formula for combining
variances:
    n = na + nb,  d = mean_b - mean_a,  mean = mean_a + d*nb/n,  M2 = M2a + M2b + d^2*na*nb/n

Versions:
    1  block-per-channel  one block per channel for statistics and backward sums; grid-stride elementwise passes
    2  split-channel  each channel split over several blocks; chunks merged in a fixed order (Chan's formula)
Run:
    python -m dcgan_cuda.kernels.batchnorm --sim     validate on the CPU
    python -m dcgan_cuda.kernels.batchnorm           validate and time on a GPU
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, uint64

from dcgan_cuda import reference

from .elementwise import carry_add, digits
from .jit import Version, f32, f32_1d, f32_2d, grid_1d, i64, kernel, scalar
from .reduction import THREADS, advance, block_sum, block_sum2, channel_view, splits_for, workspace

# Rows of the backward's per-channel coefficients (a (4, C) scratch array).
INVSTD, SCALE, MEAN_DY, MEAN_DY_XHAT = 0, 1, 2, 3


# ------------------------------------------------------------ per-channel formulas
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


# ------------------------------------------------------------------------ version 1
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


def _statistics_block(x2, gamma, mean, var, scale, channels, eps, running):
    statistics_v1[channels, THREADS](x2, gamma, mean, var, scale, channels, eps, *running)


def _backward_sums_block(dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels, eps,
                         batch_stats, slope):
    backward_sums_v1[channels, THREADS](dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels,
                                        eps, batch_stats, slope)


# ------------------------------------------------------------------------ version 2
@cuda.jit(device=True)
def chunk_bounds(j, splits, count):
    """[begin, end) of chunk j when count values are cut into `splits` nearly equal chunks."""
    chunk = (count + splits - 1) // splits
    return min(j * chunk, count), min((j + 1) * chunk, count)


@kernel((f32_2d, f32_2d, f32_2d, i64))
def chunk_moments_v2(x, chunk_mean, chunk_m2, channels):
    """Block (c, j): mean and sum of squared deviations (M2) of chunk j of channel c (=).
    Two passes over the chunk, as in version 1, but over a chunk small enough to stay cached."""
    partial = cuda.shared.array(THREADS, float32)
    c, j, tid = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    splits = chunk_mean.shape[1]
    rows, run = x.shape
    begin, end = chunk_bounds(j, splits, (rows // channels) * run)
    dn, ds = THREADS // run, THREADS % run

    acc = float32(0.0)
    i = begin + tid
    n, s = i // run, i % run
    while i < end:
        acc += x[n * channels + c, s]
        n, s = advance(n, s, dn, ds, run)
        i += THREADS
    partial[tid] = acc
    mu = block_sum(partial, tid) / float32(max(end - begin, 1))

    acc = float32(0.0)
    i = begin + tid
    n, s = i // run, i % run
    while i < end:
        d = x[n * channels + c, s] - mu
        acc += d * d
        n, s = advance(n, s, dn, ds, run)
        i += THREADS
    partial[tid] = acc
    m2 = block_sum(partial, tid)
    if tid == 0:
        chunk_mean[c, j] = mu
        chunk_m2[c, j] = m2


@kernel((f32_2d, f32_2d, f32_1d, f32_1d, f32_1d, f32_1d, i64, f32, f32_1d, f32_1d, f32, f32, f32, i64))
def merge_moments_v2(chunk_mean, chunk_m2, gamma, mean, var, scale, count, eps, running_mean, running_var,
                     keep, momentum, unbias, fold_running):
    """Thread c merges channel c's chunks 0, 1, 2, ... in that order (Chan et al.), then writes
    mean, biased var and scale = gamma/sqrt(var+eps) (=), and if fold_running folds them
    into the running buffers (in place)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    channels, splits = chunk_mean.shape
    for c in range(start, channels, stride):
        n_a = float32(0.0)
        mean_a = float32(0.0)
        m2_a = float32(0.0)
        for j in range(splits):
            begin, end = chunk_bounds(j, splits, count)
            if end > begin:
                n_b = float32(end - begin)
                n = n_a + n_b
                delta = chunk_mean[c, j] - mean_a
                mean_a += delta * (n_b / n)
                m2_a += chunk_m2[c, j] + delta * delta * (n_a * (n_b / n))
                n_a = n
        sigma2 = m2_a / float32(count)
        mean[c] = mean_a
        var[c] = sigma2
        scale[c] = gamma[c] * inverse_std(sigma2, eps)
        if fold_running:
            fold_into_running(c, mean_a, sigma2, running_mean, running_var, keep, momentum, unbias)


@kernel((f32_2d, f32_2d, f32_1d, f32_1d, f32_1d, f32_1d, f32_2d, f32_2d, i64, f32, f32))
def backward_chunk_sums_v2(dy, x, gamma, beta, mean, var, chunk_dy, chunk_dy_xhat, channels, eps, slope):
    """Block (c, j): sum(g) and sum(g*xhat) over chunk j of channel c, g = dy times the fused
    activation's gain (=)."""
    sums_dy = cuda.shared.array(THREADS, float32)
    sums_dy_xhat = cuda.shared.array(THREADS, float32)
    c, j, tid = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    splits = chunk_dy.shape[1]
    rows, run = x.shape
    begin, end = chunk_bounds(j, splits, (rows // channels) * run)
    mu, invstd = mean[c], inverse_std(var[c], eps)
    scale, shift = gamma[c] * invstd, beta[c]
    dn, ds = THREADS // run, THREADS % run
    acc_dy, acc_dy_xhat = float32(0.0), float32(0.0)
    i = begin + tid
    n, s = i // run, i % run
    while i < end:
        r = n * channels + c
        centred = x[r, s] - mu
        g = dy[r, s] * activation_gain(centred * scale + shift, slope)
        acc_dy += g
        acc_dy_xhat += g * (centred * invstd)
        n, s = advance(n, s, dn, ds, run)
        i += THREADS
    sums_dy[tid] = acc_dy
    sums_dy_xhat[tid] = acc_dy_xhat
    sum_dy, sum_dy_xhat = block_sum2(sums_dy, sums_dy_xhat, tid)
    if tid == 0:
        chunk_dy[c, j] = sum_dy
        chunk_dy_xhat[c, j] = sum_dy_xhat


@kernel((f32_2d, f32_2d, f32_1d, f32_1d, f32_1d, f32_1d, f32_2d, i64, f32, i64))
def merge_backward_sums_v2(chunk_dy, chunk_dy_xhat, gamma, var, dgamma, dbeta, coef, count, eps,
                           batch_stats):
    """Thread c adds channel c's chunk sums in chunk order, then writes dgamma, dbeta and the dx
    coefficients (=)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    channels, splits = chunk_dy.shape
    for c in range(start, channels, stride):
        sum_dy = float32(0.0)
        sum_dy_xhat = float32(0.0)
        for j in range(splits):
            sum_dy += chunk_dy[c, j]
            sum_dy_xhat += chunk_dy_xhat[c, j]
        write_backward_coefficients(c, sum_dy, sum_dy_xhat, gamma[c], inverse_std(var[c], eps), count,
                                    batch_stats, dgamma, dbeta, coef)


def _statistics_split(x2, gamma, mean, var, scale, channels, eps, running):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    chunk_mean = workspace(x2, (channels, splits), "batchnorm.chunk_mean")
    chunk_m2 = workspace(x2, (channels, splits), "batchnorm.chunk_m2")
    chunk_moments_v2[(channels, splits), THREADS](x2, chunk_mean, chunk_m2, channels)
    merge_moments_v2[grid_1d(channels)](chunk_mean, chunk_m2, gamma, mean, var, scale, count, eps, *running)


def _backward_sums_split(dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels, eps,
                         batch_stats, slope):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    chunk_dy = workspace(x2, (channels, splits), "batchnorm.chunk_dy")
    chunk_dy_xhat = workspace(x2, (channels, splits), "batchnorm.chunk_dy_xhat")
    backward_chunk_sums_v2[(channels, splits), THREADS](dy2, x2, gamma, beta, mean, var, chunk_dy,
                                                        chunk_dy_xhat, channels, eps, slope)
    merge_backward_sums_v2[grid_1d(channels)](chunk_dy, chunk_dy_xhat, gamma, var, dgamma, dbeta, coef,
                                              count, eps, batch_stats)


_ELEMENTWISE = {"eval_scale": eval_scale_v1, "normalise": normalise_v1, "dx": dx_v1,
                "update_running": update_running_v1}
VERSIONS = {
    1: Version("block-per-channel",
               "one block per channel for statistics and backward sums; grid-stride elementwise passes",
               dict(statistics=_statistics_block, backward_sums=_backward_sums_block, **_ELEMENTWISE)),
    2: Version("split-channel",
               "each channel split over several blocks; chunks merged in a fixed order (Chan's formula)",
               dict(statistics=_statistics_split, backward_sums=_backward_sums_split, **_ELEMENTWISE)),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
# x, y, dy, dx are (N, C, H, W); gamma, beta, mean, var and the running buffers (C,).
def forward_train(x, gamma, beta, y, mean, var, eps, version=DEFAULT_VERSION, slope=1.0,
                  running_mean=None, running_var=None, momentum=0.1):
    """y = activate(gamma*(x - mean)/sqrt(var + eps) + beta, slope) with the batch's statistics;
    writes y and the per-channel mean and biased var (=). slope is the negative slope of the
    activation fused after the normalisation: 1 none, 0 ReLU, 0.2 LeakyReLU(0.2). Given the
    running buffers, the statistics kernel also folds the batch's statistics into them, as
    update_running would, without a launch of its own."""
    ops = VERSIONS[version].ops
    channels = x.shape[1]
    x2, y2 = channel_view(x), channel_view(y)
    scale = workspace(x, (channels,), "batchnorm.scale")
    ops["statistics"](x2, gamma, mean, var, scale, channels, scalar(eps),
                      _running_arguments(x, running_mean, running_var, momentum))
    ops["normalise"][grid_1d(x.size)](x2, mean, scale, beta, y2, channels, x.size, scalar(slope))


def forward_eval(x, gamma, beta, running_mean, running_var, y, eps, version=DEFAULT_VERSION, slope=1.0):
    """y = activate(gamma*(x - running_mean)/sqrt(running_var + eps) + beta, slope); writes y (=)."""
    ops = VERSIONS[version].ops
    channels = x.shape[1]
    scale = workspace(x, (channels,), "batchnorm.scale")
    ops["eval_scale"][grid_1d(channels)](gamma, running_var, scale, scalar(eps))
    ops["normalise"][grid_1d(x.size)](channel_view(x), running_mean, scale, beta, channel_view(y),
                                      channels, x.size, scalar(slope))


def _running_arguments(x, running_mean, running_var, momentum):
    """The statistics kernels' trailing arguments: the buffers, keep = 1 - momentum, momentum,
    unbias = count/(count - 1) and whether to update at all. Without buffers, two scratch
    vectors stand in for them, never touched. (Not mean and var themselves: the simulator
    copies each array argument in and back out, so an array passed twice would come back
    with whichever copy it restored last.)"""
    update = running_mean is not None
    if update != (running_var is not None):
        raise ValueError("batchnorm: running_mean and running_var go together")
    if not update:
        channels = x.shape[1]
        running_mean = workspace(x, (channels,), "batchnorm.unused_running_mean")
        running_var = workspace(x, (channels,), "batchnorm.unused_running_var")
    count = x.size // x.shape[1]
    unbias = count / max(count - 1, 1)
    return (running_mean, running_var, scalar(1 - momentum), scalar(momentum), scalar(unbias),
            int(update))


def update_running(running_mean, running_var, mean, var, count, momentum, version=DEFAULT_VERSION):
    """In place: r = (1 - momentum)*r + momentum*stat, var made unbiased by count/(count - 1)
    (count = N*H*W; a count of 1 leaves var as it is, as the reference does)."""
    unbias = count / max(count - 1, 1)
    VERSIONS[version].ops["update_running"][grid_1d(mean.shape[0])](
        running_mean, running_var, mean, var, scalar(1 - momentum), scalar(momentum), scalar(unbias))


def backward(dy, x, gamma, mean, var, dx, dgamma, dbeta, eps, batch_stats, version=DEFAULT_VERSION,
             beta=None, slope=1.0):
    """dx, dgamma, dbeta (all =). batch_stats: mean/var are the batch's own (training), else the
    running statistics (eval), which do not depend on x. With a fused activation (slope != 1)
    dy is the gradient of the activation's output and beta is needed to tell where the
    normalised value was positive."""
    if beta is None:
        if slope != 1:
            raise ValueError("batchnorm.backward with a fused activation (slope != 1) needs beta")
        beta = gamma  # read but without effect: every gain is 1 when slope is 1
    ops = VERSIONS[version].ops
    channels = x.shape[1]
    dy2, x2 = channel_view(dy), channel_view(x)
    coef = workspace(x, (4, channels), "batchnorm.coef")
    ops["backward_sums"](dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels, scalar(eps),
                         int(bool(batch_stats)), scalar(slope))
    ops["dx"][grid_1d(x.size)](dy2, x2, beta, mean, coef, channel_view(dx), channels, x.size,
                               scalar(slope))


# ------------------------------------------------------------------ validate / time
# Every batchnorm of the DCGAN at batch 128, 64x64, ngf = ndf = 64. The spatial sizes are
# the same in both architectures (the paper's 5x5 stride-2 pad-2 layers halve and double
# like the 4x4 ones, and its dense projection feeds a 4x4x512 volume).
GPU_SHAPES = [("G", (128, 512, 4, 4)), ("G", (128, 256, 8, 8)), ("G", (128, 128, 16, 16)),
              ("G", (128, 64, 32, 32)), ("D", (128, 128, 16, 16)), ("D", (128, 256, 8, 8)),
              ("D", (128, 512, 4, 4))]
SIM_SHAPES = [("", (1, 3, 1, 1)), ("", (2, 3, 5, 7)), ("", (3, 2, 9, 9))]
# The activation each network fuses after its batchnorms (G: ReLU, D: LeakyReLU(0.2)); the
# simulator cases cycle through none, ReLU and LeakyReLU.
SLOPES = {"G": 0.0, "D": 0.2}
ACTIVATION_NAMES = {1.0: "", 0.0: "+relu", 0.2: "+lrelu"}


def cases(sim):
    out = []
    for i, (net, shape) in enumerate(SIM_SHAPES if sim else GPU_SHAPES):
        slope = (1.0, 0.0, 0.2)[i % 3] if sim else SLOPES[net]
        for mode in ("train", "eval"):
            label = " ".join(filter(None, (mode + ACTIVATION_NAMES[slope], net, "x".join(map(str, shape)))))
            out.append((label, lambda rng, shape=shape, mode=mode, slope=slope:
                        (mode, slope) + _inputs(rng, shape, mode, slope)))
    return out


def _inputs(rng, shape, mode, slope):
    c = shape[1]
    x = (rng.standard_normal(shape) + 0.5).astype(np.float64)
    gamma = (1 + 0.2 * rng.standard_normal(c)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
    running_mean = (0.5 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    running_var = (0.5 + rng.random(c)).astype(np.float32)
    if slope != 1:
        # Keep every normalised value z at least 0.01 from the activation's kink: there a
        # one-ulp difference between our float32 z and the float64 reference's may pick the
        # other slope, which is a different (equally valid) answer, not an error.
        axes = (0, 2, 3)
        mean, var = ((x.mean(axis=axes), x.var(axis=axes)) if mode == "train"
                     else (running_mean.astype(np.float64), running_var.astype(np.float64)))
        scale = (gamma / np.sqrt(var + 1e-5))[None, :, None, None]
        z = (x - mean[None, :, None, None]) * scale + beta[None, :, None, None]
        near = np.abs(z) < 0.01
        x += near * np.where(z >= 0, 0.02, -0.02) / scale
    x = x.astype(np.float32)
    # dy with a mean and a component along xhat, as real gradients have: dbeta and dgamma are
    # then large (compared with rtol), and dx = scale*(dy - mean(dy) - xhat*mean(dy*xhat))
    # cancels those components, so the comparison exercises the cancellation.
    xhat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True).clip(1e-3)
    dy = (0.5 + 0.5 * xhat + rng.standard_normal(shape)).astype(np.float32)
    return x, dy, gamma, beta, running_mean, running_var


def run(version, label, inputs, device):
    mode, slope, x, dy, gamma, beta, running_mean, running_var = inputs
    eps, c = 1e-5, x.shape[1]
    d_x, d_dy, d_gamma, d_beta, d_rm, d_rv = map(device, (x, dy, gamma, beta, running_mean, running_var))
    y, dx = device(np.full_like(x, np.nan)), device(np.full_like(x, np.nan))
    mean, var, dgamma, dbeta = (device(np.full(c, np.nan, np.float32)) for _ in range(4))
    x64, dy64, gamma64, beta64 = (a.astype(np.float64) for a in (x, dy, gamma, beta))
    # The reference runs in float64. The float32 per-channel sums err by ~eps/2 of each running
    # sum per addition, a random walk; divided by m, the means (mean, var, mean(dy),
    # mean(dy*xhat)) are good to ~eps of the values' size, and y and dx inherit that times
    # gamma*invstd ~ 1 and a few roundings of their own: emulating version 1's order in NumPy
    # at (128, 64, 32, 32) gives |err| <= 9e-7 for y and dx. We allow 64*eps*size (~4e-5).
    # dbeta and dgamma are ~m/2 here, covered by rtol (emulated relative error ~1.2e-7).
    size = max(1.0, float(np.abs(x).max()), float(np.abs(dy).max()))
    atol = 64 * np.finfo(np.float32).eps * size
    fused = dict(beta=beta64, slope=slope)
    if mode == "train":
        ref_y, ref_mean, ref_var = reference.batchnorm2d_forward_train(x64, gamma64, beta64, eps, slope)
        refs = (ref_y, ref_mean, ref_var) + reference.batchnorm2d_backward(
            dy64, x64, gamma64, ref_mean, ref_var, eps, True, **fused)

        def launch():
            forward_train(d_x, d_gamma, d_beta, y, mean, var, eps, version, slope=slope)
            backward(d_dy, d_x, d_gamma, mean, var, dx, dgamma, dbeta, eps, True, version,
                     beta=d_beta, slope=slope)
            return y, mean, var, dx, dgamma, dbeta
    else:
        rm, rv = running_mean.astype(np.float64), running_var.astype(np.float64)
        refs = (reference.batchnorm2d_forward_eval(x64, gamma64, beta64, rm, rv, eps, slope),) + \
            reference.batchnorm2d_backward(dy64, x64, gamma64, rm, rv, eps, False, **fused)

        def launch():
            forward_eval(d_x, d_gamma, d_beta, d_rm, d_rv, y, eps, version, slope=slope)
            backward(d_dy, d_x, d_gamma, d_rm, d_rv, dx, dgamma, dbeta, eps, False, version,
                     beta=d_beta, slope=slope)
            return y, dx, dgamma, dbeta
    # Minimum traffic: forward reads x and writes y, backward reads dy and x and writes dx.
    # FLOPs: ~10 per element forward, ~12 backward.
    return launch, refs, atol, 1e-5, 22 * x.size, 5 * x.nbytes   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
