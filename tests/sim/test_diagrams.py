"""The course's pictures (kernels/diagrams.py): each traced array is the mapping the kernel's
docstring claims, computed here without the profiler; and every committed PNG carries the
fingerprint of what the kernels do now, so a kernel cannot change under its picture."""
import os

import numpy as np
import pytest

from dcgan_cuda.kernels import diagrams
from dcgan_cuda.kernels import lesson0_threads as lesson
from dcgan_cuda.kernels import reduction
from dcgan_cuda.kernels.linear import v5_register_2d as rung5
from dcgan_cuda.kernels.linear import v7_vector_loads as rung7

UNTOUCHED = diagrams.UNTOUCHED


@pytest.fixture(scope="module")
def traced():
    return {name: diagram.trace() for name, diagram in diagrams.DIAGRAMS.items()}


def test_lesson0_map_is_each_versions_thread_and_its_first_warp_request(traced):
    data = traced["lesson0_map"]
    n, row = diagrams.LESSON0_N, diagrams.LESSON0_ROW
    for version in range(1, 6):
        assert np.array_equal(data[f"v{version}_thread"].ravel(), lesson.expected_who(version, (n,)))
    chunk = -(-n // lesson.THREADS)
    first = {1: [0], 2: list(range(0, 32 * chunk, chunk)), 3: list(range(32)), 4: list(range(32)),
             5: list(range(32))}
    for version, elements in first.items():
        lanes = data[f"v{version}_first_load_lane"].ravel()
        assert np.flatnonzero(lanes != UNTOUCHED).tolist() == elements, version
        assert lanes[elements].tolist() == list(range(len(elements)))      # lane l loads element l (or l*chunk)
        assert int(data[f"v{version}_first_load_sectors"]) == len({e * 4 // 32 for e in elements})
    assert int(data["v2_first_load_sectors"]) == 20 and int(data["v3_first_load_sectors"]) == 4
    assert data["v1_thread"].shape == (n // row, row)


def test_lesson0_grid_2d_is_version_6s_mapping(traced):
    data = traced["lesson0_grid_2d"]
    shape = diagrams.LESSON0_MATRIX
    assert np.array_equal(data["thread"], lesson.expected_who(6, shape))
    r, c = np.indices(shape)
    blocks_across = -(-shape[1] // 32)
    assert np.array_equal(data["block"], (r // lesson.BLOCK_ROWS) * blocks_across + c // 32)
    assert data["grid_shape"].tolist() == [blocks_across, -(-shape[0] // lesson.BLOCK_ROWS)]


def test_reduction_tree_halves_each_step_and_reads_t_and_t_plus_half(traced):
    data = traced["reduction_tree"]
    threads = reduction.THREADS
    steps = int(np.log2(threads))
    expected = np.full((steps + 1, threads), UNTOUCHED)
    expected[0] = np.arange(threads)
    edges = set()
    for step in range(1, steps + 1):
        half = threads >> step
        expected[step, :half] = np.arange(half)
        edges |= {(step, t, t) for t in range(half)} | {(step, t, t + half) for t in range(half)}
    assert np.array_equal(data["stored_by"], expected)
    assert set(map(tuple, data["edges"].tolist())) == edges
    assert data["sum"][0] == data["expected_sum"][0] == sum(range(2 * threads))


def test_gemm_tiles_thread_ty_tx_copies_row_ty_column_tx(traced):
    data = traced["gemm_tiles"]
    tile = int(data["tile"])
    thread = np.arange(tile * tile).reshape(tile, tile)       # threadIdx.y * TILE + threadIdx.x
    for key in ("a_first_slice", "b_first_slice", "c_block0"):
        expected = np.full((2 * tile, 2 * tile), UNTOUCHED)
        expected[:tile, :tile] = thread                        # block (0, 0), slice k0 = 0
        assert np.array_equal(data[key], expected), key
    for key in ("a_tile_first_slice", "b_tile_first_slice"):
        expected = np.full((tile, tile + 1), UNTOUCHED)        # the padding column is never written
        expected[:, :tile] = thread
        assert np.array_equal(data[key], expected), key


def test_register_blocks_give_each_thread_its_claimed_elements(traced):
    data = traced["register_blocks"]
    rows_t, cols_t, vec = rung5.ROW_THREADS, rung5.COL_THREADS, rung7.TILING.vec
    i, j = np.indices((rung5.BM, rung5.BN))
    # rung 5: thread (row, col) owns (row + ROW_THREADS*a, col + COL_THREADS*b)
    assert np.array_equal(data["v5_c"], (i % rows_t) * cols_t + j % cols_t)
    # rung 7: the same block in runs of VEC: element (b // VEC) * COL_THREADS*VEC + col*VEC + b % VEC
    assert np.array_equal(data["v7_c"], ((i % (rows_t * vec)) // vec) * cols_t + (j % (cols_t * vec)) // vec)
    for key in ("v5_c", "v7_c"):
        assert np.bincount(data[key].ravel()).tolist() == [rung5.TM * rung5.TN] * rung5.THREADS


def test_sub_pixel_phases_write_each_pixel_once_and_read_only_landing_taps(traced):
    data = traced["sub_pixel_phases"]
    s, pad, k = diagrams.PHASES_STRIDE, diagrams.PHASES_PAD, diagrams.PHASES_KERNEL
    h, v = np.indices(data["phase"].shape)
    assert np.array_equal(data["phase"], (h % s) * s + v % s)
    for z in range(s * s):
        rh, rw = divmod(z, s)
        i, j = np.indices((k, k))
        lands = ((i % s) == (rh + pad) % s) & ((j % s) == (rw + pad) % s)
        assert np.array_equal(data["taps_read"][z], lands.astype(int)), z


def test_every_committed_picture_is_what_its_kernel_does_now(traced):
    for name, data in traced.items():
        path = os.path.join(diagrams.FIGURES, name + ".png")
        assert os.path.exists(path), f"{path} missing: python -m dcgan_cuda.kernels.diagrams --sim"
        assert diagrams.stored_fingerprint(path) == diagrams.fingerprint(data), \
            f"{path} is stale: redraw with python -m dcgan_cuda.kernels.diagrams --sim"


def test_a_picture_drawn_from_other_data_is_reported_stale(traced, tmp_path):
    data = dict(traced["reduction_tree"])
    diagrams.render("reduction_tree", str(tmp_path), data)
    assert diagrams.stale(["reduction_tree"], str(tmp_path)) == []
    data["stored_by"] = data["stored_by"].copy()
    data["stored_by"][1, 0] = 5                                   # a tree the kernel does not build
    diagrams.render("reduction_tree", str(tmp_path), data)
    assert diagrams.stale(["reduction_tree"], str(tmp_path)) == ["reduction_tree"]


def test_the_course_shows_every_picture():
    readme = open(os.path.join(os.path.dirname(diagrams.FIGURES), "README.md")).read()
    for name in diagrams.DIAGRAMS:
        assert f"(figures/{name}.png)" in readme, name
