"""batchnorm — per-channel statistics, normalise, backward, running statistics; one file per version.

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

How threads map to data. A layer is two kinds of kernel, as the two halves of the work
differ: per-channel reductions (the statistics; the backward's two sums), which need the
threads of a channel to cooperate, and elementwise passes (y, dx), a grid-stride loop
over all N*C*H*W elements in which each thread reads the few coefficients of its
element's channel. The reductions pass those coefficients to the elementwise pass through
a few floats of scratch memory (reduction.workspace). The versions differ only in how
the reductions share a channel among blocks:
    v1_block_per_channel.py  one block per channel: a tree in shared memory, the variance
                             in two passes (not E[x^2] - E[x]^2, which cancels in float32)
    v2_split_channel.py      each channel cut into chunks, a block per chunk, the chunks
                             merged in a fixed order with Chan's formula for variances
Each file opens with its idea and its predicted gain (labelled PREDICTED until a GPU
measures it). Version 2 keeps version 1's elementwise kernels. common.py holds the
per-channel formulas both call (so the versions agree in every bit of a channel's
arithmetic) and the kernel naming; cases.py the layers the harness validates and times.
In both, nothing combines in a data-dependent order: results are bitwise reproducible.

Napkin math at the DCGAN shapes (batch 128, 64x64, ngf = ndf = 64). G normalises
(128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32); D the middle
three of those (D's first layer has no batchnorm): 23 M elements counting each layer once
(G 15.7 M, D 7.3 M; D runs three times a step, which makes it ~38 M, x1.6, as above; the
figures below are per pass of each layer), ~10 FLOP each forward and ~12 backward, ~0.5
GFLOP in all: nothing for a GPU. The bytes decide: forward must read x and write y
(8 bytes/element, 184 MB over the seven layers, 55 us at an H100 SXM's 3.35 TB/s),
backward must read dy and x and write dx (12 bytes/element, 277 MB, 83 us). Both
versions read x three times forward and dy, x twice backward (16 and 20 bytes/element;
the repeat reads of a layer under 50 MB can come from L2). What separates them is latency, not bytes: the largest layer,
(128, 64, 32, 32) = 33.5 MB, has only 64 channels, which version 1 gives 64 blocks for
132 SMs and version 2 about 1000 (see the two files).

Versions:
    1  block-per-channel  one block per channel for statistics and backward sums; grid-stride elementwise passes
    2  split-channel  each channel split over several blocks; chunks merged in a fixed order (Chan's formula)
Run:
    python -m dcgan_cuda.kernels.batchnorm --sim              validate every version on the CPU
    python -m dcgan_cuda.kernels.batchnorm --sim --version 2  only version 2
    python -m dcgan_cuda.kernels.batchnorm                    validate and time on a GPU
"""
from __future__ import annotations

from ..jit import Version, grid_1d, scalar
from ..reduction import channel_view, workspace
from . import v1_block_per_channel, v2_split_channel
from .cases import ACTIVATION_NAMES, GPU_SHAPES, SIM_SHAPES, SLOPES, cases, run  # noqa: F401
from .common import (INVSTD, MEAN_DY, MEAN_DY_XHAT, SCALE, activate, activation_gain,  # noqa: F401
                     fold_into_running, inverse_std, write_backward_coefficients)
from .v1_block_per_channel import (backward_sums_v1, dx_v1, eval_scale_v1, normalise_v1,  # noqa: F401
                                   statistics_v1, update_running_v1)
from .v2_split_channel import (backward_chunk_sums_v2, chunk_bounds, chunk_moments_v2,  # noqa: F401
                               merge_backward_sums_v2, merge_moments_v2)

# Each version's ops: what it changes, and the rest from the version it builds on.
VERSIONS = {
    1: Version("block-per-channel",
               "one block per channel for statistics and backward sums; grid-stride elementwise passes",
               v1_block_per_channel.OPS),
    2: Version("split-channel",
               "each channel split over several blocks; chunks merged in a fixed order (Chan's formula)",
               dict(v1_block_per_channel.OPS, **v2_split_channel.OPS)),
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
