"""What every version of the reduction shares, and batchnorm, loss and dropout reuse.

    THREADS       threads per block of every block reduction
    kernel        jit.kernel, named reduction.<function> whichever file defines it
    block_sum     a block's THREADS values summed by a tree in shared memory (version 1
                  explains the tree); block_sum2: two such sums in one tree
    advance       one step of a walk over a channel's values, without a division
    channel_view  an (N, C, ...) array as the (N*C, H*W) view the kernels index
    workspace     scratch memory for values passed from one kernel of a launcher to the next
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .. import jit
from ..jit import SIMULATOR

# Threads per block of every block reduction in this folder. A power of two (the tree halves
# it), a multiple of the 32-thread warp. Under the simulator each thread is an OS thread and
# every barrier costs all of them, so it is small; loops then make several trips, which is
# what the tests want to exercise anyway.
THREADS = 32 if SIMULATOR else 256


# jit.kernel, registering each kernel as reduction.<function> whichever file defines it.
kernel = jit.family_kernel("reduction")


@cuda.jit(device=True)
def block_sum(partial, tid):
    """Sum of partial[0..THREADS) (shared memory, one value per thread), returned to every
    thread. Sequential addressing: active threads stay contiguous, no bank conflicts.

    The block must have exactly THREADS threads, and every one of them must call it (it
    contains barriers). It ends with a barrier, so the caller may overwrite ``partial`` at once.
    """
    cuda.syncthreads()  # every thread's partial is in shared memory before anyone reads it
    half = THREADS // 2
    while half > 0:
        if tid < half:
            partial[tid] += partial[tid + half]
        cuda.syncthreads()
        half //= 2
    total = partial[0]
    cuda.syncthreads()  # everyone has read partial[0] before it may be reused
    return total


@cuda.jit(device=True)
def block_sum2(first, second, tid):
    """Two block sums in one tree (half the barriers of two calls to block_sum)."""
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if tid < half:
            first[tid] += first[tid + half]
            second[tid] += second[tid + half]
        cuda.syncthreads()
        half //= 2
    total_first, total_second = first[0], second[0]
    cuda.syncthreads()
    return total_first, total_second


@cuda.jit(device=True)
def advance(n, s, dn, ds, run):
    """One step of a walk over a channel's values, numbered i = n*run + s (image n, offset s
    in its run of H*W floats), by step = dn*run + ds (dn, ds = divmod(step, run), computed
    once). Saves an integer division per element: 64-bit division is a long instruction
    sequence on a GPU, a compare and an add are not."""
    n += dn
    s += ds
    if s >= run:
        s -= run
        n += 1
    return n, s


_workspaces = {}


def workspace(like, shape, role):
    """Scratch float32 memory for values that pass between the kernels of one launcher call
    (allocation only, no arithmetic); ``role`` names the use ("batchnorm.scale"), so two
    scratch arrays of one call never share memory.

    Under the simulator (``like`` a NumPy array) a fresh NaN-filled array every call, so a
    slot a kernel forgets to write shows up. On a GPU one buffer per (shape, device, stream),
    kept for the life of the process: its contents live only from one kernel of a launcher to
    the next, and launches on one stream run in order, so reuse is safe; and a CUDA graph
    captured around a training step keeps pointing at memory that nobody else gets. (A fresh
    CuPy allocation per call would go back to CuPy's pool when the launcher returns, and a
    graph replay would then write into whatever array got it next.)"""
    if isinstance(like, np.ndarray):
        return np.full(shape, np.nan, np.float32)
    import cupy
    key = (role, tuple(shape), cupy.cuda.Device().id, cupy.cuda.get_current_stream().ptr)
    buffer = _workspaces.get(key)
    if buffer is None:
        buffer = _workspaces[key] = cupy.empty(shape, cupy.float32)
    return buffer


def channel_view(x):
    """x (N, C, ...) as the 2-D view (N*C, H*W) the kernels index: row n*C + c is image n's
    run of channel c (a (N, C) array becomes runs of length 1)."""
    rows = x.shape[0] * x.shape[1]
    return x.reshape(rows, x.size // rows if rows else 1)
