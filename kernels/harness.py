"""The ``__main__`` of every kernel file: validate each version, then time it on a GPU.

    python -m dcgan_cuda.kernels.conv2d --sim          # CPU: every version vs the NumPy reference, tiny shapes
    python -m dcgan_cuda.kernels.conv2d                # GPU: validate at the DCGAN shapes, then time
    python -m dcgan_cuda.kernels.conv2d --version 2    # only version 2
    python -m dcgan_cuda.kernels.conv2d --sim --trace DIR   # ... and PNGs of who touches what

Under the simulator each check also prints what its launches asked of the memory system,
recorded by access_profiler.py: global sectors per request, shared-memory wavefronts per
request, bank conflicts, the most loads one thread made. The simulator's own run time says
nothing about a GPU's (it runs each thread as Python), so it is not printed.

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

import numpy as np

from .jit import SIMULATOR, restart_in_simulator


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


SIM_COLUMNS = (f"{'launches':>8} {'gld sec/req':>11} {'gst sec/req':>11} {'shared wf/req':>13} "
               f"{'conflicts':>9} {'per thread gld/sld':>18}")
# Printed under the table: what each abbreviation of SIM_COLUMNS stands for.
SIM_LEGEND = ("  launches = kernel launches of the check; gld / gst = global loads / stores, sld = shared loads; "
              "sec/req = 32-byte sectors per warp request (4 = coalesced floats); shared wf/req = shared-memory "
              "wavefronts (passes) per request (1 = no bank conflict); conflicts = passes beyond one per request "
              "(bank conflicts); per thread gld/sld = the most global / shared loads one thread made")


def traced_figures(profiles):
    """The --sim columns for one check: what its launches asked of the memory system (see
    access_profiler.py): global load and store sectors per request, shared-memory
    wavefronts per request and bank conflicts, the most global and shared loads of a thread."""
    from .access_profiler import combine
    m = combine(profiles)
    shared_requests = m["smsp__sass_inst_executed_op_shared_ld.sum"] + m["smsp__sass_inst_executed_op_shared_st.sum"]
    wavefronts = m["l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"] + \
        m["l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"]
    conflicts = m["l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum"] + \
        m["l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum"]
    most_global = max((p.per_thread["global_loads"] for p in profiles), default=0)
    most_shared = max((p.per_thread["shared_loads"] for p in profiles), default=0)
    ratio = f"{wavefronts / shared_requests:.2f}" if shared_requests else "-"
    return (f"{m['launches']:>8} "
            f"{m['l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio']:>11.2f} "
            f"{m['l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_st.ratio']:>11.2f} "
            f"{ratio:>13} {conflicts:>9g} {f'{most_global}/{most_shared}':>18}")


def draw(profiles, directory, stem, block, warp):
    """PNGs of each launch of one check: who touches what, and the shared banks of one warp."""
    from .access_profiler import draw_banks, draw_threads
    os.makedirs(directory, exist_ok=True)
    written = []
    for index, profile in enumerate(profiles):
        if block >= len(profile.blocks_run):
            continue
        base = os.path.join(directory, f"{stem}_{index}_{profile.name.replace('.', '_')}")
        written += draw_threads(profile, base + ".png", block=block, warp=warp)
        written += draw_banks(profile, base + "_banks.png", block=block, warp=warp)
    return written


def main(module, argv=None):
    """Validate (and on a GPU, time) every version of a kernel file."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__spec__.name if module.__spec__ else module.__name__}",
                                     description=(module.__doc__ or "").split("\n")[0])
    parser.add_argument("--sim", action="store_true",
                        help="run under Numba's CUDA simulator on the CPU (tiny shapes, no timing): every "
                             "check also shows what its launches asked of the memory system")
    parser.add_argument("--version", type=int, action="append",
                        help="only these versions (repeatable); default: all")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions per case (GPU)")
    parser.add_argument("--trace", metavar="DIR",
                        help="with --sim: draw each version's first check as PNGs in DIR (which thread "
                             "touches which element of each array, which shared bank each request hits)")
    parser.add_argument("--trace-block", type=int, default=0, metavar="N",
                        help="with --trace: the N-th block of each launch (default 0)")
    parser.add_argument("--trace-warp", type=int, default=0, metavar="W",
                        help="with --trace: the warp W of that block (default 0)")
    parser.add_argument("--no-profile", action="store_true",
                        help="with --sim: validate only, without recording memory accesses")
    args = parser.parse_args(argv)
    if not args.sim and (args.trace or args.no_profile):
        parser.error("--trace and --no-profile go with --sim (the access profiler runs in the simulator)")
    if args.trace_block < 0 or args.trace_warp < 0:
        parser.error("--trace-block and --trace-warp are numbered from 0")
    unknown = sorted(set(args.version or []) - set(module.VERSIONS))
    if unknown:
        parser.error(f"no version {', '.join(map(str, unknown))}; this file has {sorted(module.VERSIONS)}")
    if args.sim and not SIMULATOR:
        restart_in_simulator(module.__spec__.name)
    sim = SIMULATOR
    if not sim:
        from dcgan_cuda.backend import gpu_status
        ok, why = gpu_status()
        if not ok:
            parser.error(f"no GPU ({why}); add --sim to validate on the CPU")
        print(f"GPU: {gpu_name()}")
    versions = args.version or sorted(module.VERSIONS)
    profile = sim and not args.no_profile
    if profile:
        from . import access_profiler, jit
        # Ask the compiler once, up front, which accesses it merges into vector instructions:
        # a dry run of every check first makes the kernels a launcher builds only when asked.
        with access_profiler.tracing(dry=True):
            for label, make_inputs in module.cases(sim):
                inputs = make_inputs(np.random.default_rng(0))
                for v in versions:
                    module.run(v, label, inputs, to_device)[0]()
        own = [k for k in jit.REGISTRY if k.py_func.__module__.startswith(module.__name__)]
        access_profiler.prefetch_vector_widths(own or jit.REGISTRY)
        print("Memory figures per check, traced in the simulator at its tiny shapes and tiles (the GPU's "
              "are in bench/results/cpu/traced_figures.md; the columns are explained under the table):")
    rng = np.random.default_rng(0)
    failures = 0
    drawn = set()
    header = f"{'version':<24} {'case':<34} {'max |err|':>10} {'ok':>3}"
    print(header + (("  " + SIM_COLUMNS) if profile else "") + ("" if sim else f" {'ms':>8} {'GFLOP/s':>8} {'GB/s':>7}"))
    for label, make_inputs in module.cases(sim):
        inputs = make_inputs(rng)
        for v in versions:
            ours, ref, atol, rtol, flops, nbytes = module.run(v, label, inputs, to_device)
            if profile:
                with access_profiler.tracing() as launches:
                    result = ours()
            else:
                result = ours()
            results = result if isinstance(result, tuple) else (result,)
            refs = ref if isinstance(ref, tuple) else (ref,)
            checks = [close(to_host(a), b, atol, rtol) for a, b in zip(results, refs)]
            worst = max(c[0] for c in checks)
            ok = all(c[1] for c in checks)
            failures += not ok
            name = f"{v} {module.VERSIONS[v].name}"
            line = f"{name:<24} {label:<34} {worst:>10.2e} {'yes' if ok else 'NO':>3}"
            if profile:
                line += "  " + traced_figures(launches)
            elif not sim:
                ms = time_gpu(ours, reps=args.reps)
                line += f" {ms:>8.3f} {flops / ms / 1e6:>8.1f} {nbytes / ms / 1e6:>7.1f}"
            print(line, flush=True)
            if profile and args.trace and v not in drawn:
                drawn.add(v)
                stem = f"v{v}_" + "".join(c if c.isalnum() else "_" for c in label)
                for path in draw(launches, args.trace, stem, args.trace_block, args.trace_warp):
                    print(f"    wrote {path}")
    if profile:
        print(SIM_LEGEND)
    print("all versions match the reference" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0
