"""batchnorm kernels under the simulator vs the NumPy reference (run in float64).

Tolerances are first-order error bounds of the float32 computation, derived per element
from the data (see the helpers below), rather than one number for every shape: a channel's
statistics are sums of its m values, and a float32 sum of depth d errs by at most
d*u*sum|terms| (u = eps/2, the unit roundoff; we allow d*eps).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import batchnorm as bn
from dcgan_cuda.kernels import reduction as red

from .conftest import assert_close, nan_like

EPS = float(np.finfo(np.float32).eps)
AXES = (0, 2, 3)
VERSIONS = sorted(bn.VERSIONS)

shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))
eps_values = st.sampled_from([1e-5, 1e-3, 0.1])


def per_channel(v):
    return np.asarray(v, np.float64).reshape(1, -1, 1, 1)


def rounding(m):
    """d*eps for the per-channel sums of m values: a thread's sequential sum of up to
    ceil(m/THREADS) terms, log2(THREADS) tree levels, version 2's chunk merge, plus a few
    roundings for the divisions and products around the sum."""
    return (-(-m // red.THREADS) + int(np.log2(red.THREADS)) + red.TARGET_BLOCKS + 4) * EPS


def draw(shape, seed, loc, spread):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (loc + spread * rng.standard_normal(shape)).astype(np.float32)
    dy = (rng.standard_normal(shape) + rng.standard_normal((1, c, 1, 1))).astype(np.float32)
    gamma = (1 + 0.5 * rng.standard_normal(c)).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    return x, dy, gamma, beta


def forward_tolerance(x, gamma, mean, var, eps):
    """Bound on |y - y_exact| per element, from the errors of our mean and var.

    mean: a sum of m values: err_mean <= r*mean|x|.
    var:  mean of (x - mean')^2 = var + (mean' - mean)^2; its own sum errs <= r*var (and each
          deviation squared adds ~2 roundings, inside the margin of r): err_var <= 2r*var + err_mean^2.
    y = (x - mean)*scale + beta with scale = gamma/sqrt(var + eps):
          |dy| <= |scale|*err_mean + |x - mean|*|scale|*(err_var/(2(var + eps)) + 3 eps) + 3 eps*|y|.
    """
    m = x.size // x.shape[1]
    r = rounding(m)
    x = x.astype(np.float64)
    err_mean = r * np.abs(x).mean(axis=AXES)
    err_var = 2 * r * var + err_mean ** 2
    scale = per_channel(np.abs(gamma) / np.sqrt(var + eps))
    centred = np.abs(x - per_channel(mean))
    rel_scale = per_channel(err_var / (2 * (var + eps))) + 3 * EPS
    y_bound = scale * per_channel(err_mean) + centred * scale * rel_scale
    return err_mean, err_var + 2 * EPS * var, y_bound


def backward_tolerance(dy, x, gamma, mean, var, eps, batch_stats):
    """Bounds for dx, dgamma, dbeta, with mean and var given (the same float32 numbers for
    ours and the reference), so only the backward's own roundings count.

    xhat = (x - mean)*invstd: ~3 roundings, err_xhat <= 3 eps |xhat|.
    dbeta = sum dy: <= r*sum|dy|.   dgamma = sum dy*xhat: <= (r + 4 eps)*sum|dy*xhat|.
    dx = k*(dy - a - xhat*b), a = dbeta/m, b = dgamma/m, k = gamma*invstd: the subtraction
    cancels (dy is largely explained by a + xhat*b), so the error is bounded by the size of
    the terms, not of dx: |k|*(err_a + |xhat|*err_b + |b|*err_xhat + 3 eps*(|dy| + |a| + |xhat*b|))
    + 2 eps |dx| (k's own rounding).
    """
    m = x.size // x.shape[1]
    r = rounding(m)
    dy, x = dy.astype(np.float64), x.astype(np.float64)
    invstd = 1 / np.sqrt(np.asarray(var, np.float64) + eps)
    xhat = (x - per_channel(mean)) * per_channel(invstd)
    err_dbeta = r * np.abs(dy).sum(axis=AXES)
    err_dgamma = (r + 4 * EPS) * np.abs(dy * xhat).sum(axis=AXES)
    k = per_channel(np.abs(gamma * invstd))
    if not batch_stats:
        return 3 * EPS * k * np.abs(dy), err_dgamma, err_dbeta
    a = per_channel(dy.sum(axis=AXES) / m)
    b = per_channel((dy * xhat).sum(axis=AXES) / m)
    terms = np.abs(dy) + np.abs(a) + np.abs(xhat * b)
    dx_bound = k * (per_channel(err_dbeta / m) + np.abs(xhat) * per_channel(err_dgamma / m)
                    + np.abs(b) * 3 * EPS * np.abs(xhat) + 3 * EPS * terms) + 2 * EPS * k * terms
    return dx_bound, err_dgamma, err_dbeta


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), eps=eps_values,
       loc_spread=st.sampled_from([(0.0, 1.0), (2.0, 0.1), (-3.0, 5.0), (100.0, 1.0)]),
       version=st.sampled_from(VERSIONS))
def test_forward_train_matches_reference(shape, seed, eps, loc_spread, version):
    x, _, gamma, beta = draw(shape, seed, *loc_spread)
    c = shape[1]
    y, mean, var = nan_like(shape), nan_like(c), nan_like(c)
    bn.forward_train(x, gamma, beta, y, mean, var, eps, version)
    ref_y, ref_mean, ref_var = reference.batchnorm2d_forward_train(*f64(x, gamma, beta), eps)
    tol_mean, tol_var, tol_y = forward_tolerance(x, gamma, ref_mean, ref_var, eps)
    assert_close(mean, ref_mean, tol_mean, 0, f"mean v{version}")
    assert_close(var, ref_var, tol_var, 0, f"var v{version}")
    assert_close(y, ref_y, tol_y, 3 * EPS, f"y v{version}")


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), eps=eps_values, batch_stats=st.booleans(),
       version=st.sampled_from(VERSIONS))
def test_backward_matches_reference(shape, seed, eps, batch_stats, version):
    x, dy, gamma, _ = draw(shape, seed, 0.5, 2.0)
    if batch_stats:
        _, mean, var = reference.batchnorm2d_forward_train(x, gamma, gamma, eps)
    else:  # running statistics, unrelated to this batch
        rng = np.random.default_rng(seed + 1)
        mean = rng.standard_normal(shape[1]).astype(np.float32)
        var = (0.2 + rng.random(shape[1])).astype(np.float32)
    c = shape[1]
    dx, dgamma, dbeta = nan_like(shape), nan_like(c), nan_like(c)
    bn.backward(dy, x, gamma, mean, var, dx, dgamma, dbeta, eps, batch_stats, version)
    ref_dx, ref_dgamma, ref_dbeta = reference.batchnorm2d_backward(*f64(dy, x, gamma, mean, var), eps,
                                                                   batch_stats=batch_stats)
    tol_dx, tol_dgamma, tol_dbeta = backward_tolerance(dy, x, gamma, mean, var, eps, batch_stats)
    what = f"v{version} batch_stats={batch_stats}"
    assert_close(dbeta, ref_dbeta, tol_dbeta, 0, f"dbeta {what}")
    assert_close(dgamma, ref_dgamma, tol_dgamma, 0, f"dgamma {what}")
    assert_close(dx, ref_dx, tol_dx, 0, f"dx {what}")


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), eps=eps_values, version=st.sampled_from(VERSIONS))
def test_forward_eval_matches_reference(shape, seed, eps, version):
    x, _, gamma, beta = draw(shape, seed, 1.0, 3.0)
    rng = np.random.default_rng(seed + 1)
    running_mean = rng.standard_normal(shape[1]).astype(np.float32)
    running_var = (0.1 + 2 * rng.random(shape[1])).astype(np.float32)
    y = nan_like(shape)
    bn.forward_eval(x, gamma, beta, running_mean, running_var, y, eps, version)
    ref = reference.batchnorm2d_forward_eval(*f64(x, gamma, beta, running_mean, running_var), eps)
    # An affine map per element, a handful of roundings: a few eps of the terms' size
    # (the reference's x*scale + shift and our (x - mean)*scale + beta round differently).
    scale = per_channel(np.abs(gamma) / np.sqrt(running_var.astype(np.float64) + eps))
    terms = scale * (np.abs(x) + per_channel(np.abs(running_mean))) + per_channel(np.abs(beta))
    assert_close(y, ref, 6 * EPS * terms, 0, f"forward_eval v{version}")


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), slope=st.sampled_from([0.0, 0.2]),
       training=st.booleans(), version=st.sampled_from(VERSIONS))
def test_fused_activation_is_bitwise_batchnorm_then_activation(shape, seed, slope, training, version):
    """With the activation fused (slope 0: ReLU, 0.2: LeakyReLU), forward and backward give the
    very bits of the plain kernels followed by the reference activation: the fused kernels
    compute the same float32 z and the same per-element gradient, then sum in the same order."""
    x, dy, gamma, beta = draw(shape, seed, 0.3, 1.5)
    c = shape[1]
    rng = np.random.default_rng(seed + 1)
    running_mean = rng.standard_normal(c).astype(np.float32)
    running_var = (0.2 + rng.random(c)).astype(np.float32)

    def forward(slope_):
        y, mean, var = nan_like(shape), nan_like(c), nan_like(c)
        if training:
            bn.forward_train(x, gamma, beta, y, mean, var, 1e-5, version, slope=slope_)
            return y, mean, var
        bn.forward_eval(x, gamma, beta, running_mean, running_var, y, 1e-5, version, slope=slope_)
        return y, running_mean, running_var

    z, mean, var = forward(1.0)
    y, mean_fused, var_fused = forward(slope)
    np.testing.assert_array_equal(y, reference.leaky_relu_forward(z, slope))
    np.testing.assert_array_equal(mean_fused, mean)
    np.testing.assert_array_equal(var_fused, var)

    def backward(dy_, **fused):
        grads = nan_like(shape), nan_like(c), nan_like(c)
        bn.backward(dy_, x, gamma, mean, var, *grads, 1e-5, training, version, **fused)
        return grads

    plain = backward(reference.leaky_relu_backward(dy, z, slope))
    fused = backward(dy, beta=beta, slope=slope)
    for name, got, want in zip(("dx", "dgamma", "dbeta"), fused, plain):
        np.testing.assert_array_equal(got, want, err_msg=f"{name} v{version} slope {slope}")


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), momentum=st.sampled_from([0.1, 0.5, 1.0]),
       version=st.sampled_from(VERSIONS))
def test_statistics_kernel_updates_the_running_buffers_as_update_running_does(shape, seed, momentum,
                                                                               version):
    """forward_train given the running buffers folds the statistics into them in the same
    kernel: the same bits as update_running launched afterwards, and the same y, mean, var."""
    x, _, gamma, beta = draw(shape, seed, 1.0, 2.0)
    c = shape[1]
    rng = np.random.default_rng(seed + 1)
    start_mean = rng.standard_normal(c).astype(np.float32)
    start_var = (0.2 + rng.random(c)).astype(np.float32)

    y, mean, var = nan_like(shape), nan_like(c), nan_like(c)
    bn.forward_train(x, gamma, beta, y, mean, var, 1e-5, version)
    rm, rv = start_mean.copy(), start_var.copy()
    bn.update_running(rm, rv, mean, var, x.size // c, momentum, version)

    y2, mean2, var2 = nan_like(shape), nan_like(c), nan_like(c)
    rm2, rv2 = start_mean.copy(), start_var.copy()
    bn.forward_train(x, gamma, beta, y2, mean2, var2, 1e-5, version, running_mean=rm2, running_var=rv2,
                     momentum=momentum)
    for got, want in ((y2, y), (mean2, mean), (var2, var), (rm2, rm), (rv2, rv)):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(rm2, start_mean) or momentum == 0


def test_fused_backward_refuses_a_missing_beta():
    x = np.ones((2, 1, 1, 1), np.float32)
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="needs beta"):
        bn.backward(x, x, one, one, one, nan_like((2, 1, 1, 1)), nan_like(1), nan_like(1), 1e-5, True,
                    slope=0.0)


def test_variance_of_data_far_from_zero():
    """x = 1000 + N(0, 1): the one-pass E[x^2] - E[x]^2 loses the variance entirely in float32
    (E[x^2] ~ 1e6, float32 spacing 0.06); the two-pass and Chan formulas keep ~6 digits."""
    rng = np.random.default_rng(5)
    x = (1000 + rng.standard_normal((3, 2, 9, 9))).astype(np.float32)
    gamma, beta = np.ones(2, np.float32), np.zeros(2, np.float32)
    ref_var = x.astype(np.float64).var(axis=AXES)
    for version in VERSIONS:
        y, mean, var = nan_like(x.shape), nan_like(2), nan_like(2)
        bn.forward_train(x, gamma, beta, y, mean, var, 1e-5, version)
        assert_close(var, ref_var, 0, 1e-4, f"var v{version}")
        assert_close(y.mean(axis=AXES), np.zeros(2), 1e-3, 0, f"y is centred, v{version}")


def test_constant_channel_and_single_value():
    """Zero variance: y = beta, and dx = 0 (every value equals the mean); M = 1 included."""
    for shape in ((2, 3, 2, 3), (1, 2, 1, 1)):
        x = np.broadcast_to(np.arange(shape[1], dtype=np.float32).reshape(1, -1, 1, 1) * 3 - 1,
                            shape).copy()
        gamma = np.full(shape[1], 2.0, np.float32)
        beta = np.arange(shape[1], dtype=np.float32)
        dy = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for version in VERSIONS:
            y, mean, var = nan_like(shape), nan_like(shape[1]), nan_like(shape[1])
            bn.forward_train(x, gamma, beta, y, mean, var, 1e-5, version)
            assert (var == 0).all() and np.array_equal(mean, x[0, :, 0, 0])
            assert np.array_equal(y, np.broadcast_to(beta.reshape(1, -1, 1, 1), shape))
            dx, dgamma, dbeta = nan_like(shape), nan_like(shape[1]), nan_like(shape[1])
            bn.backward(dy, x, gamma, mean, var, dx, dgamma, dbeta, 1e-5, True, version)
            assert (dgamma == 0).all()
            # dx = k*(dy - mean(dy)): the per-channel mean of dy rounds, so not exactly 0 for M > 1
            ref_dx = reference.batchnorm2d_backward(*f64(dy, x, gamma, mean, var), 1e-5)[0]
            assert_close(dx, ref_dx, 2 * 316 * 8 * EPS * np.abs(dy).max(), 0, f"dx v{version} {shape}")


@pytest.mark.parametrize("version", VERSIONS)
def test_update_running_by_hand(version):
    """momentum 0.1, count 4 (unbiased factor 4/3):
        mean: 0.9*1.0 + 0.1*3.0 = 1.2          0.9*(-2.0) + 0.1*0.0 = -1.8
        var:  0.9*1.0 + 0.1*(1.5*4/3) = 1.1   0.9*0.5 + 0.1*(0.0*4/3) = 0.45"""
    running_mean = np.array([1.0, -2.0], np.float32)
    running_var = np.array([1.0, 0.5], np.float32)
    bn.update_running(running_mean, running_var, np.array([3.0, 0.0], np.float32),
                      np.array([1.5, 0.0], np.float32), 4, 0.1, version)
    assert_close(running_mean, [1.2, -1.8], 0, 2 * EPS, "running_mean")
    assert_close(running_var, [1.1, 0.45], 0, 2 * EPS, "running_var")


@pytest.mark.parametrize("version", VERSIONS)
def test_update_running_count_one_and_reference(version):
    """count = 1: no n/(n-1) blow-up (the factor is 1, as in the reference); and any count
    agrees with the reference."""
    rng = np.random.default_rng(2)
    for count, momentum in ((1, 0.1), (2, 0.5), (131072, 0.1), (7, 1.0)):
        rm, rv = rng.standard_normal(5).astype(np.float32), rng.random(5).astype(np.float32)
        mean, var = rng.standard_normal(5).astype(np.float32), rng.random(5).astype(np.float32)
        ref_rm, ref_rv = f64(rm, rv)
        reference.batchnorm2d_update_running(ref_rm, ref_rv, *f64(mean, var), count, momentum)
        bn.update_running(rm, rv, mean, var, count, momentum, version)
        # two products and a sum: a few roundings of the terms' size
        assert_close(rm, ref_rm, 4 * EPS * (np.abs(rm) + np.abs(mean)), 0, f"running_mean count={count}")
        assert_close(rv, ref_rv, 4 * EPS * (np.abs(rv) + 2 * np.abs(var)), 0, f"running_var count={count}")


@settings(max_examples=8, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), version=st.sampled_from(VERSIONS))
def test_deterministic(shape, seed, version):
    """Running forward and backward twice gives bitwise-identical results (fixed-order
    reductions, no atomics): the property a reproducible training run rests on."""
    x, dy, gamma, beta = draw(shape, seed, 0.3, 2.0)
    c = shape[1]
    runs = []
    for _ in range(2):
        y, mean, var = nan_like(shape), nan_like(c), nan_like(c)
        dx, dgamma, dbeta = nan_like(shape), nan_like(c), nan_like(c)
        bn.forward_train(x, gamma, beta, y, mean, var, 1e-5, version)
        bn.backward(dy, x, gamma, mean, var, dx, dgamma, dbeta, 1e-5, True, version)
        runs.append(b"".join(a.tobytes() for a in (y, mean, var, dx, dgamma, dbeta)))
    assert runs[0] == runs[1]
