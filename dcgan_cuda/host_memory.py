"""Keep freed host memory in the process: large NumPy temporaries then reuse warm pages.

A training step on the NumPy backend allocates and frees the same large temporaries
every step (im2col matrices, GEMM outputs, col2im buffers: up to 16 MB each at 32x32,
batch 64). glibc serves every block above its mmap threshold (128 KiB at first) with a
fresh mmap and unmaps it on free, so each step the kernel hands out, and zeroes, those
pages again. Measured on the 2-core machine of bench/results/cpu: 10-20% of a step
(160 -> 132 ms for the same code in back-to-back runs, 32x32, batch 64). Raising the mmap threshold to glibc's
maximum (32 MiB on 64-bit) and switching off the trimming of the heap's top keeps freed
blocks for reuse, the same trade that PyTorch's CPU tuning guide makes by preloading
jemalloc or tcmalloc: the process keeps its peak footprint instead of returning it.

Called by the programs that run training steps (python -m dcgan_cuda.train,
bench/train_bench.py, where it serves PyTorch's allocations in the same process too), not
on import: it changes the whole process's allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1      # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20     # glibc refuses more on 64-bit (4 MiB * sizeof(long))
NEVER_TRIM = 2 ** 31 - 1


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above; True if it took effect, False where there is no glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    except (OSError, AttributeError):
        return False
