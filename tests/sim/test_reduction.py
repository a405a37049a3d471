"""reduction kernels (the per-channel sum) under the simulator vs the NumPy reference."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import reduction as red

from .conftest import assert_close, nan_like

EPS = float(np.finfo(np.float32).eps)
VERSIONS = sorted(red.VERSIONS)

shapes_4d = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))
# (N, C): a linear layer's bias gradient; runs of length 1, and N beyond one block's threads.
shapes_2d = st.tuples(st.integers(1, 3 * red.THREADS), st.integers(1, 4))


def sum_depth(m):
    """Longest chain of float32 additions that any one value of a channel's m goes through:
    a thread's sequential sum (ceil(m/THREADS) terms, or fewer in version 2's chunks), the
    log2(threads) levels of the tree (version 4's blocks may be larger), and version 2's
    fixed-order merge of the chunks."""
    return -(-m // red.THREADS) + int(np.log2(max(red.THREADS, red.SHUFFLE_THREADS))) + red.TARGET_BLOCKS + 1


def sum_tolerance(x):
    """Per channel: a float32 sum whose additions form a tree of depth d errs by at most
    d*u*sum|x_i| (u = eps/2, to first order); we allow d*eps*sum|x_i|. For random signs the
    error is typically ~sqrt(d)*u*sqrt(sum x_i^2), far below."""
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    return sum_depth(m) * EPS * np.abs(x.astype(np.float64)).sum(axis=axes)


@settings(max_examples=40, deadline=None)
@given(shape=st.one_of(shapes_4d, shapes_2d), seed=st.integers(0, 2**16),
       loc=st.sampled_from([0.0, 3.0, -50.0]), version=st.sampled_from(VERSIONS))
def test_channel_sum_matches_reference(shape, seed, loc, version):
    rng = np.random.default_rng(seed)
    x = (loc + rng.standard_normal(shape)).astype(np.float32)
    out = nan_like(shape[1])
    red.channel_sum(x, out, version)
    ref = reference.bias_backward(x.astype(np.float64))
    assert_close(out, ref, sum_tolerance(x), 0, f"channel_sum v{version} {shape}")


@settings(max_examples=15, deadline=None)
@given(shape=shapes_4d, seed=st.integers(0, 2**16))
def test_channel_sum_exact_on_small_integers(shape, seed):
    """Small integers add exactly in float32 in any order: every version must hit the exact
    sum, which isolates indexing (a missed or doubled element) from rounding."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, size=shape).astype(np.float32)
    ref = x.astype(np.float64).sum(axis=(0, 2, 3))
    for version in VERSIONS:
        out = nan_like(shape[1])
        red.channel_sum(x, out, version)
        assert np.array_equal(out, ref), f"v{version} {shape}: {out} != {ref}"


def test_split_version_really_splits():
    """The test shapes are big enough that version 2 cuts a channel into several chunks, and
    the chunk boundaries fall inside runs (H*W = 35 is not a multiple of the chunk)."""
    channels, count = 3, 3 * 5 * 7
    splits = red.splits_for(channels, count)
    assert splits > 1
    assert (-(-count // splits)) % 35 != 0
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, size=(3, channels, 5, 7)).astype(np.float32)
    out = nan_like(channels)
    red.channel_sum(x, out, 2)
    assert np.array_equal(out, x.sum(axis=(0, 2, 3)))


@settings(max_examples=8, deadline=None)
@given(shape=shapes_4d, seed=st.integers(0, 2**16),
       version=st.sampled_from([v for v in VERSIONS if v not in red.NONDETERMINISTIC]))
def test_channel_sum_is_deterministic(shape, seed, version):
    """Same input, same launch: bitwise the same output (a fixed order of additions; no atomics).
    Trivial under the simulator, but it pins the property the GPU must keep. The atomic
    version is excluded: it is labelled non-deterministic, and it is not the default."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    first, second = nan_like(shape[1]), nan_like(shape[1])
    red.channel_sum(x, first, version)
    red.channel_sum(x, second, version)
    assert first.tobytes() == second.tobytes()


def test_default_version_is_deterministic():
    assert red.DEFAULT_VERSION not in red.NONDETERMINISTIC


def test_channel_sum_one_element_per_channel():
    x = np.array([[[[2.5]], [[-1.0]]]], np.float32)  # (1, 2, 1, 1)
    for version in VERSIONS:
        out = nan_like(2)
        red.channel_sum(x, out, version)
        assert out.tolist() == [2.5, -1.0]


def test_gpu_workspaces_are_per_role_and_reused(monkeypatch):
    """On a GPU, scratch buffers persist per (role, shape, device, stream): two roles of one
    launcher call must not alias, and one role is reused across calls (what keeps a captured
    CUDA graph's pointers valid). Checked with a stand-in for CuPy."""
    import sys
    from types import SimpleNamespace

    fake_cuda = SimpleNamespace(Device=lambda: SimpleNamespace(id=0),
                                get_current_stream=lambda: SimpleNamespace(ptr=1234))
    fake_cupy = SimpleNamespace(cuda=fake_cuda, float32=np.float32,
                                empty=lambda shape, dtype: np.empty(shape, dtype))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(red.common, "_workspaces", {})   # the scratch buffers live in common.py
    device_array = object()  # anything that is not a NumPy array stands for a CuPy one
    a = red.workspace(device_array, (3, 2), "test.a")
    b = red.workspace(device_array, (3, 2), "test.b")
    assert a is not b and not np.shares_memory(a, b)
    assert red.workspace(device_array, (3, 2), "test.a") is a
    assert red.workspace(device_array, (4,), "test.a") is not a


def warp_sum_in_order(values):
    """NumPy's float32 replay of warp_sum: lane t adds lane t + d's value for d = 16, ..., 1
    (a lane past 31 reads its own value); lane 0's result."""
    v = [np.float32(a) for a in values]
    offset = 16
    while offset:
        v = [v[t] + (v[t + offset] if t + offset < 32 else v[t]) for t in range(32)]
        offset //= 2
    return v[0]


def shuffled_channel_sum_in_order(x):
    """Version 4's order of additions, replayed in float32 with NumPy: each thread's strided
    sum over its block's chunk, each warp's shuffle tree, warp 0's tree over the warp sums,
    then the chunks' sums left to right."""
    threads, warps = red.SHUFFLE_THREADS, red.WARPS
    channels = x.shape[1]
    flat = np.moveaxis(x.reshape(x.shape[0], channels, -1), 1, 0).reshape(channels, -1)   # (C, N*H*W), i = n*run + s
    count = flat.shape[1]
    splits = red.splits_for(channels, count, threads)
    chunk = -(-count // splits)
    out = []
    for c in range(channels):
        total = np.float32(0.0)
        for j in range(splits):
            lo, hi = j * chunk, min((j + 1) * chunk, count)
            own = []
            for tid in range(threads):
                acc = np.float32(0.0)
                for i in range(lo + tid, hi, threads):
                    acc = acc + flat[c, i]
                own.append(acc)
            warp_sums = [warp_sum_in_order(own[w * 32:(w + 1) * 32]) for w in range(warps)]
            total = total + warp_sum_in_order(warp_sums + [np.float32(0.0)] * (32 - warps))
        out.append(total)
    return np.array(out, np.float32)


@settings(max_examples=6, deadline=None)
@given(shape=shapes_4d, seed=st.integers(0, 2**16))
def test_warp_shuffle_version_adds_in_the_order_it_states(shape, seed):
    """Version 4 is bitwise equal to a NumPy replay of its stated order of additions: the
    shuffles read the lanes they should, in the order they should (the simulator's warps
    have two of them, so the step across warps runs)."""
    assert red.WARPS >= 2
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    out = nan_like(shape[1])
    red.channel_sum(x, out, 4)
    assert out.tobytes() == shuffled_channel_sum_in_order(x).tobytes(), (out, shuffled_channel_sum_in_order(x))
