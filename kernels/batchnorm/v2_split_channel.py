"""batchnorm version 2, split-channel: each channel's reductions split over several blocks.

The idea (over version 1). Version 1 gives a channel one block, and a layer with few
channels then leaves most of the GPU idle. Here channel c's M = N*H*W values are cut into
`splits` nearly equal chunks of consecutive values (chunk_bounds), and block (c, j) of a
2-D grid reduces chunk j (reduction.splits_for: about 1024 blocks in all, but at least 8
values per thread). A second, small kernel then merges the chunks of each channel, one
thread per channel, in chunk order 0, 1, 2, ...: a fixed order, so the results are still
bitwise reproducible (no atomics).

Sums merge by adding. The variance needs more: each block computes the mean and the sum
of squared deviations M2 of its chunk (two passes, as version 1, over a chunk small enough
to stay in L1/L2), and the merge combines chunks a and b with Chan's formula:
    n = na + nb,  d = mean_b - mean_a,  mean = mean_a + d*nb/n,  M2 = M2a + M2b + d^2*na*nb/n
which, like the two passes, never subtracts two large nearly equal numbers (adding the
chunks' sums of x and x^2 would). The backward's two sums split the same way and merge by
adding. The elementwise passes (normalise, dx) are version 1's, unchanged. Six launches a
training layer instead of four (the two merges).

Predicted gain (PREDICTED; no GPU run yet). At the largest layer, (128, 64, 32, 32), 64
channels become 64 x 16 = 1024 blocks of 8192 values each, enough to fill 132 SMs with
loads in flight: the reductions should approach the bandwidth bound where version 1,
bound by latency, may use a few percent of it; at (128, 512, 4, 4) (512 channels of 2048)
splits_for keeps one block per channel and only the two merge launches are added.
bench/roofline.py's model counts bytes and launches but not latency, so it sees only what
this version adds, the merge launches and the chunks' scratch, and PREDICTS it slower
than version 1 in every column of kernels/README.md's batchnorm table. Which of the two
is right is for the first GPU run to say.
"""
from __future__ import annotations

from numba import cuda, float32

from ..jit import f32, f32_1d, f32_2d, grid_1d, i64
from ..reduction import THREADS, advance, block_sum, block_sum2, splits_for, workspace
from .common import activation_gain, fold_into_running, inverse_std, kernel, write_backward_coefficients


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


# ------------------------------------------------------------------------ launches
# The same arguments as version 1's launches; the chunks' results pass to the merge
# through scratch memory (reduction.workspace), a (C, splits) array per quantity.
def statistics(x2, gamma, mean, var, scale, channels, eps, running):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    chunk_mean = workspace(x2, (channels, splits), "batchnorm.chunk_mean")
    chunk_m2 = workspace(x2, (channels, splits), "batchnorm.chunk_m2")
    chunk_moments_v2[(channels, splits), THREADS](x2, chunk_mean, chunk_m2, channels)
    merge_moments_v2[grid_1d(channels)](chunk_mean, chunk_m2, gamma, mean, var, scale, count, eps, *running)


def backward_sums(dy2, x2, gamma, beta, mean, var, dgamma, dbeta, coef, channels, eps, batch_stats, slope):
    count = (x2.shape[0] // channels) * x2.shape[1]
    splits = splits_for(channels, count)
    chunk_dy = workspace(x2, (channels, splits), "batchnorm.chunk_dy")
    chunk_dy_xhat = workspace(x2, (channels, splits), "batchnorm.chunk_dy_xhat")
    backward_chunk_sums_v2[(channels, splits), THREADS](dy2, x2, gamma, beta, mean, var, chunk_dy,
                                                        chunk_dy_xhat, channels, eps, slope)
    merge_backward_sums_v2[grid_1d(channels)](chunk_dy, chunk_dy_xhat, gamma, var, dgamma, dbeta, coef,
                                              count, eps, batch_stats)


# Version 2 replaces the two reductions; the elementwise kernels are version 1's.
OPS = dict(statistics=statistics, backward_sums=backward_sums)
