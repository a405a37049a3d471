"""Lesson 0 under the simulator: every version computes y = a*x + b, and each element is
computed by the thread the version says (``who``), including the threads past the end."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan_cuda.kernels import access_profiler as profiler
from dcgan_cuda.kernels import lesson0_threads as lesson


def launch(version, x):
    shape = lesson.matrix_shape(x.size) if version == 6 else x.shape
    if version == 6:
        x = np.concatenate([x, np.zeros(shape[0] * shape[1] - x.size, np.float32)]).reshape(shape)
    y, who = np.full(shape, np.nan, np.float32), np.full(shape, -1, np.int32)
    lesson.scale_shift(x, y, 2.0, -1.0, who, version)
    return x, y, who


@settings(max_examples=12, deadline=None)
@given(n=st.sampled_from([1, 31, 32, 33, 65, 130]), version=st.sampled_from(sorted(lesson.VERSIONS)))
def test_every_version_computes_every_element_with_the_thread_it_claims(n, version):
    # Small integers: 2x - 1 is exact in float32, so any wrong or doubled element shows.
    x = np.random.default_rng(n).integers(-50, 50, n).astype(np.float32)
    x, y, who = launch(version, x)
    assert np.array_equal(y, 2 * x - 1)
    assert np.array_equal(who, lesson.expected_who(version, x.shape))


def test_the_mappings_by_hand():
    """n = 70 with 32-thread blocks (the simulator's), written out."""
    assert lesson.THREADS == 32
    x = np.arange(70, dtype=np.float32)
    assert launch(2, x)[2][[0, 2, 3, 69]].tolist() == [0, 0, 1, 23]        # chunks of ceil(70/32) = 3
    assert launch(3, x)[2][[0, 31, 32, 69]].tolist() == [0, 31, 0, 5]      # t, t + 32, t + 64
    assert launch(4, x)[2][[0, 33, 69]].tolist() == [0, 33, 69]            # 3 blocks, 96 threads, 26 idle
    who6 = launch(6, np.arange(250, dtype=np.float32))[2]                  # 3 rows of 100
    # Row 0: block (0, 0) for columns 0-31 (threads 0-31), block (1, 0) from column 32.
    # Row 1 is the block's second row of threads: thread 32 + column.
    assert who6[0, [0, 31, 32]].tolist() == [0, 31, 64] and who6[1, 0] == 32


def test_chunks_cost_a_sector_per_thread_and_strides_coalesce():
    """What the docstring says the access profiler counts at n = 300: version 2's loads of x
    take a sector per thread that has work (30), version 3's 3.8 (38 sectors, 10 requests)."""
    x = np.random.default_rng(0).standard_normal(lesson.SIM_N).astype(np.float32)
    per_request = {}
    for version in (2, 3):
        y, who = np.empty_like(x), np.empty(x.size, np.int32)
        with profiler.tracing(vectors=False) as launches:
            lesson.scale_shift(x, y, 1.0, 0.0, who, version)
        (profile,) = profiler.resolve(launches)
        per_request[version] = profile.metrics["l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio"]
    assert per_request == {2: pytest.approx(30.0), 3: pytest.approx(3.8)}
