"""numba-cuda under a NumPy without ``np.row_stack`` (NumPy >= 2.5).

tests/conftest.py removes the attribute for the whole suite, so the PTX tests and the
simulator tests prove that every kernel compiles and a training step runs under it. These
tests check that the removal is in force, that it reproduces the failure the work-around in
kernels/jit.py exists for, and that the work-around leaves NumPy as it found it.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("about the real Numba CUDA compiler", allow_module_level=True)

# as tests/conftest.py does; under NumPy >= 2.5 there is nothing to remove
REMOVE_ROW_STACK = textwrap.dedent("""
    import numpy as np
    if hasattr(np, "row_stack"):
        del np.row_stack
        np.__all__.remove("row_stack")
""")


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_suite_runs_as_under_numpy_2_5():
    assert not hasattr(np, "row_stack") and "row_stack" not in np.__all__


def test_without_the_work_around_numba_cuda_cannot_compile():
    """The failure users met: the first compile imports numba.cuda.np.arrayobj, which fails.
    If numba-cuda ever stops asking for row_stack, this fails: the work-around can then go."""
    proc = run_python(REMOVE_ROW_STACK + "import numba.cuda.np.arrayobj")
    assert proc.returncode != 0
    assert "has no attribute 'row_stack'" in proc.stderr


def test_with_the_work_around_a_kernel_compiles_and_numpy_is_left_as_it_was():
    code = REMOVE_ROW_STACK + textwrap.dedent("""
        from dcgan_cuda.kernels import elementwise, jit
        ptx = jit.REGISTRY[0].ptx(cc=(9, 0))[0]
        assert ".target sm_90" in ptx, ptx[:200]
        assert not hasattr(np, "row_stack") and "row_stack" not in np.__all__
        print("compiled")
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "compiled"
