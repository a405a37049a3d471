"""Every kernel assembles for sm_90 with ptxas, and none spills registers to local memory.

ptxas comes with the test extra (nvidia-cuda-nvcc); without it the check cannot run.
"""
import os
import sys
from pathlib import Path

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("needs the real Numba CUDA target", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import ptxas_report  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    if ptxas_report.find_ptxas() is None:
        pytest.skip("no ptxas: pip install 'nvidia-cuda-nvcc>=13.5' (part of the test extra)")
    return ptxas_report.report(cc=90)[1]


def test_every_kernel_assembles_with_a_register_count(rows):
    from .kernel_files import import_all
    import_all()
    from dcgan_cuda.kernels.jit import REGISTRY
    assert {r["kernel"] for r in rows} == {k.name for k in REGISTRY}
    assert all(0 < r["registers"] <= 255 for r in rows)


def test_no_kernel_spills(rows):
    spilling = [(r["kernel"], r["spill_stores"], r["spill_loads"]) for r in rows
                if r["spill_stores"] or r["spill_loads"]]
    assert not spilling


def test_static_shared_memory_fits_numba_limit(rows):
    assert all(r["smem"] <= 48 * 1024 for r in rows)
