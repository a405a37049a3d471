"""The fused Adam kernel under the simulator vs dcgan_cuda.reference.adam_step."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import adam

VERSIONS = sorted(adam.VERSIONS)

# Odd 1-D sizes (not multiples of the simulator's 32-thread blocks, some larger than its
# whole 4x32-thread grid so the grid-stride loop makes several trips), 2-D dense weights,
# 4-D conv weights.
shapes = st.one_of(st.tuples(st.integers(1, 300)),
                   st.tuples(st.integers(1, 9), st.integers(1, 40)),
                   st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)))


def launch(version, p, g, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """adam_step with the host scalars computed as kernel_backend.adam_step computes them."""
    step_size, bias2_sqrt = adam.host_scalars(step, lr, beta1, beta2)
    assert math.isclose(step_size, lr / (1 - beta1 ** step))
    assert math.isclose(bias2_sqrt, math.sqrt(1 - beta2 ** step))
    adam.adam_step(p, g, m, v, step_size, beta1, beta2, bias2_sqrt, eps, weight_decay, version=version)


def assert_float32_ulps(ours, ref, what, ulps=4):
    """|ours - ref| <= ulps float32 ulps of ref + a floor of a few ulps of 1, elementwise.

    The kernel performs the reference's float32 operations in the reference's order, so
    under the simulator it matches bit for bit; on a GPU the compiler may fuse a multiply
    and an add into one FMA (one rounding instead of two), which moves a result by about an
    ulp per step. The tests run several steps, so allow a few. A mistake in the formula
    (a bias correction, the decay, the order of sqrt and division) moves p by a sizeable
    fraction of its update, ~lr >= 2e-4 with |p| ~ 1 here: hundreds of ulps.
    """
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == np.float32, what
    assert np.isfinite(ours).all(), f"{what}: non-finite values"
    # ulp of the reference values; where m's two terms nearly cancel, the result is tiny
    # while its rounding errors are ulps of the terms (values O(1) here): the floor.
    floor = 8 * np.spacing(np.float32(1.0))
    tol = ulps * np.spacing(np.abs(ref)) + floor
    err = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    assert (err <= tol).all(), f"{what}: max |err| {err.max():.3g} ({(err > tol).sum()} elements off)"


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16),
       weight_decay=st.sampled_from([0.0, 1e-5, 0.1]),
       first_step=st.sampled_from([1, 10, 1000]),
       betas=st.sampled_from([(0.5, 0.999), (0.9, 0.999), (0.0, 0.99)]),
       lr=st.sampled_from([2e-4, 1e-3, 0.1]))
def test_several_steps_match_reference(shape, seed, weight_decay, first_step, betas, lr):
    rng = np.random.default_rng(seed)
    beta1, beta2 = betas
    eps = 1e-8
    p = rng.standard_normal(shape).astype(np.float32)
    if first_step == 1:  # a fresh optimiser: moments start at zero
        m, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    else:  # resumed mid-training: moments of the gradients' size and of its square
        m = rng.standard_normal(shape).astype(np.float32)
        v = rng.random(shape).astype(np.float32)
    grads = [np.random.default_rng(seed + 1 + i).standard_normal(shape).astype(np.float32) for i in range(3)]
    steps = range(first_step, first_step + 3)
    ref_p, ref_m, ref_v = p.copy(), m.copy(), v.copy()
    trajectory = []
    for step, g in zip(steps, grads):
        reference.adam_step(ref_p, g, ref_m, ref_v, step, lr, beta1, beta2, eps, weight_decay)
        trajectory.append((ref_p.copy(), ref_m.copy(), ref_v.copy()))
    for version in VERSIONS:
        ours_p, ours_m, ours_v = p.copy(), m.copy(), v.copy()
        for step, g, want in zip(steps, grads, trajectory):
            g_before = g.copy()
            launch(version, ours_p, g, ours_m, ours_v, step, lr, beta1, beta2, eps, weight_decay)
            np.testing.assert_array_equal(g, g_before, err_msg="grad must only be read")
            for name, got, ref in zip(("param", "exp_avg", "exp_avg_sq"), (ours_p, ours_m, ours_v), want):
                assert_float32_ulps(got, ref, f"v{version} step {step} {name}")


@pytest.mark.parametrize("version", VERSIONS)
def test_first_step_moves_each_weight_by_lr_hand_computed(version):
    # Step 1 from zero moments: m = (1-b1) g', v = (1-b2) g'^2, and the bias corrections
    # divide those factors out again: the update is lr * g'/|g'| (up to eps), whatever g'.
    # lr 0.1, decay 0.125:  p = 2,  g = 0.25: g' = 0.25 + 0.125*2    =  0.5  -> p =  1.9
    #                       p = -4, g = 0.25: g' = 0.25 + 0.125*(-4) = -0.25 -> p = -3.9
    # (the decay outweighs the gradient and flips the direction of the step).
    p = np.array([2.0, -4.0], np.float32)
    g = np.array([0.25, 0.25], np.float32)
    m, v = np.zeros(2, np.float32), np.zeros(2, np.float32)
    launch(version, p, g, m, v, step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.125)
    np.testing.assert_allclose(m, [0.05, -0.025], rtol=1e-6)          # 0.1 * g'
    np.testing.assert_allclose(v, [0.00025, 0.0000625], rtol=1e-6)    # 0.001 * g'^2
    # |update| = 0.1 * 0.5 / (0.5 + 1e-8): 2e-8 relative from eps, below float32 resolution at 2.
    np.testing.assert_allclose(p, [1.9, -3.9], rtol=1e-6)
    # And without decay, a single element.
    p1, g1 = np.array([1.0], np.float32), np.array([0.5], np.float32)
    m1, v1 = np.zeros(1, np.float32), np.zeros(1, np.float32)
    launch(version, p1, g1, m1, v1, step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    np.testing.assert_allclose([p1[0], m1[0], v1[0]], [0.9, 0.05, 0.00025], rtol=1e-6)


@pytest.mark.parametrize("version", VERSIONS)
def test_updates_4d_arrays_in_place(version):
    # The launcher flattens with reshape(-1): it must be a view, or the update is lost.
    rng = np.random.default_rng(3)
    shape = (3, 2, 5, 5)
    p, g = rng.standard_normal((2,) + shape).astype(np.float32)
    m, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    ref_p, ref_m, ref_v = p.copy(), m.copy(), v.copy()
    launch(version, p, g, m, v, 1, 2e-4, 0.5, 0.999, 1e-8, 1e-5)
    reference.adam_step(ref_p, g, ref_m, ref_v, 1, 2e-4, 0.5, 0.999, 1e-8, 1e-5)
    for name, ours, ref in (("param", p, ref_p), ("exp_avg", m, ref_m), ("exp_avg_sq", v, ref_v)):
        assert_float32_ulps(ours, ref, name)
    assert not np.array_equal(p, g)  # sanity: something moved


def test_rejects_mismatched_shapes():
    a, b = np.zeros(4, np.float32), np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        adam.adam_step(a, b, a.copy(), a.copy(), 1e-3, 0.9, 0.999, 0.03, 1e-8, 0.0)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), step=st.sampled_from([1, 7, 1000]))
def test_scalars_in_memory_give_the_same_bits(version, shape, seed, step):
    """The CUDA-graph twin reads step_size and bias2_sqrt from a device array instead of its
    arguments; with the same float32 numbers there it must compute exactly what adam_step does."""
    rng = np.random.default_rng(seed)
    p, g, m = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    v = rng.random(shape).astype(np.float32)
    lr, beta1, beta2, eps, weight_decay = 2e-4, 0.5, 0.999, 1e-8, 1e-5
    step_size, bias2_sqrt = adam.host_scalars(step, lr, beta1, beta2)
    by_argument = [a.copy() for a in (p, m, v)]
    adam.adam_step(by_argument[0], g, by_argument[1], by_argument[2], step_size, beta1, beta2,
                   bias2_sqrt, eps, weight_decay, version=version)
    in_memory = [a.copy() for a in (p, m, v)]
    scalars = np.array([step_size, bias2_sqrt], np.float32)
    adam.adam_step_scalars_in_memory(in_memory[0], g, in_memory[1], in_memory[2], scalars, beta1,
                                     beta2, eps, weight_decay, version=version)
    for name, a, b in zip("pmv", by_argument, in_memory):
        assert a.tobytes() == b.tobytes(), name
    assert (by_argument[0] != p).any()    # it did update
