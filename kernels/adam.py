"""adam — one fused Adam update of a parameter tensor, in place.

What it computes (PyTorch's torch.optim.Adam, L2 weight decay added to the gradient), for
every element i of a parameter tensor p with gradient g and moments m, v at step t >= 1:
    g'   = g + weight_decay * p
    m    = beta1 * m + (1 - beta1) * g'
    v    = beta2 * v + (1 - beta2) * g'^2
    p   -= step_size * m / (sqrt(v) / bias2_sqrt + eps)
with the bias corrections folded into two host scalars (they depend on t only):
step_size = lr / (1 - beta1^t) and bias2_sqrt = sqrt(1 - beta2^t). The kernel updates p,
m and v in place (=, each element overwritten by its new value) and only reads g. The
arithmetic is ordered as in dcgan_cuda.reference.adam_step, so a GPU result differs from it
only where the compiler fuses a multiply and an add into one FMA (<= 1 ulp per fused pair).

How threads map to data: every array is flattened (a view, C-contiguous) and one 1-D
grid-stride loop visits each element once: thread t of T does elements t, t + T, ...;
consecutive threads read consecutive addresses of all four arrays, so every load and
store coalesces, and one launch shape (jit.grid_1d) covers any size. Elements are
independent: no reductions, no atomics; the update is bitwise reproducible.

Napkin math (H100 SXM: 3.35 TB/s, 67 TFLOP/s FP32). Per parameter: read p, g, m, v and write
p, m, v: 7 floats = 28 bytes, for ~15 FLOPs (with a square root and two divisions) —
~0.5 FLOP/byte, purely memory-bound. The pytorch-arch DCGAN at ngf = ndf = 64 has
3,576,704 parameters in G (13 tensors) and 2,765,568 in D (11 tensors): 100 MB and 77 MB of
traffic, ~30 us and ~23 us at full bandwidth; the paper arch (5x5 kernels, dense layers)
has 5.1 M and 4.3 M. That is ~1% of the ~5 ms FLOP floor of a training step. What costs
more is the launch count: one launch per tensor would be 24 launches per step, ~10 us of
Python and driver each (an estimate: see kernels/README.md), most on tensors of 64-512
floats (batchnorm's weight and bias) that the GPU finishes in ~2 us. So the kernel is
never launched per tensor in training: dcgan_cuda.optim.Adam keeps every parameter,
gradient and moment of a model in one flat buffer (each tensor a view of its slice) and
launches this kernel once over the whole buffer, 2 launches per step. Nothing in the
kernel changes: elements are independent, so a flat buffer is just a longer array.

Versions:
    1  fused  one grid-stride kernel reads p, g, m, v once and writes p, m, v: the whole update per element
              (and a twin that reads the two step-dependent scalars from device memory, for
              CUDA-graph replay: adam_step_scalars_in_memory)
Run:
    python -m dcgan_cuda.kernels.adam --sim     validate on the CPU
    python -m dcgan_cuda.kernels.adam           validate and time on a GPU
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from dcgan_cuda import reference

from .jit import Version, f32, f32_1d, grid_1d, i64, kernel, scalar


# ------------------------------------------------------------------------ version 1
@cuda.jit(device=True)
def _update(param, grad, exp_avg, exp_avg_sq, i, step_size, beta1, one_minus_beta1, beta2,
            one_minus_beta2, bias2_sqrt, eps, weight_decay):
    """Element i's update, shared by both kernels below so that they give the same bits."""
    p = param[i]
    g = grad[i] + weight_decay * p
    m = beta1 * exp_avg[i] + one_minus_beta1 * g
    v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    # float32(...) is a no-op on a GPU (sqrt of a float32 is a float32 there); under the
    # simulator math.sqrt returns a Python float (float64), which would quietly turn
    # the rest of this expression into double precision.
    denom = float32(math.sqrt(v)) / bias2_sqrt + eps
    param[i] = p - step_size * m / denom


@kernel((f32_1d, f32_1d, f32_1d, f32_1d, f32, f32, f32, f32, f32, f32, f32, f32, i64))
def adam_step_v1(param, grad, exp_avg, exp_avg_sq, step_size, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, bias2_sqrt, eps, weight_decay, n):
    """One Adam update of elements 0..n-1: param, exp_avg, exp_avg_sq updated in place (=)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        _update(param, grad, exp_avg, exp_avg_sq, i, step_size, beta1, one_minus_beta1, beta2,
                one_minus_beta2, bias2_sqrt, eps, weight_decay)


@kernel((f32_1d, f32_1d, f32_1d, f32_1d, f32_1d, f32, f32, f32, f32, f32, f32, i64))
def adam_step_scalars_in_memory_v1(param, grad, exp_avg, exp_avg_sq, scalars, beta1, one_minus_beta1,
                                   beta2, one_minus_beta2, eps, weight_decay, n):
    """adam_step_v1 with the two step-dependent scalars read from device memory:
    scalars = [step_size, bias2_sqrt]. A CUDA graph freezes a launch's arguments at
    capture; a replayed step must see its own bias corrections, so they travel in memory
    that the host rewrites before each replay (dcgan_cuda/cuda_graph.py)."""
    step_size, bias2_sqrt = scalars[0], scalars[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        _update(param, grad, exp_avg, exp_avg_sq, i, step_size, beta1, one_minus_beta1, beta2,
                one_minus_beta2, bias2_sqrt, eps, weight_decay)


VERSIONS = {
    1: Version("fused", "one grid-stride kernel reads p, g, m, v once and writes p, m, v: "
               "the whole update per element",
               {"adam_step": adam_step_v1, "adam_step_scalars_in_memory": adam_step_scalars_in_memory_v1}),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
def _flat_arrays(param, grad, exp_avg, exp_avg_sq):
    """The four arrays as 1-D views, after checking they share a shape."""
    arrays = (param, grad, exp_avg, exp_avg_sq)
    if any(a.shape != param.shape for a in arrays):
        raise ValueError(f"adam_step: shapes differ: {[a.shape for a in arrays]}")
    # reshape(-1) of a C-contiguous array is a view: the kernel's writes land in the caller's arrays.
    return [a.reshape(-1) for a in arrays]


def adam_step(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, bias2_sqrt, eps,
              weight_decay, version=DEFAULT_VERSION):
    """One Adam step for one parameter tensor: param, exp_avg, exp_avg_sq are updated IN
    PLACE; grad is only read. All four are C-contiguous float32 arrays of one shape (any
    number of dimensions). Host scalars: step_size = lr / (1 - beta1^t),
    bias2_sqrt = sqrt(1 - beta2^t) for the 1-based step t."""
    flat = _flat_arrays(param, grad, exp_avg, exp_avg_sq)
    if param.size == 0:
        return
    # 1 - beta is rounded once on the host, as the reference does (float32 arithmetic on
    # the device would give 1 - float32(0.9) = 0.100000024 instead of float32(0.1)).
    VERSIONS[version].ops["adam_step"][grid_1d(param.size)](
        *flat, scalar(step_size), scalar(beta1), scalar(1 - beta1), scalar(beta2),
        scalar(1 - beta2), scalar(bias2_sqrt), scalar(eps), scalar(weight_decay), param.size)


def adam_step_scalars_in_memory(param, grad, exp_avg, exp_avg_sq, scalars, beta1, beta2, eps,
                                weight_decay, version=DEFAULT_VERSION):
    """adam_step, with step_size and bias2_sqrt read by the kernel from the 2-element
    float32 device array ``scalars`` (written by the host beforehand; see host_scalars)."""
    flat = _flat_arrays(param, grad, exp_avg, exp_avg_sq)
    if scalars.shape != (2,):
        raise ValueError(f"adam_step_scalars_in_memory: scalars must have shape (2,), got {scalars.shape}")
    if param.size == 0:
        return
    VERSIONS[version].ops["adam_step_scalars_in_memory"][grid_1d(param.size)](
        *flat, scalars, scalar(beta1), scalar(1 - beta1), scalar(beta2), scalar(1 - beta2),
        scalar(eps), scalar(weight_decay), param.size)


def host_scalars(step, lr, beta1, beta2):
    """(step_size, bias2_sqrt) for the 1-based step, as dcgan_cuda.kernel_backend computes them."""
    return lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step)


# ------------------------------------------------------------------ validate / time
def _parameter_shapes(sim):
    if sim:
        return [(2, 3, 5, 5), (7,), (13, 11), (1,)]
    # Every parameter tensor shape of both DCGAN topologies at 64x64, ngf = ndf = 64 (batch
    # size does not enter): pytorch arch (4x4 kernels) G then D, then what the paper arch
    # (5x5 kernels, dense projection and head) adds. Shapes shared by both models appear once.
    return [(100, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4), (128, 64, 4, 4), (64, 3, 4, 4),
            (1, 512, 4, 4), (512,), (256,), (128,), (64,),
            (8192, 100), (512, 256, 5, 5), (256, 128, 5, 5), (128, 64, 5, 5), (64, 3, 5, 5),
            (1, 8192), (1,)]


def cases(sim):
    def make(rng, shape):
        # A mid-training state: weights ~ N(0, 0.02) (DCGAN init), gradients ~ 1e-2,
        # first moment of the gradients' size, second moment their square's.
        p = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        g = (1e-2 * rng.standard_normal(shape)).astype(np.float32)
        m = (1e-2 * rng.standard_normal(shape)).astype(np.float32)
        v = (1e-4 * rng.random(shape)).astype(np.float32)
        return p, g, m, v
    return [(f"param {'x'.join(map(str, shape))}", lambda rng, s=shape: make(rng, s))
            for shape in _parameter_shapes(sim)]


def run(version, label, inputs, device):
    p, g, m, v = inputs
    # The paper's optimiser: lr 2e-4, beta1 0.5, L2 decay 1e-5; step 10: bias corrections active.
    step, lr, beta1, beta2, eps, weight_decay = 10, 2e-4, 0.5, 0.999, 1e-8, 1e-5
    step_size, bias2_sqrt = host_scalars(step, lr, beta1, beta2)
    d_p, d_g, d_m, d_v = (device(a) for a in inputs)

    def launch():
        # In place: a timing loop keeps stepping the same state (the first call is validated).
        adam_step(d_p, d_g, d_m, d_v, step_size, beta1, beta2, bias2_sqrt, eps, weight_decay, version)
        return d_p, d_m, d_v
    ref_p, ref_m, ref_v = p.copy(), m.copy(), v.copy()
    reference.adam_step(ref_p, g, ref_m, ref_v, step, lr, beta1, beta2, eps, weight_decay)
    # Same float32 operations in the same order as the reference; a GPU may fuse a multiply
    # and an add into an FMA (one rounding instead of two), so allow a few ulp (rtol 1e-6)
    # and, where m's two terms (~5e-3, ulp ~5e-10) nearly cancel, a few ulp of the terms:
    # atol 1e-8. A slip in the formula moves p by a fraction of its update (~3e-5 here),
    # three orders of magnitude above that.
    nbytes = 28 * p.size
    return launch, (ref_p, ref_m, ref_v), 1e-8, 1e-6, 15 * p.size, nbytes   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
