"""linear (SGEMM) kernels under the simulator vs the NumPy reference: every rung of the ladder."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import linear

from .conftest import assert_close, nan_like


VERSIONS = sorted(linear.VERSIONS)
T = linear.TILE  # 8 under the simulator: sizes 1-40 straddle up to 5 tiles, edges included
sizes = st.integers(1, 40)
# The simulator pays ~1 ms per GPU thread, and a launch has a thread per element of C: any
# side may be up to 40 but the area of C is capped, so one example costs ~seconds.
MAX_AREA = 256


@st.composite
def two_sides(draw):
    """(rows, cols) of C, each 1-40, rows*cols <= MAX_AREA, either one the long side."""
    long_side = draw(sizes)
    short_side = draw(st.integers(1, max(1, MAX_AREA // long_side)))
    return (long_side, short_side) if draw(st.booleans()) else (short_side, long_side)


@st.composite
def linear_shapes(draw):
    """(batch, fan_in, fan_out), each 1-40, with every pairwise product <= MAX_AREA (each
    is the area of one of the three launchers' outputs)."""
    batch, fan_in = draw(two_sides())
    fan_out = draw(st.integers(1, max(1, MAX_AREA // max(batch, fan_in))))
    return batch, fan_in, fan_out
UNIT_ROUNDOFF = 2.0 ** -24


def float32_sum_bound(a, b):
    """A bound on |fl32(a @ b) - a @ b| for a float32 dot product over K = a.shape[1] terms.

    Each of the K products and K additions rounds by at most a relative 2^-24, so the
    computed sum errs by at most gamma_K * (|a| @ |b|), gamma_K = K*u/(1 - K*u) (Higham,
    Accuracy and Stability, 3.1); we take the maximum over C as a scalar atol. The typical
    error is ~sqrt(K) times smaller, but the worst-case bound cannot flake, and it is still
    ~K * 6e-8 * max|C-ish|: a dropped or repeated term (an O(1) error) fails it by orders of
    magnitude.
    """
    k = a.shape[1]
    gamma = k * UNIT_ROUNDOFF / (1 - k * UNIT_ROUNDOFF)
    magnitude = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    return 1.01 * gamma * float(magnitude.max(initial=0.0))


def stored(op_matrix, trans):
    """The C-contiguous array whose op(.) is op_matrix: its transpose when trans."""
    return np.ascontiguousarray(op_matrix.T if trans else op_matrix)


TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


# Each example runs every version on one transpose pair (the explicit examples take all
# four): the bitwise agreement of the versions needs them all on the same inputs, and the
# simulator pays per launch.
@settings(max_examples=16, deadline=None)
@given(mn=two_sides(), k=sizes, seed=st.integers(0, 2**16), trans=st.sampled_from(TRANSPOSES))
@example(mn=(T, T), k=T, seed=0, trans=(False, False))                # exactly one tile
@example(mn=(T + 1, 2 * T - 1), k=2 * T + 1, seed=1, trans=(True, True))  # one past / one short of tile edges
@example(mn=(1, 1), k=40, seed=2, trans=(False, True))                # a dot product: K spans 5 tiles
@example(mn=(40, 5), k=1, seed=3, trans=(True, False))                # K = 1, an outer product; M spans 5 tiles
def test_gemm_all_transposes_match_float64(mn, k, seed, trans):
    m, n = mn
    trans_a, trans_b = trans
    rng = np.random.default_rng(seed)
    op_a = rng.standard_normal((m, k)).astype(np.float32)
    op_b = rng.standard_normal((k, n)).astype(np.float32)
    exact = op_a.astype(np.float64) @ op_b.astype(np.float64)
    atol = float32_sum_bound(op_a, op_b)
    a, b = stored(op_a, trans_a), stored(op_b, trans_b)
    results = {}
    for version in VERSIONS:
        c = nan_like((m, n))
        linear.gemm(a, b, c, trans_a, trans_b, version=version)
        assert_close(c, exact, atol, 0.0, f"gemm v{version} trans_a={trans_a} trans_b={trans_b}")
        results[version] = c
    # Every version sums each c[m, n] over k = 0, 1, ..., K-1 in order (the zero padding
    # of the tiled versions' edge tiles adds exact zeros), so all agree to the bit.
    for version in VERSIONS[1:]:
        np.testing.assert_array_equal(results[version], results[VERSIONS[0]], f"v{version} vs v{VERSIONS[0]}")


# The version is drawn with the shape (two examples per version on average).
@settings(max_examples=14, deadline=None)
@given(shape=linear_shapes(), seed=st.integers(0, 2**16), version=st.sampled_from(VERSIONS))
@example(shape=(1, 40, 1), seed=0, version=VERSIONS[-1])  # the D head's shape: a matrix-vector product, batch 1
def test_linear_launchers_match_reference(shape, seed, version):
    batch, fan_in, fan_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, fan_in)).astype(np.float32)
    w = rng.standard_normal((fan_out, fan_in)).astype(np.float32)
    dy = rng.standard_normal((batch, fan_out)).astype(np.float32)
    x64, w64, dy64 = (t.astype(np.float64) for t in (x, w, dy))
    checks = [
        # (launcher, inputs, output shape, float64 reference, the product it computes)
        (linear.forward, (x, w), (batch, fan_out), reference.linear_forward(x64, w64), (x, w.T)),
        (linear.backward_data, (dy, w), (batch, fan_in), reference.linear_backward_data(dy64, w64), (dy, w)),
        (linear.backward_weight, (x, dy), (fan_out, fan_in), reference.linear_backward_weight(x64, dy64),
         (dy.T, x)),
    ]
    for launch, inputs, shape, ref, (left, right) in checks:
        out = nan_like(shape)
        launch(*inputs, out, version=version)
        # tolerance: the float32 dot-product bound over this product's K (see above)
        assert_close(out, ref, float32_sum_bound(left, right), 0.0, f"{launch.__name__} v{version}")


@pytest.mark.parametrize("version", VERSIONS)
def test_gemm_is_deterministic_and_writes_every_element(version):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((T + 5, 2 * T + 3)).astype(np.float32)   # op(a) = a.T: (2T+3) x (T+5)
    b = rng.standard_normal((T + 5, 3)).astype(np.float32)
    first, second = nan_like((2 * T + 3, 3)), np.zeros((2 * T + 3, 3), np.float32)
    linear.gemm(a, b, first, 1, 0, version=version)
    linear.gemm(a, b, second, 1, 0, version=version)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_gemm_rejects_mismatched_shapes():
    a, b = np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        linear.gemm(a, b, np.zeros((3, 2), np.float32), 0, 0)       # K: 4 vs 5
    with pytest.raises(ValueError, match="does not fit"):
        linear.gemm(a, b, np.zeros((4, 2), np.float32), 0, 1)       # op(b) is 2x5: K 4 vs 2
