"""The access profiler on the textbook patterns, with the answers the hardware gives.

Every expected number here follows from the rules alone (32 threads a warp, 32-byte
sectors, 32 banks of 4 bytes, broadcasts free), worked out in the comments; none is read
off the profiler. The mutation tests break one rule at a time and check that the
textbook answers then come out wrong, so that these tests would notice such a bug.
"""
import numpy as np
import pytest
from numba import cuda, float32

from dcgan_cuda.kernels import access_patterns as patterns
from dcgan_cuda.kernels import access_profiler as ap

GLD = "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"
GLD_SECTORS = "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"
GST = "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum"
GST_SECTORS = "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum"
SLD = "smsp__sass_inst_executed_op_shared_ld.sum"
SLD_WAVES = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"
SLD_CONFLICTS = "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum"
SST_WAVES = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"


def trace(kernel, grid, block, *args, **kw):
    return ap.trace_launch(kernel, grid, block, *args, vectors=False, **kw)


def floats(n):
    return np.arange(n, dtype=np.float32)


def zeros(n):
    return np.zeros(n, np.float32)


def check_textbook():
    """Every textbook pattern's figures, exactly (one warp of 32 float32 accesses each)."""
    # Coalesced: 32 x 4 bytes = 128 bytes = 4 sectors, every byte used.
    m = trace(patterns.copy, 1, 32, floats(64), zeros(32), 0).metrics
    assert (m[GLD], m[GLD_SECTORS], m[GST], m[GST_SECTORS]) == (1, 4, 1, 4)
    assert m["smsp__sass_average_data_bytes_per_sector_mem_global_op_ld.pct"] == 100.0
    # Offset by one float: bytes 4..131 straddle 5 sectors (0-31, ..., 128-159).
    m = trace(patterns.copy, 1, 32, floats(64), zeros(32), 1).metrics
    assert (m[GLD], m[GLD_SECTORS]) == (1, 5)
    # Stride 2: 256 bytes spanned, 8 sectors, half of each used.
    m = trace(patterns.strided_copy, 1, 32, floats(64), zeros(32), 2).metrics
    assert (m[GLD], m[GLD_SECTORS]) == (1, 8)
    assert m["smsp__sass_average_data_bytes_per_sector_mem_global_op_ld.pct"] == 50.0
    # Stride 8 and 16 floats (32 and 64 bytes): every lane its own sector.
    for stride in (8, 16):
        m = trace(patterns.strided_copy, 1, 32, floats(32 * stride), zeros(32), stride).metrics
        assert (m[GLD], m[GLD_SECTORS]) == (1, 32), stride
    # Shared, stride s: lane t reads word s*t, bank s*t mod 32. The fill before it writes
    # words t, t+32, ...: 32 conflict-free requests of one wavefront each.
    for stride, waves in ((1, 1), (2, 2), (4, 4), (32, 32), (33, 1)):
        m = trace(patterns.shared_strided, 1, 32, zeros(32), stride).metrics
        assert (m[SLD], m[SLD_WAVES], m[SLD_CONFLICTS]) == (1, waves, waves - 1), stride
        assert (m["smsp__sass_inst_executed_op_shared_st.sum"], m[SST_WAVES]) == (32, 32)
    # A column of a 32 x 32 tile: word 32t + c, all in bank c: 32-way. Padded to 33: bank
    # (t + c) mod 32, all different: 1 wavefront. Two sites, told apart by site_table.
    profile = trace(patterns.column_read, 1, 32, zeros(32), 3)
    loads = [row for row in profile.site_table() if row["kind"] == "shared_op_ld"]
    assert sorted(row["per_request"] for row in loads) == [1.0, 32.0]
    # Broadcast: one word for all 32 lanes, one pass.
    m = trace(patterns.broadcast, 1, 32, zeros(32)).metrics
    assert (m[SLD], m[SLD_WAVES], m[SLD_CONFLICTS]) == (1, 1, 0)


def test_textbook_patterns_give_the_hardware_counts():
    check_textbook()


def test_transpose_naive_against_shared_tile():
    """A 64 x 64 transpose in 32 x 32 tiles by 32 x 8 threads (4 rows a thread): 4 x 32 = 128
    warp loads of one row each (4 sectors). The naive stores go down a column, a row apart:
    32 sectors each. Through the padded tile the stores are rows again (4 sectors), and the
    tile's column reads hit bank (tx*33 + r) mod 32: all different, no conflict."""
    x = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    naive_out, tiled_out = np.zeros_like(x), np.zeros_like(x)
    naive = trace(patterns.transpose_naive, (2, 2), (32, 8), x, naive_out).metrics
    tiled = trace(patterns.transpose_shared, (2, 2), (32, 8), x, tiled_out).metrics
    assert np.array_equal(naive_out, x.T) and np.array_equal(tiled_out, x.T)
    assert (naive[GLD], naive[GLD_SECTORS], naive[GST], naive[GST_SECTORS]) == (128, 512, 128, 4096)
    assert (tiled[GLD], tiled[GLD_SECTORS], tiled[GST], tiled[GST_SECTORS]) == (128, 512, 128, 512)
    assert (tiled[SLD], tiled[SLD_WAVES], tiled[SLD_CONFLICTS]) == (128, 128, 0)
    # Both move the same distinct data: 16 KB read and 16 KB written.
    assert naive["model__dram_bytes_min"] == tiled["model__dram_bytes_min"] == 2 * 64 * 64 * 4
    assert naive["model__dram_bytes_no_reuse"] == 32 * (512 + 4096)


@pytest.mark.parametrize("broken", ["warp of 16", "no trips", "16 banks", "no broadcast"])
def test_a_broken_rule_breaks_the_textbook_answers(monkeypatch, broken):
    """Mutants of the warp grouping and of the bank rule: each makes check_textbook fail."""
    if broken == "warp of 16":          # copy would be 2 requests of 2 sectors
        monkeypatch.setattr(ap, "WARP", 16)
    elif broken == "no trips":          # the shared fill's 32 trips would be one request
        monkeypatch.setattr(ap, "request_key", lambda block, thread, site, context, occurrence, kind:
                            (block, thread // ap.WARP, site, kind))
    elif broken == "16 banks":          # stride 2 would be a 4-way conflict
        monkeypatch.setattr(ap, "bank_of", lambda word: word % 16)
    else:                               # a broadcast would be a 32-way conflict
        monkeypatch.setattr(ap, "distinct_rows", lambda rows: rows)
    with pytest.raises(AssertionError):
        check_textbook()


@cuda.jit
def _divergent(x, y):
    """Odd lanes load x twice (two sites), even lanes once; lanes past 40 stop early in a loop."""
    t = cuda.threadIdx.x
    if t % 2 == 1:
        y[t] = x[t] + x[t + 64]
    else:
        y[t] = x[t]
    for k in range(t // 40 + 1):
        y[t] += x[k]


def test_divergent_lanes_are_absent_from_the_requests_they_skip():
    """64 threads, 2 warps. Each side of the if is its own sites, with 16 lanes per warp:
    odd lanes 2 load sites x 2 warps, even lanes 1 site x 2 warps = 6 requests. The loop
    runs once for t < 40, twice from 40 on: warp 0 one trip, warp 1 two (its second with
    the 24 lanes t >= 40 only): 3 requests for each of its two loads."""
    profile = trace(_divergent, 1, 64, floats(128), zeros(64))
    loads = [row["requests"] for row in profile.site_table() if row["kind"] == "global_op_ld"]
    assert sorted(loads) == [2, 2, 2, 3, 3]     # x[t], x[t + 64], x[t]; y[t] and x[k] of y[t] += x[k]
    r = profile.requests
    loads = r["kind"] == ap.GLOBAL_LD
    assert sorted(r["lanes"][loads].tolist()) == [16] * 6 + [24, 24] + [32] * 4


@pytest.mark.parametrize("width,expected", [
    (4, (1, 1)),     # 32 lanes x 4 contiguous bytes: one pass
    (8, (2, 2)),     # 256 bytes: two half-warps, each conflict-free
    (16, (4, 4)),    # 512 bytes: four quarter-warps, each conflict-free
])
def test_wide_shared_accesses_split_by_lane_groups(width, expected):
    lanes = np.arange(32)
    assert ap.shared_wavefronts(lanes, lanes * width, np.full(32, width)) == expected


def test_wide_shared_access_conflicts_within_a_quarter_warp():
    """16-byte accesses 32 bytes apart: a quarter warp spans 256 bytes, each bank twice."""
    lanes = np.arange(32)
    assert ap.shared_wavefronts(lanes, lanes * 32, np.full(32, 16)) == (8, 4)
    # The same address for all: one word per bank of its 4, once per quarter.
    assert ap.shared_wavefronts(lanes, np.zeros(32, int), np.full(32, 16)) == (4, 4)


def test_fragment_read_is_one_16_byte_request_as_in_the_ptx():
    """The compiler merges fragment_read's 4 loads into ld.shared.v4.f32 (read from the PTX
    in a child process): 1 request of 16 bytes a lane, 4 wavefronts, no conflict; counted
    as written it would be 4 requests, each a 4-way conflict (lane t reads word 4t + a)."""
    args = (floats(128), zeros(32))
    merged = ap.trace_launch(patterns.fragment_read, 1, 32, *args).metrics
    scalar = trace(patterns.fragment_read, 1, 32, *args).metrics
    assert (merged[SLD], merged[SLD_WAVES], merged[SLD_CONFLICTS]) == (1, 4, 0)
    assert (scalar[SLD], scalar[SLD_WAVES], scalar[SLD_CONFLICTS]) == (4, 16, 12)


@cuda.jit
def _rows_sum(x, out):
    """A block per row of x, 32 threads striding along it; one shared tree at the end."""
    partial = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    row = cuda.blockIdx.x
    acc = float32(0.0)
    for j in range(t, x.shape[1], 32):
        acc += x[row, j]
    partial[t] = acc
    cuda.syncthreads()
    if t == 0:
        total = float32(0.0)
        for k in range(32):
            total += partial[k]
        out[row] = total


def test_sampled_blocks_scale_to_the_full_launch():
    """19 blocks (rows) of identical work: the first, last and 3 interior blocks, each
    interior one standing for 17/3 blocks, reproduce every count of the full run."""
    x = np.ones((19, 96), np.float32)
    full = trace(_rows_sum, 19, 32, x, zeros(19))
    sample = trace(_rows_sum, 19, 32, x, zeros(19), blocks=3)
    assert not full.sampled and sample.sampled and len(sample.blocks_run) == 5
    for key in (GLD, GLD_SECTORS, GST, SLD, SLD_WAVES, "model__dram_bytes_min"):
        assert sample.metrics[key] == pytest.approx(full.metrics[key]), key
    assert full.metrics[GLD] == 19 * 3 and full.metrics[SLD] == 19 * 32


def test_sampled_warps_scale_to_the_full_block():
    """A block of 8 warps striding over 1024 floats: 3 warps sampled stand for all 8."""
    x = floats(4096)
    full = trace(patterns.copy, 4, 256, x, zeros(1024), 0)
    sample = trace(patterns.copy, 4, 256, x, zeros(1024), 0, warps=1)
    assert sample.sampled and full.metrics[GLD] == 32
    assert sample.metrics[GLD] == pytest.approx(32) and sample.metrics[GLD_SECTORS] == pytest.approx(128)


def test_tracing_collects_every_launch_of_a_launcher():
    """A launcher's launches (conv2d v5 backward_data: the weights regrouped, then the
    GEMM), each a Profile; a dry run lists them without running anything."""
    from dcgan_cuda.kernels import conv2d
    rng = np.random.default_rng(3)
    dy = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    dx = np.full((1, 2, 4, 4), np.nan, np.float32)
    with ap.tracing(dry=True) as planned:
        conv2d.backward_data(dy, w, dx, (2, 2), (0, 0), version=5)
    assert np.isnan(dx).all()
    with ap.tracing(vectors=False) as launches:
        conv2d.backward_data(dy, w, dx, (2, 2), (0, 0), version=5)
    names = [p.name for p in launches]
    assert names == [launch.name for launch in planned] and len(names) == 2
    assert planned[0].shapes == (w.shape, (2, 2, 3, 2))             # taps_major: w to (kh, kw, Co, Ci)
    assert "taps_major" in names[0] and "backward_data" in names[1]
    from dcgan_cuda import reference
    expected = reference.conv2d_backward_data(dy.astype(np.float64), w.astype(np.float64), dx.shape, (2, 2), (0, 0))
    assert np.allclose(dx, expected, atol=1e-5)
    assert launches[1].metrics[SLD] > 0 and launches[0].metrics[GST] > 0
