"""How every kernel in this folder is compiled and launched.

A kernel here is a plain Python function written in Numba's CUDA dialect, wrapped in a
``Kernel`` with its explicit signatures (the argument types it is compiled for). The
wrapper does four things:

* **Lazy compilation.** ``cuda.jit("signature")`` compiles at decoration time, which needs
  a CUDA driver: a module written that way cannot even be imported on a laptop. A Kernel
  compiles on its first launch, for all its signatures at once (so a launch never pays for
  argument-type inference), and importing this folder needs no GPU.
* **The same code on three targets.** On a GPU it launches on CuPy's current stream (one
  stream for everything: kernels run in launch order, no synchronisation needed between
  them). Under Numba's simulator (NUMBA_ENABLE_CUDASIM=1, set before numba is imported)
  the same Python runs on NumPy arrays, one OS thread per GPU thread, checking every index.
  ``Kernel.ptx()`` compiles for a chosen compute capability without any GPU, which is how
  CI proves that each kernel type-checks and compiles for real hardware.
* **A direct launch.** With the types known in advance, a launch flattens its arguments
  into the kernel's parameters itself and calls the driver, skipping the per-launch type
  inference and array import of Numba's dispatcher (see "the direct launch" below).
* **A registry** of every kernel, so tests can compile them all.

Argument conventions: arrays are C-contiguous float32 (``f32_4d`` is NCHW), Python ints
are passed as int64, floats as np.float32 (a float64 scalar would turn the arithmetic it
touches into double precision, which is slow on GPUs).
"""
from __future__ import annotations

import os
import sys
from collections import Counter, namedtuple
from types import SimpleNamespace

# Launch on CuPy arrays without Numba synchronising on every __cuda_array_interface__
# export: all our work is on one stream, so ordering is already guaranteed. (Effective only
# if set before numba.cuda reads its configuration, which is when this module is imported first.)
os.environ.setdefault("NUMBA_CUDA_ARRAY_INTERFACE_SYNC", "0")
# Small DCGAN layers launch small grids on purpose (and the simulator's grids are tiny):
# Numba's warning about grids too small to fill the GPU would fire on every such launch.
os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")

import ctypes  # noqa: E402

import numpy as np  # noqa: E402
from numba import cuda, types  # noqa: E402
from numba.np import numpy_support  # noqa: E402

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
if not SIMULATOR:
    from numba.cuda import dispatcher as _numba_dispatcher  # noqa: E402  (the direct launch's driver call)


def _compile_under_numpy_without_row_stack():
    """Let numba-cuda compile under NumPy 2.5, which removed ``np.row_stack``.

    numba-cuda (every release up to 0.30.4) registers its NumPy overloads in
    ``numba.cuda.np.arrayobj``, a module it imports on the first compilation, and one line
    there reads ``overload(np.row_stack)``: under NumPy >= 2.5 that import raises
    AttributeError, and no kernel compiles at all (numba-cuda issue #907). row_stack was
    always an alias of ``np.vstack``, so we put the alias back for the duration of that one
    import, make the import now, and take the alias away again: NumPy is left as it was, and
    the overload is registered for vstack, which it implements anyway. Harmless under a
    NumPy that still has row_stack, and under a numba-cuda that no longer asks for it.
    """
    import importlib
    if hasattr(np, "row_stack"):
        return
    np.row_stack = np.vstack
    try:
        importlib.import_module("numba.cuda.np.arrayobj")
    except ImportError:     # a numba-cuda that moved the module: nothing of ours to mend
        pass
    finally:
        del np.row_stack


if not SIMULATOR:
    _compile_under_numpy_without_row_stack()


def _simulator_shared_arrays_without_race():
    """Fix a race in the simulator's shared memory (seen in numba-cuda 0.30.4).

    Every simulated thread of a block calls cuda.shared.array, and the simulator does
    "look up the array for this source line; if there is none, create and store one"
    with no lock. Two threads switched out between the lookup and the store get two
    different arrays, and writes by one are invisible to the other: a tiled kernel then
    fails now and then (seen: 2 runs in 20 of the GEMM tests). Same keys, with a lock.
    It also accepts the `alignment` argument, which the original refuses.
    """
    import sys
    import threading

    from numba.cuda.simulator import kernelapi

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0:  # dynamic shared memory: nothing allocated
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)  # one array per source line, as the original
        with lock:
            found = self._allocations.get(key)
            if found is None:
                found = self._allocations[key] = np.empty(shape, dtype)
        # The original refuses `alignment`; NumPy's allocations are aligned enough for the
        # 16-byte rows that vector loads ask for, and this says so if that ever changes.
        if alignment is not None and found.ctypes.data % alignment:
            raise RuntimeError(f"simulated shared array not aligned to {alignment} bytes")
        return found

    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    _simulator_shared_arrays_without_race()
    from .simulator_warp import install as _install_simulated_warp_primitives  # noqa: E402
    _install_simulated_warp_primitives()   # shuffles, votes, syncwarp: the simulator has none

# ---------------------------------------------------------------- argument types
f32 = types.float32
i64 = types.int64
f32_1d = types.float32[::1]
f32_2d = types.float32[:, ::1]
f32_4d = types.float32[:, :, :, ::1]
i32_1d = types.int32[::1]
i64_4d = types.int64[:, :, :, ::1]

REGISTRY = []
# Launches per kernel since the process started (or since LAUNCHES.clear()): at DCGAN sizes
# the host-side cost of each launch matters, so benchmarks report how many a step makes.
LAUNCHES = Counter()

# One numbered version of a kernel family: its short name, the one idea it adds, and the
# Kernel objects (or launcher functions) that implement each op of the family.
Version = namedtuple("Version", "name idea ops")


class Kernel:
    """A CUDA kernel with explicit signatures, compiled on first launch."""

    def __init__(self, py_func, signatures):
        self.py_func = py_func
        self.signatures = list(signatures)
        self.name = f"{py_func.__module__.rsplit('.', 1)[-1]}.{py_func.__name__}"
        self._dispatcher = None
        self._plans = None
        REGISTRY.append(self)

    def __repr__(self):
        return f"<Kernel {self.name}>"

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            if SIMULATOR:
                self._dispatcher = cuda.jit(self.py_func)
            else:
                self._dispatcher = cuda.jit(self.signatures)(self.py_func)
        return self._dispatcher

    def __getitem__(self, config):
        """kernel[blocks, threads](*args): launch on the current stream."""
        blocks, threads = config
        LAUNCHES[self.name] += 1
        if SIMULATOR:
            if _recording is not None:   # configure at replay: the simulator's configured kernel is not a copy
                return lambda *args: _recording.append((lambda *a: self.dispatcher[blocks, threads](*a), args))
            return self.dispatcher[blocks, threads]
        if launch_path() == "direct":
            return lambda *args: self.launch_direct(blocks, threads, args)
        return self.dispatcher[blocks, threads, current_stream()]

    def launch_direct(self, blocks, threads, args):
        """Launch the overload compiled for these arguments with parameters flattened here
        (kernel_parameters), or through Numba's dispatcher if none takes them as they are.

        If the driver-level launch itself fails (a numba-cuda or cuda.core whose internals
        moved, say), the failure is reported once and this and every later launch of the
        process go through Numba's dispatcher: the direct launch is a saving, never a risk."""
        try:
            if self._plans is None:      # once: how each overload's arguments are flattened
                self._plans = [(parameter_plan(argtypes), compiled)
                               for argtypes, compiled in self.dispatcher.overloads.items()]
            for plan, compiled in self._plans:
                params = kernel_parameters(plan, args)
                if params is None:
                    continue
                function = getattr(compiled._codelibrary.get_cufunc(), "kernel", None)   # cuda.core's handle
                if function is None:
                    break
                config = _numba_dispatcher.LaunchConfig(grid=_dims(blocks), block=_dims(threads))
                _numba_dispatcher.launch(current_stream(core=True), config, function, *params)
                return
        except Exception as exc:   # noqa: BLE001  (any failure of ours or of the internals we call)
            _give_up_direct_launch(self, exc)
        self.dispatcher[blocks, threads, current_stream()](*args)

    def ptx(self, cc=(9, 0)):
        """PTX for each signature, compiled for compute capability ``cc``; no GPU needed."""
        return [compile_ptx(self.py_func, sig, cc) for sig in self.signatures]


# ----------------------------------------------------------------- the direct launch
# Numba's dispatcher, at every launch, infers each argument's type and imports each CuPy
# array through its CUDA array interface as a Numba device array, and only then flattens
# the arguments into the kernel's parameters: about 4 us more per array argument (numba-cuda
# pull request #288 timed an empty kernel at 6.6 us with no argument, 10.6 with one array,
# 14.1 with two), as long as many of our kernels run at DCGAN sizes. Our kernels
# are compiled for explicit signatures, so the launch can do just the last step, as
# Numba's _Kernel._prepare_args does it, and hand the parameters to the same driver call.
# DCGAN_CUDA_LAUNCH=numba goes through the dispatcher instead (tests compare the two).
LAUNCH = os.environ.get("DCGAN_CUDA_LAUNCH", "direct")
if LAUNCH not in ("direct", "numba"):
    raise ValueError(f"DCGAN_CUDA_LAUNCH={LAUNCH!r}: expected 'direct' or 'numba'")
# The driver call and stream conversion of numba-cuda's own launcher (cuda.core's launch,
# numba-cuda >= 0.2x); with an older numba-cuda every launch goes through its dispatcher.
DIRECT_LAUNCH_AVAILABLE = not SIMULATOR and all(
    hasattr(module, name) for module, name in ((_numba_dispatcher, "launch"), (_numba_dispatcher, "LaunchConfig"),
                                               (getattr(_numba_dispatcher, "driver", None), "_to_core_stream")))
# Set by the first direct launch that raised: from then on the process launches through
# Numba's dispatcher (see Kernel.launch_direct), and launch_path() says why.
DIRECT_LAUNCH_FAILURE = None


def launch_path():
    """How kernels are launched now: "direct", or "numba" with the reason (the simulator,
    DCGAN_CUDA_LAUNCH=numba, a numba-cuda without the driver call, or a direct launch that
    failed). Benchmarks record it beside every timing."""
    if SIMULATOR:
        return "simulator"
    if LAUNCH == "numba":
        return "numba (chosen: DCGAN_CUDA_LAUNCH=numba, or a benchmark's comparison)"
    if not DIRECT_LAUNCH_AVAILABLE:
        return "numba (this numba-cuda has no driver-level launch to call)"
    if DIRECT_LAUNCH_FAILURE is not None:
        return f"numba (the direct launch failed: {DIRECT_LAUNCH_FAILURE})"
    return "direct"


def _give_up_direct_launch(kernel, exc):
    global DIRECT_LAUNCH_FAILURE
    if DIRECT_LAUNCH_FAILURE is None:
        DIRECT_LAUNCH_FAILURE = f"{kernel.name}: {type(exc).__name__}: {exc}"
        import sys
        print(f"dcgan_cuda: the direct launch of {DIRECT_LAUNCH_FAILURE}; every launch of this process "
              "now goes through Numba's dispatcher", file=sys.stderr)


def parameter_plan(argtypes):
    """How kernel_parameters flattens each argument of an overload compiled for argtypes,
    worked out once: ("array", ndim, numpy dtype), ("int", its ctypes type) or ("f32",
    c_float); None for a type the direct launch leaves to Numba (not C-contiguous, ...)."""
    plan = []
    for ty in argtypes:
        if isinstance(ty, types.Array) and ty.layout == "C":
            plan.append(("array", ty.ndim, numpy_support.as_dtype(ty.dtype)))
        elif isinstance(ty, types.Integer):
            plan.append(("int", getattr(ctypes, f"c_{ty}")))
        elif ty == types.float32:
            plan.append(("f32", ctypes.c_float))
        else:
            return None
    return plan


def kernel_parameters(plan, args):
    """The flat parameter list of a kernel whose arguments flatten as ``plan`` says
    (parameter_plan), called with ``args``, as Numba's launcher builds it; None if an
    argument does not fit.

    An n-dimensional array is 5 + 2n values: meminfo and parent (0: a kernel never uses
    them), size, itemsize, the data pointer, the shape and the strides in bytes (those of
    a C-contiguous array, as Numba computes them); an integer is a ctypes integer of its
    width, a float32 a c_float. Arrays are CuPy's (anything with size, itemsize,
    data.ptr, shape, dtype and flags).
    """
    if plan is None or len(plan) != len(args):
        return None
    params = []
    for (kind, *spec), value in zip(plan, args):
        if kind == "array":
            ndim, dtype = spec
            if getattr(value, "ndim", None) != ndim or value.dtype != dtype or not value.flags.c_contiguous:
                return None
            strides, step = [], value.itemsize
            for extent in reversed(value.shape):
                strides.append(step)
                step *= extent
            params += [0, 0, value.size, value.itemsize, value.data.ptr, *value.shape, *reversed(strides)]
        elif kind == "int" and isinstance(value, (int, np.integer)):
            params.append(spec[0](value))
        elif kind == "f32" and isinstance(value, (float, np.floating)):
            params.append(spec[0](value))
        else:
            return None
    return params


def _dims(d):
    """A grid or block dimension as the (x, y, z) triple the driver takes."""
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    return tuple(int(v) for v in d) + (1,) * (3 - len(d))


def kernel(*signatures):
    """Decorator: ``@kernel((f32_1d, f32_1d, i64))`` makes a lazily compiled Kernel."""
    def wrap(py_func):
        return Kernel(py_func, signatures)
    return wrap


def family_kernel(family):
    """The ``kernel`` decorator of a family kept in a folder (one file per version): the
    compiled kernel is named <family>.<function>, whichever file of the folder defines it,
    because launch counts, the PTX and ptxas reports and the tests know kernels by those
    names. ``name=`` renames the function first (a kernel a version builds for one tile
    shape is named after its version, forward_v7, not after the function it was written as)."""
    def family_decorator(*signatures, name=None):
        def wrap(py_func):
            if name is not None:
                py_func.__name__ = py_func.__qualname__ = name
            compiled = kernel(*signatures)(py_func)
            compiled.name = f"{family}.{py_func.__name__}"
            return compiled
        return wrap
    return family_decorator


def compile_ptx(py_func, signature, cc=(9, 0)):
    """numba.cuda.compile_ptx, also for kernels that call device functions.

    Numba compiles a called device function for the *current* device, which does not
    exist on a machine without a GPU; for the duration of the call we tell it which
    compute capability to assume.
    """
    import numba.cuda.dispatcher as dispatcher_module
    real = dispatcher_module.get_current_device
    dispatcher_module.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        ptx, _ = cuda.compile_ptx(py_func, signature, cc=cc)
    finally:
        dispatcher_module.get_current_device = real
    return ptx


# ------------------------------------------------- the simulator's stand-in for CUDA graphs
# A CUDA graph captured on a stream holds every launch and copy queued there, with the
# arguments they had, and replays them in order. The simulator has no graphs; while
# recording() is active, launches (and device copies: record_copy) are appended to a list
# instead of run, and replay() runs the list again, on the same arrays with the same
# scalars. That is a graph's contract, so CI can test code that relies on it.
_recording = None


class recording:
    """``with recording() as ops:`` collects the simulator's launches into ``ops``."""

    def __enter__(self):
        global _recording
        if not SIMULATOR:
            raise RuntimeError("jit.recording stands in for CUDA graph capture under the simulator only")
        if _recording is not None:
            raise RuntimeError("already recording")
        _recording = self.ops = []
        return self.ops

    def __exit__(self, *exc):
        global _recording
        _recording = None
        return False


def record_copy(dst, src):
    """np.copyto(dst, src) now, or into the recording while one is active."""
    if _recording is not None:
        _recording.append((np.copyto, (dst, src)))
    else:
        np.copyto(dst, src)


def replay(ops):
    for run, args in ops:
        run(*args)


# ------------------------------------------------------------------------- streams
_streams = {}


CU_STREAM_LEGACY = 1  # the driver's handle for the legacy default stream (CuPy's null stream, pointer 0)


def current_stream(core=False):
    """CuPy's current stream as a Numba stream, so our launches queue behind CuPy's copies;
    with core=True as the driver-level stream object Numba hands to its launches (the
    direct launch's). Both are made once per stream.

    CuPy's null stream has pointer 0; it is handed to Numba by its explicit handle
    CU_STREAM_LEGACY, the same stream, because a stream of 0 is ambiguous in the DLPack
    protocol through which newer numba-cuda versions receive CuPy arrays (CuPy warns on
    every array of every launch when asked to export for stream 0)."""
    import cupy
    ptr = cupy.cuda.get_current_stream().ptr
    streams = _streams.get(ptr)
    if streams is None:
        numba_stream = cuda.external_stream(ptr or CU_STREAM_LEGACY)
        core_stream = _numba_dispatcher.driver._to_core_stream(numba_stream) if DIRECT_LAUNCH_AVAILABLE else None
        streams = _streams[ptr] = (numba_stream, core_stream)
    return streams[core]


# ------------------------------------------------------------------ launch shapes
THREADS = 256          # a multiple of the 32-thread warp; 8 warps hide latency well
MAX_BLOCKS = 4096      # grid-stride loops cover the rest: 31 blocks per SM on 132 SMs, ~4 waves of
                       # 8 resident 256-thread blocks per SM (2048 threads, an SM's most)
SIM_THREADS, SIM_MAX_BLOCKS = 32, 4  # the simulator pays per thread: few threads, many loop trips


def restart_in_simulator(module_name):
    """Start ``python -m module_name`` again with the same arguments and the simulator on.

    The simulator must be chosen before numba is imported, which has happened by the time a
    command has parsed its arguments; so a command given ``--sim`` replaces its own process
    with a fresh one that has NUMBA_ENABLE_CUDASIM=1 in its environment."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    os.execve(sys.executable, [sys.executable, "-m", module_name] + sys.argv[1:], env)


def grid_1d(n):
    """(blocks, threads) for a grid-stride loop over n items.

    Under the simulator the grid is deliberately tiny, so every loop in every kernel runs
    several trips: a kernel that forgets its stride fails there, not later on a GPU.
    """
    threads, cap = (SIM_THREADS, SIM_MAX_BLOCKS) if SIMULATOR else (THREADS, MAX_BLOCKS)
    return max(1, min(cap, -(-n // threads))), threads


def scalar(v):
    """A Python number as the float32 the kernels' signatures expect."""
    return np.float32(v)
