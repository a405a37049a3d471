"""What the benchmarks share: naming the machine, timing, FLOP counts, writing results.

Timings are medians: on a GPU of CUDA-event intervals, after warm-up; on a CPU of
perf_counter intervals. Every result file records the date, the machine and the command.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

import numpy as np

# FP32 (non-tensor-core) peaks in TFLOP/s, from the vendors' datasheets.
FP32_PEAK_TFLOPS = {"H100 PCIe": 51.2, "H100 NVL": 60.0, "H100": 66.9, "H200 NVL": 60.0, "H200": 66.9,
                    "GH200": 66.9, "A100": 19.5, "L40S": 91.6, "L4": 30.3, "A10": 31.2,
                    "RTX 4090": 82.6, "V100": 15.7, "T4": 8.1}


def gpu_description():
    """(name, FP32 peak in TFLOP/s or None) of the current CuPy device."""
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    for key in sorted(FP32_PEAK_TFLOPS, key=len, reverse=True):  # most specific name first
        if key in name:
            return name, FP32_PEAK_TFLOPS[key]
    return name, None


def cpu_description():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical cores)"


def blas_description():
    """Which BLAS NumPy's matrix multiplies run on, and with which kernels: on the CPU backend
    most of a step is this library. OPENBLAS_CORETYPE, when set, overrides OpenBLAS's own
    choice (some machines set it to an older core type: say so, it halves SGEMM speed on
    an AVX-512 CPU run with the AVX2 'Haswell' kernels)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not blas:
        return "unknown"
    info = blas[0]
    text = (f"{info.get('internal_api')} {info.get('version')}, {info.get('architecture', '?')} kernels, "
            f"{info.get('num_threads')} threads")
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return text + (f" (forced by OPENBLAS_CORETYPE={forced}; `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` "
                   "lets OpenBLAS pick for this CPU)" if forced else "")


def time_cpu(fn, warmup=2, reps=10):
    """Median milliseconds of fn() on the host clock."""
    return time_cpu_alternating([fn], warmup, reps, rounds=1)[0]


def time_cpu_alternating(fns, warmup=2, reps=10, rounds=5):
    """Median milliseconds of each of fns, timed in alternating rounds on the host clock.

    On a shared machine the speed drifts by tens of percent within a minute; timing one
    side after the other lets the drift decide the ratio. Alternating rounds of reps calls
    each hands every side the same mix of fast and slow moments."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for r in range(rounds):      # reps calls per side in all, spread as evenly as they go
        for fn, t in zip(fns, times):
            for _ in range(reps * (r + 1) // rounds - reps * r // rounds):
                start = time.perf_counter()
                fn()
                t.append((time.perf_counter() - start) * 1e3)
    return [float(np.median(t)) for t in times]


def time_cuda(fn, warmup=3, reps=20):
    """Milliseconds per fn() from CUDA events on CuPy's stream, calls queued back to back
    (median over rounds; see dcgan_cuda.kernels.harness.time_gpu)."""
    from dcgan_cuda.kernels.harness import time_gpu
    return time_gpu(fn, warmup, reps)


def time_torch_cuda(fn, warmup=3, reps=20):
    """The same measurement as time_cuda, with torch's events on torch's current stream."""
    import torch

    from dcgan_cuda.kernels.harness import time_with_events
    return time_with_events(fn, lambda: torch.cuda.Event(enable_timing=True),
                            lambda start, stop: start.elapsed_time(stop), warmup, reps)


def conv_macs(kind, n, cin, cout, k, out_hw, in_hw):
    """Multiply-adds of one convolution pass (the same for forward, backward-data, backward-weight).

    conv: every output pixel of every output channel sums cin*k*k products;
    transposed conv: every *input* pixel scatters into cout*k*k outputs.
    """
    if kind == "conv":
        return n * cout * out_hw[0] * out_hw[1] * cin * k * k
    return n * cin * in_hw[0] * in_hw[1] * cout * k * k


def table(rows, columns):
    """A plain-text table: rows are dicts, columns (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("" if r.get(k) is None else fmt.format(r[k])) for k, _, fmt in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path, payload):
    payload = dict(payload)
    payload.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    payload.setdefault("command", " ".join([os.path.basename(sys.executable)] + sys.argv))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Written whole or not at all (a benchmark rewrites its file as results come in, and a
    # time limit may stop it mid-write): a temporary file, renamed over the old one.
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(partial, path)


def compute_capability(text):
    """argparse type of --cc: a compute capability written as one number (90 = sm_90) that
    the installed CUDA compiler builds for. Numba would quietly build for the nearest one
    it knows, and the report would carry a label its code does not have."""
    import argparse
    try:
        cc = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a compute capability such as 90, got {text!r}") from None
    try:
        from numba.cuda.cudadrv.nvrtc import get_supported_ccs
        known = [major * 10 + minor for major, minor in get_supported_ccs()]
    except Exception:        # no NVRTC, or a numba-cuda without this function: the usual range
        known = [75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121]
    if cc not in known:
        raise argparse.ArgumentTypeError(f"{text!r} is not a compute capability the CUDA compiler "
                                         f"here builds for: {', '.join(map(str, known))}")
    return cc
