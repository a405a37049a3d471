"""What reduction version 4's docstring claims, read off the PTX: its block tree is
shuffles (5 per warp sum, two sums) with one barrier, where version 2's has 10 barriers."""
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("PTX compilation needs the real Numba CUDA target", allow_module_level=True)


def test_warp_shuffle_version_has_one_barrier_and_ten_shuffles():
    from dcgan_cuda.kernels import reduction
    (shuffled,) = reduction.channel_partial_sums_v4.ptx()
    (tree,) = reduction.channel_partial_sums_v2.ptx()
    assert shuffled.count("shfl.sync.down.b32") == 10
    assert shuffled.count("bar.sync") == 1
    assert tree.count("bar.sync") == 2 + 8         # before, 8 steps of 256 threads, after
    assert "shfl.sync" not in tree
