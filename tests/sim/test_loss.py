"""loss kernels (BCE on logits, softmax cross-entropy) under the simulator vs the reference
(run in float64)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import loss as ls
from dcgan_cuda.kernels import reduction as red

from .conftest import assert_close, nan_like

EPS = float(np.finfo(np.float32).eps)
VERSIONS = sorted(ls.VERSIONS)
# N = 1, N below, at and above one block (the simulator's block is small: red.THREADS = 32),
# and a few blocks' worth.
SIZES = st.sampled_from([1, 2, red.THREADS - 1, red.THREADS, red.THREADS + 1, 100, 300])


def mean_tolerance(per_item):
    """The mean of N float32 terms: each term carries a few roundings (exp, log1p: ~2 ulp;
    max - z*t: 2), then the sum: a thread's ceil(N/THREADS) additions and log2(THREADS) tree
    levels, each <= eps of the running sum, bounded by sum|terms|. In float64, |per_item|."""
    n = per_item.size
    depth = -(-n // red.THREADS) + int(np.log2(red.THREADS)) + 4
    return depth * EPS * np.abs(per_item).mean()


def bce_items(z, t):
    z = z.astype(np.float64)
    return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))


@settings(max_examples=60, deadline=None)
@given(n=SIZES, seed=st.integers(0, 2**16), spread=st.sampled_from([0.1, 3.0, 30.0]),
       target=st.sampled_from([0.0, 1.0, 0.3, 0.9]), dloss=st.sampled_from([1.0, -0.5, 3.0]),
       version=st.sampled_from(VERSIONS))
def test_bce_matches_reference(n, seed, spread, target, dloss, version):
    z = (spread * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    loss, dz = nan_like(1), nan_like(n)
    ls.bce_with_logits_forward(z, target, loss, version)
    ref = reference.bce_with_logits_forward(z.astype(np.float64), target)
    assert_close(loss, ref.reshape(1), mean_tolerance(bce_items(z, target)), 0, "bce forward")
    ls.bce_with_logits_backward(z, target, np.array([dloss], np.float32), dz, version)
    # (sigmoid - t) * (dloss/n): exp, a division, a subtraction, a product: a few ulp of
    # |sigmoid| + |t|, scaled.
    ref_dz = reference.bce_with_logits_backward(z.astype(np.float64), target, dloss)
    atol = 4 * EPS * (1 + target) * abs(dloss) / n
    assert_close(dz, ref_dz, atol, 0, "bce backward")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
def test_bce_extreme_logits(version, target):
    """|z| = 100 and 1e4: only exp(-|z|) is ever taken, so nothing overflows; the loss is
    max(z,0) - z*t + log1p(tiny) and the gradient saturates to 0 - t or 1 - t."""
    z = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], np.float32)
    loss, dz = nan_like(1), nan_like(z.size)
    ls.bce_with_logits_forward(z, target, loss, version)
    ref = reference.bce_with_logits_forward(z.astype(np.float64), target)
    assert np.isfinite(loss).all()
    assert_close(loss, ref.reshape(1), 0, 4 * EPS, f"bce forward t={target}")
    ls.bce_with_logits_backward(z, target, np.ones(1, np.float32), dz, version)
    ref_dz = reference.bce_with_logits_backward(z.astype(np.float64), target)
    assert_close(dz, ref_dz, 2 * EPS / z.size, 0, f"bce backward t={target}")
    # sigmoid(-1e4) is exactly 0 and sigmoid(1e4) exactly 1 in float32
    t, scale = np.float32(target), np.float32(1) / np.float32(z.size)
    assert dz[0] == (np.float32(0) - t) * scale and dz[-1] == (np.float32(1) - t) * scale


@pytest.mark.parametrize("version", VERSIONS)
def test_bce_single_item(version):
    """N = 1, z = 0: loss = log 2, dz = (0.5 - t)*dloss."""
    z = np.zeros(1, np.float32)
    loss, dz = nan_like(1), nan_like(1)
    ls.bce_with_logits_forward(z, 0.3, loss, version)
    assert_close(loss, [np.log(2)], 0, 2 * EPS, "log 2")
    ls.bce_with_logits_backward(z, 0.3, np.array([2.0], np.float32), dz, version)
    assert_close(dz, [0.4], 0, 2 * EPS, "(0.5 - 0.3) * 2")


def labels_for(rng, n, k):
    """Random labels with both edges, 0 and K - 1, present whenever n allows."""
    labels = rng.integers(0, k, n)
    labels[0] = 0
    labels[-1] = k - 1
    return labels.astype(np.int32)


@settings(max_examples=60, deadline=None)
@given(n=st.sampled_from([1, 2, 7, red.THREADS + 1, 40]), k=st.integers(1, 10), seed=st.integers(0, 2**16),
       spread=st.sampled_from([0.1, 3.0, 50.0]), dloss=st.sampled_from([1.0, -2.0]),
       version=st.sampled_from(VERSIONS))
def test_softmax_cross_entropy_matches_reference(n, k, seed, spread, dloss, version):
    rng = np.random.default_rng(seed)
    logits = (spread * rng.standard_normal((n, k))).astype(np.float32)
    labels = labels_for(rng, n, k)
    loss, dlogits = nan_like(1), nan_like((n, k))
    ls.softmax_cross_entropy_forward(logits, labels, loss, version)
    z = logits.astype(np.float64)
    ref = reference.softmax_cross_entropy_forward(z, labels)
    # Each row's term: max, K exps summed (K roundings of a sum <= K), a log, two
    # subtractions: ~(K + 4) eps of |log_norm| + |z - max| (both bounded by the row's range + log K).
    shifted = z - z.max(axis=1, keepdims=True)
    row_size = np.log(k) + np.abs(shifted).max(axis=1) + 1
    atol = mean_tolerance(row_size) + (k + 4) * EPS * row_size.mean()
    assert_close(loss, ref.reshape(1), atol, 0, f"softmax ce forward n={n} k={k}")
    ls.softmax_cross_entropy_backward(logits, labels, np.array([dloss], np.float32), dlogits, version)
    ref_d = reference.softmax_cross_entropy_backward(z, labels, dloss)
    # p = exp(z - max)/sum: the sum of K terms errs <= K eps, plus the exp and the division;
    # p - onehot, times dloss/n: errors ~(K + 4) eps of max(p, 1), scaled.
    assert_close(dlogits, ref_d, (k + 4) * EPS * abs(dloss) / n, 0, f"softmax ce backward n={n} k={k}")


@pytest.mark.parametrize("version", VERSIONS)
def test_softmax_cross_entropy_by_hand(version):
    """Row [0, 0]: loss log 2, grad (0.5 - onehot). Row [1000, 0] (label 1): the max is
    subtracted first, so no exp overflows: loss 1000, grad (1, -1). K = 1: loss 0, grad 0."""
    logits = np.array([[0.0, 0.0], [1000.0, 0.0]], np.float32)
    labels = np.array([0, 1], np.int32)
    loss, d = nan_like(1), nan_like((2, 2))
    ls.softmax_cross_entropy_forward(logits, labels, loss, version)
    assert_close(loss, [(np.log(2) + 1000) / 2], 0, 2 * EPS, "loss")
    ls.softmax_cross_entropy_backward(logits, labels, np.ones(1, np.float32), d, version)
    assert_close(d, np.array([[-0.5, 0.5], [1.0, -1.0]]) / 2, 1e-7, 2 * EPS, "grad")
    one = np.array([[3.0], [-7.0], [0.5]], np.float32)
    loss, d = nan_like(1), nan_like((3, 1))
    ls.softmax_cross_entropy_forward(one, np.zeros(3, np.int32), loss, version)
    ls.softmax_cross_entropy_backward(one, np.zeros(3, np.int32), np.ones(1, np.float32), d, version)
    assert loss[0] == 0 and (d == 0).all()


@pytest.mark.parametrize("version", VERSIONS)
def test_softmax_cross_entropy_bad_label_is_nan_not_out_of_bounds(version):
    logits = np.zeros((3, 4), np.float32)
    labels = np.array([0, 4, -1], np.int32)
    loss, d = nan_like(1), np.zeros((3, 4), np.float32)
    ls.softmax_cross_entropy_forward(logits, labels, loss, version)
    ls.softmax_cross_entropy_backward(logits, labels, np.ones(1, np.float32), d, version)
    assert np.isnan(loss[0])
    assert np.isfinite(d[0]).all() and np.isnan(d[1:]).all()


@settings(max_examples=10, deadline=None)
@given(n=SIZES, seed=st.integers(0, 2**16), version=st.sampled_from(VERSIONS))
def test_deterministic(n, seed, version):
    """The same logits give bitwise the same losses on every call (a fixed-order sum)."""
    rng = np.random.default_rng(seed)
    z = (5 * rng.standard_normal(n)).astype(np.float32)
    logits = (5 * rng.standard_normal((n, 10))).astype(np.float32)
    labels = labels_for(rng, n, 10)
    outs = []
    for _ in range(2):
        bce, ce = nan_like(1), nan_like(1)
        ls.bce_with_logits_forward(z, 0.3, bce, version)
        ls.softmax_cross_entropy_forward(logits, labels, ce, version)
        outs.append(bce.tobytes() + ce.tobytes())
    assert outs[0] == outs[1]
