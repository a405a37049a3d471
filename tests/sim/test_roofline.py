"""bench/roofline.py's two shortcuts, checked against full runs on shapes that run whole.

At the DCGAN shapes the figures come from sampled blocks and warps and from a reduction
shortened to two lengths and extrapolated. Here the same conv2d versions (the simulator's
tile sizes, so that every block is cheap) run on a layer small enough to trace entirely,
and the shortcut's figures must match the full run's.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

import roofline  # noqa: E402

from dcgan_cuda.kernels import conv2d  # noqa: E402

KEYS = ("l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum", "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum", "smsp__sass_inst_executed_op_shared_ld.sum",
        "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum")

# A k4 s2 p1 layer with 6 input and 5 output channels on 4 images of 8x8: several tiles of
# the simulator's tilings along every axis, and reductions long enough to shorten.
LAYER = conv2d.Layer("small", False, 4, 6, 5, (8, 8), (4, 4), (2, 2), (1, 1), (0, 0))


def full(version, direction):
    return roofline.traced_launches(roofline.conv_launcher(conv2d, LAYER, direction, version), None, None)


@pytest.mark.parametrize("version,direction", [(1, "fwd"), (2, "bwd-weight"), (5, "bwd-data"), (6, "bwd-weight")])
def test_extrapolated_reduction_matches_the_full_run(version, direction):
    """Every launch's counts, extrapolated from two short reductions without sampling,
    equal the full run's (each trip of the reduction loop asks the same of memory).
    Version 5's data gradient first regroups the weights in a grid-stride loop whose grid
    shrinks with the reduction: still linear."""
    row = roofline.trace_conv(conv2d, LAYER, direction, version, blocks=None, warps=None)
    whole = full(version, direction)
    assert row["method"]["lengths"][-1] < row["method"]["real"], "the reduction was not shortened"
    assert [l["name"] for l in row["launches"]] == [l["name"] for l in whole]
    for ours, theirs in zip(row["launches"], whole):
        # The launch that does the multiply-adds, within 2%. A helper launch over an array
        # the reduction shortens (the weights, regrouped) spreads its lanes differently at
        # each length on a layer this small: within a factor of 2.
        rel = 0.02 if ours["flops"] else 1.0
        for key in KEYS:
            assert ours["metrics"].get(key, 0) == pytest.approx(theirs["metrics"].get(key, 0), rel=rel, abs=1), \
                (ours["name"], key)


@pytest.mark.parametrize("version,direction", [(1, "fwd"), (3, "fwd")])
def test_sampled_blocks_and_warps_come_close_to_the_full_run(version, direction):
    """The sample at the DCGAN runs' setting (first, middle and last block per grid axis,
    first and last warp) against the full run: the PREDICTED inputs within 15%."""
    row = roofline.trace_conv(conv2d, LAYER, direction, version, blocks=1, warps=0)
    whole = full(version, direction)
    for ours, theirs in zip(row["launches"], whole):
        for key in KEYS[:3]:
            assert ours["metrics"].get(key, 0) == pytest.approx(theirs["metrics"].get(key, 0), rel=0.15, abs=2), \
                (ours["name"], key)


def test_reduced_lengths_keep_the_real_launches():
    """Split-K's count depends on the reduction: the shortened lengths have the real grids."""
    def plan_at(r):
        return roofline.planned(roofline.conv_launcher(conv2d, LAYER._replace(batch=r), "bwd-weight", 6))
    r1, r2 = roofline.reduced_lengths(plan_at, 4)
    assert r1 < r2 < 4 and plan_at(r1) == plan_at(r2) == plan_at(4)


# A layer whose data gradient gives every sub-pixel phase one tap per output channel (k2 s2):
# two short lengths of 1 and 2 channels would both end inside the first BK slice.
ONE_TAP_PHASES = conv2d.Layer("one-tap", False, 2, 3, 12, (6, 6), (2, 2), (2, 2), (0, 0), (0, 0))


@pytest.mark.parametrize("family,version,direction", [("linear", 3, "fwd"), ("linear", 5, "bwd-weight"),
                                                      ("conv2d", 4, "bwd-data")])
def test_extrapolation_fills_whole_slices_of_a_tiled_reduction(family, version, direction):
    """A tiled kernel pays for a whole slice of its reduction however little of it is used:
    the shortened lengths are multiples of the slice period, and the extrapolated counts
    match the full run (lengths inside one slice would give a slope of nothing)."""
    from dcgan_cuda.kernels import linear
    if family == "linear":
        dims = {"batch": 9, "fan_in": 40, "fan_out": 12} if direction == "fwd" else \
            {"batch": 40, "fan_in": 9, "fan_out": 12}
        row = roofline.trace_linear(linear, "small", dims, direction, version, blocks=None, warps=None)
        whole = roofline.traced_launches(roofline.linear_launcher(linear, dims, direction, version), None, None)
        depth = roofline.slice_depth(linear)
    else:
        row = roofline.trace_conv(conv2d, ONE_TAP_PHASES, direction, version, blocks=None, warps=None)
        whole = roofline.traced_launches(roofline.conv_launcher(conv2d, ONE_TAP_PHASES, direction, version),
                                         None, None)
        depth = roofline.slice_depth(conv2d)
    r1, r2 = row["method"]["lengths"]
    assert depth > 1 and r1 % depth == 0 and r2 % depth == 0 and r2 < row["method"]["real"]
    main = [(ours, theirs) for ours, theirs in zip(row["launches"], whole) if ours["flops"]]
    assert main
    for ours, theirs in main:
        for key in KEYS:
            assert ours["metrics"].get(key, 0) == pytest.approx(theirs["metrics"].get(key, 0), rel=0.02, abs=1), \
                (ours["name"], key)
