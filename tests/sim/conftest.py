"""Kernel tests under Numba's CUDA simulator.

Collected only in a process started with NUMBA_ENABLE_CUDASIM=1 (tests/test_simulator.py
starts one; or run ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/sim`` yourself). The
simulator runs one OS thread per GPU thread and checks every array index, so shapes here
are tiny and an out-of-bounds access fails the test.
"""
import os
import sys

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    raise RuntimeError("tests/sim needs NUMBA_ENABLE_CUDASIM=1 in the environment before Python starts")

# syncthreads in the simulator is a barrier across OS threads; switching threads often
# makes it several times cheaper.
sys.setswitchinterval(1e-5)


def nan_like(shape, dtype=np.float32):
    """An output buffer whose every element is NaN until a kernel writes it."""
    return np.full(shape, np.nan, dtype=dtype)


def assert_close(ours, ref, atol, rtol, what=""):
    """|ours - ref| <= atol + rtol*|ref| elementwise, and ours finite (NaN = never written)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    assert np.isfinite(ours).all(), f"{what}: {np.count_nonzero(~np.isfinite(ours))} elements unwritten or non-finite"
    err = np.abs(ours - ref)
    bad = err > atol + rtol * np.abs(ref)
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} elements off; max |err| {err.max():.3g} "
                           f"at {np.unravel_index(err.argmax(), err.shape)}")


@pytest.fixture
def rng():
    return np.random.default_rng(7)
