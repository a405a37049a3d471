"""Dropout, Gaussian input noise and the squared error: the ops a denoising autoencoder
adds to the graph, and the Dropout layer.

Both draw their random numbers from a counter (reference.hash32 of a 32-bit key and the
element's index; kernels/dropout.py on the kernel backends), so the only state is a key:
the backward recomputes the forward's mask from it, and the same key gives the same
numbers on the NumPy backend, the simulator and a GPU. A layer makes a fresh key for each
call by hashing its seed with its call count: a run is reproducible from its seed, and no
generator state lives on the host.
"""
from __future__ import annotations

import numpy as np

from . import reference
from .autograd import Function, Tensor
from .nn import Module
from .ops import OpError


class DropoutFunction(Function):
    @staticmethod
    def forward(ctx, x, p, key):
        ctx.p, ctx.key = p, key
        return ctx.backend.dropout_forward(x, p, key)

    @staticmethod
    def backward(ctx, dy):
        return ctx.backend.dropout_backward(dy, ctx.p, ctx.key), None, None


class GaussianNoiseFunction(Function):
    """x + sigma * z: the noise does not depend on x, so the gradient passes unchanged."""

    @staticmethod
    def forward(ctx, x, sigma, key):
        return ctx.backend.gaussian_noise(x, sigma, key)

    @staticmethod
    def backward(ctx, dy):
        return dy, None, None


class SquaredErrorFunction(Function):
    """mean (y - t)^2 against a constant target t (an array on y's backend)."""

    @staticmethod
    def forward(ctx, y, target):
        ctx.save_for_backward(y, target)
        return ctx.backend.squared_error_forward(y, target)

    @staticmethod
    def backward(ctx, dloss):
        y, target = ctx.saved
        return ctx.backend.squared_error_backward(y, target, dloss), None


def squared_error(y, target):
    """The mean squared error of Tensor y against the array ``target`` (same shape)."""
    if not isinstance(y, Tensor) or tuple(target.shape) != tuple(y.shape):
        raise OpError("squared_error: y must be a Tensor and target an array of its shape")
    return SquaredErrorFunction.apply(y, target)


def _check(op, x, key):
    if not isinstance(x, Tensor):
        raise OpError(f"{op}: x must be a Tensor, got {type(x).__name__}")
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < 2**32:
        raise OpError(f"{op}: key must be an integer in [0, 2**32), got {key!r}")


def dropout(x, p, key):
    """Inverted dropout of probability p in [0, 1) with the numbers of ``key``."""
    _check("dropout", x, key)
    if not 0 <= p < 1:
        raise OpError(f"dropout: p must be in [0, 1), got {p!r}")
    return DropoutFunction.apply(x, float(p), int(key))


def gaussian_noise(x, sigma, key):
    """x plus sigma times standard normal noise drawn with ``key``."""
    _check("gaussian_noise", x, key)
    if not sigma >= 0:
        raise OpError(f"gaussian_noise: sigma must be >= 0, got {sigma!r}")
    return GaussianNoiseFunction.apply(x, float(sigma), int(key))


class CounterKeys:
    """Keys for successive calls: hash32(seed, call), call = 0, 1, 2, ..."""

    def __init__(self, seed):
        self.seed, self.calls = int(seed) & 0xFFFFFFFF, 0

    def next(self):
        key = int(reference.hash32(self.seed, self.calls))
        self.calls += 1
        return key


class Dropout(Module):
    """torch.nn.Dropout(p): in training mode each call drops with a new key; in eval mode
    it is the identity (the kept values were already scaled by 1/(1-p))."""

    def __init__(self, p=0.5, seed=0):
        super().__init__()
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "keys", CounterKeys(seed))

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return dropout(x, self.p, self.keys.next())

    def extra_repr(self):
        return f"p={self.p}"
