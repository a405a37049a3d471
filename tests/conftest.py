"""Shared test configuration.

The main pytest process uses the real Numba CUDA compiler (PTX checks) and, when present,
the GPU. Kernel tests under Numba's simulator live in tests/sim/ and need
NUMBA_ENABLE_CUDASIM=1 set before numba is imported, so they are collected only in a
process started with it: tests/test_simulator.py starts that process.
"""
import os

import numpy as np
import pytest

collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["sim"]


def numpy_as_without_row_stack():
    """Make this NumPy look like NumPy >= 2.5, which removed ``np.row_stack``.

    numba-cuda cannot compile a single kernel under such a NumPy unless kernels/jit.py works
    around it; CI's default Python gets an older NumPy, so the suite removes the attribute
    itself (and its name from ``__all__``, as NumPy 2.5 did, or ``from numpy import *``
    breaks), before anything compiles. Every PTX test and every simulator test then runs as
    it would under NumPy 2.5, on any Python.
    """
    if hasattr(np, "row_stack"):
        del np.row_stack
    if "row_stack" in np.__all__:
        np.__all__.remove("row_stack")


numpy_as_without_row_stack()

try:
    from hypothesis import settings
except ImportError:  # a GPU machine may have pytest without hypothesis: the gpu tests need none
    settings = None
else:
    settings.register_profile("default", deadline=None, print_blob=True)
    settings.load_profile("default")


def _gpu_available():
    from dcgan_cuda.backend import gpu_status
    return gpu_status()[0]


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (CuPy and a working driver)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
