"""conv2d and conv_transpose2d kernels under the simulator vs the NumPy reference.

Every version, all three directions: hypothesis-drawn tiny shapes (odd sizes, rectangular
kernels, strides 1-3, paddings 0-2; the version drawn with them), the exact DCGAN layer
configurations at tiny batch and width, and the duality between the two files. Then the
implicit GEMMs' own edges: GEMM sizes that divide none of their tiles, every kernel size
1-5 at strides 1-3 (sub-pixel phases without taps), output_padding, the split-K partition
(fixed, so bitwise reproducible), the GPU's tilings, and which kernels v8 and v9 choose.

A version that changes one direction takes the others from the version before it: the
same launcher, the same kernel. Each version is checked in the directions it brings itself
(own_directions); the others were checked with the version that brought them.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dcgan_cuda import reference
from dcgan_cuda.kernels import conv2d, conv_transpose2d
from dcgan_cuda.reference import conv2d_output_size, conv_transpose2d_output_size

from .conftest import assert_close, nan_like

VERSIONS = sorted(conv2d.VERSIONS)
EPS = float(np.finfo(np.float32).eps)
DIRECTIONS = ("forward", "backward_data", "backward_weight")


def own_directions(version):
    """The directions whose launcher `version` brings itself, not an earlier version's."""
    ops = conv2d.VERSIONS[version].ops
    return {d for d in DIRECTIONS if all(conv2d.VERSIONS[u].ops[d] is not ops[d] for u in VERSIONS if u < version)}


def test_every_version_brings_something_and_every_direction_is_checked():
    assert all(own_directions(v) for v in VERSIONS)
    assert own_directions(1) == set(DIRECTIONS)
    # v4 and v5 change backward_data only, v6 forward and backward_weight (split-K), v8 backward_data
    assert own_directions(4) == own_directions(5) == own_directions(8) == {"backward_data"}
    assert own_directions(6) == {"forward", "backward_weight"}


def tol(terms):
    """(atol, rtol) for a float32 sum of `terms` products of unit normals vs a float64 reference.

    The sum is ~sqrt(K) in size and each of its K additions rounds by up to eps/2 of the
    running sum, so the error random-walks to ~eps*K/5 (sqrt(K)*eps relative); 4*eps*K holds
    for any summation order (v1 and v2 add in different orders) and is still far below a
    dropped or doubled term (~1).
    """
    return 4 * EPS * terms, 4 * EPS


def normal(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def check_conv2d(rng, n, cin, cout, size, kernel, stride, padding, versions=VERSIONS):
    """Each version's own conv2d directions against the float64 reference."""
    (h, w), (kh, kw) = size, kernel
    out = (conv2d_output_size(h, kh, stride[0], padding[0]), conv2d_output_size(w, kw, stride[1], padding[1]))
    x, wt, dy = normal(rng, (n, cin, h, w)), normal(rng, (cout, cin, kh, kw)), normal(rng, (n, cout) + out)
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    ref_y = reference.conv2d_forward(x64, w64, None, stride, padding)
    ref_dx = reference.conv2d_backward_data(dy64, w64, x.shape, stride, padding)
    ref_dw = reference.conv2d_backward_weight(x64, dy64, wt.shape, stride, padding)
    what = f"N={n} {cin}->{cout} {h}x{w} k{kh}x{kw} s{stride} p{padding}"
    for v in versions:
        own = own_directions(v)
        y, dx, dw = nan_like(ref_y.shape), nan_like(x.shape), nan_like(wt.shape)
        if "forward" in own:
            conv2d.forward(x, wt, y, stride, padding, version=v)
            assert_close(y, ref_y, *tol(cin * kh * kw), f"v{v} forward {what}")
        if "backward_data" in own:
            conv2d.backward_data(dy, wt, dx, stride, padding, version=v)
            assert_close(dx, ref_dx, *tol(cout * kh * kw), f"v{v} backward_data {what}")
        if "backward_weight" in own:
            conv2d.backward_weight(x, dy, dw, stride, padding, version=v)
            assert_close(dw, ref_dw, *tol(n * out[0] * out[1]), f"v{v} backward_weight {what}")
        if not {"forward", "backward_data"} <= own:
            continue
        # backward_data is forward's adjoint: <conv(x), dy> = <x, conv^T(dy)>. Both sides
        # come from our float32 outputs, each within the tolerances above.
        lhs, rhs = np.vdot(y.astype(np.float64), dy64), np.vdot(x64, dx.astype(np.float64))
        scale = np.abs(y).astype(np.float64).ravel() @ np.abs(dy64).ravel() + np.abs(x64).ravel() @ np.abs(dx).ravel()
        assert abs(lhs - rhs) <= 1e-5 * scale, f"v{v} adjoint identity {what}: {lhs} vs {rhs}"


def check_conv_transpose2d(rng, n, cin, cout, size, kernel, stride, padding, output_padding, versions=VERSIONS):
    """Each version's own transposed directions (its transposed forward is conv2d's
    backward_data, its backward_data conv2d's forward) against reference.conv_transpose2d_*,
    and each equal, bit for bit, to the conv2d kernel it is the dual of."""
    (h, w), (kh, kw) = size, kernel
    out = tuple(conv_transpose2d_output_size(size[a], kernel[a], stride[a], padding[a], output_padding[a])
                for a in (0, 1))
    x, wt, dy = normal(rng, (n, cin, h, w)), normal(rng, (cin, cout, kh, kw)), normal(rng, (n, cout) + out)
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    ref_y = reference.conv_transpose2d_forward(x64, w64, None, stride, padding, output_padding)
    ref_dx = reference.conv_transpose2d_backward_data(dy64, w64, stride, padding)
    ref_dw = reference.conv_transpose2d_backward_weight(x64, dy64, wt.shape, stride, padding)
    what = f"N={n} {cin}->{cout} {h}x{w} k{kh}x{kw} s{stride} p{padding} op{output_padding}"
    for v in versions:
        own = own_directions(v)
        if "backward_data" in own:
            y, y2 = nan_like(ref_y.shape), nan_like(ref_y.shape)
            conv_transpose2d.forward(x, wt, y, stride, padding, version=v)
            # The forward gather meets at most cin*kh*kw products (fewer with stride > 1).
            assert_close(y, ref_y, *tol(cin * kh * kw), f"v{v} convT forward {what}")
            # The duality itself: the same conv2d kernel with the roles swapped.
            conv2d.backward_data(x, wt, y2, stride, padding, version=v)
            assert np.array_equal(y, y2), what
        if "forward" in own:
            dx, dx2 = nan_like(x.shape), nan_like(x.shape)
            conv_transpose2d.backward_data(dy, wt, dx, stride, padding, version=v)
            assert_close(dx, ref_dx, *tol(cout * kh * kw), f"v{v} convT backward_data {what}")
            conv2d.forward(dy, wt, dx2, stride, padding, version=v)
            assert np.array_equal(dx, dx2), what
        if "backward_weight" in own:
            dw, dw2 = nan_like(wt.shape), nan_like(wt.shape)
            conv_transpose2d.backward_weight(x, dy, dw, stride, padding, version=v)
            assert_close(dw, ref_dw, *tol(n * h * w), f"v{v} convT backward_weight {what}")
            conv2d.backward_weight(dy, x, dw2, stride, padding, version=v)
            assert np.array_equal(dw, dw2), what


@st.composite
def conv_shapes(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, min(2, kh - 1))), draw(st.integers(0, min(2, kw - 1)))
    # The kernel must fit the padded input: H + 2*pad >= k.
    h, w = draw(st.integers(max(1, kh - 2 * ph), 9)), draw(st.integers(max(1, kw - 2 * pw), 9))
    return dict(n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)), cout=draw(st.integers(1, 4)),
                size=(h, w), kernel=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                padding=(ph, pw))


# Hypothesis draws the version with the shape: each example runs one version (all of them
# per example made these two tests most of the suite's time), ~6 examples per version.
@settings(max_examples=64, deadline=None)
@given(shape=conv_shapes(), seed=st.integers(0, 2**16), version=st.sampled_from(VERSIONS))
def test_conv2d_matches_reference(shape, seed, version):
    check_conv2d(np.random.default_rng(seed), **shape, versions=[version])


@st.composite
def conv_transpose_shapes(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, min(2, kh - 1))), draw(st.integers(0, min(2, kw - 1)))
    # PyTorch's rule: output_padding < stride (0 or 1 here).
    oph, opw = draw(st.integers(0, min(1, sh - 1))), draw(st.integers(0, min(1, sw - 1)))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    assume(conv_transpose2d_output_size(h, kh, sh, ph, oph) >= 1)
    assume(conv_transpose2d_output_size(w, kw, sw, pw, opw) >= 1)
    return dict(n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)), cout=draw(st.integers(1, 4)),
                size=(h, w), kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw))


@settings(max_examples=48, deadline=None)
@given(shape=conv_transpose_shapes(), seed=st.integers(0, 2**16), version=st.sampled_from(VERSIONS))
def test_conv_transpose2d_matches_reference_and_conv2d(shape, seed, version):
    check_conv_transpose2d(np.random.default_rng(seed), **shape, versions=[version])


# The DCGAN layer configurations, at batch 1-2 and a few channels, every version but 10:
# its kernels are versions 5's and 6's code at another tile shape, which the edge tests
# below run (and hypothesis above).
DCGAN_VERSIONS = [v for v in VERSIONS if v != 10]


@pytest.mark.parametrize("n,cin,cout,size,kernel,stride,padding", [
    (2, 3, 4, (8, 8), (4, 4), (2, 2), (1, 1)),     # D: k4 s2 p1, halving
    (1, 2, 3, (7, 7), (4, 4), (2, 2), (1, 1)),     # ... on an odd size (a row no window touches)
    (2, 4, 1, (4, 4), (4, 4), (1, 1), (0, 0)),     # D's last: k4 s1 p0 to 1x1
    (2, 3, 2, (8, 8), (5, 5), (2, 2), (2, 2)),     # paper D: k5 s2 p2
], ids=["D-k4s2p1", "D-k4s2p1-odd", "D-last-k4s1p0", "paperD-k5s2p2"])
def test_conv2d_dcgan_layers(n, cin, cout, size, kernel, stride, padding):
    check_conv2d(np.random.default_rng(1), n, cin, cout, size, kernel, stride, padding, versions=DCGAN_VERSIONS)


@pytest.mark.parametrize("n,cin,cout,size,kernel,stride,padding,output_padding", [
    (2, 5, 3, (1, 1), (4, 4), (1, 1), (0, 0), (0, 0)),   # G's first: k4 s1 p0 from 1x1
    (2, 4, 2, (3, 3), (4, 4), (2, 2), (1, 1), (0, 0)),   # G: k4 s2 p1, doubling
    (1, 3, 2, (3, 3), (5, 5), (2, 2), (2, 2), (1, 1)),   # paper G: k5 s2 p2 output_padding 1, doubling
    (2, 2, 3, (3, 4), (5, 5), (2, 2), (2, 2), (0, 0)),   # ... without output_padding
], ids=["G1-k4s1p0", "G-k4s2p1", "paperG-k5s2p2op1", "paperG-k5s2p2op0"])
def test_conv_transpose2d_dcgan_layers(n, cin, cout, size, kernel, stride, padding, output_padding):
    check_conv_transpose2d(np.random.default_rng(2), n, cin, cout, size, kernel, stride, padding, output_padding,
                           versions=DCGAN_VERSIONS)


@pytest.mark.parametrize("version", [v for v in VERSIONS if "backward_weight" in own_directions(v)])
def test_every_version_is_deterministic(version):
    """Fixed-order sums: the same inputs give bitwise the same outputs, whatever the thread schedule."""
    rng = np.random.default_rng(3)
    x, wt, dy = normal(rng, (2, 3, 6, 6)), normal(rng, (4, 3, 4, 4)), normal(rng, (2, 4, 3, 3))
    runs = []
    for _ in range(2):
        dw = nan_like(wt.shape)
        conv2d.backward_weight(x, dy, dw, (2, 2), (1, 1), version=version)
        runs.append(dw)
    assert np.array_equal(runs[0], runs[1])


def test_shapes_that_are_not_one_convolution_are_refused():
    x, wt = np.zeros((1, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="conv2d"):
        conv2d.forward(x, wt, nan_like((1, 3, 4, 4)), (1, 1), (0, 0))      # should be 3x3
    with pytest.raises(ValueError, match="conv2d"):
        conv2d.backward_data(nan_like((1, 3, 3, 3)), wt, nan_like((1, 3, 5, 5)), (1, 1), (0, 0))


def test_v2_refuses_kernels_beyond_its_tiles_and_the_others_take_them():
    """v2's shared buffers have fixed capacity; a kernel too big for them is an error, not a
    silent out-of-bounds write. (12x12 exceeds the simulator's tiles in all three directions.)
    The implicit GEMMs (here v7, prefetch and split-K included) stage fixed BK-deep slices
    of any K, so they have no such limit."""
    rng = np.random.default_rng(4)
    x, wt, dy = normal(rng, (1, 1, 12, 12)), normal(rng, (1, 1, 12, 12)), normal(rng, (1, 1, 1, 1))
    for launch, out_shape in ((lambda out, v: conv2d.forward(x, wt, out, (1, 1), (0, 0), v), dy.shape),
                              (lambda out, v: conv2d.backward_data(dy, wt, out, (1, 1), (0, 0), v), x.shape),
                              (lambda out, v: conv2d.backward_weight(x, dy, out, (1, 1), (0, 0), v), wt.shape)):
        with pytest.raises(ValueError, match="version 1"):
            launch(nan_like(out_shape), 2)
        for version in (1, 7):
            out = nan_like(out_shape)
            launch(out, version)
            assert np.isfinite(out).all()


def test_transposed_versions_mirror_conv2d():
    assert {v: t.name for v, t in conv_transpose2d.VERSIONS.items()} == \
           {v: c.name for v, c in conv2d.VERSIONS.items()}
    for v, version in conv_transpose2d.VERSIONS.items():
        assert version.ops == {"forward": conv2d.VERSIONS[v].ops["backward_data"],
                               "backward_data": conv2d.VERSIONS[v].ops["forward"],
                               "backward_weight": conv2d.VERSIONS[v].ops["backward_weight"]}


def test_dcgan_cases_cover_every_layer_in_three_directions():
    labels = [label for label, _ in conv2d.cases(sim=False)]
    for layer in ("G1 convT 100->512 1->4", "G2 convT 512->256 4->8", "G3 convT 256->128 8->16",
                  "G4 convT 128->64 16->32", "G5 convT 64->3 32->64", "D1 conv 3->64 64->32",
                  "D2 conv 64->128 32->16", "D3 conv 128->256 16->8", "D4 conv 256->512 8->4",
                  "D5 conv 512->1 4->1", "paper-G2 convT 512->256 4->8", "paper-D1 conv 3->64 64->32"):
        for direction in conv2d.DIRECTIONS:
            assert f"{layer} {direction}" in labels
    assert len(labels) == len(set(labels))
    transposed = [label for label, _ in conv_transpose2d.cases(sim=False)]
    assert "paper-G5 convT 64->3 32->64 bwd-weight" in transposed and not any(" conv " in t for t in transposed)


# ------------------------------------------------------------- the implicit GEMMs' edges
# Ragged tiles: every implicit-GEMM source once per tile shape (conv2d.TILING has 3-7, 9 and
# 10; v5's and v6's kernels are v10's code at the shape v3, v4 and v7 run).
RAGGED_VERSIONS = [3, 4, 7, 9, 10]
SPLIT_VERSIONS = sorted(conv2d.SPLIT_K)                 # 6, 7, 9 (its small tiles), 10: split-K
# The sub-pixel-phase edges below run 18 cases per version: the versions with a phase
# kernel of their own, but not v5, whose kernel v10 runs at its own tile shape (v4: phases
# reading w; v7: with the prefetch; v8: the narrow kernel; v9: v7's at small tiles).
PHASE_VERSIONS = [4, 7, 8, 9, 10]


def gemm_sizes(n, cin, cout, size, kernel, stride, padding, version):
    """{direction: (M, N, K)} of the implicit GEMMs (backward_data: its largest phase, or
    all of dx over all taps in version 3, before the phases)."""
    out = [conv2d_output_size(size[a], kernel[a], stride[a], padding[a]) for a in (0, 1)]
    taps = kernel[0] * kernel[1]
    phase_rows = n * (-(-size[0] // stride[0])) * (-(-size[1] // stride[1]))
    phase_taps = (-(-kernel[0] // stride[0])) * (-(-kernel[1] // stride[1]))
    if version == 3:
        phase_rows, phase_taps = n * size[0] * size[1], taps
    return {"forward": (n * out[0] * out[1], cout, cin * taps),
            "backward_data": (phase_rows, cin, cout * phase_taps),
            "backward_weight": (cout, cin * taps, n * out[0] * out[1])}


@pytest.mark.parametrize("n,cin,cout,size,kernel,stride,padding", [
    (1, 3, 9, (5, 7), (3, 3), (1, 1), (1, 1)),
    (1, 9, 3, (4, 5), (2, 3), (1, 1), (0, 0)),
    (1, 5, 9, (6, 7), (3, 3), (2, 1), (1, 0)),
], ids=["Co9-k3s1", "Ci9-k2x3", "Co9-k3-s2x1"])
@pytest.mark.parametrize("version", RAGGED_VERSIONS)
def test_gemm_sizes_that_divide_no_tile(version, n, cin, cout, size, kernel, stride, padding):
    """M, N and K of every direction off the tile grid: each GEMM has a ragged last tile
    along all three axes (and more than one tile along N for at least one direction)."""
    tiling = conv2d.TILING[version]
    sizes = gemm_sizes(n, cin, cout, size, kernel, stride, padding, version)
    for direction, (m, n_cols, k) in sizes.items():
        assert m % tiling.bm and n_cols % tiling.bn and k % tiling.bk, (direction, m, n_cols, k)
    assert any(n_cols > tiling.bn for _, n_cols, _ in sizes.values())
    check_conv2d(np.random.default_rng(5), n, cin, cout, size, kernel, stride, padding, versions=[version])


@pytest.mark.parametrize("version", PHASE_VERSIONS)
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_every_kernel_size_at_strides_1_to_3(k, stride, version):
    """Sub-pixel phases: at k < s some phases get no taps at all (k1 s2: every other dx
    row; k2 s3: one row in three) and are written 0; at k5 s2 the phases have 3 and 2 taps
    per axis. Sizes are odd and the padding leaves rows no window reaches."""
    pad = min(k // 2, 2)
    size = (2 * stride + k, stride + k + 2)
    check_conv2d(np.random.default_rng(10 * k + stride), 1, 2, 3, size, (k, k), (stride, stride), (pad, pad),
                 versions=[version])


@pytest.mark.parametrize("n,cin,cout,size,kernel,stride,padding,output_padding", [
    (1, 3, 2, (3, 3), (5, 5), (2, 2), (2, 2), (1, 1)),   # paper G, output_padding 1 on both axes
    (1, 2, 3, (3, 4), (4, 4), (2, 2), (1, 1), (1, 0)),   # pytorch G's kernel, one axis padded
    (2, 2, 2, (2, 3), (2, 3), (3, 2), (0, 1), (2, 1)),   # k < s: phases without taps, and op = s-1
], ids=["k5s2p2op1", "k4s2p1op1x0", "k2x3s3x2op2x1"])
@pytest.mark.parametrize("version", PHASE_VERSIONS)
def test_conv_transpose2d_output_padding(version, n, cin, cout, size, kernel, stride, padding, output_padding):
    """The rows output_padding adds lie beyond every window: the transposed forward
    (conv2d's backward_data) must still write them, 0."""
    check_conv_transpose2d(np.random.default_rng(6), n, cin, cout, size, kernel, stride, padding, output_padding,
                           versions=[version])


@pytest.mark.parametrize("version", SPLIT_VERSIONS)
def test_split_partition_covers_the_reduction_once(version):
    """split_reduction's ranges [z*chunk, (z+1)*chunk) are whole slices, non-empty, and tile
    [0, length) exactly, also where length is no multiple of the splits asked for."""
    tiling = conv2d.TILING[version]
    for length in (1, 3, tiling.bk, 49, 50, 131, 1000):
        for asked in (None, 1, 2, 3, 5, 7, 64):
            splits, chunk = conv2d.split_reduction(length, tiles=1, splits=asked, tiling=tiling)
            assert chunk % tiling.bk == 0 and 1 <= splits <= max(1, asked or splits)
            assert (splits - 1) * chunk < length <= splits * chunk, (length, asked, splits, chunk)
    assert conv2d.split_reduction(49, tiles=1, tiling=tiling)[0] > 1          # a small grid is split by default
    assert conv2d.split_reduction(49, tiles=tiling.split_target, tiling=tiling)[0] == 1


@pytest.mark.parametrize("version", SPLIT_VERSIONS)
@pytest.mark.parametrize("splits", [1, 3, 5])
def test_split_k_matches_the_reference(splits, version):
    """backward_weight over P = 49 pixels (3 splits: 20 + 20 + 9 with the simulator's BK = 4;
    5 splits: 12 + 12 + 12 + 12 + 1), and forward over K = 2*3*3 = 18, split the same way."""
    rng = np.random.default_rng(8)
    stride, padding = (1, 1), (1, 1)
    x, wt, dy = normal(rng, (1, 2, 7, 7)), normal(rng, (3, 2, 3, 3)), normal(rng, (1, 3, 7, 7))
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    dw = nan_like(wt.shape)
    conv2d.SPLIT_K[version]["backward_weight"](x, dy, dw, *stride, *padding, splits=splits)
    assert_close(dw, reference.conv2d_backward_weight(x64, dy64, wt.shape, stride, padding), *tol(49), "split dw")
    y = nan_like(dy.shape)
    conv2d.SPLIT_K[version]["forward"](x, wt, y, *stride, *padding, splits=splits)
    assert_close(y, reference.conv2d_forward(x64, w64, None, stride, padding), *tol(18), "split y")


@pytest.mark.parametrize("version", SPLIT_VERSIONS)
def test_is_deterministic_with_splits(version):
    """Split-K adds its partial tiles in split order, never with atomics: two runs of every
    direction, split several ways, are bitwise equal."""
    rng = np.random.default_rng(9)
    x, wt, dy = normal(rng, (2, 3, 7, 7)), normal(rng, (4, 3, 4, 4)), normal(rng, (2, 4, 3, 3))
    runs = []
    for _ in range(2):
        dw, y, dx = nan_like(wt.shape), nan_like(dy.shape), nan_like(x.shape)
        conv2d.SPLIT_K[version]["backward_weight"](x, dy, dw, 2, 2, 1, 1, splits=3)
        conv2d.SPLIT_K[version]["forward"](x, wt, y, 2, 2, 1, 1, splits=4)
        conv2d.backward_data(dy, wt, dx, (2, 2), (1, 1), version=version)
        runs.append((dw, y, dx))
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("version", [7, 9])
def test_gpu_tilings_in_the_simulator(version):
    """The tile sizes a GPU runs (128 x 128 x 8, 8 x 8 per thread in runs of 4, 256
    threads; v9's 64 x 64 with 64 threads, one per tile column in the gathers), which the
    other simulator tests replace by small ones, built here under the simulator with
    version 7's kernels (v3-v6 run the same tile shape, their loops with the gathers where
    the small tilings test them: not run again here) and run on shapes just past one tile
    along M and N (a ragged second tile), with a reduction of two slices, the second ragged
    (K = 9 with BK = 8: the prefetch runs its whole pipeline), so that 256 simulated
    threads stay affordable."""
    tiling = conv2d.GPU_TILING[version]
    ops = conv2d.BUILDERS[7](tiling, f"{version}gpu")
    rng = np.random.default_rng(11)
    wide = tiling.bn + 2                         # 130 (v9: 66) channels: two tiles, the second ragged
    # forward: M = 12*12 = 144 pixels, N = 130 output channels, K = 9*1*1
    x, wt = normal(rng, (1, 9, 12, 12)), normal(rng, (wide, 9, 1, 1))
    y = nan_like((1, wide, 12, 12))
    ops["forward"](x, wt, y, 1, 1, 0, 0, splits=1)
    assert_close(y, reference.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, (1, 1), (0, 0)),
                 *tol(9), "forward")
    # backward_data: M = 12*12 pixels, N = 130 input channels, K = 9 output channels (the
    # phases are the small tilings' business: one phase here)
    dy, wt = normal(rng, (1, 9, 12, 12)), normal(rng, (9, wide, 1, 1))
    dx = nan_like((1, wide, 12, 12))
    ops["backward_data"](dy, wt, dx, 1, 1, 0, 0)
    assert_close(dx, reference.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), dx.shape,
                                                    (1, 1), (0, 0)), *tol(9), "backward_data")
    # backward_weight: M = 130 output channels, N = 130 taps (k1), K = 3*3 pixels
    x, dy = normal(rng, (1, wide, 3, 3)), normal(rng, (1, wide, 3, 3))
    dw = nan_like((wide, wide, 1, 1))
    ops["backward_weight"](x, dy, dw, 1, 1, 0, 0, splits=1)
    assert_close(dw, reference.conv2d_backward_weight(x.astype(np.float64), dy.astype(np.float64), dw.shape,
                                                      (1, 1), (0, 0)), *tol(9), "backward_weight")


@pytest.mark.parametrize("cin,kernel,stride,narrow", [
    (3, (4, 4), (2, 2), True),      # D1's dx, G5's forward: 4 taps per phase
    (4, (5, 5), (2, 2), True),      # the paper's k5 s2: phases of 9, 6, 6 and 4 taps
    (1, (3, 2), (1, 1), True),      # stride 1: one phase of 6 taps
    (5, (4, 4), (2, 2), False),     # more channels than a thread keeps: version 7
    (2, (4, 4), (1, 1), False),     # 16 taps in a phase, more than staged: version 7
    (2, (6, 6), (1, 2), False),     # 18 taps in the widest phase
])
def test_v8_takes_narrow_backward_data_and_leaves_the_rest_to_v7(cin, kernel, stride, narrow):
    """backward_data into at most NARROW channels with at most NARROW_TAPS taps per phase
    runs the narrow kernel, over more output channels than one staged chunk (9 > 4 in the
    simulator); anything else runs version 7's. Both match the reference."""
    from dcgan_cuda.kernels import jit
    rng = np.random.default_rng(12)
    cout, padding = 9, (kernel[0] // 2, kernel[1] // 2)
    x = normal(rng, (2, cin, 9, 10))
    out = [conv2d_output_size(x.shape[2 + a], kernel[a], stride[a], padding[a]) for a in (0, 1)]
    wt, dy = normal(rng, (cout, cin) + kernel), normal(rng, (2, cout, *out))
    dx = nan_like(x.shape)
    jit.LAUNCHES.clear()
    conv2d.backward_data(dy, wt, dx, stride, padding, version=8)
    assert (jit.LAUNCHES["conv2d.backward_data_narrow_v8"] == 1) == narrow, dict(jit.LAUNCHES)
    assert (jit.LAUNCHES["conv2d.backward_data_v7"] == 1) == (not narrow), dict(jit.LAUNCHES)
    expected = reference.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, stride, padding)
    assert_close(dx, expected, *tol(cout * kernel[0] * kernel[1]), "v8 backward_data")


@pytest.mark.parametrize("rows,cols,version", [
    (131072, 64, 9),     # D1's forward: Co = 64 fills half of a 128-wide tile
    (32768, 64, 9),      # D2's dx per phase, G4's forward: Ci = 64
    (64, 48, 9),         # D1's and G5's weight gradients: 19% of one big tile, 75% of a small one
    (128, 1, 9),         # D5's forward
    (32768, 128, 7),     # both fit exactly: the big tiles load half as much per FMA
    (2048, 512, 7),
    (128, 100, 7),       # G1's dx: 100 columns pad to 128 either way
    (130, 512, 9),       # two rows past a big tile: 256 padded rows against 192
])
def test_fitted_tiling_takes_the_tiles_that_pad_least(rows, cols, version):
    """v9's rule, with the GPU's tilings: the small tiles only where they pad C less."""
    assert conv2d.fitted_tiling(rows, cols, conv2d.GPU_TILING[7], conv2d.GPU_TILING[9]) == version


@pytest.mark.parametrize("channels,version", [(16, 7), (8, 9)])
def test_v9_launches_the_fitted_kernels(channels, version):
    """Under the simulator's tilings (16 x 16 for v7, 8 x 8 for v9's small tiles) a 1x1
    convolution over 4 x 4 pixels is a 16 x C GEMM in every direction (C x C for the
    weight gradient): C = 16 fits the big tiles, C = 8 only the small ones. Each direction
    launches its fitted kernel once, and all three match the reference."""
    from dcgan_cuda.kernels import jit
    rng = np.random.default_rng(13)
    x, wt, dy = normal(rng, (1, channels, 4, 4)), normal(rng, (channels, channels, 1, 1)), normal(rng, (1, channels, 4, 4))
    y, dx, dw = nan_like(dy.shape), nan_like(x.shape), nan_like(wt.shape)
    jit.LAUNCHES.clear()
    conv2d.forward(x, wt, y, (1, 1), (0, 0), version=9)
    conv2d.backward_data(dy, wt, dx, (1, 1), (0, 0), version=9)
    conv2d.backward_weight(x, dy, dw, (1, 1), (0, 0), version=9)
    launched = {name for name, count in jit.LAUNCHES.items() if count and "_v" in name}
    assert launched == {f"conv2d.{d}_v{version}" for d in ("forward", "backward_data", "backward_weight")}, launched
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    assert_close(y, reference.conv2d_forward(x64, w64, None, (1, 1), (0, 0)), *tol(channels), "v9 forward")
    assert_close(dx, reference.conv2d_backward_data(dy64, w64, x.shape, (1, 1), (0, 0)), *tol(channels),
                 "v9 backward_data")
    assert_close(dw, reference.conv2d_backward_weight(x64, dy64, wt.shape, (1, 1), (0, 0)), *tol(16),
                 "v9 backward_weight")
