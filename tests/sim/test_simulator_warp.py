"""The simulator's warp primitives (kernels/simulator_warp.py) against hand-computed answers.

Lanes are numbered by a thread's linear index in its block, 32 to a warp; a mask names
the lanes that take part; a source lane out of range (or outside the mask, where the GPU
leaves the value undefined) gives the caller its own value.
"""
import numpy as np
import pytest
from numba import cuda

import dcgan_cuda.kernels.jit  # noqa: F401  (installs the primitives under the simulator)

FULL = 0xFFFFFFFF


@cuda.jit
def shuffles(values, out):
    t = cuda.threadIdx.x
    v = values[t]
    out[0, t] = cuda.shfl_down_sync(FULL, v, 3)
    out[1, t] = cuda.shfl_up_sync(FULL, v, 5)
    out[2, t] = cuda.shfl_xor_sync(FULL, v, 1)
    out[3, t] = cuda.shfl_sync(FULL, v, 33)      # only the low 5 bits count: lane 1


def test_shuffles_of_a_full_warp():
    values = np.arange(100, 132, dtype=np.float32)          # lane k holds 100 + k
    out = np.full((4, 32), np.nan, np.float32)
    shuffles[1, 32](values, out)
    # down 3: lane k reads k + 3; lanes 29, 30, 31 are out of range and keep their own.
    assert out[0].tolist() == [103 + k for k in range(29)] + [129, 130, 131]
    # up 5: lanes 0-4 keep their own; lane k >= 5 reads k - 5.
    assert out[1].tolist() == [100, 101, 102, 103, 104] + [95 + k for k in range(5, 32)]
    # xor 1: neighbours swap.
    assert out[2, :6].tolist() == [101, 100, 103, 102, 105, 104]
    assert out[3].tolist() == [101] * 32
    assert out.dtype == np.float32


def test_a_partial_last_warp_reads_only_lanes_that_exist():
    """A block of 40 threads: warp 1 has lanes 0-7 (threads 32-39); a full mask names only them."""
    values = np.arange(40, dtype=np.float32)
    out = np.full((4, 40), np.nan, np.float32)
    shuffles[1, 40](values, out)
    # Warp 1, down 3: lanes 0-4 (threads 32-36) read lanes 3-7; lanes 5-7 would read lanes
    # 8-10, which do not exist: their own value.
    assert out[0, 32:].tolist() == [35, 36, 37, 38, 39, 37, 38, 39]
    assert out[0, 28:32].tolist() == [31, 29, 30, 31]        # warp 0 never reads warp 1
    assert out[3, 32:].tolist() == [33] * 8


@cuda.jit
def two_dimensional(values, out):
    x, y = cuda.threadIdx.x, cuda.threadIdx.y
    out[y, x] = cuda.shfl_xor_sync(FULL, values[y, x], 8)


def test_lanes_follow_the_linear_thread_index_of_a_2d_block():
    """Block (8, 4): thread (x, y) is lane x + 8y, so xor 8 swaps rows 0 and 1, and 2 and 3."""
    values = np.arange(32, dtype=np.int64).reshape(4, 8)
    out = np.full((4, 8), -1, np.int64)
    two_dimensional[1, (8, 4)](values, out)
    assert out.tolist() == values[[1, 0, 3, 2]].tolist()


@cuda.jit
def divergent_halves(values, out):
    t = cuda.threadIdx.x
    if t < 16:
        out[t] = cuda.shfl_down_sync(0x0000FFFF, values[t], 8)
    else:
        out[t] = cuda.shfl_up_sync(0xFFFF0000, values[t], 1)


def test_two_branches_exchange_within_their_own_masks():
    values = np.arange(32, dtype=np.int32) * 10
    out = np.full(32, -1, np.int32)
    divergent_halves[1, 32](values, out)
    # Lanes 0-7 read lanes 8-15; lanes 8-15 would read 16-23, outside their mask: own value.
    assert out[:16].tolist() == [80, 90, 100, 110, 120, 130, 140, 150] + [80, 90, 100, 110, 120, 130, 140, 150]
    # Lane 16 would read lane 15, outside its mask: own value; lanes 17-31 read one down.
    assert out[16:].tolist() == [160] + [10 * k for k in range(16, 31)]


@cuda.jit
def votes(values, out):
    t = cuda.threadIdx.x
    v = values[t]
    out[0, t] = cuda.ballot_sync(FULL, v % 3 == 1)
    out[1, t] = cuda.all_sync(FULL, v >= 0)
    out[2, t] = cuda.any_sync(FULL, v > 30)
    out[3, t] = cuda.eq_sync(FULL, v > 30)
    out[4, t] = cuda.match_any_sync(FULL, v // 8)
    mask, equal = cuda.match_all_sync(0x0000000F, 7) if t < 4 else (0, False)
    out[5, t] = mask
    out[6, t] = cuda.lanemask_lt()
    out[7, t] = cuda.ballot_sync(0x000000F0, True) if 4 <= t < 8 else 0


def test_votes_and_matches():
    values = np.arange(32, dtype=np.int64)
    out = np.full((8, 32), -1, np.int64)
    votes[1, 32](values, out)
    # Lanes 1, 4, ..., 31: 0x92492492, bit 31 set, so negative as the int32 Numba types it.
    assert out[0].tolist() == [0x92492492 - (1 << 32)] * 32
    assert out[1].tolist() == [1] * 32
    assert out[2].tolist() == [1] * 32                                 # lane 31 has 31 > 30
    assert out[3].tolist() == [0] * 32                                 # not all the same
    assert out[4, 0] == 0x000000FF and out[4, 9] == 0x0000FF00 and out[4, 31] == 0xFF000000 - (1 << 32)
    assert out[5, :5].tolist() == [0xF, 0xF, 0xF, 0xF, 0]
    assert out[6, :4].tolist() == [0, 1, 3, 7] and out[6, 31] == 0x7FFFFFFF
    assert out[7, 4:8].tolist() == [0xF0] * 4


@cuda.jit
def neighbours_through_shared(out):
    tile = cuda.shared.array(32, np.float32)
    t = cuda.threadIdx.x
    tile[t] = t * 2
    cuda.syncwarp()
    out[t] = tile[(t + 1) % 32]


def test_syncwarp_orders_shared_memory_within_the_warp():
    out = np.full(32, np.nan, np.float32)
    neighbours_through_shared[1, 32](out)
    assert out.tolist() == [2.0 * ((t + 1) % 32) for t in range(32)]


@cuda.jit
def early_exit_then_activemask(out):
    t = cuda.threadIdx.x
    if t % 4 == 3:
        return
    mask = cuda.activemask()
    out[t] = cuda.shfl_down_sync(mask, t, 1)
    out[32 + t] = mask


def test_activemask_leaves_out_lanes_that_returned():
    out = np.full(64, -1, np.int64)
    early_exit_then_activemask[1, 32](out)
    active = sum(1 << k for k in range(32) if k % 4 != 3)
    assert out[32:].tolist() == [active if k % 4 != 3 else -1 for k in range(32)]
    # Lane 2 would read lane 3, which returned (outside the mask): its own value.
    assert out[:4].tolist() == [1, 2, 2, -1]


@cuda.jit
def full_mask_after_return(out):
    t = cuda.threadIdx.x
    if t < 16:
        return
    out[t] = cuda.shfl_down_sync(FULL, t, 1)


@cuda.jit
def shuffle_beside_syncthreads(out):
    t = cuda.threadIdx.x
    if t == 0:
        cuda.syncthreads()
    else:
        out[t] = cuda.shfl_down_sync(FULL, t, 1)


@cuda.jit
def mask_without_the_caller(out):
    t = cuda.threadIdx.x
    out[t] = cuda.shfl_down_sync(0x1, t, 1)


@cuda.jit
def different_primitives(out):
    t = cuda.threadIdx.x
    if t == 0:
        out[t] = cuda.ballot_sync(FULL, True)
    else:
        out[t] = cuda.shfl_down_sync(FULL, t, 1)


@pytest.mark.parametrize("kernel,message", [
    (full_mask_after_return, "lane 0 has exited"),
    (shuffle_beside_syncthreads, "lane 0 waits at syncthreads"),
    (mask_without_the_caller, "which does not name it"),
    (different_primitives, "met at different primitives"),
], ids=["exited-lane", "syncthreads", "mask-without-caller", "different-primitives"])
def test_what_the_gpu_leaves_undefined_is_an_error_not_a_hang(kernel, message):
    with pytest.raises(RuntimeError, match=message):
        kernel[1, 32](np.zeros(32, np.int64))


@cuda.jit
def shuffles_between_barriers(out):
    t = cuda.threadIdx.x
    v = t
    for _ in range(3):
        v = cuda.shfl_xor_sync(FULL, v, 1)
        cuda.syncthreads()
    out[t] = v


def test_shuffles_right_after_a_barrier():
    """The simulator lets a barrier's threads go one at a time: a lane already through must
    not take one still flagged as waiting there for a lane that will never arrive."""
    out = np.full(64, -1, np.int64)
    shuffles_between_barriers[1, 64](out)
    assert out.tolist() == [t ^ 1 for t in range(64)]       # three swaps: swapped once


@cuda.jit
def out_of_bounds_before_a_shuffle(values, out):
    t = cuda.threadIdx.x
    v = values[40 if t == 5 else t]          # lane 5 reads past the end of a 32-element array
    out[t] = cuda.shfl_down_sync(FULL, v, 1)


def test_a_lane_that_fails_is_the_error_reported():
    with pytest.raises(IndexError):
        out_of_bounds_before_a_shuffle[1, 32](np.zeros(32, np.int64), np.zeros(32, np.int64))
