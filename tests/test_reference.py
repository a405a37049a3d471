"""The NumPy reference ops are right: the proof everything else is checked against.

Every backward in reference.py is compared with float64 central finite differences of
its forward. To test a Jacobian-vector product without forming the Jacobian, each check
differentiates a random linear functional of the output, L(x) = sum(R * f(x)): its
gradient is exactly what the op's backward returns when handed dy = R.

Forward passes are pinned down independently: conv2d by a direct loop over its
definition, transposed convolution as conv2d's adjoint, batchnorm's running statistics and
Adam by numbers computed by hand from PyTorch's documented rules, adaptive max-pool by a
loop over PyTorch's bin formula.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference as ref
from dcgan_cuda.optim import Adam


# ------------------------------------------------------------------------------ helpers
def numerical_gradient(f, x, eps):
    """d f / d x by central differences, perturbing one element of x at a time.

    f maps an array shaped like x to a scalar. x is copied to float64 first, so the
    differences are taken in double precision whatever dtype the caller holds.
    """
    work = np.array(x, dtype=np.float64)  # private copy: perturbed in place, then restored
    grad = np.empty_like(work)
    flat, flat_grad = work.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = float(f(work))
        flat[i] = original - eps
        down = float(f(work))
        flat[i] = original
        flat_grad[i] = (up - down) / (2 * eps)
    return grad


def pairing(R):
    """The linear functional y -> sum(R * y) whose gradient w.r.t. y is R."""
    return lambda y: float(np.sum(R * y))


def assert_close(actual, expected, rtol, atol):
    """|actual - expected| <= atol + rtol * |expected| elementwise, with the worst offender shown."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual.astype(np.float64) - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert np.all(err <= bound), (f"max excess at {worst}: got {actual[worst]}, "
                                  f"expected {expected[worst]}, |diff| {err[worst]:.3g}")


def away_from_zero(x, margin=0.1):
    """Move every element at least `margin` away from 0 (ReLU-like kinks), keeping its sign."""
    sign = np.where(x >= 0, 1.0, -1.0)
    return sign * (np.abs(x) + margin)


# Tolerances for the gradient checks, all in float64.
# * Ops that are linear in the differentiated argument (conv, transposed conv, linear,
#   bias, max-pool routing) have no truncation error in a central difference, whatever
#   eps; only rounding remains, about 1e-16 * |L| / eps with |L| <= ~1e3 for these tiny
#   shapes. eps = 1e-3 makes that ~1e-10.
LINEAR_EPS, LINEAR_RTOL, LINEAR_ATOL = 1e-3, 1e-8, 1e-8
# * Smooth non-linear ops: truncation ~ eps^2 * |f'''| ~ 1e-12 and rounding ~ 1e-16/eps
#   ~ 1e-10 with eps = 1e-6. 1e-6 relative (plus 1e-7 absolute for near-zero entries)
#   leaves two orders of margin and still fails on any wrong term of a derivative.
SMOOTH_EPS, SMOOTH_RTOL, SMOOTH_ATOL = 1e-6, 1e-6, 1e-7

seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------ convolution geometry
@st.composite
def conv_geometry(draw, max_size=9):
    """A conv2d problem that fits: per-axis kernel 1-5, stride 1-3, padding 0-2 below the
    kernel, and spatial sizes (odd ones included) with the kernel inside the padded input."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, min(2, kh - 1))), draw(st.integers(0, min(2, kw - 1)))
    h = draw(st.integers(max(1, kh - 2 * ph), max_size))
    w = draw(st.integers(max(1, kw - 2 * pw), max_size))
    return dict(n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)), cout=draw(st.integers(1, 4)),
                h=h, w=w, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), seed=draw(seeds))


@st.composite
def conv_transpose_geometry(draw):
    """A conv_transpose2d problem: as conv_geometry plus output_padding < stride, and a
    non-empty output."""
    g = draw(conv_geometry(max_size=6))
    (sh, sw) = g["stride"]
    g["output_padding"] = (draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1)))
    out = [ref.conv_transpose2d_output_size(size, k, s, p, op) for size, k, s, p, op in
           zip((g["h"], g["w"]), g["kernel"], g["stride"], g["padding"], g["output_padding"])]
    assume(min(out) >= 1)
    g["out_hw"] = tuple(out)
    return g


def conv_out_hw(g):
    return tuple(ref.conv2d_output_size(size, k, s, p) for size, k, s, p in
                 zip((g["h"], g["w"]), g["kernel"], g["stride"], g["padding"]))


def conv2d_by_definition(x, w, b, stride, padding):
    """y[n,o,p,q] = b[o] + sum_{c,i,j} w[o,c,i,j] * x[n, c, p*sh+i-ph, q*sw+j-pw], zero outside.

    Straight from the definition, one output at a time, accumulated in float64."""
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = ref.pair(stride), ref.pair(padding)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, cout, ho, wo))
    for b_ in range(n):
        for o in range(cout):
            for p in range(ho):
                for q in range(wo):
                    total = 0.0 if b is None else float(b[o])
                    for c in range(cin):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = p * sh + i - ph, q * sw + j - pw
                                if 0 <= row < h and 0 <= col < wd:
                                    total += float(w[o, c, i, j]) * float(x[b_, c, row, col])
                    y[b_, o, p, q] = total
    return y


# ------------------------------------------------------------------------- conv2d
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [False, True])
@settings(max_examples=20)
@given(g=conv_geometry(max_size=6))
def test_conv2d_forward_equals_the_definition(g, dtype, with_bias):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["cin"], g["h"], g["w"])).astype(dtype)
    w = rng.standard_normal((g["cout"], g["cin"]) + g["kernel"]).astype(dtype)
    b = rng.standard_normal(g["cout"]).astype(dtype) if with_bias else None
    y = ref.conv2d_forward(x, w, b, g["stride"], g["padding"])
    assert y.dtype == dtype
    # float32: a sum of K <= 4*25 products of N(0,1) numbers, |y| ~ sqrt(K); rounding
    # grows like sqrt(K)*eps32*|terms|, so 1e-5 absolute is generous but still ~1000x below
    # one wrong term. float64: BLAS order vs loop order only.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(y, conv2d_by_definition(x, w, b, g["stride"], g["padding"]), rtol=tol, atol=tol)


@settings(max_examples=80)
@given(g=conv_geometry())
def test_col2im_zeroes_all_it_does_not_assign(g):
    """_col2im starts from np.empty and zeroes only what its first tap block leaves
    uncovered. With np.empty poisoned to NaN any cell missed by that bookkeeping shows up;
    the result must equal the adjoint written out tap by tap onto a zeroed image."""
    rng = np.random.default_rng(g["seed"])
    (kh, kw), (sh, sw), (ph, pw) = g["kernel"], g["stride"], g["padding"]
    ho, wo = conv_out_hw(g)
    n, c, h, w = g["n"], g["cin"], g["h"], g["w"]
    cols = rng.standard_normal((n * ho * wo, kh * kw * c))
    expected = np.zeros((n, h + 2 * ph + sh * kh, w + 2 * pw + sw * kw, c))
    taps = cols.reshape(n, ho, wo, kh, kw, c)
    for i in range(kh):
        for j in range(kw):
            expected[:, i:i + sh * ho:sh, j:j + sw * wo:sw] += taps[:, :, :, i, j]
    expected = expected[:, ph:ph + h, pw:pw + w].transpose(0, 3, 1, 2)
    real_empty = np.empty
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ref.np, "empty", lambda *a, **k: np.full_like(real_empty(*a, **k), np.nan))
        got = ref._col2im(cols, (n, c, h, w), (kh, kw), (sh, sw), (ph, pw))
    assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_forward_on_a_hand_computed_case():
    # 1 channel 3x3 image, 2x2 all-ones kernel, stride 2, padding 1, bias 0.5: every
    # output is 0.5 plus the sum of the image pixels under the kernel.
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    y = ref.conv2d_forward(x, w, np.array([0.5]), stride=2, padding=1)
    # padded grid rows/cols start at -1; with stride 2 the windows start at -1 and 1
    assert_close(y[0, 0], np.array([[1, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]]) + 0.5, 0, 0)


@settings(max_examples=150)
@given(g=conv_geometry())
def test_conv2d_backward_matches_finite_differences(g):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["cin"], g["h"], g["w"]))
    w = rng.standard_normal((g["cout"], g["cin"]) + g["kernel"])
    b = rng.standard_normal(g["cout"])
    s, p = g["stride"], g["padding"]
    R = rng.standard_normal((g["n"], g["cout"]) + conv_out_hw(g))
    L = pairing(R)

    dx = ref.conv2d_backward_data(R, w, x.shape, s, p)
    dw = ref.conv2d_backward_weight(x, R, w.shape, s, p)
    db = ref.bias_backward(R)
    tol = dict(rtol=LINEAR_RTOL, atol=LINEAR_ATOL)
    assert_close(dx, numerical_gradient(lambda x_: L(ref.conv2d_forward(x_, w, b, s, p)), x, LINEAR_EPS), **tol)
    assert_close(dw, numerical_gradient(lambda w_: L(ref.conv2d_forward(x, w_, b, s, p)), w, LINEAR_EPS), **tol)
    assert_close(db, numerical_gradient(lambda b_: L(ref.conv2d_forward(x, w, b_, s, p)), b, LINEAR_EPS), **tol)


# --------------------------------------------------------------- transposed convolution
@settings(max_examples=150)
@given(g=conv_transpose_geometry())
def test_conv_transpose2d_backward_matches_finite_differences(g):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["cin"], g["h"], g["w"]))
    w = rng.standard_normal((g["cin"], g["cout"]) + g["kernel"])  # (C_in, C_out, kH, kW)
    b = rng.standard_normal(g["cout"])
    s, p, op = g["stride"], g["padding"], g["output_padding"]

    def forward(x_, w_, b_):
        return ref.conv_transpose2d_forward(x_, w_, b_, s, p, op)

    y = forward(x, w, b)
    assert y.shape == (g["n"], g["cout"]) + g["out_hw"]
    R = rng.standard_normal(y.shape)
    L = pairing(R)
    tol = dict(rtol=LINEAR_RTOL, atol=LINEAR_ATOL)
    assert_close(ref.conv_transpose2d_backward_data(R, w, s, p),
                 numerical_gradient(lambda x_: L(forward(x_, w, b)), x, LINEAR_EPS), **tol)
    assert_close(ref.conv_transpose2d_backward_weight(x, R, w.shape, s, p),
                 numerical_gradient(lambda w_: L(forward(x, w_, b)), w, LINEAR_EPS), **tol)
    assert_close(ref.bias_backward(R),
                 numerical_gradient(lambda b_: L(forward(x, w, b_)), b, LINEAR_EPS), **tol)


def test_conv_transpose2d_output_size_follows_pytorch():
    # (H - 1)*stride - 2*padding + kernel + output_padding, e.g. DCGAN's 4x4/2/1 doubles
    assert ref.conv_transpose2d_output_size(4, 4, 2, 1) == 8
    assert ref.conv_transpose2d_output_size(1, 4, 1, 0) == 4       # G's projection 1 -> 4
    assert ref.conv_transpose2d_output_size(4, 5, 2, 2, 1) == 8    # the paper's 5x5/2/2 + 1
    y = ref.conv_transpose2d_forward(np.ones((1, 2, 4, 4)), np.ones((2, 3, 5, 5)), None, 2, 2, 1)
    assert y.shape == (1, 3, 8, 8)


@settings(max_examples=200)
@given(g=conv_geometry())
def test_conv_duality(g):
    """Transposed conv IS conv2d's adjoint: the forward of one is the backward-data of the
    other, and <conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for every x, y."""
    rng = np.random.default_rng(g["seed"])
    s, p = g["stride"], g["padding"]
    x = rng.standard_normal((g["n"], g["cin"], g["h"], g["w"]))
    w = rng.standard_normal((g["cout"], g["cin"]) + g["kernel"])  # conv2d: cin -> cout
    y = rng.standard_normal((g["n"], g["cout"]) + conv_out_hw(g))
    # the output_padding that makes conv_transpose2d land back on x's size
    op = tuple((size + 2 * pad - k) % stride for size, pad, k, stride in
               zip((g["h"], g["w"]), p, g["kernel"], s))

    # Read as a ConvTranspose2d weight, w is (C_in=cout, C_out=cin, kH, kW): it maps y to x.
    xt = ref.conv_transpose2d_forward(y, w, None, s, p, op)
    assert xt.shape == x.shape
    assert_close(xt, ref.conv2d_backward_data(y, w, x.shape, s, p), rtol=1e-12, atol=1e-12)
    # ... and the transposed conv's backward-data is conv2d's forward with the same weight
    # (its output gradient has the transposed conv's C_out = cin channels, like x).
    assert_close(ref.conv_transpose2d_backward_data(x, w, s, p),
                 ref.conv2d_forward(x, w, None, s, p), rtol=1e-12, atol=1e-12)

    lhs = float(np.sum(ref.conv2d_forward(x, w, None, s, p) * y))
    rhs = float(np.sum(x * xt))
    # two orderings of the same ~1e3 products of N(0,1) numbers in float64
    assert math.isclose(lhs, rhs, rel_tol=1e-10, abs_tol=1e-10)


# ---------------------------------------------------------------------------- linear
@settings(max_examples=40)
@given(n=st.integers(1, 3), fin=st.integers(1, 5), fout=st.integers(1, 5), seed=seeds)
def test_linear_backward_matches_finite_differences(n, fin, fout, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, fin)), rng.standard_normal((fout, fin)), rng.standard_normal(fout)
    R = rng.standard_normal((n, fout))
    L = pairing(R)
    y = ref.linear_forward(x, w, b)
    assert_close(y, x @ w.T + b, rtol=1e-12, atol=1e-12)
    tol = dict(rtol=LINEAR_RTOL, atol=LINEAR_ATOL)
    assert_close(ref.linear_backward_data(R, w),
                 numerical_gradient(lambda x_: L(ref.linear_forward(x_, w, b)), x, LINEAR_EPS), **tol)
    assert_close(ref.linear_backward_weight(x, R),
                 numerical_gradient(lambda w_: L(ref.linear_forward(x, w_, b)), w, LINEAR_EPS), **tol)
    assert_close(ref.bias_backward(R),
                 numerical_gradient(lambda b_: L(ref.linear_forward(x, w, b_)), b, LINEAR_EPS), **tol)


# ------------------------------------------------------------------------- batchnorm
@st.composite
def batchnorm_problem(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h = draw(st.integers(1, 4))
    w = draw(st.integers(1 if n * h > 1 else 2, 4))  # training needs >= 2 values per channel
    rng = np.random.default_rng(draw(seeds))
    x = rng.uniform(-1, 1, (n, c, h, w))
    # One value per channel pushed 3 away from the rest keeps every channel's variance
    # well above 0: with two nearly equal values the invstd (and the third derivative the
    # finite difference trips on) would blow up without saying anything about the code.
    x[0, :, 0, 0] += 3
    gamma, beta = rng.normal(1, 0.5, c), rng.standard_normal(c)
    return x, gamma, beta, rng.standard_normal(x.shape)


@settings(max_examples=60)
@given(problem=batchnorm_problem())
def test_batchnorm_train_backward_matches_finite_differences(problem):
    x, gamma, beta, R = problem
    L = pairing(R)

    def loss(x_=x, g_=gamma, b_=beta):
        return L(ref.batchnorm2d_forward_train(x_, g_, b_)[0])

    _, mean, var = ref.batchnorm2d_forward_train(x, gamma, beta)
    dx, dgamma, dbeta = ref.batchnorm2d_backward(R, x, gamma, mean, var, batch_stats=True)
    tol = dict(rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL)
    assert_close(dx, numerical_gradient(lambda x_: loss(x_=x_), x, SMOOTH_EPS), **tol)
    assert_close(dgamma, numerical_gradient(lambda g_: loss(g_=g_), gamma, SMOOTH_EPS), **tol)
    assert_close(dbeta, numerical_gradient(lambda b_: loss(b_=b_), beta, SMOOTH_EPS), **tol)


@settings(max_examples=40)
@given(problem=batchnorm_problem(), seed=seeds)
def test_batchnorm_eval_backward_matches_finite_differences(problem, seed):
    x, gamma, beta, R = problem
    rng = np.random.default_rng(seed)
    c = x.shape[1]
    running_mean, running_var = rng.standard_normal(c), rng.uniform(0.2, 3.0, c)
    L = pairing(R)

    def loss(x_=x, g_=gamma, b_=beta):
        return L(ref.batchnorm2d_forward_eval(x_, g_, b_, running_mean, running_var))

    # eval mode: backward gets the running statistics as the (constant) mean and var
    dx, dgamma, dbeta = ref.batchnorm2d_backward(R, x, gamma, running_mean, running_var,
                                                 batch_stats=False)
    tol = dict(rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL)
    assert_close(dx, numerical_gradient(lambda x_: loss(x_=x_), x, SMOOTH_EPS), **tol)
    assert_close(dgamma, numerical_gradient(lambda g_: loss(g_=g_), gamma, SMOOTH_EPS), **tol)
    assert_close(dbeta, numerical_gradient(lambda b_: loss(b_=b_), beta, SMOOTH_EPS), **tol)


@settings(max_examples=40)
@given(problem=batchnorm_problem(), slope=st.sampled_from([0.0, 0.2]), training=st.booleans())
def test_batchnorm_with_fused_activation_is_batchnorm_then_the_activation(problem, slope, training):
    """The fused layer (slope 0: ReLU, 0.2: LeakyReLU) equals the two ops one after the other,
    forward and backward, in train and eval mode."""
    x, gamma, beta, R = problem
    c = x.shape[1]
    if training:
        z, mean, var = ref.batchnorm2d_forward_train(x, gamma, beta)
        y, mean_f, var_f = ref.batchnorm2d_forward_train(x, gamma, beta, slope=slope)
        np.testing.assert_array_equal(mean_f, mean)
        np.testing.assert_array_equal(var_f, var)
    else:
        mean, var = np.linspace(-1, 1, c), np.linspace(0.5, 2, c)
        z = ref.batchnorm2d_forward_eval(x, gamma, beta, mean, var)
        y = ref.batchnorm2d_forward_eval(x, gamma, beta, mean, var, slope=slope)
    assume(np.min(np.abs(z)) > 1e-9)  # at z = 0 the two sides may pick different one-sided slopes
    np.testing.assert_array_equal(y, ref.leaky_relu_forward(z, slope))
    composed = ref.batchnorm2d_backward(ref.leaky_relu_backward(R, z, slope), x, gamma, mean, var,
                                        batch_stats=training)
    fused = ref.batchnorm2d_backward(R, x, gamma, mean, var, batch_stats=training, beta=beta,
                                     slope=slope)
    for got, want in zip(fused, composed):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=30)
@given(problem=batchnorm_problem(), slope=st.sampled_from([0.0, 0.2]))
def test_batchnorm_with_fused_activation_backward_matches_finite_differences(problem, slope):
    x, gamma, beta, R = problem
    z, mean, var = ref.batchnorm2d_forward_train(x, gamma, beta)
    # Away from the kink: a difference step that crosses z = 0 measures neither slope.
    assume(np.min(np.abs(z)) > 1e-3)
    L = pairing(R)

    def loss(x_=x, g_=gamma, b_=beta):
        return L(ref.batchnorm2d_forward_train(x_, g_, b_, slope=slope)[0])

    dx, dgamma, dbeta = ref.batchnorm2d_backward(R, x, gamma, mean, var, beta=beta, slope=slope)
    tol = dict(rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL)
    assert_close(dx, numerical_gradient(lambda x_: loss(x_=x_), x, SMOOTH_EPS), **tol)
    assert_close(dgamma, numerical_gradient(lambda g_: loss(g_=g_), gamma, SMOOTH_EPS), **tol)
    assert_close(dbeta, numerical_gradient(lambda b_: loss(b_=b_), beta, SMOOTH_EPS), **tol)


def test_batchnorm_with_fused_activation_needs_beta_for_its_backward():
    x = np.ones((2, 1, 1, 1))
    with pytest.raises(ValueError, match="needs beta"):
        ref.batchnorm2d_backward(x, x, np.ones(1), np.ones(1), np.ones(1), slope=0.0)


def test_batchnorm_train_forward_normalises_with_the_biased_batch_variance():
    x = np.array([1.0, 2.0, 3.0, 6.0]).reshape(2, 1, 1, 2)  # one channel: mean 3, var 14/4
    y, mean, var = ref.batchnorm2d_forward_train(x, np.array([2.0]), np.array([0.5]), eps=1e-5)
    assert_close(mean, [3.0], 0, 1e-15)
    assert_close(var, [3.5], 0, 1e-15)
    expected = 2.0 * (np.array([1, 2, 3, 6.0]) - 3.0) / np.sqrt(3.5 + 1e-5) + 0.5
    assert_close(y.reshape(-1), expected, rtol=1e-14, atol=0)


def test_batchnorm_running_statistics_follow_pytorch():
    """running = (1 - momentum)*running + momentum*batch_stat, momentum 0.1, and the
    variance folded in is the unbiased one (n/(n-1) times the biased), as torch.nn.BatchNorm2d."""
    # Two channels over a (2, 2, 1, 2) batch: 4 values per channel.
    #   channel 0: 1, 2, 3, 6 -> mean 3, biased var 14/4 = 3.5, unbiased 14/3
    #   channel 1: 0, 0, 4, 4 -> mean 2, biased var 16/4 = 4,   unbiased 16/3
    x = np.array([[[[1, 2]], [[0, 0]]],
                  [[[3, 6]], [[4, 4]]]], dtype=np.float32)
    _, mean, var = ref.batchnorm2d_forward_train(x, np.ones(2, np.float32), np.zeros(2, np.float32))
    running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    ref.batchnorm2d_update_running(running_mean, running_var, mean, var, count=4, momentum=0.1)
    # 0.9*0 + 0.1*mean ; 0.9*1 + 0.1*unbiased
    assert_close(running_mean, [0.3, 0.2], rtol=1e-6, atol=0)
    assert_close(running_var, [0.9 + 0.1 * 14 / 3, 0.9 + 0.1 * 16 / 3], rtol=1e-6, atol=0)
    # a second batch compounds: 0.9*previous + 0.1*new
    ref.batchnorm2d_update_running(running_mean, running_var, np.array([1.0, -1.0]),
                                   np.array([2.0, 0.5]), count=4, momentum=0.1)
    assert_close(running_mean, [0.9 * 0.3 + 0.1, 0.9 * 0.2 - 0.1], rtol=1e-6, atol=0)
    assert_close(running_var, [0.9 * (0.9 + 1.4 / 3) + 0.1 * 8 / 3,
                               0.9 * (0.9 + 1.6 / 3) + 0.1 * 2 / 3], rtol=1e-6, atol=0)

    # eval mode normalises with the running statistics, not the batch's
    gamma, beta = np.array([2.0, 0.5], np.float32), np.array([0.1, -0.2], np.float32)
    y = ref.batchnorm2d_forward_eval(x, gamma, beta, running_mean, running_var)
    assert y.dtype == np.float32
    rm, rv = running_mean.astype(np.float64), running_var.astype(np.float64)
    expected = ((x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
                * gamma[None, :, None, None] + beta[None, :, None, None])
    assert_close(y, expected, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------- activations
def activation_input(shape, seed):
    # Away from 0 by 0.1 >> eps: no finite difference straddles the ReLU/LeakyReLU kink.
    return away_from_zero(np.random.default_rng(seed).standard_normal(shape) * 2)


small_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@settings(max_examples=15)
@given(shape=small_shapes, seed=seeds)
def test_relu_backward_matches_finite_differences(shape, seed):
    x = activation_input(shape, seed)
    R = np.random.default_rng(seed + 1).standard_normal(shape)
    assert_close(ref.relu_forward(x), np.where(x > 0, x, 0), 0, 0)
    # piecewise linear away from the kink: exact differences
    assert_close(ref.relu_backward(R, x),
                 numerical_gradient(lambda x_: pairing(R)(ref.relu_forward(x_)), x, LINEAR_EPS),
                 rtol=LINEAR_RTOL, atol=LINEAR_ATOL)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 0.5, 1.5])
@settings(max_examples=10)
@given(shape=small_shapes, seed=seeds)
def test_leaky_relu_backward_matches_finite_differences(shape, seed, slope):
    x = activation_input(shape, seed)
    R = np.random.default_rng(seed + 1).standard_normal(shape)
    assert_close(ref.leaky_relu_forward(x, slope), np.where(x > 0, x, slope * x), 1e-15, 0)
    assert_close(ref.leaky_relu_backward(R, x, slope),
                 numerical_gradient(lambda x_: pairing(R)(ref.leaky_relu_forward(x_, slope)), x, LINEAR_EPS),
                 rtol=LINEAR_RTOL, atol=LINEAR_ATOL)


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.3])
def test_leaky_relu_float32_is_exact(slope):
    # The slope mask is built as 1*(1-s) + s in float32; the result for x > 0 must still be
    # x exactly and slope*x exactly (as PyTorch), not one ulp off.
    x = np.linspace(-10, 10, 2001, dtype=np.float32)
    x = x[x != 0]
    expected = np.where(x > 0, x, np.float32(slope) * x)
    np.testing.assert_array_equal(ref.leaky_relu_forward(x, slope), expected)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
@settings(max_examples=15)
@given(shape=small_shapes, seed=seeds)
def test_tanh_and_sigmoid_backward_match_finite_differences(shape, seed, name):
    forward, backward = getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward")
    rng = np.random.default_rng(seed)
    x, R = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    y = forward(x)
    assert_close(y, np.tanh(x) if name == "tanh" else 1 / (1 + np.exp(-x)), 1e-14, 1e-15)
    # both backwards are written in terms of the output y
    assert_close(backward(R, y), numerical_gradient(lambda x_: pairing(R)(forward(x_)), x, SMOOTH_EPS),
                 rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL)


# ------------------------------------------------------------------------------ losses
def bce_by_definition(z, t):
    """mean -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], only for moderate z.

    1 - sigmoid(z) is taken as sigmoid(-z): subtracted from 1, a sigmoid near 1 loses the
    digits the 1e-12 comparison needs (z = 13.9: 1 - p ~ 1e-6 with 1e-10 relative error)."""
    p, one_minus_p = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z))
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(one_minus_p))))


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3, "array", "flat array"])
@settings(max_examples=15)
@given(shape=small_shapes, seed=seeds, dloss=st.sampled_from([1.0, 2.5]))
def test_bce_with_logits_matches_definition_and_finite_differences(shape, seed, dloss, target):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) * 3
    if target == "array":          # one target per logit, shaped like the logits
        t = rng.uniform(0, 1, shape)
    elif target == "flat array":   # or flattened, as the loss sees the logits
        t = rng.uniform(0, 1, z.size)
    else:
        t = target
    loss = ref.bce_with_logits_forward(z, t)
    assert loss.shape == () and loss.dtype == z.dtype
    assert math.isclose(float(loss), bce_by_definition(z.reshape(-1), np.reshape(t, -1)),
                        rel_tol=1e-12, abs_tol=1e-12)
    # dloss scales the gradient: the loss is one upstream consumer's input
    grad = ref.bce_with_logits_backward(z, t, dloss)
    assert grad.shape == z.shape
    assert_close(grad, numerical_gradient(lambda z_: dloss * float(ref.bce_with_logits_forward(z_, t)),
                                          z, SMOOTH_EPS), rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL)


@settings(max_examples=20)
@given(n=st.integers(1, 4), k=st.integers(2, 6), seed=seeds, dloss=st.sampled_from([1.0, 0.5]))
def test_softmax_cross_entropy_matches_definition_and_finite_differences(n, k, seed, dloss):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)) * 3 + 50  # a common offset tests the max-shift
    labels = rng.integers(0, k, n)
    p = np.exp(logits - 50)
    p /= p.sum(axis=1, keepdims=True)
    loss = ref.softmax_cross_entropy_forward(logits, labels)
    assert math.isclose(float(loss), float(np.mean(-np.log(p[np.arange(n), labels]))), rel_tol=1e-12)
    assert_close(ref.softmax_cross_entropy_backward(logits, labels, dloss),
                 numerical_gradient(lambda z_: dloss * float(ref.softmax_cross_entropy_forward(z_, labels)),
                                    logits, SMOOTH_EPS), rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL)


# numpy ignores underflow by default, and exp(-|z|) underflowing to 0 (or to a float32
# denormal) for huge |z| is exactly the saturated value we want. Overflow, inf - inf, 0/0
# and log(0) are the failures a naive formula shows, so those raise here.
STRICT = dict(over="raise", invalid="raise", divide="raise", under="ignore")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.filterwarnings("error")  # and no RuntimeWarning under numpy's default errstate
def test_sigmoid_and_bce_are_finite_for_huge_logits(dtype):
    z = np.array([-1e4, -100.0, 100.0, 1e4], dtype=dtype)
    with np.errstate(**STRICT):
        y = ref.sigmoid_forward(z)
        assert y.dtype == dtype
        # sigmoid(-100) = e^-100 / (1 + e^-100) ~ 3.7e-44: a float32 denormal, 1e-44 spacing
        assert_close(y, [0.0, math.exp(-100), 1.0, 1.0], rtol=0, atol=1e-44)
        assert np.all(ref.sigmoid_backward(np.ones_like(y), y) >= 0)
        for t, expected in [(0.0, [0.0, 0.0, 100.0, 1e4]),   # softplus(z)
                            (1.0, [1e4, 100.0, 0.0, 0.0]),   # softplus(-z)
                            (0.3, [0.3e4, 30.0, 70.0, 0.7e4])]:
            for zi, ei in zip(z, expected):
                loss = ref.bce_with_logits_forward(zi.reshape(1), t)
                assert np.isfinite(loss) and loss.dtype == dtype
                # the log1p(e^-100) ~ 3.7e-44 term is below float precision of 100
                assert math.isclose(float(loss), ei, rel_tol=1e-6, abs_tol=1e-30)
            grad = ref.bce_with_logits_backward(z, t)
            assert_close(grad, (np.array([0.0, math.exp(-100), 1.0, 1.0]) - t) / 4, rtol=1e-6, atol=1e-30)
        mean = ref.bce_with_logits_forward(z, 0.3)
        assert math.isclose(float(mean), (0.3e4 + 30 + 70 + 0.7e4) / 4, rel_tol=1e-6)


# ---------------------------------------------------------------- adaptive max-pool
def adaptive_max_pool_by_loops(x, oh, ow):
    """PyTorch's bins as written in its kernels: start = floor(i*H/oh), end = ceil((i+1)*H/oh)."""
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        h0, h1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
        for j in range(ow):
            w0, w1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            for b in range(n):
                for ch in range(c):
                    y[b, ch, i, j] = max(x[b, ch, r, s] for r in range(h0, h1) for s in range(w0, w1))
    return y


def distinct_values(shape, seed):
    """A random permutation of 0, 0.1, 0.2, ...: every maximum unique and 0.1 >> eps from
    the runner-up, so no finite-difference step can swap a bin's argmax."""
    size = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(size).reshape(shape) * 0.1


@pytest.mark.parametrize("size, out", [(5, 4), (3, 4), (7, 4), (4, 4), (6, 3), (1, 3), (9, 2)])
def test_adaptive_pool_bounds_follow_pytorch(size, out):
    expected = [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]
    bounds = ref.adaptive_pool_bounds(size, out)
    assert bounds == expected
    # the bins cover the whole axis; when out does not divide size they overlap
    assert bounds[0][0] == 0 and bounds[-1][1] == size


@pytest.mark.parametrize("in_hw, out_hw", [((5, 7), (4, 4)), ((3, 3), (4, 4)), ((3, 5), (4, 2)),
                                           ((4, 4), (2, 2)), ((1, 1), (2, 3))])
def test_adaptive_max_pool_matches_loops_and_finite_differences(in_hw, out_hw):
    x = distinct_values((2, 3) + in_hw, seed=sum(in_hw + out_hw))
    y, argmax = ref.adaptive_max_pool2d_forward(x, out_hw)
    assert_close(y, adaptive_max_pool_by_loops(x, *out_hw), 0, 0)
    R = np.random.default_rng(0).standard_normal(y.shape)
    dx = ref.adaptive_max_pool2d_backward(R, argmax, x.shape)
    # piecewise linear and no argmax changes within eps: exact differences. Where bins
    # overlap (5 -> 4, 3 -> 4) one pixel wins several bins and must receive their sum.
    assert_close(dx, numerical_gradient(lambda x_: pairing(R)(ref.adaptive_max_pool2d_forward(x_, out_hw)[0]),
                                        x, LINEAR_EPS), rtol=LINEAR_RTOL, atol=LINEAR_ATOL)


@settings(max_examples=60)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.integers(1, 6), ow=st.integers(1, 6), seed=seeds)
def test_adaptive_max_pool_property(n, c, h, w, oh, ow, seed):
    x = distinct_values((n, c, h, w), seed)
    y, argmax = ref.adaptive_max_pool2d_forward(x, (oh, ow))
    assert_close(y, adaptive_max_pool_by_loops(x, oh, ow), 0, 0)
    # the argmax points at the winning pixel
    assert_close(np.take_along_axis(x.reshape(n, c, -1), argmax.reshape(n, c, -1), axis=2),
                 y.reshape(n, c, -1), 0, 0)
    R = np.random.default_rng(seed).standard_normal(y.shape)
    dx = ref.adaptive_max_pool2d_backward(R, argmax, x.shape)
    assert_close(dx, numerical_gradient(lambda x_: pairing(R)(ref.adaptive_max_pool2d_forward(x_, (oh, ow))[0]),
                                        x, LINEAR_EPS), rtol=LINEAR_RTOL, atol=LINEAR_ATOL)


# ------------------------------------------------------------------------------ adam
def adam_by_the_documented_formula(p, grads, lr, beta1, beta2, eps, weight_decay):
    """torch.optim.Adam's documented algorithm, in Python float64, one element at a time:
        g_t = grad + wd*p;  m_t = b1*m + (1-b1)*g_t;  v_t = b2*v + (1-b2)*g_t^2
        m_hat = m_t/(1-b1^t);  v_hat = v_t/(1-b2^t);  p -= lr * m_hat/(sqrt(v_hat) + eps)
    Returns the parameters after each step."""
    p, m, v = [float(a) for a in p], [0.0] * len(p), [0.0] * len(p)
    history = []
    for t, grad in enumerate(grads, start=1):
        for i, g in enumerate(grad):
            g = float(g) + weight_decay * p[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
            p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
        history.append(list(p))
    return history


ADAM_P0 = [1.0, -2.0, 0.5, 0.0]
ADAM_GRADS = [[0.1, -0.3, 2.0, 1e-3],      # step 1
              [0.2, 0.1, -1.0, 1e-3],      # step 2
              [-0.05, 0.4, 0.5, -2e-3]]    # step 3


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_step_follows_pytorch_formula(weight_decay):
    hp = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay)
    expected = adam_by_the_documented_formula(ADAM_P0, ADAM_GRADS, **hp)
    param = np.array(ADAM_P0, np.float32)
    m, v = np.zeros_like(param), np.zeros_like(param)
    for step, grad in enumerate(ADAM_GRADS, start=1):
        ref.adam_step(param, np.array(grad, np.float32), m, v, step, **hp)
        assert param.dtype == m.dtype == v.dtype == np.float32
        # float32 parameters of size ~1 hold ~7 digits; the updates (~lr) are exact to a
        # few ulps of the update, so 1e-6 absolute on the parameter is a float32 bound.
        assert_close(param, expected[step - 1], rtol=0, atol=1e-6)
        if step == 1 and weight_decay == 0.0:
            # bias correction makes the first step exactly lr * g/(|g| + eps) ~ lr * sign(g)
            assert_close(param, np.array(ADAM_P0) - 0.01 * np.sign(ADAM_GRADS[0]), rtol=0, atol=1e-6)
    # the moments are the uncorrected running averages
    g = [np.array(gr) + 0.0 for gr in ADAM_GRADS]
    if weight_decay == 0.0:
        assert_close(m, 0.1 * (0.81 * g[0] + 0.9 * g[1] + g[2]), rtol=1e-5, atol=1e-9)
        assert_close(v, 0.001 * (0.999**2 * g[0]**2 + 0.999 * g[1]**2 + g[2]**2), rtol=1e-5, atol=1e-12)


def test_adam_weight_decay_changes_the_step():
    # With a zero gradient only the L2 term acts: g = wd*p, and step 1 moves p by -lr*sign(p).
    param = np.array([2.0, -3.0], np.float32)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref.adam_step(param, np.zeros(2, np.float32), m, v, 1, lr=0.1, weight_decay=0.5)
    assert_close(param, [1.9, -2.9], rtol=0, atol=1e-6)


def test_adam_optimizer_counts_steps_from_one_and_skips_missing_grads():
    from dcgan_cuda.autograd import Tensor
    a = Tensor(np.array(ADAM_P0, np.float32), requires_grad=True)
    b = Tensor(np.array([5.0], np.float32), requires_grad=True)
    opt = Adam([a, b], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    expected = adam_by_the_documented_formula(ADAM_P0, ADAM_GRADS, 0.01, 0.9, 0.999, 1e-8, 0.0)
    for step, grad in enumerate(ADAM_GRADS, start=1):
        a.grad, b.grad = np.array(grad, np.float32), None
        opt.step()
        assert opt.step_count == step
        assert_close(a.data, expected[step - 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(b.data, [5.0])  # never had a gradient: untouched


# ---------------------------------------------------------------- dtype preservation
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_keeps_its_dtype(dtype):
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, w, b, wt = r(2, 3, 5, 5), r(4, 3, 3, 3), r(4), r(3, 4, 3, 3)
    y = ref.conv2d_forward(x, w, b, 2, 1)
    outs = [y, ref.conv2d_backward_data(y, w, x.shape, 2, 1), ref.conv2d_backward_weight(x, y, w.shape, 2, 1),
            ref.bias_backward(y), ref.conv_transpose2d_forward(x, wt, b, 2, 1, 1),
            ref.conv_transpose2d_backward_data(y, wt, 2, 1),
            ref.linear_forward(r(2, 3), r(4, 3), r(4)), ref.linear_backward_data(r(2, 4), r(4, 3)),
            ref.linear_backward_weight(r(2, 3), r(2, 4))]
    g3 = r(3)
    yb, mean, var = ref.batchnorm2d_forward_train(x, g3, r(3))
    outs += [yb, *ref.batchnorm2d_backward(x, x, g3, mean, var),
             *ref.batchnorm2d_backward(x, x, g3, mean, var, batch_stats=False),
             ref.batchnorm2d_forward_eval(x, g3, r(3), mean, var)]
    for name in ("relu", "tanh", "sigmoid"):
        outs += [getattr(ref, f"{name}_forward")(x), getattr(ref, f"{name}_backward")(x, x)]
    outs += [ref.leaky_relu_forward(x), ref.leaky_relu_backward(x, x),
             ref.bce_with_logits_forward(x, 0.3), ref.bce_with_logits_backward(x, 0.3),
             ref.softmax_cross_entropy_forward(r(2, 5), np.array([0, 4])),
             ref.softmax_cross_entropy_backward(r(2, 5), np.array([0, 4])),
             ref.adaptive_max_pool2d_forward(x, 3)[0]]
    for i, out in enumerate(outs):
        assert out.dtype == dtype, f"output #{i} is {out.dtype}"


# ------------------------------------------------ cross-check against PyTorch, if present
def test_reference_forwards_match_torch_functional():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 6))
    w, b = rng.standard_normal((4, 3, 3, 5)), rng.standard_normal(4)
    wt = rng.standard_normal((3, 2, 5, 3))
    T = torch.from_numpy
    # float64 both sides: only summation order differs
    assert_close(ref.conv2d_forward(x, w, b, (2, 1), (1, 2)),
                 F.conv2d(T(x), T(w), T(b), stride=(2, 1), padding=(1, 2)).numpy(), 1e-12, 1e-12)
    assert_close(ref.conv_transpose2d_forward(x, wt, b[:2], (3, 2), (2, 1), (1, 1)),
                 F.conv_transpose2d(T(x), T(wt), T(b[:2]), stride=(3, 2), padding=(2, 1),
                                    output_padding=(1, 1)).numpy(), 1e-12, 1e-12)
    g, beta = rng.standard_normal(3), rng.standard_normal(3)
    assert_close(ref.batchnorm2d_forward_train(x, g, beta)[0],
                 F.batch_norm(T(x), None, None, T(g), T(beta), training=True).numpy(), 1e-10, 1e-10)
    xd = distinct_values((2, 3, 5, 7), 3)
    assert_close(ref.adaptive_max_pool2d_forward(xd, (4, 4))[0],
                 F.adaptive_max_pool2d(T(xd), (4, 4)).numpy(), 0, 0)
    assert_close(ref.adaptive_max_pool2d_forward(xd, (7, 9))[0],
                 F.adaptive_max_pool2d(T(xd), (7, 9)).numpy(), 0, 0)
