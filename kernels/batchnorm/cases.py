"""The cases the harness validates (and on a GPU times) every version of batchnorm on.

    python -m dcgan_cuda.kernels.batchnorm [--sim] [--version N]   (kernels/harness.py runs these)

Each case is one layer in one mode: the training forward and backward (batch statistics)
or the eval forward and backward (running statistics), with the activation each network
fuses after its batchnorms, checked against the float64 NumPy reference.
"""
from __future__ import annotations

import numpy as np

from dcgan_cuda import reference

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
    """(label, make_inputs): each layer in "train" and in "eval" mode, with its activation."""
    out = []
    for i, (net, shape) in enumerate(SIM_SHAPES if sim else GPU_SHAPES):
        slope = (1.0, 0.0, 0.2)[i % 3] if sim else SLOPES[net]
        for mode in ("train", "eval"):
            label = " ".join(filter(None, (mode + ACTIVATION_NAMES[slope], net, "x".join(map(str, shape)))))
            out.append((label, lambda rng, shape=shape, mode=mode, slope=slope:
                        (mode, slope) + _inputs(rng, shape, mode, slope)))
    return out


def _inputs(rng, shape, mode, slope):
    """x, dy, gamma, beta and the running statistics of one case, float32."""
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
    """forward and backward of one version in the case's mode, and their float64 references."""
    from . import backward, forward_eval, forward_train
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
