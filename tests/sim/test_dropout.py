"""dropout kernels under the simulator vs the NumPy reference: the same counter-based
numbers, so the masks agree bit for bit and the noise to a few ulp."""
import numpy as np
import pytest

from dcgan_cuda import reference
from dcgan_cuda.kernels import dropout

from .conftest import assert_close, nan_like


@pytest.mark.parametrize("shape, p, key", [((37,), 0.5, 0), ((2, 3, 5), 0.2, 2**32 - 1),
                                           ((4, 9), 0.9, 1511)])
def test_dropout_matches_the_reference_exactly(shape, p, key, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, dx = nan_like(shape), nan_like(shape)
    dropout.dropout_forward(x, y, p, key)
    dropout.dropout_backward(dy, dx, p, key)
    assert_close(y, reference.dropout_forward(x, p, key), 0, 0, "dropout_forward")
    assert_close(dx, reference.dropout_backward(dy, p, key), 0, 0, "dropout_backward")
    # the backward drops exactly what the forward dropped: its mask is recomputed, not stored
    np.testing.assert_array_equal(y == 0, dx == 0)


def test_gaussian_noise_matches_the_reference(rng):
    x = rng.standard_normal((3, 11)).astype(np.float32)
    y = nan_like(x.shape)
    dropout.gaussian_noise(x, y, 0.25, 99)
    # logf/cosf/sqrtf against NumPy's float32 functions: a few ulp of z, times sigma
    assert_close(y, reference.gaussian_noise(x, 0.25, 99), 1e-6, 1e-6, "gaussian_noise")
    assert not np.array_equal(y, x)


def test_squared_error_gradient_matches_the_reference(rng):
    y = rng.standard_normal((2, 13)).astype(np.float32)
    t = rng.standard_normal((2, 13)).astype(np.float32)
    dy, loss = nan_like(y.shape), nan_like((1,))
    dropout.squared_error_backward(y, t, np.full(1, 0.5, np.float32), dy)
    assert_close(dy, reference.squared_error_backward(y, t, 0.5), 0, 1e-6, "squared_error_backward")
    dropout.squared_error_forward(y, t, loss)
    # 26 float32 terms summed in the block's tree order, against NumPy's pairwise sum
    assert_close(loss, reference.squared_error_forward(y.astype(np.float64), t).reshape(1), 0, 1e-6,
                 "squared_error_forward")


def test_a_key_outside_32_bits_is_refused():
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="32-bit"):
        dropout.dropout_forward(x, x.copy(), 0.5, 2**32)
