"""The ``__main__`` of every kernel file: validate each version, then time it on a GPU.

    python -m dcgan_cuda.kernels.conv2d --sim          # CPU: every version vs the NumPy reference, tiny shapes
    python -m dcgan_cuda.kernels.conv2d                # GPU: validate at the DCGAN shapes, then time
    python -m dcgan_cuda.kernels.conv2d --version 2    # only version 2

A kernel file provides ``VERSIONS`` and two functions:

    cases(sim)      -> [(label, make_inputs)]: make_inputs(rng) returns host NumPy arrays
    run(version, label, inputs, device) -> (ours, reference, atol, rtol, flops, bytes)
                       ``device`` turns host arrays into device arrays (CuPy, or NumPy under
                       the simulator); ``ours`` is a zero-argument function that launches the
                       version into preallocated outputs and returns them (device arrays, a
                       tuple if several); ``reference`` the matching NumPy result(s).

Timings are CUDA-event medians after warm-up, with the GPU's name printed beside them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .jit import SIMULATOR


def close(ours, ref, atol, rtol):
    """(max |ours - ref|, whether |ours - ref| <= atol + rtol*|ref| everywhere)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return np.inf, False
    err = np.abs(ours - ref)
    ok = bool(np.all(err <= atol + rtol * np.abs(ref)) and np.isfinite(ours).all())
    return (float(err.max()) if err.size else 0.0), ok


def to_device(a):
    if SIMULATOR:
        return np.array(a, copy=True)
    import cupy
    return cupy.asarray(a)


def to_host(a):
    return a if isinstance(a, np.ndarray) else a.get()


def gpu_name():
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else name


def time_with_events(fn, new_event, elapsed_ms, warmup=3, reps=20, rounds=5):
    """Milliseconds per fn(): the median over ``rounds`` of CUDA-event intervals around
    reps/rounds calls queued back to back, divided by the calls, after warm-up.
    ``new_event()`` makes an event with record() and synchronize(); ``elapsed_ms(start, stop)``
    reads an interval (CuPy's and torch's events both fit).

    Back to back, because with one call between two events a kernel shorter than its own
    launch (Python, Numba's argument handling, the driver) would be timed together with
    the launch: the GPU passes the start event and then waits for the host."""
    for _ in range(warmup):
        fn()
    calls = max(1, reps // rounds)
    start, stop = new_event(), new_event()
    times = []
    for _ in range(rounds):
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(elapsed_ms(start, stop) / calls)
    return float(np.median(times))


def time_gpu(fn, warmup=3, reps=20):
    """time_with_events with CuPy's events, on CuPy's current stream (where our kernels run)."""
    import cupy
    return time_with_events(fn, cupy.cuda.Event, cupy.cuda.get_elapsed_time, warmup, reps)


def main(module, argv=None):
    """Validate (and on a GPU, time) every version of a kernel file."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__spec__.name if module.__spec__ else module.__name__}",
                                     description=(module.__doc__ or "").split("\n")[0])
    parser.add_argument("--sim", action="store_true",
                        help="run under Numba's CUDA simulator on the CPU (tiny shapes, no timing)")
    parser.add_argument("--version", type=int, action="append",
                        help="only these versions (repeatable); default: all")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions per case (GPU)")
    args = parser.parse_args(argv)
    if args.sim and not SIMULATOR:
        # The simulator must be chosen before numba is imported, which has happened by now:
        # start again as the same module with it switched on.
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        os.execve(sys.executable, [sys.executable, "-m", module.__spec__.name] + sys.argv[1:], env)
    sim = SIMULATOR
    if not sim:
        from dcgan_cuda.backend import gpu_status
        ok, why = gpu_status()
        if not ok:
            parser.error(f"no GPU ({why}); add --sim to validate on the CPU")
        print(f"GPU: {gpu_name()}")
    versions = args.version or sorted(module.VERSIONS)
    rng = np.random.default_rng(0)
    failures = 0
    header = f"{'version':<24} {'case':<34} {'max |err|':>10} {'ok':>3}"
    print(header + ("" if sim else f" {'ms':>8} {'GFLOP/s':>8} {'GB/s':>7}"))
    for label, make_inputs in module.cases(sim):
        inputs = make_inputs(rng)
        for v in versions:
            t0 = time.perf_counter()
            ours, ref, atol, rtol, flops, nbytes = module.run(v, label, inputs, to_device)
            result = ours()
            results = result if isinstance(result, tuple) else (result,)
            refs = ref if isinstance(ref, tuple) else (ref,)
            checks = [close(to_host(a), b, atol, rtol) for a, b in zip(results, refs)]
            worst = max(c[0] for c in checks)
            ok = all(c[1] for c in checks)
            failures += not ok
            name = f"{v} {module.VERSIONS[v].name}"
            line = f"{name:<24} {label:<34} {worst:>10.2e} {'yes' if ok else 'NO':>3}"
            if sim:
                line += f"   ({time.perf_counter() - t0:.1f}s simulated)"
            else:
                ms = time_gpu(ours, reps=args.reps)
                line += f" {ms:>8.3f} {flops / ms / 1e6:>8.1f} {nbytes / ms / 1e6:>7.1f}"
            print(line)
    print("all versions match the reference" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0
