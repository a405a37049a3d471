"""Every kernel, every numbered version, every signature compiles to PTX for sm_90.

The simulator runs kernels as Python and checks nothing about types; this is the proof
that each one also type-checks and compiles for a real GPU (with the NVVM that
numba-cuda[cu13] installs; no GPU or driver needed).
"""
import os

import pytest

from .kernel_files import KERNEL_FILES, import_all

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("PTX compilation needs the real Numba CUDA target, not the simulator",
                allow_module_level=True)

modules = import_all()
from dcgan_cuda.kernels.jit import REGISTRY  # noqa: E402  (filled by the imports above)

KERNELS = sorted({k.name: k for k in REGISTRY}.values(), key=lambda k: k.name)


def test_every_kernel_file_registers_kernels():
    files_with_kernels = {k.name.split(".")[0] for k in KERNELS}
    # conv_transpose2d is conv2d's kernels read backwards: it may define none of its own.
    assert set(KERNEL_FILES) - {"conv_transpose2d"} <= files_with_kernels


@pytest.mark.parametrize("k", KERNELS, ids=[k.name for k in KERNELS])
def test_compiles_for_sm90(k):
    for sig, ptx in zip(k.signatures, k.ptx(cc=(9, 0))):
        assert ".target sm_90" in ptx, f"{k.name}{sig}: not compiled for sm_90"
        assert ".entry" in ptx, f"{k.name}{sig}: no kernel entry point in the PTX"
