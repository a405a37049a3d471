"""loss — binary cross-entropy on logits and softmax cross-entropy, forward and backward.

What it computes (N items; the loss is the mean over them):
    bce_with_logits        loss = mean_i  max(z_i, 0) - z_i*t + log(1 + exp(-|z_i|))
                           dz_i = (sigmoid(z_i) - t) / N * dloss
    softmax_cross_entropy  loss = mean_i  logsumexp(z_i) - z_i[label_i]     (z_i a row of K logits)
                           dz_ik = (softmax(z_i)_k - [k == label_i]) / N * dloss
All four write their outputs (=). The loss goes to a 1-element device array and the upstream
gradient dloss comes from one, so the training step never waits for the host.

Why these forms. BCE of sigmoid(z) written naively, -t*log(s) - (1-t)*log(1-s), takes the
log of 0 once |z| > ~17 in float32 (s rounds to 1). The form above is exact algebra on it,
and only ever exponentiates -|z| <= 0: nothing overflows, for z = +-1e4 too. Likewise the
sigmoid in the backward: exp(-|z|), then 1/(1+e) or e/(1+e) by the sign of z. Softmax
subtracts the row's maximum before exponentiating, so the largest term is exp(0) = 1.

How threads map to data. The forward losses are a sum over items, so one block of THREADS
threads: thread t takes items t, t + THREADS, ... (a grid-stride loop within the block, so
any N works, from 1 to far more than the block), sums its items privately in that order,
and the block combines the partial sums with the reduction's shared-memory tree (block_sum);
thread 0 divides by N and writes loss[0]. Softmax gives each thread whole rows: it scans
its row of K logits for the max, then sums exp(z - max) (K is small: 10 classes). The
backwards are elementwise: a grid-stride loop over the N logits (BCE) or over the N rows
(softmax, one thread per row, recomputing the row's max and sum).

Napkin math. D's logits at batch 128 are 128 floats (512 bytes) and a loss is ~20 FLOP per
item: ~3 kFLOP, ~1 KB per launch, nothing to an H100 (67 TFLOP/s, 3.35 TB/s): these kernels
cost their launch (~10 us from Python, an estimate: see kernels/README.md), and a single
block is the right size. A probe's softmax over (128, 10) logits is 5 KB.

Versions:
    1  one-block  one block sums every item of the forward (private sums, then a tree); grid-stride backward
Run:
    python -m dcgan_cuda.kernels.loss --sim     validate on the CPU
    python -m dcgan_cuda.kernels.loss           validate and time on a GPU
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from dcgan_cuda import reference

from .jit import Version, f32, f32_1d, f32_2d, grid_1d, i32_1d, i64, kernel, scalar
from .reduction import THREADS, block_sum


@cuda.jit(device=True)
def stable_sigmoid(z):
    e = math.exp(-abs(z))
    return float32(1.0) / (float32(1.0) + e) if z >= float32(0.0) else e / (float32(1.0) + e)


@cuda.jit(device=True)
def row_max_and_sum(logits, r):
    """(max_k z[r, k], sum_k exp(z[r, k] - max)) of row r."""
    classes = logits.shape[1]
    top = logits[r, 0]
    for k in range(1, classes):
        top = max(top, logits[r, k])
    total = float32(0.0)
    for k in range(classes):
        total += math.exp(logits[r, k] - top)
    return top, total


# ------------------------------------------------------------------------ version 1
@kernel((f32_1d, f32, f32_1d, i64))
def bce_with_logits_forward_v1(z, target, loss, n):
    """loss[0] = mean BCE over the n logits; one block, (=)."""
    partial = cuda.shared.array(THREADS, float32)
    tid = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(tid, n, THREADS):
        v = z[i]
        acc += max(v, float32(0.0)) - v * target + math.log1p(math.exp(-abs(v)))
    partial[tid] = acc
    total = block_sum(partial, tid)
    if tid == 0:
        loss[0] = total / float32(n)


@kernel((f32_1d, f32, f32_1d, f32_1d, i64))
def bce_with_logits_backward_v1(z, target, dloss, dz, n):
    """dz = (sigmoid(z) - target) * dloss[0]/n, grid-stride over the n logits; (=)."""
    scale = dloss[0] / float32(n)
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        dz[i] = (stable_sigmoid(z[i]) - target) * scale


@kernel((f32_2d, i32_1d, f32_1d))
def softmax_cross_entropy_forward_v1(logits, labels, loss):
    """loss[0] = mean over rows of logsumexp(row) - row[label]; one block, a thread per row
    per trip, (=). A label outside [0, K) makes the loss NaN instead of reading out of bounds."""
    partial = cuda.shared.array(THREADS, float32)
    tid = cuda.threadIdx.x
    rows, classes = logits.shape
    acc = float32(0.0)
    for r in range(tid, rows, THREADS):
        top, total = row_max_and_sum(logits, r)
        label = labels[r]
        if 0 <= label < classes:
            acc += math.log(total) - (logits[r, label] - top)
        else:
            acc += float32(math.nan)
    partial[tid] = acc
    total = block_sum(partial, tid)
    if tid == 0:
        loss[0] = total / float32(rows)


@kernel((f32_2d, i32_1d, f32_1d, f32_2d))
def softmax_cross_entropy_backward_v1(logits, labels, dloss, dlogits):
    """dlogits[r, k] = (softmax(row r)_k - [k == label_r]) * dloss[0]/N; a thread per row, (=).
    A row whose label is outside [0, K) gets NaN."""
    rows, classes = logits.shape
    scale = dloss[0] / float32(rows)
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for r in range(start, rows, stride):
        top, total = row_max_and_sum(logits, r)
        label = labels[r]
        valid = 0 <= label < classes
        for k in range(classes):
            p = math.exp(logits[r, k] - top) / total
            if k == label:
                p -= float32(1.0)
            dlogits[r, k] = p * scale if valid else float32(math.nan)


VERSIONS = {
    1: Version("one-block",
               "one block sums every item of the forward (private sums, then a tree); grid-stride backward", {
                   "bce_with_logits_forward": bce_with_logits_forward_v1,
                   "bce_with_logits_backward": bce_with_logits_backward_v1,
                   "softmax_cross_entropy_forward": softmax_cross_entropy_forward_v1,
                   "softmax_cross_entropy_backward": softmax_cross_entropy_backward_v1,
               }),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
# z (N,) float32 logits; target a Python float in [0, 1]; logits (N, K) float32; labels (N,)
# int32; loss and dloss (1,) float32 device arrays.
def bce_with_logits_forward(z, target, loss, version=DEFAULT_VERSION):
    """loss[0] = mean_i max(z,0) - z*t + log1p(exp(-|z|)). Writes (=)."""
    VERSIONS[version].ops["bce_with_logits_forward"][1, THREADS](z, scalar(target), loss, z.size)


def bce_with_logits_backward(z, target, dloss, dz, version=DEFAULT_VERSION):
    """dz = (sigmoid(z) - t) / N * dloss[0]. Writes (=)."""
    VERSIONS[version].ops["bce_with_logits_backward"][grid_1d(z.size)](z, scalar(target), dloss, dz, z.size)


def softmax_cross_entropy_forward(logits, labels, loss, version=DEFAULT_VERSION):
    """loss[0] = mean_i logsumexp(z_i) - z_i[label_i]. Writes (=)."""
    VERSIONS[version].ops["softmax_cross_entropy_forward"][1, THREADS](logits, labels, loss)


def softmax_cross_entropy_backward(logits, labels, dloss, dlogits, version=DEFAULT_VERSION):
    """dlogits = (softmax(z) - onehot(label)) / N * dloss[0]. Writes (=)."""
    VERSIONS[version].ops["softmax_cross_entropy_backward"][grid_1d(logits.shape[0])](
        logits, labels, dloss, dlogits)


# ------------------------------------------------------------------ validate / time
# The DCGAN's losses: BCE on D's 128 logits (real, target 1; fake, target 0; G's loss on
# fake with target 1); softmax cross-entropy for a 10-class probe on batch-128 features.
def cases(sim):
    n = 37 if sim else 128
    return [(f"bce N={n} t={t:g}",
             lambda rng, t=t: ("bce", t, (3 * rng.standard_normal(n)).astype(np.float32)))
            for t in (1.0, 0.0)] + \
           [(f"softmax-ce {n}x10", lambda rng: ("ce", rng.integers(0, 10, n).astype(np.int32),
                                                 (3 * rng.standard_normal((n, 10))).astype(np.float32)))]


def run(version, label, inputs, device):
    kind, target, z = inputs
    dloss_value = 0.75
    d_z, dloss = device(z), device(np.full(1, dloss_value, np.float32))
    loss, dz = device(np.full(1, np.nan, np.float32)), device(np.full_like(z, np.nan))
    z64 = z.astype(np.float64)
    if kind == "bce":
        refs = (reference.bce_with_logits_forward(z64, target).reshape(1),
                reference.bce_with_logits_backward(z64, target, dloss_value))

        def launch():
            bce_with_logits_forward(d_z, target, loss, version)
            bce_with_logits_backward(d_z, target, dloss, dz, version)
            return loss, dz
    else:
        labels = device(target)
        refs = (reference.softmax_cross_entropy_forward(z64, target).reshape(1),
                reference.softmax_cross_entropy_backward(z64, target, dloss_value))

        def launch():
            softmax_cross_entropy_forward(d_z, labels, loss, version)
            softmax_cross_entropy_backward(d_z, labels, dloss, dz, version)
            return loss, dz
    # exp/log1p differ from NumPy's by an ulp or so; the mean of N float32 terms errs like
    # sqrt(N)*eps relative to the terms (~1 here). The reference is float64.
    atol = 4 * np.sqrt(z.shape[0]) * np.finfo(np.float32).eps * max(1.0, float(np.abs(z).max()))
    return launch, refs, atol, 1e-5, 40 * z.size, 3 * z.nbytes   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
