"""Adaptive max-pool kernels under the simulator vs the NumPy reference, every version.

Tolerance: none. The forward's maximum is one of its inputs and its argmax an integer; the
backward adds, for each pixel, the same float32 values of dy in the same order (row-major
over the output cells) as the reference's np.add.at, so every result is bitwise equal.
"""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import pool

from .conftest import nan_like

VERSIONS = sorted(pool.VERSIONS)

# Batch 1-2, 1-3 channels, H, W 1-9, output grids 1-4 per axis: divisible grids, overlapping
# bins (e.g. 5 -> 3: bins [0,2) [1,4) [3,5)), and grids larger than the input (2 -> 4).
problems = st.tuples(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
                     st.tuples(st.integers(1, 4), st.integers(1, 4)))


def run_both(x, grid, dy, version):
    n, c = x.shape[:2]
    y = nan_like((n, c) + grid)
    argmax = np.full((n, c) + grid, -1, np.int64)   # -1: never a valid index
    pool.adaptive_max_pool2d_forward(x, y, argmax, version=version)
    dx = nan_like(x.shape)
    pool.adaptive_max_pool2d_backward(dy, argmax, dx, version=version)
    return y, argmax, dx


def check_against_reference(x, grid, dy, what):
    ref_y, ref_argmax = reference.adaptive_max_pool2d_forward(x, grid)
    ref_dx = reference.adaptive_max_pool2d_backward(dy, ref_argmax, x.shape)
    for version in VERSIONS:
        y, argmax, dx = run_both(x, grid, dy, version)
        np.testing.assert_array_equal(y, ref_y, err_msg=f"{what} v{version}: y")
        np.testing.assert_array_equal(argmax, ref_argmax, err_msg=f"{what} v{version}: argmax")
        np.testing.assert_array_equal(dx, ref_dx, err_msg=f"{what} v{version}: dx")
    return ref_argmax


@settings(max_examples=100, deadline=None)
@given(problem=problems, seed=st.integers(0, 2**16))
@example(problem=((1, 1, 5, 7), (3, 3)), seed=0)   # overlapping bins on both axes
@example(problem=((2, 1, 2, 3), (4, 4)), seed=1)   # more cells than pixels: bins repeat
@example(problem=((1, 2, 9, 9), (1, 1)), seed=2)   # a global max
def test_distinct_values_match_reference(problem, seed):
    shape, grid = problem
    rng = np.random.default_rng(seed)
    # a permutation: every value distinct, so each bin has exactly one maximum
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3.0).astype(np.float32)
    dy = rng.standard_normal(shape[:2] + grid).astype(np.float32)
    check_against_reference(x, grid, dy, f"distinct {shape} -> {grid}")


@settings(max_examples=60, deadline=None)
@given(problem=problems, seed=st.integers(0, 2**16), levels=st.integers(1, 3))
def test_ties_first_maximum_wins(problem, seed, levels):
    shape, grid = problem
    rng = np.random.default_rng(seed)
    # levels = 1 is a constant input (every pixel ties); 2-3 levels tie often
    x = rng.integers(0, levels, size=shape).astype(np.float32)
    dy = rng.standard_normal(shape[:2] + grid).astype(np.float32)
    argmax = check_against_reference(x, grid, dy, f"ties {shape} -> {grid}")
    if levels == 1:  # the winner of every bin is its top-left pixel
        rows = [start for start, _ in reference.adaptive_pool_bounds(shape[2], grid[0])]
        cols = [start for start, _ in reference.adaptive_pool_bounds(shape[3], grid[1])]
        want = np.add.outer(np.array(rows) * shape[3], np.array(cols))
        assert (argmax == want).all()


@pytest.mark.parametrize("version", VERSIONS)
def test_one_pixel_winning_overlapping_bins_gets_their_sum(version):
    # 3x3 -> 2x2: bins [0,2) and [1,3) on each axis; pixel (1, 1) lies in all four bins.
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = 1.0
    dy = np.array([[[[1.0, 2.0], [4.0, 8.0]]]], np.float32)
    y, argmax, dx = run_both(x, (2, 2), dy, version)
    assert (y == 1.0).all() and (argmax == 1 * 3 + 1).all()
    want = np.zeros((1, 1, 3, 3), np.float32)
    want[0, 0, 1, 1] = 15.0
    np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize("version", VERSIONS)
def test_nan_propagates_like_numpy_argmax(version):
    # numpy's argmax (the reference) treats NaN as the maximum, the first NaN winning.
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan
    y, argmax, _ = run_both(x, (2, 2), np.ones((1, 1, 2, 2), np.float32), version)
    ref_y, ref_argmax = reference.adaptive_max_pool2d_forward(x, (2, 2))
    np.testing.assert_array_equal(argmax, ref_argmax)
    assert argmax[0, 0, 0, 0] == 1 and np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(y[0, 0].ravel()[1:], ref_y[0, 0].ravel()[1:])


def test_rejects_inconsistent_shapes():
    x = np.zeros((1, 2, 4, 4), np.float32)
    y, argmax = np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 3, 2, 2), np.int64)
    with pytest.raises(ValueError):  # 3 channels out of 2
        pool.adaptive_max_pool2d_forward(x, y, argmax)
    dy, wrong_argmax = np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 3, 2), np.int64)
    with pytest.raises(ValueError):  # argmax's grid is not dy's
        pool.adaptive_max_pool2d_backward(dy, wrong_argmax, x)
