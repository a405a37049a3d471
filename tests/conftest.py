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
