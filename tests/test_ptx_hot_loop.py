"""The register-blocked GEMMs' innermost loops are what their docstrings say, in PTX.

bench/ptx_hot_loop.py counts one trip of a kernel's hottest loop. These checks pin the
codegen that linear's GEMM ladder and conv2d's implicit GEMMs (versions 3-10) rely on:
unsigned shared-memory indices (no negative-index wraparound), a loop the compiler
unrolls, 16-byte loads where a thread's block is in runs of 4. A change that brings back a
signed index or a range() the compiler will not unroll fails here, without a GPU.
"""
import os
import sys
from pathlib import Path

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("needs the real Numba CUDA target", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import ptx_hot_loop  # noqa: E402

NESTED = """
	ld.global.f32 	%f1, [%rd9];
	bar.sync 	0;
	ld.global.f32 	%f2, [%rd9+4];
$L__BB0_1:
\tadd.s64 \t%rd1, %rd1, 1;
$L__BB0_2:
\tld.shared.v4.f32 \t{%f1, %f2, %f3, %f4}, [%rd2];
\tld.shared.f32 \t%f5, [%rd2+16];
\tfma.rn.f32 \t%f6, %f1, %f5, %f6;
\tfma.rn.f32 \t%f7, %f2, %f5, %f7;
\tadd.s64 \t%rd2, %rd2, 528;
\tsetp.ne.s64 \t%p1, %rd2, %rd3;
\t@%p1 bra \t$L__BB0_2;
\tfma.rn.f32 \t%f8, %f1, %f5, %f8;
\tfma.rn.f32 \t%f9, %f1, %f5, %f9;
\tfma.rn.f32 \t%f10, %f1, %f5, %f10;
\t@%p2 bra \t$L__BB0_1;
"""


def test_hot_loop_counts_the_innermost_loop():
    """The outer loop has more FMAs in its span, but it holds another loop: not innermost.
    Of the two global loads, only the one after the barrier is in flight when the loop starts."""
    counts = ptx_hot_loop.hot_loop(NESTED)
    assert counts == {"instructions": 7, "fma": 2, "shared_loads": 2, "shared_floats": 5,
                      "vector_loads": 1, "other": 3, "fma_share": 2 / 7, "loads_in_flight": 1,
                      "around": 5}
    assert ptx_hot_loop.hot_loop("\tadd.s64 \t%rd1, %rd1, 1;\n") is None


def test_gemm_ladder_hot_loops_climb_toward_fma():
    """linear's rungs, as their docstrings count them: each from shared-memory tiles (v3) on
    raises the FMA share of the hot loop; unsigned indices (v6) leave loads and FMAs with
    almost nothing else, two k per trip; vector loads (v7) bring 4 floats per load."""
    rows = {row["kernel"]: row for row in ptx_hot_loop.report(cc=90, prefixes=("linear.",))}
    share = [rows[f"linear.gemm_v{v}"]["fma_share"] for v in range(3, 8)]
    assert share == sorted(share) and len(set(share)) == len(share), share
    v5, v6, v7 = (rows[f"linear.gemm_v{v}"] for v in (5, 6, 7))
    assert v5["other"] > v5["shared_loads"], v5             # the wraparound and loop control of signed indices
    assert v6["fma"] == 2 * v5["fma"] and v6["other"] <= 16, v6
    assert v7["fma"] == v6["fma"] and v7["shared_floats"] == v6["shared_floats"], v7
    assert v7["vector_loads"] == v7["shared_loads"] == v7["shared_floats"] // 4, v7
    assert v7["fma_share"] >= 0.8, v7


@pytest.fixture(scope="module")
def loops():
    return {row["kernel"]: row for row in ptx_hot_loop.report(cc=90, prefixes=("conv2d.",))}


# The versions whose loops issue the next slice's gathers before the multiply (v7_prefetch's
# kernels, at version 7's tiles and at version 9's small ones).
PREFETCHING = {7, 9}


def gemm_kernels(loops, direction):
    """[(version, tiling, hot loop)] of conv2d's implicit GEMMs in one direction: every
    version with a kernel of its own there (versions 4 and 5 have only backward_data, 6
    forward and backward_weight; the rest all three)."""
    from dcgan_cuda.kernels import conv2d
    found = [(v, tiling, loops[f"conv2d.{direction}_v{v}"]) for v, tiling in sorted(conv2d.TILING.items())
             if f"conv2d.{direction}_v{v}" in loops]
    assert len(found) >= 5, found
    return found


@pytest.mark.parametrize("direction", ["forward", "backward_data", "backward_weight"])
def test_register_blocked_loops_are_mostly_fma(loops, direction):
    for version, tiling, row in gemm_kernels(loops, direction):
        # Each loaded float feeds TN (or TM) FMAs: TM*TN FMAs per TM + TN floats, per k.
        assert row["fma"] * (tiling.tm + tiling.tn) == row["shared_floats"] * tiling.tm * tiling.tn, row
        # Unrolled: at least two k per trip, or one k of a block big enough to pay its branch.
        assert row["fma"] >= 32, row
        # Without wraparound an index costs nothing per load: the loop is FMAs and loads.
        assert row["other"] <= 16, row
        # A slice's gathers and stores cost ~30 instructions per float a thread gathers
        # (bounds checks, the digit walk, load, store), barriers included, no more: with
        # signed indices their wraparound made version 7's 8 floats 296-359 instructions.
        # Version 3's backward_data pays more, on purpose: it visits every tap and tests
        # each gathered element's divisibility by the stride (version 4's phases drop that).
        if (direction, version) != ("backward_data", 3):
            assert row["around"] <= 35 * gathered_per_thread(tiling), (version, row)
        if tiling.vec == 4:
            assert row["vector_loads"] == row["shared_loads"] and row["shared_floats"] == 4 * row["shared_loads"], row
            assert row["fma_share"] >= 0.75, row
        else:
            assert row["fma_share"] >= 0.5, row


def test_phases_take_the_division_out_of_backward_datas_gather(loops):
    """Version 3's backward_data gathers over all taps with a divisibility test per element
    (integer division and remainder by the runtime stride); version 4's sub-pixel phases
    gather only taps that land and need neither: under half the instructions around the
    same multiply loop."""
    v3, v4 = loops["conv2d.backward_data_v3"], loops["conv2d.backward_data_v4"]
    assert v3["fma"] == v4["fma"] and v3["around"] > 2 * v4["around"], (v3, v4)


def gathered_per_thread(tiling):
    """Floats of A and B each thread gathers per slice: BK*(BM + BN) over the threads."""
    threads = (tiling.bm // tiling.tm) * (tiling.bn // tiling.tn)
    return tiling.bk * (tiling.bm + tiling.bn) // threads


@pytest.mark.parametrize("direction", ["forward", "backward_data", "backward_weight"])
def test_prefetch_issues_the_next_slice_before_the_multiply(loops, direction):
    """With prefetch, every global load of a slice's gather (one per register it fills:
    BK*(BM + BN)/threads of them) sits between the barrier and the multiply loop, so the
    multiply hides its latency; without, none does."""
    for version, tiling, row in gemm_kernels(loops, direction):
        in_flight = row["loads_in_flight"]
        assert in_flight == (gathered_per_thread(tiling) if version in PREFETCHING else 0), (version, in_flight)


def test_narrow_kernel_reads_a_weight_row_per_load(loops):
    """v8's narrow backward_data: per output channel one dy value from global memory and
    one 16-byte row of NARROW weights from shared memory, NARROW FMAs with them."""
    from dcgan_cuda.kernels import conv2d
    row = loops["conv2d.backward_data_narrow_v8"]
    assert row["vector_loads"] == row["shared_loads"] > 0, row
    assert row["fma"] == conv2d.NARROW * row["shared_loads"], row
    assert row["fma_share"] >= 0.4, row


def test_per_element_loops_divide_nothing():
    """The grid-stride loops of the memory-bound families carry no integer division: where an
    element's channel is needed (channel_bias, batchnorm's apply and dx) the flat index is
    walked as digits (elementwise.carry_add). A PTX div or rem by a runtime value is ~20
    instructions per element; with two of them these loops took 80-91 PTX instructions an
    element, twice what they do now."""
    import re
    from ptxas_report import all_kernels
    division = re.compile(r"(div|rem)\.[su](32|64)\b")
    families = ("elementwise.", "batchnorm.", "reduction.", "adam.", "loss.", "pool.")
    dividing = []
    for k in all_kernels():
        if not k.name.startswith(families):
            continue
        lines, found = ptx_hot_loop.loops(k.ptx(cc=(9, 0))[0])
        for a, b in ptx_hot_loop.innermost(found):
            if any(division.match(text) for text in ptx_hot_loop.instructions(lines[a:b + 1])):
                dividing.append(k.name)
    assert len([k for k in all_kernels() if k.name.startswith(families)]) > 30
    assert not dividing, dividing
