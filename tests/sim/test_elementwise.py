"""elementwise kernels under the simulator vs the NumPy reference."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import elementwise as ew

from .conftest import assert_close, nan_like

shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))


def away_from_zero(x):
    """Values with |x| >= 0.05: relu-like backward is ambiguous at the kink."""
    return np.where(np.abs(x) < 0.05, 0.05 * np.sign(x) + (x == 0) * 0.05, x).astype(np.float32)


@settings(max_examples=15)
@given(shape=shapes, seed=st.integers(0, 2**16), slope=st.sampled_from([0.0, 0.01, 0.2, 1.5]))
def test_activations_match_reference(shape, seed, slope):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng.standard_normal(shape).astype(np.float32) * 3)
    dy = rng.standard_normal(shape).astype(np.float32)
    for fwd, bwd, ref_fwd, ref_bwd, from_output in (
        (ew.relu_forward, ew.relu_backward, reference.relu_forward, reference.relu_backward, False),
        (ew.tanh_forward, ew.tanh_backward, reference.tanh_forward, reference.tanh_backward, True),
        (ew.sigmoid_forward, ew.sigmoid_backward, reference.sigmoid_forward, reference.sigmoid_backward, True),
    ):
        y, dx = nan_like(shape), nan_like(shape)
        fwd(x, y)
        ref_y = ref_fwd(x)
        # tanh/exp may differ from NumPy's by an ulp or two
        assert_close(y, ref_y, 1e-6, 1e-5, fwd.__name__)
        bwd(dy, y if from_output else x, dx)
        assert_close(dx, ref_bwd(dy, ref_y if from_output else x), 1e-6, 1e-5, bwd.__name__)
    y, dx = nan_like(shape), nan_like(shape)
    ew.leaky_relu_forward(x, y, slope)
    assert_close(y, reference.leaky_relu_forward(x, slope), 0, 1e-6, "leaky_relu_forward")
    ew.leaky_relu_backward(dy, x, dx, slope)
    assert_close(dx, reference.leaky_relu_backward(dy, x, slope), 0, 1e-6, "leaky_relu_backward")


def test_sigmoid_saturates_without_overflow():
    x = np.array([-1e4, -100, -20, 0, 20, 100, 1e4], np.float32)
    y = nan_like(x.shape)
    ew.sigmoid_forward(x, y)
    assert_close(y, reference.sigmoid_forward(x.astype(np.float64)), 1e-7, 1e-6, "sigmoid")
    assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5


@settings(max_examples=10)
@given(shape=shapes, seed=st.integers(0, 2**16), value=st.floats(-3, 3, width=32))
def test_fill_add_into_channel_bias(shape, seed, value):
    rng = np.random.default_rng(seed)
    y = nan_like(shape)
    ew.fill(y, value)
    assert (y == np.float32(value)).all()
    a, b = rng.standard_normal((2,) + shape).astype(np.float32)
    acc = a.copy()
    ew.add_into(acc, b)
    assert_close(acc, a + b, 0, 1e-7, "add_into")
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    out = nan_like(shape)
    ew.channel_bias(a, bias, out)
    assert_close(out, reference.add_channel_bias(a, bias), 0, 1e-7, "channel_bias 4-D")
    flat = a.reshape(shape[0], -1)
    bias2 = rng.standard_normal(flat.shape[1]).astype(np.float32)
    out2 = nan_like(flat.shape)
    ew.channel_bias(np.ascontiguousarray(flat), bias2, out2)
    assert_close(out2, flat + bias2, 0, 1e-7, "channel_bias 2-D (linear layers)")
