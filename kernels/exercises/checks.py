"""The checkers of the exercises: what each one runs, and what it wants to see.

A check is a named question with a yes or no and a one-line reason. An exercise's checks
come in two phases, because Numba must be told before it is imported whether it runs the
simulator:

* ``simulate(module)``, in a process with NUMBA_ENABLE_CUDASIM=1: results against NumPy,
  and the properties that make a kernel fast, from evidence that needs no GPU: the access
  profiler's sectors per request and bank conflicts, barriers per thread, launches.
* ``compile_checks(module)``, in a process with the real compiler: every kernel the
  exercise launches compiles to PTX for compute capability 9.0 (an H100), and where the
  exercise is about an instruction (a warp shuffle), the PTX has it. The kernels'
  argument types are those of a launch: the exercise's launchers are called with small
  arrays and each launch is recorded instead of run.

``module`` is the student's file (dcgan_cuda.kernels.exercises.b1_guarded_map) or its
reference solution (....exercises.solutions.b1_guarded_map).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections import Counter, namedtuple

import numpy as np

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"

Check = namedtuple("Check", "name passed detail")
Exercise = namedtuple("Exercise", "key module title simulate launch_all ptx_must_contain")

PACKAGE = __name__.rsplit(".", 1)[0]


def load(exercise, solution=False):
    """The exercise's module: the student's file, or with solution=True the reference."""
    where = f"{PACKAGE}.solutions" if solution else PACKAGE
    return importlib.import_module(f"{where}.{exercise.module}")


def one_line(error):
    text = " ".join(str(error).split())
    # The simulator names a failing thread by PTX's words: tid = threadIdx, ctaid = blockIdx.
    gloss = " (tid = threadIdx, ctaid = blockIdx)" if "ctaid=" in text else ""
    return f"{type(error).__name__}: {text[:300]}{gloss}"


def attempt(name, question):
    """Check ``name``: question() returns (passed, detail); an exception fails it, in one line."""
    try:
        passed, detail = question()
    except Exception as error:  # noqa: BLE001  (a student's kernel may fail in any way)
        return Check(name, False, one_line(error))
    return Check(name, bool(passed), detail)


def once_right(checks, name, question):
    """Check ``name`` only if every check before it passed: how fast a kernel uses memory
    matters once its results are right (and a kernel that failed may not even finish when
    traced)."""
    if all(c.passed for c in checks):
        return attempt(name, question)
    return Check(name, False, "not checked until the results above are right")


def compare(ours, expected):
    """(equal, why not): bitwise equality of float32 results with a float64 or float32
    reference that is exactly representable, NaN meaning never written."""
    ours = np.asarray(ours)
    expected = np.asarray(expected, np.float64)
    if ours.shape != expected.shape:
        return False, f"shape {ours.shape}, expected {expected.shape}"
    unwritten = np.isnan(ours)
    if unwritten.any():
        first = tuple(int(i) for i in np.unravel_index(np.argmax(unwritten), ours.shape))
        return False, f"{int(unwritten.sum())} of {ours.size} elements never written (the first at {first})"
    wrong = ours.astype(np.float64) != expected
    if wrong.any():
        first = tuple(int(i) for i in np.unravel_index(np.argmax(wrong), ours.shape))
        return False, (f"{int(wrong.sum())} of {ours.size} elements wrong; at {first}: "
                       f"{ours[first]!r}, expected {expected[first]!r}")
    return True, "exact"


def result_check(m, name, inputs, out_shape, expected):
    """Check ``name``: ``m.launch(*inputs, out)`` on a NaN-filled ``out`` of ``out_shape``
    must leave exactly ``expected(*inputs)`` there."""
    def question():
        out = nan_array(out_shape)
        m.launch(*inputs, out)
        return compare(out, expected(*inputs))
    return attempt(name, question)


def nan_array(shape):
    return np.full(shape, np.nan, np.float32)


def small_integers(rng, shape, low=-4, high=5):
    """float32 values whose sums and products of the exercises' sizes are exact."""
    return rng.integers(low, high, size=shape).astype(np.float32)


# ------------------------------------------------------------- evidence without a GPU
def traced(run):
    """The access profiler's Profile of every launch run() makes."""
    from dcgan_cuda.kernels import access_profiler
    with access_profiler.tracing(vectors=False) as launches:
        run()
    return launches


def total(profiles, metric):
    return sum(p.metrics.get(metric, 0) for p in profiles)


def sectors_per_request(profiles, op):
    """Global sectors per warp request over all launches, op 'ld' or 'st'."""
    requests = total(profiles, f"l1tex__t_requests_pipe_lsu_mem_global_op_{op}.sum")
    sectors = total(profiles, f"l1tex__t_sectors_pipe_lsu_mem_global_op_{op}.sum")
    return sectors / requests if requests else 0.0


def bank_conflicts(profiles, op):
    return total(profiles, f"l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_{op}.sum")


@contextlib.contextmanager
def counting_launches():
    """``with counting_launches() as names:`` the kernels run() launches, in order."""
    from numba.cuda.simulator import kernel as simulated
    original = simulated.FakeCUDAKernel.__call__
    names = []

    def counted(self, *args):
        if not self._device and simulated._get_kernel_context() is None:
            names.append(self.fn.__name__)
        return original(self, *args)

    simulated.FakeCUDAKernel.__call__ = counted
    try:
        yield names
    finally:
        simulated.FakeCUDAKernel.__call__ = original


@contextlib.contextmanager
def counting_barriers():
    """``with counting_barriers() as per_thread:`` syncthreads calls per (block, thread)."""
    from numba.cuda.simulator import kernelapi
    original = kernelapi.FakeCUDAModule.syncthreads
    per_thread = Counter()
    lock = threading.Lock()

    def counted(self):
        key = (tuple(self.blockIdx), tuple(self.threadIdx))
        with lock:
            per_thread[key] += 1
        original(self)

    kernelapi.FakeCUDAModule.syncthreads = counted
    try:
        yield per_thread
    finally:
        kernelapi.FakeCUDAModule.syncthreads = original


# --------------------------------------------------------------------- the beginners
def simulate_b1(m):
    rng = np.random.default_rng(1)
    checks = []
    for n in (1, 31, 32, 33, 100):
        checks.append(result_check(m, f"n = {n}: y == x * x, nothing past the end",
                                   (rng.standard_normal(n).astype(np.float32),), n, lambda x: x * x))
    return checks


def launch_all_b1(m):
    m.launch(np.zeros(33, np.float32), np.zeros(33, np.float32))


def simulate_b2(m):
    rng = np.random.default_rng(2)
    checks = []
    for shape in ((1, 1), (5, 70), (9, 33), (8, 64)):
        checks.append(result_check(m, f"shape {shape}: y == x + bias",
                                   (small_integers(rng, shape), small_integers(rng, shape[1])), shape,
                                   lambda x, bias: x + bias))

    def coalesced():
        x, bias, y = small_integers(rng, (8, 64)), small_integers(rng, 64), nan_array((8, 64))
        profiles = traced(lambda: m.launch(x, bias, y))
        loads, stores = sectors_per_request(profiles, "ld"), sectors_per_request(profiles, "st")
        return loads <= 4 and stores <= 4, (f"{loads:.1f} sectors per load request, {stores:.1f} per store "
                                           "(4 = a warp's 32 floats in 128 consecutive bytes)")
    checks.append(once_right(checks, "shape (8, 64): loads and stores coalesced", coalesced))
    return checks


def launch_all_b2(m):
    m.launch(np.zeros((5, 70), np.float32), np.zeros(70, np.float32), np.zeros((5, 70), np.float32))


def simulate_b3(m):
    rng = np.random.default_rng(3)
    checks = []
    for n in (5, 64, 65, 300):
        checks.append(result_check(m, f"n = {n}: y == max(x, 0)", (rng.standard_normal(n).astype(np.float32),), n,
                                   lambda x: np.maximum(x, 0)))

    def once_each():
        n = 300
        x, y = rng.standard_normal(n).astype(np.float32), nan_array(n)
        profiles = traced(lambda: m.launch(x, y))
        read = total(profiles, "model__bytes_requested_mem_global_op_ld.sum")
        written = total(profiles, "model__bytes_requested_mem_global_op_st.sum")
        grid = [(p.metrics["launch__grid_size"], p.metrics["launch__block_size"]) for p in profiles]
        return (read == 4 * n and written == 4 * n and grid == [(2, 32)],
                f"{read} bytes read, {written} written (4 n = {4 * n} each); launches (blocks, threads): {grid}")
    checks.append(once_right(checks, "n = 300: each element read and written once, by the same 2 x 32 grid", once_each))
    return checks


def launch_all_b3(m):
    m.launch(np.zeros(300, np.float32), np.zeros(300, np.float32))


def simulate_b4(m):
    rng = np.random.default_rng(4)
    checks = []
    for shape in ((3, 5), (7, 33), (32, 64)):
        checks.append(result_check(m, f"shape {shape}: y == 2 x", (small_integers(rng, shape),), shape,
                                   lambda x: 2 * x))

    def coalesced():
        x, y = small_integers(rng, (32, 64)), nan_array((32, 64))
        profiles = traced(lambda: m.launch(x, y))
        loads, stores = sectors_per_request(profiles, "ld"), sectors_per_request(profiles, "st")
        return loads <= 4 and stores <= 4, f"{loads:.1f} sectors per load request, {stores:.1f} per store (4 is ideal)"
    checks.append(once_right(checks, "shape (32, 64): loads and stores coalesced", coalesced))
    return checks


def launch_all_b4(m):
    m.launch(np.zeros((32, 64), np.float32), np.zeros((32, 64), np.float32))


# ---------------------------------------------------------------- the intermediates
def simulate_i1(m):
    rng = np.random.default_rng(5)
    checks = []
    for shape in ((1, 1), (40, 50), (32, 64)):
        checks.append(result_check(m, f"shape {shape}: y == x.T", (small_integers(rng, shape),), shape[::-1],
                                   lambda x: x.T))

    def memory():
        x, y = small_integers(rng, (32, 64)), nan_array((64, 32))
        profiles = traced(lambda: m.launch(x, y))
        loads, stores = sectors_per_request(profiles, "ld"), sectors_per_request(profiles, "st")
        conflicts = bank_conflicts(profiles, "ld") + bank_conflicts(profiles, "st")
        shared = total(profiles, "smsp__sass_inst_executed_op_shared_ld.sum")
        return (loads <= 4 and stores <= 4 and conflicts == 0 and shared > 0,
                f"global: {loads:.1f} sectors per load request, {stores:.1f} per store (4 is ideal); "
                f"shared: {shared} load requests, {conflicts} bank conflicts")
    checks.append(once_right(checks, "shape (32, 64): coalesced both ways through shared memory, no bank conflicts", memory))
    return checks


def launch_all_i1(m):
    m.launch(np.zeros((40, 50), np.float32), np.zeros((50, 40), np.float32))


def simulate_i2(m):
    rng = np.random.default_rng(6)
    checks = []
    for blocks in (1, 3):
        checks.append(result_check(m, f"{blocks} block(s) of 64: the sums", (small_integers(rng, blocks * 64),),
                                   blocks, lambda x: x.reshape(-1, 64).sum(axis=1)))

    def tree():
        x, out = small_integers(rng, 128), nan_array(2)
        profiles = traced(lambda: m.launch(x, out))
        most = max(p.per_thread["shared_loads"] for p in profiles)
        conflicts = bank_conflicts(profiles, "ld") + bank_conflicts(profiles, "st")
        return most <= 13 and conflicts == 0, (f"the busiest thread made {most} shared loads (a tree: 13), "
                                               f"{conflicts} bank conflicts")
    checks.append(once_right(checks, "a tree: at most 13 shared loads per thread, no bank conflicts", tree))
    return checks


def launch_all_i2(m):
    m.launch(np.zeros(128, np.float32), np.zeros(2, np.float32))


def simulate_i3(m):
    rng = np.random.default_rng(7)
    checks = []
    for blocks in (1, 2):
        checks.append(result_check(m, f"{blocks} block(s) of two warps: each warp's sum",
                                   (small_integers(rng, blocks * 64),), blocks * 2,
                                   lambda x: x.reshape(-1, 32).sum(axis=1)))

    def registers_only():
        x, out = small_integers(rng, 64), nan_array(2)
        profiles = traced(lambda: m.launch(x, out))
        shared = (total(profiles, "smsp__sass_inst_executed_op_shared_ld.sum")
                  + total(profiles, "smsp__sass_inst_executed_op_shared_st.sum"))
        most = max(p.per_thread["global_loads"] for p in profiles)
        return shared == 0 and most == 1, f"{shared} shared-memory requests; at most {most} global load(s) per thread"
    checks.append(once_right(checks, "no shared memory, one global load per thread", registers_only))
    return checks


def launch_all_i3(m):
    m.launch(np.zeros(64, np.float32), np.zeros(2, np.float32))


# ---------------------------------------------------------------------- the advanced
def _leaky(z, slope):
    return np.where(z > 0, z, slope * z)


def simulate_a1(m):
    rng = np.random.default_rng(8)
    slope = float(m.SLOPE)
    checks = []
    for (rows, depth, cols) in ((5, 12, 7), (16, 30, 9)):
        def forward(rows=rows, depth=depth, cols=cols):
            a, b = small_integers(rng, (rows, depth)), small_integers(rng, (depth, cols))
            y = nan_array((rows, cols))
            with counting_launches() as launches:
                m.forward(a, b, y)
            z = a.astype(np.float64) @ b
            right, detail = compare(y, _leaky(z, slope))
            if not right:
                chunk = -(-depth // m.SPLITS)
                per_split = sum(_leaky(a[:, s:s + chunk].astype(np.float64) @ b[s:s + chunk], slope)
                                for s in range(0, depth, chunk))
                if np.array_equal(np.nan_to_num(y), per_split):
                    detail = ("the activation was applied to each split's partial sum: leaky_relu(p0) + "
                              "leaky_relu(p1) is not leaky_relu(p0 + p1); apply it after the splits are summed")
                return False, detail
            return len(launches) == 2, f"exact, in {len(launches)} launches ({', '.join(launches)}); 2 wanted"
        checks.append(attempt(f"forward {rows}x{depth} @ {depth}x{cols}: leaky_relu(a @ b) in 2 launches", forward))

    def backward():
        a, b = small_integers(rng, (6, 10)), small_integers(rng, (10, 11))
        y = _leaky(a.astype(np.float64) @ b, slope).astype(np.float32)
        dy = small_integers(rng, y.shape)
        da = nan_array(a.shape)
        with counting_launches() as launches:
            m.backward_data(dy, y, b, da)
        right, detail = compare(da, np.where(y > 0, dy, slope * dy).astype(np.float64) @ b.T)
        if not right:
            return False, detail
        return len(launches) == 1, f"exact, in {len(launches)} launches ({', '.join(launches)}); 1 wanted"
    checks.append(attempt("backward-data: the slope applied as dy is loaded, 1 launch", backward))

    def bytes_saved():
        answers = {shape: m.forward_bytes_saved(*shape) for shape in ((5, 7), (128, 8192))}
        return (all(answers[s] == 8 * s[0] * s[1] for s in answers),
                f"forward_bytes_saved gives {answers}")
    checks.append(attempt("bytes the fused forward saves", bytes_saved))
    return checks


def launch_all_a1(m):
    a, b = np.zeros((5, 12), np.float32), np.zeros((12, 7), np.float32)
    y = np.zeros((5, 7), np.float32)
    m.forward(a, b, y)
    m.backward_data(y, y, b, np.zeros((5, 12), np.float32))


def _tree_sum(values):
    """float32 sum by the reduction's tree: partial[t] += partial[t + half], half = n/2 .. 1."""
    v = [np.float32(a) for a in values]
    half = len(v) // 2
    while half:
        v[:half] = [v[t] + v[t + half] for t in range(half)]
        half //= 2
    return v[0]


def simulate_a2(m):
    rng = np.random.default_rng(9)

    def same_sum():
        x = (rng.standard_normal(2 * m.T) * 100).astype(np.float32)
        out = nan_array(2)
        m.launch(x, out)
        expected = np.array([_tree_sum(x[b * m.T:(b + 1) * m.T]) for b in range(2)], np.float32)
        return out.tobytes() == expected.tobytes(), f"sums {out.tolist()}, the tree's {expected.tolist()}"

    def barriers():
        x, out = (rng.standard_normal(m.T)).astype(np.float32), nan_array(1)
        with counting_barriers() as per_thread:
            m.launch(x, out)
        most = max(per_thread.values(), default=0)
        return most <= 3, f"{most} barriers per thread (3 wanted: before the tree, after half = 64 and 32)"
    checks = [attempt("2 blocks of random floats: bitwise the shared-memory tree's sum", same_sum)]
    return checks + [once_right(checks, "at most 3 barriers per thread", barriers)]


def launch_all_a2(m):
    m.launch(np.zeros(128, np.float32), np.zeros(1, np.float32))


# H100 occupancy cases: (threads, registers per thread, shared bytes) -> blocks per SM.
OCCUPANCY_CASES = {(256, 128, 32768): 2, (256, 128, 65536): 2, (128, 32, 0): 16, (64, 16, 0): 32,
                   (1024, 32, 8192): 2, (256, 40, 49152): 4, (96, 255, 1024): 2, (128, 64, 100000): 2}


def simulate_a3(m):
    rng = np.random.default_rng(10)
    checks = []
    for (rows, depth, cols) in ((8, 8, 8), (16, 32, 8)):
        def question(rows=rows, depth=depth, cols=cols):
            a, b = small_integers(rng, (rows, depth)), small_integers(rng, (depth, cols))
            c = nan_array((rows, cols))
            with counting_barriers() as per_thread:
                m.launch(a, b, c)
            right, detail = compare(c, a.astype(np.float64) @ b)
            most, wanted = max(per_thread.values(), default=0), depth // m.TILE + 1
            return right and most <= wanted, f"{detail}; {most} barriers per thread ({wanted} wanted)"
        checks.append(attempt(f"{rows}x{depth} @ {depth}x{cols}: c == a @ b, one barrier per slice", question))

    def occupancy():
        wrong = {case: m.blocks_per_sm(*case) for case, blocks in OCCUPANCY_CASES.items()
                 if m.blocks_per_sm(*case) != blocks}
        return not wrong, ("blocks_per_sm right on all cases" if not wrong else
                           f"blocks_per_sm wrong for (threads, registers, shared bytes): {wrong}")
    checks.append(attempt("blocks_per_sm follows the H100's limits", occupancy))
    checks.append(attempt("what limits the double-buffered big tiles",
                          lambda: (m.OCCUPANCY_LIMIT == "registers", f"OCCUPANCY_LIMIT = {m.OCCUPANCY_LIMIT!r}")))
    return checks


def launch_all_a3(m):
    m.launch(np.zeros((16, 32), np.float32), np.zeros((32, 8), np.float32), np.zeros((16, 8), np.float32))


def simulate_a4(m):
    rng = np.random.default_rng(11)
    checks = []
    for (rows, depth, cols) in ((32, 16, 32), (64, 8, 32)):
        checks.append(result_check(m, f"{rows}x{depth} @ {depth}x{cols}: c == a @ b",
                                   (small_integers(rng, (rows, depth)), small_integers(rng, (depth, cols))),
                                   (rows, cols), lambda a, b: a.astype(np.float64) @ b))

    def conflict_free():
        a, b, c = small_integers(rng, (32, 16)), small_integers(rng, (16, 32)), nan_array((32, 32))
        profiles = traced(lambda: m.launch(a, b, c))
        conflicts = bank_conflicts(profiles, "ld")
        wavefronts = (total(profiles, "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum")
                      + total(profiles, "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"))
        return conflicts == 0 and wavefronts <= 400, (f"{conflicts} bank conflicts on shared loads; "
                                                      f"{wavefronts} shared wavefronts (at most 400)")
    checks.append(once_right(checks, "32x16 @ 16x32: no bank conflicts on shared loads, at most 400 wavefronts", conflict_free))
    checks.append(attempt("the skeleton's conflict, in ways",
                          lambda: (m.SKELETON_READ_WAYS == 4, f"SKELETON_READ_WAYS = {m.SKELETON_READ_WAYS!r}")))
    return checks


def launch_all_a4(m):
    m.launch(np.zeros((32, 16), np.float32), np.zeros((16, 32), np.float32), np.zeros((32, 32), np.float32))


def _normalisation(rng, rows, depth):
    a = small_integers(rng, (rows, depth))
    scale = rng.choice(np.array([-1.0, 0.5, 1.0, 2.0], np.float32), depth)
    shift = small_integers(rng, depth, -2, 3)
    return a, scale, shift


def simulate_a5(m):
    rng = np.random.default_rng(12)

    def forward():
        a, scale, shift = _normalisation(rng, 9, 12)
        b = small_integers(rng, (12, 10))
        c = nan_array((9, 10))
        with counting_launches() as launches:
            m.forward(a, scale, shift, b, c)
        right, detail = compare(c, (a.astype(np.float64) * scale + shift) @ b)
        if not right:
            return False, detail
        profiles = traced(lambda: m.forward(a, scale, shift, b, c))
        stored = total(profiles, "model__bytes_requested_mem_global_op_st.sum")
        return (len(launches) == 1 and stored == c.nbytes,
                f"exact, {len(launches)} launch(es) (1 wanted), {stored} bytes stored (c is {c.nbytes})")

    def backward():
        a, scale, shift = _normalisation(rng, 9, 12)
        dc = small_integers(rng, (9, 10))
        db = nan_array((12, 10))
        with counting_launches() as launches:
            m.weight_gradient(a, scale, shift, dc, db)
        right, detail = compare(db, (a.astype(np.float64) * scale + shift).T @ dc)
        if not right:
            return False, detail
        profiles = traced(lambda: m.weight_gradient(a, scale, shift, dc, db))
        stored = total(profiles, "model__bytes_requested_mem_global_op_st.sum")
        return (len(launches) == 1 and stored == db.nbytes,
                f"exact, {len(launches)} launch(es) (1 wanted), {stored} bytes stored (db is {db.nbytes})")
    return [attempt("forward: (a * scale + shift) @ b in 1 launch, only c stored", forward),
            attempt("weight gradient: normalised a.T @ dc in 1 launch, only db stored", backward)]


def launch_all_a5(m):
    a, scale, shift = np.zeros((9, 12), np.float32), np.zeros(12, np.float32), np.zeros(12, np.float32)
    m.forward(a, scale, shift, np.zeros((12, 10), np.float32), np.zeros((9, 10), np.float32))
    m.weight_gradient(a, scale, shift, np.zeros((9, 10), np.float32), np.zeros((12, 10), np.float32))


EXERCISES = {e.key: e for e in (
    Exercise("b1", "b1_guarded_map", "a guarded map", simulate_b1, launch_all_b1, None),
    Exercise("b2", "b2_map_2d", "a 2-D map", simulate_b2, launch_all_b2, None),
    Exercise("b3", "b3_grid_stride", "a grid-stride loop", simulate_b3, launch_all_b3, None),
    Exercise("b4", "b4_coalescing", "a coalescing fix", simulate_b4, launch_all_b4, None),
    Exercise("i1", "i1_transpose", "a shared-memory transpose without bank conflicts",
             simulate_i1, launch_all_i1, None),
    Exercise("i2", "i2_block_reduction", "a block reduction", simulate_i2, launch_all_i2, None),
    Exercise("i3", "i3_warp_reduction", "a warp-shuffle reduction", simulate_i3, launch_all_i3, "shfl.sync"),
    Exercise("a1", "a1_split_k_epilogue", "a fused epilogue with split-K", simulate_a1, launch_all_a1, None),
    Exercise("a2", "a2_shuffle_tail", "shuffles for the last five steps", simulate_a2, launch_all_a2, "shfl.sync"),
    Exercise("a3", "a3_double_buffer", "double-buffered tiles", simulate_a3, launch_all_a3, None),
    Exercise("a4", "a4_transposed_tile", "the A tile stored transposed", simulate_a4, launch_all_a4, None),
    Exercise("a5", "a5_normalise_on_load", "normalise on load", simulate_a5, launch_all_a5, None),
)}


# ------------------------------------------------------------------ the PTX phase
@contextlib.contextmanager
def recording_launches():
    """``with recording_launches() as launches:`` each launch of a numba.cuda.jit kernel made
    inside is recorded as (kernel, argument types) and not run (no GPU needed)."""
    import numba
    from numba.cuda import dispatcher
    original = dispatcher.CUDADispatcher.__getitem__
    launches = []

    def record(self, config):
        return lambda *args: launches.append((self, tuple(numba.typeof(a) for a in args)))

    dispatcher.CUDADispatcher.__getitem__ = record
    try:
        yield launches
    finally:
        dispatcher.CUDADispatcher.__getitem__ = original


def compile_checks(exercise, module, cc=(9, 0)):
    """Every kernel the exercise launches compiles to PTX for ``cc``; and contains the
    instruction the exercise is about, if any."""
    from dcgan_cuda.kernels.jit import compile_ptx

    def launched():
        with recording_launches() as launches:
            exercise.launch_all(module)
        return launches

    try:
        launches = launched()
    except Exception as error:  # noqa: BLE001
        return [Check("the launchers run", False, one_line(error))]
    checks, texts = [], []
    for kernel, argtypes in dict.fromkeys(launches):
        name = kernel.py_func.__name__
        try:
            texts.append(compile_ptx(kernel.py_func, argtypes, cc))
            checks.append(Check(f"{name} compiles to PTX for sm_{cc[0]}{cc[1]}", True,
                                f"for ({', '.join(str(t) for t in argtypes)})"))
        except Exception as error:  # noqa: BLE001
            checks.append(Check(f"{name} compiles to PTX for sm_{cc[0]}{cc[1]}", False, one_line(error)))
    if exercise.ptx_must_contain:
        found = any(exercise.ptx_must_contain in text for text in texts)
        checks.append(Check(f"the PTX has {exercise.ptx_must_contain}", found,
                            "found" if found else "not found: the kernel does not shuffle"))
    return checks
