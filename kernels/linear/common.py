"""What every rung of the GEMM ladder shares: the kernel signature, the transposes, the name.

Each rung computes c = op(a) @ op(b) with op(t) = t or t.T (see __init__.py); a transpose
is never a copy, only a different index: op_element reads op(array)[row, col] from the
array as it is stored.
"""
from __future__ import annotations

from numba import cuda

from .. import jit

# a, b, c (2-D float32, C-contiguous) and the two transpose flags (0 or 1).
GEMM_SIG = (jit.f32_2d, jit.f32_2d, jit.f32_2d, jit.i64, jit.i64)


# jit.kernel, registering each kernel as linear.<function> whichever file defines it.
kernel = jit.family_kernel("linear")


def ceil_div(a, b):
    return -(-a // b)


@cuda.jit(device=True)
def op_element(array, row, col, trans):
    """op(array)[row, col]: array[col, row] when trans (the array stores the transpose)."""
    if trans:
        return array[col, row]
    return array[row, col]
