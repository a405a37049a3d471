"""The register-blocked GEMMs' innermost loops are what their docstrings say, in PTX.

bench/ptx_hot_loop.py counts one trip of a kernel's hottest loop. These checks pin the
codegen that versions 3 and 4 of conv2d rely on: unsigned shared-memory indices (no
negative-index wraparound), a loop the compiler unrolls, and for v4 16-byte loads. A
change that brings back a signed index or a range() the compiler will not unroll fails
here, without a GPU.
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
    """The outer loop has more FMAs in its span, but it holds another loop: not innermost."""
    counts = ptx_hot_loop.hot_loop(NESTED)
    assert counts == {"instructions": 7, "fma": 2, "shared_loads": 2, "shared_floats": 5,
                      "vector_loads": 1, "other": 3, "fma_share": 2 / 7}
    assert ptx_hot_loop.hot_loop("\tadd.s64 \t%rd1, %rd1, 1;\n") is None


@pytest.fixture(scope="module")
def loops():
    return {row["kernel"]: row for row in ptx_hot_loop.report(cc=90, prefixes=("conv2d.",))}


@pytest.mark.parametrize("direction", ["forward", "backward_data", "backward_weight"])
def test_register_blocked_loops_are_mostly_fma(loops, direction):
    from dcgan_cuda.kernels import conv2d
    for version, tiling in conv2d.TILING.items():
        row = loops[f"conv2d.{direction}_v{version}"]
        # Each loaded float feeds TN (or TM) FMAs: TM*TN FMAs per TM + TN floats, per k.
        assert row["fma"] * (tiling.tm + tiling.tn) == row["shared_floats"] * tiling.tm * tiling.tn, row
        # Unrolled: at least two k per trip, or one k of a block big enough to pay its branch.
        assert row["fma"] >= 32, row
        # Without wraparound an index costs nothing per load: the loop is FMAs and loads.
        assert row["other"] <= 16, row
    assert loops[f"conv2d.{direction}_v3"]["fma_share"] >= 0.5
    v4 = loops[f"conv2d.{direction}_v4"]
    assert v4["vector_loads"] == v4["shared_loads"] and v4["shared_floats"] == 4 * v4["shared_loads"], v4
    assert v4["fma_share"] >= 0.75, v4
