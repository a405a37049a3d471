"""access_profiler — see how a kernel uses the memory system, on a laptop, without a GPU.

A GPU does not run threads one by one: it runs them 32 at a time, in **warps** (threads
0-31 of a block are warp 0, 32-63 warp 1, ..., counting threads by their linear index
t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)). When a warp
executes one load or store instruction, its up to 32 addresses go to the memory system
together, as one **request**, and how fast that request is served depends on the pattern
of those 32 addresses, not on any one of them:

* **Global memory** (the arrays a kernel is given) moves in **sectors** of 32 bytes. A
  request costs as many sectors as its addresses touch. 32 threads reading 32 consecutive
  floats touch 128 bytes = 4 sectors ("coalesced"); reading every other float touches 8
  sectors for the same 32 floats, half of every sector wasted; a stride of 8 floats or
  more puts every thread in its own sector: 32 sectors, 1/8 of the bytes moved used.
* **Shared memory** (``cuda.shared.array``, on chip, one per block) is 32 **banks**, each
  4 bytes wide: byte address a is in bank (a // 4) % 32. A bank delivers one 4-byte word
  per clock, so a request whose threads want k different words of the same bank takes k
  passes (**wavefronts**): a k-way **bank conflict**. Threads that read the same word
  share it (a **broadcast**): free.

Nsight Compute (``ncu``) measures exactly these figures on a GPU. This module computes
them from the simulator instead: under ``NUMBA_ENABLE_CUDASIM=1`` Numba runs every GPU
thread of a launch as Python, so every array access can be recorded, with its thread,
array, byte address and source location, then grouped into warp requests the way the
hardware groups them. The figures carry ``ncu``'s metric names, so the two can be held
side by side when a GPU is at hand (``bench/ncu_compare.py``)::

    profile = trace_launch(kernel, grid, block, *args)   # a cuda.jit kernel, NumPy arrays
    profile.metrics["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"]
    profile.per_thread          # the most global/shared loads/stores any one thread made
    print(profile.summary())
    draw_threads(profile, "copy.png")   # which thread touched which element
    draw_banks(profile, "banks.png")    # which lane hit which bank, request by request

    with tracing() as launches:          # every launch made inside, e.g. by a launcher
        conv2d.forward(x, w, y, (2, 2), (1, 1), version=5)

How accesses become requests. Every access is recorded with a **site**: the instruction
that made it (its source position), together with the chain of calls from the kernel down
to it (a device function inlined at two call sites is two sites, as in the compiled code),
and with the **trip** of every ``for ... in range(...)`` loop around it, in each function
of that chain: trip = (loop variable - start) // step. The accesses of one warp with the
same site and trips are one request: the warp executing that instruction in that
iteration. (Should a site run twice within one trip, a per-thread occurrence count tells
the executions apart.) Divergence: lanes that skip an instruction (an ``if`` they fail, a
loop they leave early) are absent from its requests, as inactive lanes are on the GPU,
and the two sides of a branch are different sites, hence separate requests, as the GPU
runs them one after the other. Counting trips, not just occurrences, keeps lanes that
skip an access in some trips (a thread at an image border skips the padding taps) with
the lanes of the trip they are in. Left to the occurrence count, and so possibly grouped
wrongly: ``while`` loops whose trip counts differ between the lanes of a warp, and loops
over anything but ``range``.

Shared memory moves at most 128 bytes per pass, so a warp asking for 8 or 16 bytes a
lane is served 16 or 8 lanes at a time, each group checked for conflicts on its own
(lane_group, with its source): a conflict-free 16-byte request takes 4 wavefronts.

What the compiler merges. Four loads of neighbouring floats in one source line can
become one 16-byte instruction (``ld.shared.v4.f32``): one request, not four. The
simulator cannot see that, so the profile asks the compiler: it compiles the kernel to
PTX with line information (in a separate process without the simulator, see
vector_widths) and reads, for each line of the kernel, the widest vector load and store
to each memory space. Where a line has one, each thread's successive accesses of one
site that are contiguous and aligned to that width are merged into one access before
requests are formed. PTX attributes the instructions of an inlined device function to
the line of the kernel that calls it, so widths are looked up by that line.

Sampling. A DCGAN-sized launch has thousands of blocks of 256 threads: far too many for
Python. ``blocks=`` and ``warps=`` run a stratified sample (the first and last block
along each grid axis and evenly spaced interior ones, each standing for its share of the
grid; warps likewise within a block) and scale every count by what each sampled unit
stands for. With a sample the counts are estimates (``profile.sampled``); without one
they are exact. Tracing costs nothing when it is off: the simulator is patched only
inside trace_launch and ``with tracing()``. Running a subset of a block's warps leaves the rest of its shared memory
unwritten: the addresses stay right as long as no address depends on data another warp
wrote (true of every kernel here).

Blind spots. The profile counts what a kernel asks of the memory system. It does not
know what the caches keep (L1 and L2 hits), how warps are scheduled, how latency is
hidden, or how many instructions are issued: see bench/roofline.py for what can be
bounded from these counts, and a GPU for the rest.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import os
import subprocess
import sys
import threading
from array import array as _raw_array
from collections import namedtuple

import numpy as np

WARP = 32              # threads per warp
SECTOR = 32            # bytes per global-memory sector
BANKS = 32             # shared-memory banks ...
BANK_BYTES = 4         # ... each 4 bytes wide
WAVEFRONT_BYTES = BANKS * BANK_BYTES   # what shared memory delivers per pass: 128 bytes
# How long Python lets one simulated thread run before switching (seconds); see _run.
# Whether cuda.local.array accesses are counted (a thread's loads and stores of them):
# each costs a Python call, about doubling a register-blocked GEMM's simulated time.
COUNT_LOCAL = True
SWITCH_INTERVAL = float(os.environ.get("DCGAN_CUDA_TRACE_SWITCH", "1e-3"))

# What an access was. Global = an array argument of the kernel; shared = cuda.shared.array;
# local = cuda.local.array (registers or local memory: the compiler decides, see ptxas).
GLOBAL_LD, GLOBAL_ST, GLOBAL_ATOM, SHARED_LD, SHARED_ST, SHARED_ATOM = range(6)
KIND_NAMES = ("global_op_ld", "global_op_st", "global_op_atom", "shared_op_ld", "shared_op_st", "shared_op_atom")
_GLOBAL_KINDS = (GLOBAL_LD, GLOBAL_ST, GLOBAL_ATOM)
_SHARED_KINDS = (SHARED_LD, SHARED_ST, SHARED_ATOM)

# One recorded access: 6 integers per access, appended to a per-thread raw array (a Python
# tuple per access would cost ~100 bytes; millions of accesses are common).
_FIELDS = ("site", "occurrence", "array", "address", "nbytes", "kind", "context")

Site = namedtuple("Site", "frames kernel_line")
# frames: ((file, line, function), ...) from the access out to the kernel; kernel_line: the
# line of the kernel function itself that leads to the access (the line PTX attributes it to).

ArrayInfo = namedtuple("ArrayInfo", "name space shape itemsize nbytes")


# ----------------------------------------------------------------------------- recording
class _ThreadLog:
    """What one simulated thread recorded: its accesses and its occurrence counters."""

    __slots__ = ("records", "occurrences", "local_loads", "local_stores", "launch", "thread_id")

    def __init__(self, launch, thread_id):
        self.records = _raw_array("q")
        self.occurrences = {}
        self.local_loads = 0
        self.local_stores = 0
        self.launch = launch
        self.thread_id = thread_id

    def record(self, array_id, address, nbytes, kind, frame):
        site, context = self.launch.site_of(frame)
        counter = (site * 8 + kind, context)   # `a[i] += v` loads and stores at one source position
        occurrence = self.occurrences.get(counter, 0)
        self.occurrences[counter] = occurrence + 1
        self.records.extend((site, occurrence, array_id, address, nbytes, kind, context))


def _element_offset(index, shape, strides):
    """Byte offset of element ``index`` (a tuple of integers, one per axis) from the start
    of an array with these shape and strides; negative indices count from the end, as in
    Numba (which wraps them the same way)."""
    offset = 0
    for i, n, s in zip(index, shape, strides):
        i = int(i)
        offset += (i + n if i < 0 else i) * s
    return offset


class TracedArray:
    """A NumPy array, as one simulated thread sees it, that records every element it reads
    or writes. Views (``a[i]`` of a 2-D array) are TracedArrays of the same memory."""

    __slots__ = ("_data", "_log", "_array_id", "_base", "_load", "_store", "_atomic")

    def __init__(self, data, log, array_id, base, kinds):
        self._data = data
        self._log = log
        self._array_id = array_id
        self._base = base                   # byte offset of data[0, ...] in its allocation
        self._load, self._store, self._atomic = kinds

    def _offset(self, index):
        if type(index) is not tuple:
            index = (index,)
        return self._base + _element_offset(index, self._data.shape, self._data.strides)

    def _view(self, view):
        base = self._base + (view.__array_interface__["data"][0] - self._data.__array_interface__["data"][0])
        return TracedArray(view, self._log, self._array_id, base, (self._load, self._store, self._atomic))

    def __getitem__(self, index):
        value = self._data[index]
        if isinstance(value, np.ndarray):
            return self._view(value)
        if self._load is not None:
            self._log.record(self._array_id, self._offset(index), self._data.itemsize, self._load,
                             sys._getframe(1))
        else:
            self._log.local_loads += 1
        return value

    def __setitem__(self, index, value):
        self._data[index] = value
        if self._store is not None:
            self._log.record(self._array_id, self._offset(index), self._data.itemsize, self._store,
                             sys._getframe(1))
        else:
            self._log.local_stores += 1

    def _record_atomic(self, index, frame):
        if self._atomic is not None:
            self._log.record(self._array_id, self._offset(index), self._data.itemsize, self._atomic, frame)

    # What kernels ask of an array besides its elements.
    shape = property(lambda self: self._data.shape)
    size = property(lambda self: self._data.size)
    ndim = property(lambda self: self._data.ndim)
    dtype = property(lambda self: self._data.dtype)
    strides = property(lambda self: self._data.strides)
    itemsize = property(lambda self: self._data.itemsize)

    def __len__(self):
        return len(self._data)

    def __getattr__(self, name):
        return getattr(self._data, name)


# ------------------------------------------------------------ the simulated machine, traced
def _simulator():
    """Numba's simulator modules; importing them needs NUMBA_ENABLE_CUDASIM=1."""
    from numba.cuda.simulator import kernel, kernelapi
    return kernel, kernelapi


class _BlockBarrier:
    """syncthreads for the threads of one block that are running: it opens when every one
    that has not exited waits at it (an exited thread no longer counts, as on the GPU).
    A thread that fails breaks it, and every waiter raises instead of waiting forever."""

    def __init__(self, parties):
        self.live = parties
        self.waiting = 0
        self.generation = 0
        self.broken = False
        self.condition = threading.Condition()

    def _open(self):
        self.waiting = 0
        self.generation += 1
        self.condition.notify_all()

    def wait(self):
        with self.condition:
            if self.broken:
                raise RuntimeError("another thread of the block failed")
            generation = self.generation
            self.waiting += 1
            if self.waiting == self.live:
                self._open()
                return
            while generation == self.generation and not self.broken:
                self.condition.wait()
            if self.broken:
                raise RuntimeError("another thread of the block failed")

    def leave(self):
        with self.condition:
            self.live -= 1
            if self.waiting and self.waiting == self.live:
                self._open()

    def break_(self):
        with self.condition:
            self.broken = True
            self.condition.notify_all()


class _BlockState:
    """Stands in for the simulator's BlockManager where other code looks for one (the
    warp primitives of kernels/simulator_warp.py keep their per-block state on it)."""

    def __init__(self, block_dim):
        self._block_dim = block_dim
        self.block_state = np.zeros(block_dim, dtype=np.bool_)


class _TracedThread(threading.Thread):
    """One GPU thread: runs the kernel function on its own TracedArrays of the arguments."""

    def __init__(self, fn, args, launch, block_idx, thread_idx, barrier, state, warp_state):
        super().__init__(daemon=True)
        _, kernelapi = _simulator()
        self.fn, self.args, self.barrier, self._manager = fn, args, barrier, state
        self.blockIdx = kernelapi.Dim3(*block_idx)
        self.threadIdx = kernelapi.Dim3(*thread_idx)
        bx, by, _ = state._block_dim
        self.thread_id = thread_idx[0] + bx * (thread_idx[1] + by * thread_idx[2])
        self.log = _ThreadLog(launch, self.thread_id)
        self.error = None
        self.abort = False
        self.syncthreads_blocked = False
        self._warp_state = warp_state
        if warp_state is not None:
            with warp_state.condition:
                warp_state.roster[self.thread_id] = self

    def run(self):
        try:
            self.fn(*[self.log.launch.traced_argument(a, self.log) for a in self.args])
        except Exception as error:  # reported by the launch, with the thread's coordinates
            self.error = (error, sys.exc_info()[2])
            self.barrier.break_()
        finally:
            self.barrier.leave()
            if self._warp_state is not None:
                with self._warp_state.condition:
                    self._warp_state.exited.add(self.thread_id)
                    self._warp_state.condition.notify_all()

    def syncthreads(self):
        self.syncthreads_blocked = True
        try:
            self.barrier.wait()
        finally:
            self.syncthreads_blocked = False

    def _vote(self, value, combine):
        idx = tuple(self.threadIdx)
        self._manager.block_state[idx] = value
        self.syncthreads()
        result = combine(self._manager.block_state)
        self.syncthreads()
        return result

    def syncthreads_count(self, value):
        return self._vote(value, np.count_nonzero)

    def syncthreads_and(self, value):
        return self._vote(value, lambda s: 1 if np.all(s) else 0)

    def syncthreads_or(self, value):
        return self._vote(value, lambda s: 1 if np.any(s) else 0)


def _module_classes():
    """The traced stand-ins of the simulator's in-kernel cuda module (made on first use,
    because the simulator cannot be imported without NUMBA_ENABLE_CUDASIM=1)."""
    if _module_classes.made is not None:
        return _module_classes.made
    _, kernelapi = _simulator()
    from numba.np import numpy_support
    from numba import types as numba_types

    class TracedShared(kernelapi.FakeCUDAShared):
        """cuda.shared.array: one NumPy array per source line and block (as the simulator
        allocates them, under a lock), handed to each thread as its TracedArray."""

        def __init__(self, dynshared_size, launch):
            super().__init__(dynshared_size)
            self._launch = launch
            self._lock = threading.Lock()

        def array(self, shape, dtype, alignment=None):
            if isinstance(dtype, numba_types.Type):
                dtype = numpy_support.as_dtype(dtype)
            caller = sys._getframe(1)
            key = (caller.f_code.co_filename, caller.f_lineno)
            with self._lock:
                if shape == 0:   # dynamic shared memory: one buffer for every such array
                    key = ("dynamic", np.dtype(dtype).str)
                    found = self._allocations.get(key)
                    if found is None:
                        count = self._dynshared_size // np.dtype(dtype).itemsize
                        found = self._allocations[key] = np.frombuffer(self._dynshared.data, dtype=dtype,
                                                                       count=count)
                else:
                    found = self._allocations.get(key)
                    if found is None:    # NaN until written: a read of an unwritten float shows
                        found = self._allocations[key] = (np.full(shape, np.nan, dtype)
                                                          if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype))
            array_id = self._launch.shared_array_id(key, found, caller)
            log = threading.current_thread().log
            return TracedArray(found, log, array_id, 0, (SHARED_LD, SHARED_ST, SHARED_ATOM))

    class TracedLocal(kernelapi.FakeCUDALocal):
        """cuda.local.array: private to a thread; only counted (loads, stores per thread)."""

        def array(self, shape, dtype, alignment=None):
            if isinstance(dtype, numba_types.Type):
                dtype = numpy_support.as_dtype(dtype)
            data = np.empty(shape, dtype)
            if not COUNT_LOCAL:
                return data
            return TracedArray(data, threading.current_thread().log, -1, 0, (None, None, None))

    class TracedAtomic(kernelapi.FakeCUDAAtomic):
        """cuda.atomic.*: one atomic access (not a load and a store) on the traced array."""

    def atomic_method(name):
        original = getattr(kernelapi.FakeCUDAAtomic, name)

        def method(self, array, *args):
            if isinstance(array, TracedArray):
                index = args[0] if name not in ("compare_and_swap",) else (0,) * array.ndim
                array._record_atomic(index, sys._getframe(1))
                array = array._data
            return original(self, array, *args)
        method.__name__ = name
        return method

    for name in ("add", "sub", "and_", "or_", "xor", "inc", "dec", "exch", "max", "min", "nanmax", "nanmin",
                 "compare_and_swap", "cas"):
        if hasattr(kernelapi.FakeCUDAAtomic, name):
            setattr(TracedAtomic, name, atomic_method(name))

    class TracedModule(kernelapi.FakeCUDAModule):
        """The `cuda` a traced kernel sees: the simulator's, with traced memory."""

        def __init__(self, grid_dim, block_dim, dynshared_size, launch):
            super().__init__(grid_dim, block_dim, dynshared_size)
            self._shared = TracedShared(dynshared_size, launch)
            self._local = TracedLocal()
            self._atomic = TracedAtomic()

        def new_block(self):
            """Fresh shared memory for the next block (the simulator's lives per launch,
            which is right only because it runs blocks one after another and never reads
            shared memory a block did not write)."""
            self._shared = TracedShared(self._shared._dynshared_size, self._shared._launch)

    _module_classes.made = TracedModule
    return TracedModule


_module_classes.made = None


# ------------------------------------------------------------------------ sampling
def stratified(extent, interior=1):
    """[(index, weight)]: a sample of range(extent) that keeps its edges: the first and the
    last index and ``interior`` evenly spaced indices between them, each standing for an
    equal share of the rest (with interior=0 the first index stands for them, with -1 for
    every index). Every index, weight 1, when there are few enough."""
    if interior < 0:             # the first alone stands for all
        return [(0, float(extent))]
    if extent <= interior + 2:
        return [(i, 1.0) for i in range(extent)]
    if interior == 0:
        return [(0, float(extent - 1)), (extent - 1, 1.0)]
    inner = extent - 2
    picks = sorted({1 + int((k + 0.5) * inner / interior) for k in range(interior)})
    return [(0, 1.0)] + [(i, inner / len(picks)) for i in picks] + [(extent - 1, 1.0)]


def _dims3(d):
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    return tuple(int(v) for v in d) + (1,) * (3 - len(d))


def sample_blocks(grid, interior=1):
    """[(block index (x, y, z), weight)]: stratified() along each axis of the grid, with
    ``interior`` interior blocks per axis (or a tuple: one count per axis x, y, z)."""
    gx, gy, gz = _dims3(grid)
    ix, iy, iz = interior if isinstance(interior, tuple) else (interior,) * 3
    return [((x, y, z), wx * wy * wz) for (z, wz), (y, wy), (x, wx)
            in itertools.product(stratified(gz, iz), stratified(gy, iy), stratified(gx, ix))]


# ----------------------------------------------------------------------------- a launch
class _Launch:
    """The bookkeeping of one traced launch: arrays, sites and every thread's log."""

    def __init__(self, fn, grid_dim, block_dim, args):
        self.fn = fn
        self.kernel_code = fn.__code__
        self.grid_dim, self.block_dim = grid_dim, block_dim
        self.arrays = []            # ArrayInfo per array id
        self._global_ids = {}       # id(allocation) -> array id
        self._shared_ids = {}       # (file, line) -> array id
        self.sites = []             # Site per site id
        self._site_ids = {}
        self._context_ids = {}
        self._lock = threading.Lock()
        self._skip = {}             # code object -> whether its frames are simulator machinery
        self.logs = []              # (block ordinal, _ThreadLog)
        try:
            self.parameter_names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            self.parameter_names = []
        self.arguments = [self._prepare(position, a) for position, a in enumerate(args)]

    # -- arrays
    def _prepare(self, position, value):
        """A kernel argument as the traced threads get it: arrays as (array id, data, base)."""
        kernel_mod, _ = _simulator()
        from numba.cuda.simulator.args import ArgHint
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        if isinstance(value, ArgHint):
            value = value.value
        if isinstance(value, FakeCUDAArray):
            value = value._ary
        if isinstance(value, TracedArray):
            value = value._data
        if not (isinstance(value, np.ndarray) and value.ndim > 0):
            return ("value", value)
        root = value
        while isinstance(root.base, np.ndarray):
            root = root.base
        root_address = root.__array_interface__["data"][0]
        key = (root_address, root.nbytes)
        array_id = self._global_ids.get(key)
        name = self.parameter_names[position] if position < len(self.parameter_names) else f"arg{position}"
        if array_id is None:
            array_id = self._global_ids[key] = len(self.arrays)
            self.arrays.append(ArrayInfo(name, "global", value.shape, value.itemsize, root.nbytes))
        # Allocations on a GPU start 256-byte aligned (cudaMalloc; CuPy's pool aligns to 512):
        # addresses are offsets from the allocation's start, so sectors fall as on the GPU.
        base = value.__array_interface__["data"][0] - root_address
        return ("array", value, array_id, base)

    def traced_argument(self, prepared, log):
        if prepared[0] == "value":
            return prepared[1]
        _, data, array_id, base = prepared
        return TracedArray(data, log, array_id, base, (GLOBAL_LD, GLOBAL_ST, GLOBAL_ATOM))

    def shared_array_id(self, key, data, caller):
        array_id = self._shared_ids.get(key)
        if array_id is None:
            with self._lock:
                array_id = self._shared_ids.get(key)
                if array_id is None:
                    name = _assigned_name(caller) or f"shared@{os.path.basename(key[0])}:{key[1]}"
                    array_id = self._shared_ids[key] = len(self.arrays)
                    self.arrays.append(ArrayInfo(name, "shared", data.shape, data.itemsize, data.nbytes))
        return array_id

    # -- sites
    def _is_machinery(self, code):
        skip = self._skip.get(code)
        if skip is None:
            skip = self._skip[code] = _is_machinery_file(code.co_filename)
        return skip

    def site_of(self, frame):
        """(site id, context id) of the access made in ``frame``.

        The site is the instruction and the calls above it, out to the kernel function
        (simulator frames in between are skipped). An instruction is named by its source
        position (line and columns), not its bytecode offset: Python 3.11+ rewrites a hot
        instruction in place into a specialised one, and the frame's offset then moves.

        The context is the trip of every `for ... in range(...)` loop around the access,
        in every frame of the chain: trip = (value - start) // step, the same for every
        lane in the same iteration even where lanes start at different values (a
        grid-stride loop). Lanes that skip an access in some trips (an `if` at an image
        border) are then still grouped with the lanes of the trip they are in."""
        key = []
        context = []
        depth = 0
        while frame is not None and depth < 32:
            code = frame.f_code
            if code is self.kernel_code or not self._is_machinery(code):
                position = _position(code, frame)
                key.append((code, position))
                loops = _loops_around(code, position[0])
                if loops:
                    local = frame.f_locals
                    for var, start, step in loops:
                        value = local.get(var)
                        if value is None:
                            context.append(-1)
                            continue
                        first = 0 if start is None else _bound(start, frame, local)
                        stride = 1 if step is None else _bound(step, frame, local)
                        context.append((int(value) - int(first)) // int(stride) if stride else 0)
                if code is self.kernel_code:
                    break
            frame = frame.f_back
            depth += 1
        key = tuple(key)
        site = self._site_ids.get(key)
        if site is None:
            with self._lock:
                site = self._site_ids.get(key)
                if site is None:
                    site = self._site_ids[key] = len(self.sites)
                    self.sites.append(self._describe(key))
        context = tuple(context)
        context_id = self._context_ids.get(context)
        if context_id is None:
            with self._lock:
                context_id = self._context_ids.setdefault(context, len(self._context_ids))
        return site, context_id

    def _describe(self, key):
        frames = tuple((code.co_filename, position[0], code.co_name) for code, position in key)
        kernel_line = frames[-1][1] if frames and key[-1][0] is self.kernel_code else None
        return Site(frames, kernel_line)


_positions = {}
_loops = {}
_loops_lock = threading.Lock()


def _loops_around(code, line):
    """[(loop variable, start, step)] of the `for v in range(...)` loops whose body holds
    ``line`` in the function of ``code``, outermost first; start and step are compiled
    expressions (None for 0 and 1), evaluated in the frame when an access needs them."""
    table = _loops.get(code)
    if table is None:
        with _loops_lock:      # one parse per function: CPython's ast.parse is not safe in threads at once
            table = _loops.get(code)
            if table is None:
                table = _loops[code] = _range_loops(code)
    found = table.get(line)
    if found is None:
        found = table[line] = tuple((var, start, step) for first, last, var, start, step in table["loops"]
                                    if first <= line <= last)
    return found


def _bound(getter, frame, local):
    """A range() bound's value in the frame (see _range_loops)."""
    how, what = getter
    if how == "constant":
        return what
    if how == "name":
        value = local.get(what)
        return value if value is not None else frame.f_globals[what]
    return eval(what, frame.f_globals, local)


def _range_loops(code):
    """{"loops": [(first body line, last line, variable, start, step)]} read from the source."""
    import ast
    import inspect
    import textwrap
    try:
        lines, first_line = inspect.getsourcelines(code)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return {"loops": ()}
    loops = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Call)
                and isinstance(node.iter.func, ast.Name) and node.iter.func.id == "range" and node.body):
            continue
        args = node.iter.args
        start = args[0] if len(args) >= 2 else None
        step = args[2] if len(args) == 3 else None

        def compiled(expr):
            """How to get the value of a range() bound: a constant, a variable, or an expression."""
            if expr is None:
                return None
            if isinstance(expr, ast.Constant) and isinstance(expr.value, int):
                return ("constant", expr.value)
            if isinstance(expr, ast.Name):
                return ("name", expr.id)
            return ("expression", compile(ast.Expression(expr), code.co_filename, "eval"))
        loops.append((node.body[0].lineno + first_line - 1, node.end_lineno + first_line - 1, node.target.id,
                      compiled(start), compiled(step)))
    loops.sort(key=lambda loop: (loop[0], -loop[1]))
    return {"loops": tuple(loops)}


def _position(code, frame):
    """(line, end line, column, end column) of the instruction the frame is executing."""
    table = _positions.get(code)
    if table is None:
        table = _positions[code] = list(code.co_positions()) if hasattr(code, "co_positions") else None
    if table is None:            # Python < 3.11: lines only
        return (frame.f_lineno, None, None, None)
    return table[frame.f_lasti // 2]


_MACHINERY_DIRS = None


def _is_machinery_file(filename):
    global _MACHINERY_DIRS
    if _MACHINERY_DIRS is None:
        kernel_mod, _ = _simulator()
        _MACHINERY_DIRS = (os.path.dirname(os.path.abspath(kernel_mod.__file__)),
                           os.path.dirname(os.path.abspath(contextlib.__file__)) + os.sep + "contextlib",
                           os.path.abspath(__file__).rsplit(".", 1)[0])
    path = os.path.abspath(filename)
    return path.startswith(_MACHINERY_DIRS[0] + os.sep) or path.startswith(_MACHINERY_DIRS[1:])


def _assigned_name(frame):
    """The variable a cuda.shared.array(...) call is assigned to, read from its source line."""
    try:
        import linecache
        text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    except Exception:
        return None
    head = text.split("=", 1)[0].strip() if "=" in text else ""
    return head if head.isidentifier() else None


def _run(fn, grid, block, args, dynshared=0, blocks=None, warps=None):
    """Run one launch of kernel function ``fn`` with traced memory; the _Launch and the
    (block ordinal, block index, weight, warps run with their weights) of what ran."""
    kernel_mod, kernelapi = _simulator()
    grid_dim, block_dim = _dims3(grid), _dims3(block)
    launch = _Launch(fn, grid_dim, block_dim, args)
    TracedModule = _module_classes()
    module = TracedModule(grid_dim, block_dim, dynshared, launch)
    threads_in_block = int(np.prod(block_dim))
    warps_in_block = -(-threads_in_block // WARP)
    if callable(blocks):          # a rule: the sample's interior counts for this grid
        blocks = blocks(grid_dim)
    if blocks is None:
        blocks = [(b, 1.0) for b in _all_blocks(grid_dim)]
    elif isinstance(blocks, (int, tuple)) and not (blocks and isinstance(blocks, tuple)
                                                      and isinstance(blocks[0], (tuple, list))):
        blocks = sample_blocks(grid_dim, interior=blocks)
    else:    # block indices, or (block index, weight) pairs
        blocks = [(_dims3(b[0]), float(b[1])) if len(b) == 2 and isinstance(b[1], float) else (_dims3(b), 1.0)
                  for b in blocks]
    if callable(warps):           # a rule: the interior count for this launch
        warps = warps(grid_dim, block_dim)
    if warps is None:
        warp_sample = [(w, 1.0) for w in range(warps_in_block)]
    elif isinstance(warps, int):
        warp_sample = stratified(warps_in_block, interior=warps)
    else:
        warp_sample = [(int(w), 1.0) for w in warps]
    chosen = {w for w, _ in warp_sample}
    thread_points = [p for p in np.ndindex(*block_dim[::-1])]
    thread_points = [(x, y, z) for z, y, x in thread_points]
    ran = []
    warp_module = _warp_module()
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    # Device functions: the simulator swaps the fake `cuda` into a device function's module
    # on every call, under two locks, which dominates a kernel that calls small device
    # functions in its inner loop. During this launch each module is swapped once instead.
    previous_call = kernel_mod.FakeCUDAKernel.__call__
    swapped = {}
    swap_lock = threading.Lock()
    casts = [_numpy_casts(fn.__globals__)]

    def device_call(self, *call_args):
        if kernel_mod._get_kernel_context() is not module:
            return previous_call(self, *call_args)
        key = id(self.fn.__globals__)
        if key not in swapped:
            with swap_lock:
                if key not in swapped:
                    entered = kernelapi.swapped_cuda_module(self.fn, module)
                    entered.__enter__()
                    swapped[key] = entered
                    casts.append(_numpy_casts(self.fn.__globals__))
        return self.fn(*call_args)

    kernel_mod.FakeCUDAKernel.__call__ = device_call
    try:
        with kernel_mod._push_kernel_context(module), kernelapi.swapped_cuda_module(fn, module):
            for ordinal, (block_index, weight) in enumerate(blocks):
                module.new_block()
                state = _BlockState(block_dim)
                warp_state = warp_module._block_warps(state) if warp_module else None
                points = [p for p in thread_points
                          if (p[0] + block_dim[0] * (p[1] + block_dim[1] * p[2])) // WARP in chosen]
                barrier = _BlockBarrier(len(points))
                threads = [_TracedThread(fn, launch.arguments, launch, block_index, p, barrier, state, warp_state)
                           for p in points]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                failed = [t for t in threads if t.error is not None]
                if failed:
                    # The thread that failed first, not one stopped because another failed.
                    first = min(failed, key=lambda t: "another thread of the block failed" in str(t.error[0]))
                    error, tb = first.error
                    raise type(error)(f"tid={list(first.threadIdx)} ctaid={list(first.blockIdx)}: {error}"
                                      ).with_traceback(tb)
                launch.logs.extend((ordinal, t.log) for t in threads)
                ran.append((ordinal, block_index, weight, warp_sample))
    finally:
        for entered in swapped.values():
            entered.__exit__(None, None, None)
        for module_globals, originals in casts:
            module_globals.update(originals)
        kernel_mod.FakeCUDAKernel.__call__ = previous_call
        sys.setswitchinterval(old_switch)
    return launch, ran


def _numpy_casts(module_globals):
    """Replace, in a kernel's module, Numba's scalar types used as casts (uint64(i),
    float32(0.0)) by NumPy's: the same conversion (Numba's calls NumPy's), without the
    import Numba's does on every call, a tenth of a traced GEMM's time. Returns what to
    restore."""
    from numba.core import types as numba_types
    originals = {k: v for k, v in module_globals.items()
                 if isinstance(v, (numba_types.Integer, numba_types.Float)) and hasattr(np, v.name)}
    module_globals.update({k: getattr(np, v.name) for k, v in originals.items()})
    return module_globals, originals


def _all_blocks(grid_dim):
    gx, gy, gz = grid_dim
    return [(x, y, z) for z in range(gz) for y in range(gy) for x in range(gx)]


def _warp_module():
    """kernels/simulator_warp.py where it is installed (its shuffles need to know each
    block's threads), else None."""
    module = sys.modules.get(__package__ + ".simulator_warp") if __package__ else None
    return module if module is not None and getattr(module, "_installed", False) else None


# ----------------------------------------------------------------------------- counting
def _packed(columns):
    """The rows of integer ``columns`` as one int64 each (mixed radix: equal exactly where
    the rows are equal, ordered as the rows), or None if they do not fit in 63 bits."""
    columns = [np.asarray(c, np.int64) for c in columns]
    key = np.zeros(len(columns[0]), np.int64)
    span = 1
    for c in columns:
        low = int(c.min()) if len(c) else 0
        size = (int(c.max()) - low + 1) if len(c) else 1
        if span * size >= 1 << 62:
            return None
        key = key * size + (c - low)
        span *= size
    return key


def unique_rows(columns, return_inverse=False, return_counts=False):
    """np.unique over the rows of integer columns (one 1-D sort where the rows pack into
    an int64, which is many times faster than np.unique(axis=0)); returns the distinct
    rows as a 2-D array, then the inverse and the counts if asked."""
    columns = [np.asarray(c, np.int64) for c in columns]
    key = _packed(columns)
    rows = np.stack(columns, axis=1) if columns else np.zeros((0, 0), np.int64)
    if key is None:
        out = np.unique(rows, axis=0, return_inverse=return_inverse, return_counts=return_counts)
    else:
        out = np.unique(key, return_index=True, return_inverse=return_inverse, return_counts=return_counts)
        out = (rows[out[1]],) + tuple(out[2:])
    if not (return_inverse or return_counts):
        return out[0] if isinstance(out, tuple) else out
    out = list(out)
    if return_inverse:
        out[1] = np.asarray(out[1]).reshape(-1)
    return tuple(out)


def _group_ids(*columns):
    """One integer per row, equal exactly where all the columns are equal."""
    return unique_rows(columns, return_inverse=True)[1]


def _distinct_per_group(groups, *columns):
    """For each group id (0..max), how many distinct rows of ``columns`` it has."""
    if len(groups) == 0:
        return np.zeros(0, np.int64)
    keys = unique_rows((groups,) + columns)
    return np.bincount(keys[:, 0], minlength=int(np.max(groups)) + 1)


def request_key(block, thread, site, context, occurrence, kind):
    """The columns that make accesses one request: the same warp (threads by linear index,
    32 at a time) of the same block executing the same site in the same loop trips (the
    context) for the same time."""
    return block, thread // WARP, site, context, occurrence, kind


def lane_group(lanes, nbytes):
    """Which pass-group a lane falls in: a request moves at most 128 bytes (32 banks x 4
    bytes) at once, so lanes asking for 8 or 16 bytes each are served 16 or 8 at a time.

    NVIDIA's Robert Crovella, "How to understand the bank conflict of shared_mem"
    (forums.developer.nvidia.com/t/how-to-understand-the-bank-conflict-of-shared-mem/260900):
    when a warp requests more than 128 bytes in one instruction, the memory controller
    breaks it into transactions of at most 128 bytes, and bank conflicts are judged within
    each. Consecutive lanes go together (lanes 0-15 and 16-31 for 8 bytes; 0-7, ..., 24-31
    for 16), as in the quarter-warp phases of the CUDA programming guide's 128-bit case."""
    return lanes // (WAVEFRONT_BYTES // np.maximum(nbytes, BANK_BYTES))


def bank_of(word):
    """The bank of a 4-byte word (word = byte address // 4)."""
    return word % BANKS


def distinct_rows(rows):
    """The distinct rows of a 2-D integer array: lanes that ask for the same word of the same
    request get it in one pass (a broadcast), so duplicates count once."""
    return unique_rows(rows.T) if len(rows) else rows


def wavefronts_per_request(request, lanes, array_id, address, nbytes, requests=None):
    """(wavefronts, ideal) per request id (arrays of length ``requests``) of shared-memory
    accesses: within each lane group, each bank serves its distinct words one per pass, so
    a group takes as many passes as its busiest bank has distinct words; ``ideal`` is one
    pass per group with an active lane (no conflict). Bank conflicts = wavefronts - ideal."""
    request = np.asarray(request, np.int64)
    n = int(requests if requests is not None else (request.max() + 1 if len(request) else 0))
    if not len(request):
        return np.zeros(n, np.int64), np.zeros(n, np.int64)
    nbytes = np.asarray(nbytes, np.int64)
    # Different shared arrays never share a word: give each its own address range.
    spread = np.asarray(address, np.int64) + np.asarray(array_id, np.int64) * (1 << 40)
    group = lane_group(np.asarray(lanes, np.int64), nbytes)
    parts = []
    for extra in range(0, int(nbytes.max()), BANK_BYTES):    # every word of a wide access
        mask = extra < nbytes
        parts.append(np.stack([request[mask], group[mask], (spread[mask] + extra) // BANK_BYTES], axis=1))
    words = distinct_rows(np.concatenate(parts))
    banks = np.stack([words[:, 0], words[:, 1], bank_of(words[:, 2])], axis=1)
    per_bank, depth = unique_rows(banks.T, return_counts=True)     # distinct words per (request, group, bank)
    groups, group_index = unique_rows(per_bank[:, :2].T, return_inverse=True)
    busiest = np.zeros(len(groups), np.int64)
    np.maximum.at(busiest, group_index.reshape(-1), depth)
    wavefronts = np.bincount(groups[:, 0], weights=busiest, minlength=n).astype(np.int64)
    ideal = np.bincount(groups[:, 0], minlength=n).astype(np.int64)
    return wavefronts, ideal


def shared_wavefronts(lanes, addresses, nbytes):
    """(wavefronts, ideal) of ONE shared-memory request (lanes 0-31, byte addresses and
    access sizes of its active threads): wavefronts_per_request for a single request."""
    lanes = np.asarray(lanes)
    w, i = wavefronts_per_request(np.zeros(len(lanes), np.int64), lanes, np.zeros(len(lanes), np.int64),
                                  addresses, nbytes, 1)
    return int(w[0]), int(i[0])


class Profile:
    """The traced figures of one launch: ``metrics`` (ncu names), ``per_thread``, requests.

    ``requests`` has one row per warp request: block ordinal, warp, site, kind, lanes,
    sectors (global) or wavefronts (shared), and its weight (1 unless sampled).
    ``accesses`` has every access after vector merging (numpy columns), for drawing.
    """

    def __init__(self, name, launch, ran, vector_request=None, ptx_status="not asked"):
        self.name = name
        self.grid, self.block = launch.grid_dim, launch.block_dim
        self.arrays = launch.arrays
        self.sites = launch.sites
        self.ptx_status = ptx_status
        self.vector_request = vector_request     # how to ask the compiler (see vector_widths)
        blocks_total = int(np.prod(launch.grid_dim))
        threads_in_block = int(np.prod(launch.block_dim))
        warps_in_block = -(-threads_in_block // WARP)
        self.sampled = not (len(ran) == blocks_total and all(len(w) == warps_in_block for *_, w in ran))
        self.blocks_run = [block_index for _, block_index, _, _ in ran]
        weights = {}           # (block ordinal, warp) -> weight
        for ordinal, _, block_weight, warp_sample in ran:
            for warp, warp_weight in warp_sample:
                weights[(ordinal, warp)] = block_weight * warp_weight
        self._weights = weights
        self._block_samples = {ordinal: (block_weight, warp_sample) for ordinal, _, block_weight, warp_sample in ran}
        self._raw = self._collect(launch)
        self.local = self._local_counts(launch)
        self._counted = False

    def _finish(self):
        """Merge vector accesses and count, once, on first use (so that many launches can
        ask the compiler about their vector widths in one child process: resolve())."""
        if self._counted:
            return
        accesses = self._raw
        if self.vector_request is not None:
            widths = vector_widths({"k": self.vector_request})["k"]
            if widths is None:
                self.ptx_status = "PTX compilation failed: accesses counted as written"
            else:
                self.ptx_status = "vector widths read from PTX (sm_90)"
                accesses = _merge_vectors(accesses, self.sites, widths)
        self._accesses = accesses
        self._count()
        self._counted = True

    @property
    def metrics(self):
        self._finish()
        return self._metrics

    @property
    def per_thread(self):
        self._finish()
        return self._per_thread_counts

    @property
    def requests(self):
        self._finish()
        return self._requests

    @property
    def accesses(self):
        self._finish()
        return self._accesses

    # -- gathering the logs into columns
    @staticmethod
    def _collect(launch):
        parts, blocks, threads = [], [], []
        for ordinal, log in launch.logs:
            rec = np.frombuffer(log.records, dtype=np.int64).reshape(-1, len(_FIELDS)) if len(log.records) else \
                np.zeros((0, len(_FIELDS)), np.int64)
            parts.append(rec)
            blocks.append(np.full(len(rec), ordinal, np.int64))
            threads.append(np.full(len(rec), log.thread_id, np.int64))
        rec = np.concatenate(parts) if parts else np.zeros((0, len(_FIELDS)), np.int64)
        columns = {name: rec[:, i].copy() for i, name in enumerate(_FIELDS)}
        columns["block"] = np.concatenate(blocks) if blocks else np.zeros(0, np.int64)
        columns["thread"] = np.concatenate(threads) if threads else np.zeros(0, np.int64)
        return columns

    def _local_counts(self, launch):
        loads = [log.local_loads for _, log in launch.logs]
        stores = [log.local_stores for _, log in launch.logs]
        return {"loads_max": max(loads, default=0), "stores_max": max(stores, default=0),
                "loads_total": sum(loads), "stores_total": sum(stores)}

    # -- the figures
    def _weight_of(self, block, warp):
        """The weight (what it stands for) of each (block ordinal, warp) pair."""
        block, warp = np.asarray(block, np.int64), np.asarray(warp, np.int64)
        if not len(block):
            return np.zeros(0)
        warps = max(w for _, w in self._weights) + 1
        table = np.ones((max(b for b, _ in self._weights) + 1) * warps)
        for (b, w), weight in self._weights.items():
            table[b * warps + w] = weight
        return table[block * warps + warp]

    def _count(self):
        a = self._accesses
        warp = a["thread"] // WARP
        lane = a["thread"] % WARP
        request = _group_ids(*request_key(a["block"], a["thread"], a["site"], a["context"], a["occurrence"],
                                          a["kind"])) \
            if len(warp) else np.zeros(0, np.int64)
        n_requests = int(request.max()) + 1 if len(request) else 0
        first = np.full(n_requests, -1, np.int64)
        if n_requests:
            order = np.argsort(request, kind="stable")
            starts = np.concatenate([[0], np.flatnonzero(np.diff(request[order])) + 1])
            first = order[starts]
        req_block, req_warp = a["block"][first], warp[first]
        req_kind, req_site = a["kind"][first], a["site"][first]
        req_weight = self._weight_of(req_block, req_warp)
        req_lanes = np.bincount(request, minlength=n_requests) if n_requests else np.zeros(0, np.int64)
        # Global: distinct 32-byte sectors per request (an access may straddle two).
        is_global = np.isin(a["kind"], _GLOBAL_KINDS)
        sectors = np.zeros(n_requests, np.int64)
        if is_global.any():
            g = np.flatnonzero(is_global)
            lo = a["address"][g] // SECTOR
            hi = (a["address"][g] + a["nbytes"][g] - 1) // SECTOR
            rows = [(request[g], a["array"][g], lo)]
            if (hi != lo).any():
                straddle = hi != lo
                rows.append((request[g][straddle], a["array"][g][straddle], hi[straddle]))
            req = np.concatenate([r[0] for r in rows])
            arr = np.concatenate([r[1] for r in rows])
            sec = np.concatenate([r[2] for r in rows])
            counted = _distinct_per_group(req, arr, sec)
            sectors[:len(counted)] = counted
        # Shared: wavefronts and the conflict-free ideal per request.
        is_shared = np.isin(a["kind"], _SHARED_KINDS)
        s = np.flatnonzero(np.isin(a["kind"], _SHARED_KINDS))
        wavefronts, ideal = wavefronts_per_request(request[s], lane[s], a["array"][s], a["address"][s],
                                                   a["nbytes"][s], n_requests)
        self._requests = {"block": req_block, "warp": req_warp, "site": req_site, "kind": req_kind,
                         "lanes": req_lanes, "sectors": sectors, "wavefronts": wavefronts, "ideal": ideal,
                         "weight": req_weight}
        access_weight = self._weight_of(a["block"], warp) if len(warp) else np.zeros(0)
        metrics = {}
        for kind in _GLOBAL_KINDS:
            name = KIND_NAMES[kind]
            mine = req_kind == kind
            req = float(req_weight[mine].sum())
            sec = float((req_weight * sectors)[mine].sum())
            bytes_requested = float((access_weight * a["nbytes"])[a["kind"] == kind].sum())
            metrics[f"l1tex__t_requests_pipe_lsu_mem_{name}.sum"] = req
            metrics[f"l1tex__t_sectors_pipe_lsu_mem_{name}.sum"] = sec
            metrics[f"l1tex__average_t_sectors_per_request_pipe_lsu_mem_{name}.ratio"] = sec / req if req else 0.0
            metrics[f"model__bytes_requested_mem_{name}.sum"] = bytes_requested
            if kind != GLOBAL_ATOM:
                metrics[f"smsp__sass_average_data_bytes_per_sector_mem_{name}.pct"] = \
                    100.0 * bytes_requested / (SECTOR * sec) if sec else 0.0
        for kind in _SHARED_KINDS:
            name = KIND_NAMES[kind]
            mine = req_kind == kind
            req = float(req_weight[mine].sum())
            wav = float((req_weight * wavefronts)[mine].sum())
            metrics[f"smsp__sass_inst_executed_op_{name.replace('_op_', '_')}.sum"] = req
            if kind != SHARED_ATOM:
                metrics[f"l1tex__data_pipe_lsu_wavefronts_mem_{name}.sum"] = wav
                metrics[f"l1tex__data_bank_conflicts_pipe_lsu_mem_{name}.sum"] = \
                    float((req_weight * (wavefronts - ideal))[mine].sum())
        unique = self._unique_sectors()
        metrics["model__unique_sectors_global_op_ld"] = unique[0]
        metrics["model__unique_sectors_global_op_st"] = unique[1]
        metrics["model__dram_bytes_min"] = SECTOR * (unique[0] + unique[1] + unique[2])
        metrics["model__dram_bytes_no_reuse"] = SECTOR * (
            metrics["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"]
            + metrics["l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum"]
            + metrics["l1tex__t_sectors_pipe_lsu_mem_global_op_atom.sum"])
        metrics["launch__grid_size"] = float(np.prod(self.grid))
        metrics["launch__block_size"] = float(np.prod(self.block))
        self._metrics = {k: (int(v) if float(v).is_integer() and not k.endswith((".ratio", ".pct")) else v)
                        for k, v in metrics.items()}
        self._per_thread_counts = self._per_thread(a)

    def _unique_sectors(self):
        """Distinct sectors loaded, stored and touched by atomics over the launch: what DRAM
        must move at least if L2 keeps everything (each sector read once, written once).
        Exact without sampling. Sampled: per array, each sampled block's distinct sectors,
        scaled up by the share of its warps that ran and by the blocks it stands for, capped
        at the array's size (blocks that share data, like weights every block reads, hit
        the cap; blocks that read their own tiles add up)."""
        a = self._accesses
        out = []
        for kind in _GLOBAL_KINDS:
            mine = a["kind"] == kind
            if not mine.any():
                out.append(0.0)
                continue
            total = 0.0
            for array_id in np.unique(a["array"][mine]):
                rows = mine & (a["array"] == array_id)
                lo = a["address"][rows] // SECTOR
                hi = (a["address"][rows] + a["nbytes"][rows] - 1) // SECTOR
                if not self.sampled:
                    total += len(np.unique(np.concatenate([lo, hi])))
                    continue
                estimate = 0.0
                blocks = a["block"][rows]
                for block in np.unique(blocks).tolist():
                    in_block = blocks == block
                    distinct = len(np.unique(np.concatenate([lo[in_block], hi[in_block]])))
                    block_weight, warp_sample = self._block_samples[block]
                    warp_scale = sum(w for _, w in warp_sample) / len(warp_sample)
                    estimate += distinct * block_weight * warp_scale
                total += min(estimate, -(-self.arrays[array_id].nbytes // SECTOR))
            out.append(total)
        return out

    def _per_thread(self, a):
        """GPU-Puzzles' score: the most global and shared loads and stores any one thread made."""
        out = {}
        thread_key = a["block"] * (1 << 20) + a["thread"]
        for kind, label in ((GLOBAL_LD, "global_loads"), (GLOBAL_ST, "global_stores"),
                            (SHARED_LD, "shared_loads"), (SHARED_ST, "shared_stores")):
            mine = thread_key[a["kind"] == kind]
            out[label] = int(np.unique(mine, return_counts=True)[1].max()) if len(mine) else 0
        out["local_loads"] = self.local["loads_max"]
        out["local_stores"] = self.local["stores_max"]
        return out

    # -- reading it
    def summary(self):
        """A few lines for a person: the figures that matter, in words."""
        m = self.metrics
        lines = [f"{self.name}: grid {self.grid}, block {self.block}"
                 + (f", sampled ({len(self.blocks_run)} blocks run, counts scaled)" if self.sampled else "")]
        for op, label in (("ld", "loads"), ("st", "stores")):
            req = m[f"l1tex__t_requests_pipe_lsu_mem_global_op_{op}.sum"]
            if req:
                lines.append(f"  global {label}: {req:g} requests, "
                             f"{m[f'l1tex__t_sectors_pipe_lsu_mem_global_op_{op}.sum']:g} sectors "
                             f"({m[f'l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_{op}.ratio']:.2f} "
                             f"per request), "
                             f"{m[f'smsp__sass_average_data_bytes_per_sector_mem_global_op_{op}.pct']:.0f}% of the "
                             f"bytes moved used")
        for op, label in (("ld", "loads"), ("st", "stores")):
            req = m[f"smsp__sass_inst_executed_op_shared_{op}.sum"]
            if req:
                lines.append(f"  shared {label}: {req:g} requests, "
                             f"{m[f'l1tex__data_pipe_lsu_wavefronts_mem_shared_op_{op}.sum']:g} wavefronts, "
                             f"{m[f'l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_{op}.sum']:g} bank conflicts")
        p = self.per_thread
        lines.append(f"  per thread (most): global {p['global_loads']} loads / {p['global_stores']} stores, "
                     f"shared {p['shared_loads']} / {p['shared_stores']}")
        lines.append(f"  distinct bytes: {m['model__dram_bytes_min'] / 1e6:.3g} MB "
                     f"(vs {m['model__dram_bytes_no_reuse'] / 1e6:.3g} MB of sectors requested)")
        return "\n".join(lines)

    def site_table(self):
        """Per site and kind: source location, requests, and sectors or wavefronts per request."""
        r = self.requests
        rows = []
        for site, kind in sorted(set(zip(r["site"].tolist(), r["kind"].tolist()))):
            mine = (r["site"] == site) & (r["kind"] == kind)
            w = r["weight"][mine]
            req = float(w.sum())
            per = (float((w * r["sectors"][mine]).sum()) if kind in _GLOBAL_KINDS
                   else float((w * r["wavefronts"][mine]).sum())) / req
            file, line, function = self.sites[site].frames[0]
            rows.append(dict(site=int(site), kind=KIND_NAMES[kind], where=f"{os.path.basename(file)}:{line}",
                             function=function, requests=req,
                             per_request=per, unit="sectors" if kind in _GLOBAL_KINDS else "wavefronts"))
        return rows


def _merge_vectors(a, sites, widths):
    """Merge each thread's runs of accesses that the compiler turned into one vector
    instruction: successive accesses (in the thread's program order) of one site and
    array, contiguous, the first aligned to the vector width, where the PTX has vector
    instructions of that width for the site's kernel line (widths: {(kernel_line, kind):
    bytes}). A merged access keeps its first access's loop trips and occurrence, which
    every lane's run shares, so the runs of a warp still form one request."""
    if not len(a["site"]):
        return a
    allowed = np.zeros(len(a["site"]), np.int64)
    for i, site in enumerate(sites):
        for kind in (GLOBAL_LD, GLOBAL_ST, SHARED_LD, SHARED_ST):
            width = widths.get((site.kernel_line, kind))
            if width:
                allowed[(a["site"] == i) & (a["kind"] == kind)] = width
    if not (allowed > a["nbytes"]).any():
        return a
    program_order = np.arange(len(allowed))     # the logs keep each thread's accesses in order
    order = np.lexsort((program_order, a["site"], a["thread"], a["block"]))
    a = {k: v[order] for k, v in a.items()}
    allowed = allowed[order]
    n = len(allowed)
    keep = np.ones(n, bool)
    nbytes = a["nbytes"].copy()

    def same_stream(i, j):
        return ((a["block"][i] == a["block"][j]) & (a["thread"][i] == a["thread"][j])
                & (a["site"][i] == a["site"][j]) & (a["array"][i] == a["array"][j]) & (a["kind"][i] == a["kind"][j]))
    covered = np.zeros(n, bool)
    for width in sorted(set(allowed[allowed > 0].tolist()), reverse=True):
        candidates = np.flatnonzero((allowed == width) & ~covered & (a["address"] % width == 0)
                                    & (a["nbytes"] < width) & (width % a["nbytes"] == 0))
        if not len(candidates):
            continue
        item = a["nbytes"][candidates]
        count = width // item
        ok = np.ones(len(candidates), bool)
        for step in range(1, int(count.max())):
            j = candidates + step
            inside = step < count
            valid = j < n
            jj = np.where(valid, j, 0)
            good = valid & same_stream(candidates, jj) & (a["address"][jj] == a["address"][candidates] + step * item) \
                & ~covered[jj]
            ok &= ~inside | good
        for start, run in zip(candidates[ok].tolist(), (width // a["nbytes"][candidates[ok]]).tolist()):
            if covered[start]:          # inside a run already taken
                continue
            covered[start:start + run] = True
            keep[start + 1:start + run] = False
            nbytes[start] = width
    a["nbytes"] = nbytes
    return {k: v[keep] for k, v in a.items()}


# ------------------------------------------------------------- what the compiler vectorised
_PTX_MEMORY = None


def ptx_vector_widths(ptx):
    """{(kernel line, kind): widest access in bytes} for the vector loads and stores of a
    PTX listing compiled with line information (``.loc`` directives): e.g. a line whose
    shared loads were merged into ld.shared.v4.f32 gives {(line, SHARED_LD): 16}."""
    import re
    global _PTX_MEMORY
    if _PTX_MEMORY is None:
        _PTX_MEMORY = re.compile(r"^(ld|st)\.(shared|global)(?:\.\w+)*?(?:\.v(\d))?\.(?:[subf])(\d+)\b")
    widths = {}
    line = None
    for text in ptx.splitlines():
        text = text.strip()
        if text.startswith(".loc"):
            parts = text.split()
            line = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            continue
        m = _PTX_MEMORY.match(text)
        if not m or line is None or m.group(3) is None:
            continue
        op, space, lanes, bits = m.groups()
        kind = {("ld", "shared"): SHARED_LD, ("st", "shared"): SHARED_ST,
                ("ld", "global"): GLOBAL_LD, ("st", "global"): GLOBAL_ST}[(op, space)]
        width = int(lanes) * int(bits) // 8
        widths[(line, kind)] = max(widths.get((line, kind), 0), width)
    return widths


def _signature_spec(args):
    """The argument types of a launch, as plain data another process can rebuild."""
    spec = []
    for a in args:
        if isinstance(a, TracedArray):
            a = a._data
        if hasattr(a, "_ary"):
            a = a._ary
        if isinstance(a, np.ndarray) and a.ndim > 0:
            layout = "C" if a.flags.c_contiguous else ("F" if a.flags.f_contiguous else "A")
            spec.append(["array", a.dtype.str, a.ndim, layout])
        elif isinstance(a, (bool, np.bool_)):
            spec.append(["scalar", "bool"])
        elif isinstance(a, np.generic):
            spec.append(["scalar", a.dtype.str])
        elif isinstance(a, int):
            spec.append(["scalar", "<i8"])
        elif isinstance(a, float):
            spec.append(["scalar", "<f8"])
        else:
            return None
    return spec


_widths_cache = {}


def _registered_kernel(fn):
    """The kernels/jit.py Kernel whose function is ``fn`` (project kernels), or None."""
    from . import gpu_shaped, jit
    for k in itertools.chain(jit.REGISTRY, gpu_shaped.registered()):
        if k.py_func is fn:
            return k
    return None


def kernel_identity(fn):
    """How another process finds kernel function ``fn``: its module (with the sizes it was
    loaded with, see gpu_shaped.as_sized) and its name; None for a kernel defined where no
    import reaches (a script's ``__main__``, a function's local scope). Kernels made by a
    factory (conv2d's implicit_gemm) have local names but are registered: the other
    process finds them in the registry by module and name."""
    from .gpu_shaped import as_sized
    module = getattr(fn, "__module__", None)
    if module == "__main__":     # run as python -m package.module: importable by that name
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else None
    if not module:
        return None
    module = as_sized(module)
    if _registered_kernel(fn) is not None:
        return {"module": module, "name": fn.__name__}
    if "<locals>" in getattr(fn, "__qualname__", "<locals>"):
        return None
    return {"module": module, "name": fn.__qualname__}


def vector_request(fn, args):
    """What to ask the compiler about ``fn`` launched with ``args`` (see vector_widths), or
    None where another process cannot find the kernel. A registered Kernel is compiled for
    its own (first) signature, so that every launch of it shares one answer."""
    identity = kernel_identity(fn)
    if identity is None:
        return None
    if _registered_kernel(fn) is not None:
        return dict(identity, signature=None)
    spec = _signature_spec(args)
    return None if spec is None else dict(identity, signature=spec)


@functools.lru_cache(maxsize=None)
def _fingerprint(module_name):
    """A hash of the source a module's kernels are compiled from: the module's own file and,
    for the project's kernels, every file of the kernels folder (they import each other).
    Once per process: the kernels a process runs do not change while it runs."""
    import hashlib
    import importlib.util
    digest = hashlib.sha1()
    paths = []
    try:
        spec = importlib.util.find_spec(module_name)
        if spec is not None and spec.origin:
            paths.append(spec.origin)
    except (ImportError, ValueError):
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    if module_name.startswith((__package__ or "dcgan_cuda.kernels") + ".") or not paths:
        for root, _, files in os.walk(here):     # not the profiler's own files: they compile nothing
            paths += [os.path.join(root, f) for f in sorted(files)
                      if f.endswith(".py") and f not in _NOT_COMPILED]
    for path in sorted(set(paths)):
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except OSError:
            pass
    return digest.hexdigest()[:16]


_NOT_COMPILED = {"access_profiler.py", "access_patterns.py", "harness.py", "gpu_shaped.py"}


def _cache_path():
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "dcgan_cuda", "vector_widths.json")


def _load_disk_cache():
    try:
        with open(_cache_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_disk_cache(entries):
    path = _cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        current = _load_disk_cache()
        current.update(entries)
        partial = f"{path}.{os.getpid()}.partial"
        with open(partial, "w") as f:
            json.dump(current, f)
        os.replace(partial, path)
    except OSError:
        pass       # a cache that cannot be written only costs time


def vector_widths(requests):
    """{key: widths or None} for ``requests`` ({key: vector_request(...)}): for each kernel,
    ptx_vector_widths of its PTX for sm_90 with line information. Compiled in ONE child
    process without the simulator (the simulator cannot compile), for every kernel not
    yet known; answers are kept per process and on disk (~/.cache/dcgan_cuda), keyed by
    a hash of the kernel's source files, so a kernel is compiled once until it changes."""
    keys = {k: json.dumps(dict(v, source=_fingerprint(v["module"])), sort_keys=True) for k, v in requests.items()}
    if any(key not in _widths_cache for key in keys.values()):
        for key, answer in _load_disk_cache().items():
            _widths_cache.setdefault(key, answer)
    todo = {}
    for k, key in keys.items():
        if key not in _widths_cache:
            todo[key] = requests[k]
    if todo:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        try:
            proc = subprocess.run([sys.executable, "-m", "dcgan_cuda.kernels.access_profiler", "--vector-widths"],
                                  input=json.dumps(list(todo.values())), capture_output=True, text=True, env=env,
                                  timeout=900)
            answers = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        except (subprocess.SubprocessError, ValueError, IndexError):
            answers = None
        fresh = {}
        for key, answer in zip(todo, answers or [None] * len(todo)):
            _widths_cache[key] = answer
            if answer is not None:
                fresh[key] = answer
        if fresh:
            _save_disk_cache(fresh)
    out = {}
    for k, key in keys.items():
        answer = _widths_cache.get(key)
        out[k] = None if answer is None else {(int(line), int(kind)): int(w) for line, kind, w in answer}
    return out


def _compile_vector_widths(request):
    """In the child process: find the kernel, compile it to PTX with line info, read widths."""
    import importlib
    from types import SimpleNamespace

    from numba import cuda, types
    from numba.np import numpy_support

    from . import gpu_shaped, jit
    module_name = request["module"]
    module = gpu_shaped.import_module(module_name) if gpu_shaped.is_shaped(module_name) else \
        importlib.import_module(module_name)
    fn, signature = None, None
    for k in itertools.chain(jit.REGISTRY, gpu_shaped.registered()):
        if getattr(k.py_func, "__module__", None) == module_name and k.py_func.__name__ == request["name"]:
            fn, signature = k.py_func, k.signatures[0]
            break
    if fn is None:
        target = module
        for part in request["name"].split("."):
            target = getattr(target, part)
        fn = getattr(target, "py_func", target)
    if request["signature"] is not None:
        argtypes = []
        for entry in request["signature"]:
            if entry[0] == "array":
                _, dtype, ndim, layout = entry
                argtypes.append(types.Array(numpy_support.from_dtype(np.dtype(dtype)), ndim, layout))
            elif entry[1] == "bool":
                argtypes.append(types.boolean)
            else:
                argtypes.append(numpy_support.from_dtype(np.dtype(entry[1])))
        signature = tuple(argtypes)
    import numba.cuda.dispatcher as dispatcher_module
    real = dispatcher_module.get_current_device
    dispatcher_module.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))
    try:
        ptx, _ = cuda.compile_ptx(fn, signature, cc=(9, 0), lineinfo=True)
    finally:
        dispatcher_module.get_current_device = real
    return [[line, kind, width] for (line, kind), width in ptx_vector_widths(ptx).items()]


def prefetch_vector_widths(kernels):
    """Compile every one of ``kernels`` (kernels/jit.py Kernels) for its vector widths in one
    child process now, so that the traced launches of them find the answers cached."""
    requests = {}
    for i, k in enumerate(kernels):
        request = vector_request(k.py_func, ())
        if request is not None:
            requests[i] = request
    if requests:
        vector_widths(requests)


# ----------------------------------------------------------------------------- entry points
class _Session:
    """What tracing() collects: a Profile per launch, in launch order."""

    def __init__(self, blocks, warps, vectors, dry):
        self.blocks, self.warps, self.vectors, self.dry = blocks, warps, vectors, dry
        self.launches = []


_session = None


def _launch_name(fn):
    registered = _registered_kernel(fn)
    if registered is not None:
        return registered.name
    module = getattr(fn, "__module__", "") or ""
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else module
    return f"{module.rsplit('.', 1)[-1]}.{fn.__name__}" if module else fn.__name__


def _profile_launch(fn, grid, block, args, dynshared=0, blocks=None, warps=None, vectors=True):
    launch, ran = _run(fn, grid, block, args, dynshared, blocks, warps)
    request, status = None, "not asked: accesses counted as written"
    if vectors:
        request = vector_request(fn, args)
        status = ("kernel not importable by another process: accesses counted as written" if request is None
                  else "to be read from PTX")
    return Profile(_launch_name(fn), launch, ran, request, status)


def resolve(profiles):
    """Ask the compiler about the vector widths of all these profiles in one child process
    (each would otherwise start its own when first read)."""
    requests = {i: p.vector_request for i, p in enumerate(profiles)
                if isinstance(p, Profile) and p.vector_request is not None and not p._counted}
    if requests:
        vector_widths(requests)
    return profiles


def trace_launch(kernel, grid, block, *args, blocks=None, warps=None, vectors=True, dynshared=0):
    """Run one launch ``kernel[grid, block](*args)`` under the simulator with every access
    recorded, and return its Profile.

    kernel: a ``numba.cuda.jit`` kernel, a kernels/jit.py Kernel, or the plain function.
    blocks: None (all), an int n (stratified sample: edges and n interior per grid axis;
    a tuple (nx, ny, nz) per axis) or a list of block indices; warps: likewise in a block.
    vectors: merge accesses the compiler vectorised (needs a child process and a few
    seconds to compile; False counts every access as written)."""
    return _profile_launch(_kernel_function(kernel), grid, block, args, dynshared, blocks, warps, vectors)


def _kernel_function(kernel):
    py_func = getattr(kernel, "py_func", None)
    if py_func is not None:
        return getattr(py_func, "py_func", py_func)
    fn = getattr(kernel, "fn", None)
    return fn if fn is not None else kernel


# A launch a dry run recorded instead of running: its kernel's name, grid, block, the
# shapes of its array arguments (None for the others), and what it takes to run it later.
PlannedLaunch = namedtuple("PlannedLaunch", "name grid block shapes fn args dynshared")


def _shapes(args):
    out = []
    for a in args:
        a = getattr(a, "_ary", a)
        out.append(tuple(a.shape) if isinstance(a, np.ndarray) else None)
    return tuple(out)


def profile_planned(planned, blocks=None, warps=None, vectors=True):
    """Run and trace a launch a dry run recorded (PlannedLaunch), as tracing() would have."""
    return _profile_launch(planned.fn, planned.grid, planned.block, planned.args, planned.dynshared, blocks, warps,
                           vectors)


@contextlib.contextmanager
def tracing(blocks=None, warps=None, vectors=True, dry=False):
    """``with tracing() as launches:`` — every simulated launch made inside is traced, and
    its Profile appended to ``launches``. With dry=True launches are recorded as
    PlannedLaunch (name, grid, block, argument shapes, ...) and not run at all: a
    launcher's plan, for free, which profile_planned can run later."""
    global _session
    kernel_mod, _ = _simulator()
    if _session is not None:
        raise RuntimeError("already tracing")
    original = kernel_mod.FakeCUDAKernel.__call__

    def traced_call(self, *args):
        if self._device or kernel_mod._get_kernel_context() is not None:
            return original(self, *args)
        session = _session
        if session.dry:
            grid, block = _dims3(self.grid_dim), _dims3(self.block_dim)
            session.launches.append(PlannedLaunch(_launch_name(self.fn), grid, block, _shapes(args), self.fn,
                                                  args, self.dynshared_size))
            return None
        session.launches.append(_profile_launch(self.fn, self.grid_dim, self.block_dim, args, self.dynshared_size,
                                                session.blocks, session.warps, session.vectors))
        return None

    session = _session = _Session(blocks, warps, vectors, dry)
    kernel_mod.FakeCUDAKernel.__call__ = traced_call
    try:
        yield session.launches
    finally:
        kernel_mod.FakeCUDAKernel.__call__ = original
        _session = None
    if not dry:
        resolve(session.launches)


def combine(profiles):
    """The metrics of several launches added up (ratios recomputed from the sums)."""
    total = {}
    for p in profiles:
        for k, v in p.metrics.items():
            if k.endswith((".ratio", ".pct")) or k.startswith("launch__"):
                continue
            total[k] = total.get(k, 0) + v
    for name in ("global_op_ld", "global_op_st", "global_op_atom"):
        req = total.get(f"l1tex__t_requests_pipe_lsu_mem_{name}.sum", 0)
        sec = total.get(f"l1tex__t_sectors_pipe_lsu_mem_{name}.sum", 0)
        total[f"l1tex__average_t_sectors_per_request_pipe_lsu_mem_{name}.ratio"] = sec / req if req else 0.0
        if name != "global_op_atom":
            total[f"smsp__sass_average_data_bytes_per_sector_mem_{name}.pct"] = \
                100.0 * total.get(f"model__bytes_requested_mem_{name}.sum", 0) / (SECTOR * sec) if sec else 0.0
    total["launches"] = len(profiles)
    return total


# ----------------------------------------------------------------------------- pictures
def _layout_2d(shape):
    """An array drawn as a grid: its last axis across, everything else down."""
    shape = tuple(shape) or (1,)
    cols = shape[-1]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return rows, cols


def draw_threads(profile, path, block=0, warp=None, max_cells=4096):
    """A PNG per array: each element the block's threads touched (loads, stores), coloured
    by the thread that touched it first (the lane, within one warp if ``warp`` is given).
    ``block`` is an ordinal among the blocks that ran. Returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = profile.accesses
    chosen = a["block"] == block
    if warp is not None:
        chosen &= a["thread"] // WARP == warp
    written = []
    base, ext = os.path.splitext(path)
    for array_id, info in enumerate(profile.arrays):
        mine = chosen & (a["array"] == array_id)
        if not mine.any():
            continue
        rows, cols = _layout_2d(info.shape)
        element = a["address"][mine] // info.itemsize
        panels = [(kinds, title) for kinds, title in (((GLOBAL_LD, SHARED_LD), "loads"),
                                                      ((GLOBAL_ST, SHARED_ST), "stores"),
                                                      ((GLOBAL_ATOM, SHARED_ATOM), "atomics"))
                  if np.isin(a["kind"][mine], kinds).any()]
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
        for ax, (kinds, title) in zip(axes[0], panels):
            sel = np.isin(a["kind"][mine], kinds)
            grid = np.full(rows * cols, np.nan)
            elem = element[sel]
            who = (a["thread"][mine][sel] % WARP) if warp is not None else a["thread"][mine][sel]
            order = np.argsort(a["occurrence"][mine][sel], kind="stable")[::-1]   # first touch drawn last
            inside = elem[order] < rows * cols
            grid[elem[order][inside]] = who[order][inside]
            grid = grid.reshape(rows, cols)
            touched_rows = np.flatnonzero(~np.isnan(grid).all(axis=1))
            top = touched_rows[0] if len(touched_rows) else 0
            bottom = touched_rows[-1] + 1 if len(touched_rows) else 1
            if (bottom - top) * cols > max_cells:
                bottom = top + max(1, max_cells // cols)
            grid = grid[top:bottom]
            image = ax.imshow(grid, cmap="viridis", interpolation="nearest", aspect="auto",
                              extent=(-0.5, cols - 0.5, bottom - 0.5, top - 0.5))
            if info.space == "global" and cols <= 256:      # where one 32-byte sector ends
                for edge in range(0, cols + 1, max(1, SECTOR // info.itemsize)):
                    ax.axvline(edge - 0.5, color="white", linewidth=0.6)
            ax.set_title(f"{info.space} {info.name} {tuple(info.shape)}: {title}")
            ax.set_xlabel("last axis")
            ax.set_ylabel("row (other axes flattened)")
            fig.colorbar(image, ax=ax, label="lane" if warp is not None else "thread in block")
        fig.suptitle(f"{profile.name}, block {profile.blocks_run[block]}"
                     + (f", warp {warp}" if warp is not None else "") + ": who touches what")
        fig.tight_layout()
        out = f"{base}_{info.space}_{info.name}{ext or '.png'}"
        fig.savefig(out, dpi=90)
        plt.close(fig)
        written.append(out)
    return written


def draw_banks(profile, path, block=0, warp=0, max_sites=24):
    """A PNG of one warp's shared-memory traffic: one row per shared load or store site
    (its worst request), one column per bank, each cell the number of distinct 4-byte words
    the request asked of that bank: 1 everywhere used = no conflict, k = a k-way conflict
    (the request takes k wavefronts); lanes reading one word count once (broadcast)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = profile.accesses
    mine = (a["block"] == block) & (a["thread"] // WARP == warp) & np.isin(a["kind"], _SHARED_KINDS)
    if not mine.any():
        return []
    site = a["site"][mine]
    occurrence = _group_ids(a["context"][mine], a["occurrence"][mine])   # one value per request of a site
    address = a["address"][mine] + a["array"][mine] * (1 << 40)
    nbytes, lanes, kinds = a["nbytes"][mine], a["thread"][mine] % WARP, a["kind"][mine]
    rows, labels = [], []
    for s in sorted(set(site.tolist()), key=lambda s: np.flatnonzero(site == s)[0])[:max_sites]:
        worst = None
        occurrences = np.unique(occurrence[site == s])
        for occ in occurrences:
            sel = (site == s) & (occurrence == occ)
            w, _ = shared_wavefronts(lanes[sel], address[sel], nbytes[sel])
            if worst is None or w > worst[0]:
                worst = (w, sel)
        w, sel = worst
        words = np.unique(np.concatenate([(address[sel] + e) // BANK_BYTES
                                          for e in range(0, int(nbytes[sel].max()), BANK_BYTES)]))
        rows.append(np.bincount(words % BANKS, minlength=BANKS))
        where = profile.sites[s].frames[0]
        kind = KIND_NAMES[int(kinds[sel][0])].split("_op_")[1]
        width = int(nbytes[sel].max())
        labels.append(f"{kind} {os.path.basename(where[0])}:{where[1]} ({width} B/lane, "
                      f"{len(occurrences)} request{'s' if len(occurrences) > 1 else ''}): "
                      f"{w} wavefront{'s' if w > 1 else ''}")
    grid = np.array(rows, dtype=float)
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(rows) + 1.8))
    image = ax.imshow(grid, cmap="magma_r", interpolation="nearest", aspect="auto", vmin=0,
                      vmax=max(2, grid.max()))
    for r in range(grid.shape[0]):
        for b in range(BANKS):
            if grid[r, b] > 1:
                ax.text(b, r, int(grid[r, b]), ha="center", va="center", color="white", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xticks(range(0, BANKS, 4))
    ax.set_xlabel("bank = (byte address // 4) % 32")
    fig.colorbar(image, ax=ax, label="distinct words asked of the bank (worst request of the site)")
    ax.set_title(f"{profile.name}, block {profile.blocks_run[block]}, warp {warp}: shared-memory banks")
    fig.tight_layout()
    out = path if path.endswith(".png") else path + ".png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return [out]


def _main(argv):
    if argv[:1] == ["--vector-widths"]:
        requests = json.loads(sys.stdin.read())
        answers = []
        for request in requests:
            try:
                answers.append(_compile_vector_widths(request))
            except Exception as error:  # one kernel that does not compile must not hide the others
                print(f"{request}: {type(error).__name__}: {error}", file=sys.stderr)
                answers.append(None)
        print(json.dumps(answers))
        return 0
    print(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
