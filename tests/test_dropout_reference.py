"""Dropout and the denoising corruption: the counter-based generator's statistics, the
reference's gradient against float64 finite differences, and the op on the NumPy backend."""
import numpy as np
import pytest

from dcgan_cuda import reference as ref

from .test_reference import assert_close, numerical_gradient, pairing


def test_the_counter_generator_is_uniform_and_keyed():
    u = ref.counter_uniform(7, np.arange(200_000, dtype=np.uint64))
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() < 1
    # 20 equal bins of 10,000 expected each: chi-square with 19 degrees of freedom, whose
    # 99.9th percentile is 43.8
    counts = np.bincount((u * 20).astype(int), minlength=20)
    assert ((counts - 10_000) ** 2 / 10_000).sum() < 43.8
    # neighbouring indices and neighbouring keys are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(u, ref.counter_uniform(8, np.arange(200_000, dtype=np.uint64)))[0, 1]) < 0.01
    # one key never gives two indices the same 32 bits (the mixes are bijections)
    assert len(np.unique(ref.hash32(3, np.arange(100_000, dtype=np.uint64)))) == 100_000


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_a_fraction_p_and_keeps_the_mean(p):
    x = np.ones(100_000, np.float32)
    y = ref.dropout_forward(x, p, 42)
    assert abs((y == 0).mean() - p) < 0.01
    assert abs(y.mean() - 1) < 0.02 / (1 - p)
    np.testing.assert_array_equal(y, ref.dropout_forward(x, p, 42))       # same key, same mask
    assert not np.array_equal(y, ref.dropout_forward(x, p, 43))


@pytest.mark.parametrize("p, key", [(0.3, 5), (0.6, 2**32 - 1)])
def test_dropout_backward_matches_finite_differences(p, key):
    rng = np.random.default_rng(key % 1000)
    x = rng.standard_normal((3, 7))
    R = rng.standard_normal((3, 7))
    numeric = numerical_gradient(lambda v: pairing(R)(ref.dropout_forward(v, p, key)), x, 1e-6)
    assert_close(ref.dropout_backward(R, p, key), numeric, 1e-7, 1e-8)
    assert ref.dropout_forward(x, p, key).dtype == np.float64


def test_squared_error_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    y, t = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    numeric = numerical_gradient(lambda v: 0.7 * ref.squared_error_forward(v, t), y, 1e-6)
    assert_close(ref.squared_error_backward(y, t, 0.7), numeric, 1e-7, 1e-8)


def test_gaussian_noise_is_standard_normal_times_sigma():
    z = ref.gaussian_noise(np.zeros(200_000, np.float32), 0.5, 11) / 0.5
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((np.abs(z) < 1).mean() - 0.6827) < 0.005   # the normal's one-sigma mass
    x = np.full((4, 5), 0.25, np.float32)
    np.testing.assert_array_equal(ref.gaussian_noise(x, 0.0, 3), x)


def test_dropout_op_on_the_numpy_backend_trains_and_is_identity_in_eval():
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.backend import numpy_backend
    from dcgan_cuda.dropout import Dropout, dropout, gaussian_noise

    B = numpy_backend()
    x = Tensor(B.asarray(np.arange(1, 13, dtype=np.float32).reshape(3, 4)), B, requires_grad=True)
    y = dropout(x, 0.5, key=9)
    np.testing.assert_array_equal(y.numpy(), ref.dropout_forward(x.numpy(), 0.5, 9))
    upstream = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    y.backward(B.asarray(upstream))
    np.testing.assert_array_equal(x.grad.numpy() if hasattr(x.grad, "numpy") else x.grad,
                                  ref.dropout_backward(upstream, 0.5, 9))
    layer = Dropout(0.5, seed=1)
    first, second = layer(x).numpy(), layer(x).numpy()
    assert not np.array_equal(first, second)           # each call draws a new mask
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    noisy = gaussian_noise(x, 0.1, key=4)
    np.testing.assert_array_equal(noisy.numpy(), ref.gaussian_noise(x.numpy(), 0.1, 4))
