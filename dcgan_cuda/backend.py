"""Backends: where arrays live and which code computes the ops on them.

Three backends execute one graph:

  numpy  the vectorised NumPy references of reference.py, on host arrays (CPU fallback);
  cuda   our Numba CUDA kernels (kernels/) launched on CuPy device arrays;
  sim    the same kernels under Numba's CUDA simulator, on host NumPy arrays. Selected by
         NUMBA_ENABLE_CUDASIM=1, which must be set before numba is first imported.

A backend is an object with the same method names whatever it runs on: the array
management below plus one method per op in OPS. ops.py calls these methods and nothing
else, so models, autograd and the optimizer never ask which backend they are on.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from . import reference

# The op methods every backend provides, with the signatures of reference.py.
OPS = (
    "conv2d_lower", "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight",
    "bias_backward", "add_channel_bias",
    "linear_forward", "linear_backward_data", "linear_backward_weight",
    "batchnorm2d_forward_train", "batchnorm2d_forward_eval", "batchnorm2d_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "tanh_forward", "tanh_backward", "sigmoid_forward", "sigmoid_backward",
    "bce_with_logits_forward", "bce_with_logits_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward",
    "adam_step",
    "dropout_forward", "dropout_backward", "gaussian_noise",
    "squared_error_forward", "squared_error_backward",
)


class BackendUnavailable(RuntimeError):
    """The requested device cannot be used on this machine; the message says why."""


class NumpyBackend:
    """Host arrays, reference ops. The CPU fallback and the oracle."""

    name = "numpy"
    xp = np
    is_gpu = False

    def __init__(self):
        for op in OPS:
            setattr(self, op, getattr(reference, op))

    # -- array management: allocation and copies only ------------------------------
    def asarray(self, a, dtype=np.float32):
        """``a`` as a C-contiguous array of this backend in ``dtype``: a conversion the caller
        asks for, float32 (the training path's dtype, every kernel's) unless it names another.
        Where a user's arrays meet the library (Tensor.backward, Module.load_state_dict,
        generate's z, the ops) their dtype is checked first: a mismatch is refused there,
        with a message, never narrowed here unannounced."""
        return np.asarray(a, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)

    def to_numpy(self, a):
        return np.array(a, copy=True)

    def empty(self, shape, dtype=np.float32):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)

    def full(self, shape, value, dtype=np.float32):
        return np.full(shape, value, dtype=dtype)

    def copy(self, a):
        return a.copy()

    def copy_into(self, dst, src):
        """dst[...] = src, in place (same shape)."""
        dst[...] = src

    def accumulate(self, dst, src):
        """dst += src, in place."""
        dst += src

    def synchronize(self):
        pass


_NUMPY = None


def numpy_backend():
    global _NUMPY
    if _NUMPY is None:
        _NUMPY = NumpyBackend()
    return _NUMPY


def simulator_enabled():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def gpu_status():
    """(usable, reason): whether CuPy sees a CUDA device that Numba can launch on."""
    if simulator_enabled():
        return False, "NUMBA_ENABLE_CUDASIM=1 is set, so Numba simulates CUDA instead of using a GPU"
    try:
        import cupy
    except ImportError:
        return False, ("CuPy is not installed (pip install 'dcgan-cuda[cuda12]' or "
                       "'dcgan-cuda[cuda13]' to match your CUDA driver)")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device, driver too old: CuPy raises its own types
        return False, f"CuPy finds no usable CUDA device ({type(exc).__name__}: {exc})"
    if count == 0:
        return False, "CuPy finds no CUDA device"
    try:
        from numba import cuda
        if not cuda.is_available():
            return False, "Numba cannot use the CUDA driver (numba.cuda.is_available() is False)"
    except Exception as exc:
        return False, f"Numba's CUDA support failed to load ({type(exc).__name__}: {exc})"
    return True, "ok"


def get_backend(device="auto", announce=print):
    """The backend for a --device value: auto, cpu (alias numpy), cuda or sim."""
    device = device.lower()
    if device in ("cpu", "numpy"):
        return numpy_backend()
    if device == "sim":
        if not simulator_enabled():
            raise BackendUnavailable("--device sim needs NUMBA_ENABLE_CUDASIM=1 in the environment "
                                     "before Python starts (it must be set before numba is imported)")
        from .kernel_backend import KernelBackend
        return KernelBackend.simulator()
    if device in ("cuda", "gpu"):
        ok, why = gpu_status()
        if not ok:
            raise BackendUnavailable(f"--device cuda was asked for, but no GPU can be used: {why}. "
                                     "Use --device cpu (or auto) to train on the NumPy reference.")
        from .kernel_backend import KernelBackend
        return KernelBackend.gpu()
    if device == "auto":
        ok, why = gpu_status()
        if ok:
            from .kernel_backend import KernelBackend
            return KernelBackend.gpu()
        if announce:
            announce(f"[dcgan_cuda] no GPU ({why}); falling back to the NumPy reference backend on the CPU.")
        return numpy_backend()
    raise BackendUnavailable(f"unknown device {device!r}: choose auto, cpu, cuda or sim")


def _fast_thread_switching_under_simulator():
    # The simulator runs one OS thread per GPU thread; a short switch interval makes
    # syncthreads several times cheaper.
    if simulator_enabled():
        sys.setswitchinterval(1e-5)


_fast_thread_switching_under_simulator()
