"""The access profiler's figures against Nsight Compute's, kernel by kernel, on a GPU.

    python bench/ncu_compare.py [--out DIR]       on a GPU machine with ncu: model, ncu, side by side
    python bench/ncu_compare.py --model-only      without a GPU: the model's side alone

kernels/access_profiler.py counts, in the simulator, what each warp asks of the memory
system, under ncu's metric names. This script checks those counts where they can be
checked: it runs a handful of launches (the textbook patterns of access_patterns.py at a
GPU's size, an elementwise kernel, a reduction and a convolution at a DCGAN layer) once
under the simulator's profiler and once on the GPU under ``ncu --metrics``, and prints
both with their ratio. A figure more than 5% off is marked DIFFERS: it is reported, not
hidden, and not adjusted. Known reasons a figure may differ: the model's sampling and
reduction extrapolation (the convolution), the compiler merging or splitting accesses
beyond what the PTX shows (ptxas works after PTX), how the hardware merges identical
addresses across the lane groups of 8- and 16-byte shared accesses (the model does not),
and what ncu counts as a bank conflict on Hopper (it includes some extra wavefronts).

Files written to --out (at most 3, for the device tool's few files): ncu_compare.json
(both sides, every metric), ncu_compare.md (the table), ncu_raw.csv (ncu's own output).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

METRICS = (
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "smsp__sass_inst_executed_op_shared_ld.sum",
    "smsp__sass_inst_executed_op_shared_st.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
)
# The model's figure that stands for each ncu metric where the names differ: DRAM bytes
# are bounded below by the distinct sectors (what a perfect L2 would move).
MODEL_FOR = {"dram__bytes_read.sum": "model__unique_sectors_global_op_ld",
             "dram__bytes_write.sum": "model__unique_sectors_global_op_st"}
TOLERANCE = 0.05


def cases():
    """[(name, kernel function name as ncu shows it, make(device) -> zero-argument launch)]."""
    def patterns(kernel_name, n_in, n_out, grid, block, *scalars, shape_in=None, shape_out=None):
        def make(device):
            from dcgan_cuda.kernels import access_patterns as ap
            kernel = getattr(ap, kernel_name)
            x = device(np.arange(n_in, dtype=np.float32).reshape(shape_in or (n_in,)))
            y = device(np.zeros(shape_out or (n_out,), np.float32))
            args = (x, y) + scalars if kernel_name not in ("shared_strided", "column_read", "broadcast") \
                else (y,) + scalars
            return lambda: kernel[grid, block](*args), kernel
        return make

    n = 1 << 20
    square = 1024
    return [
        ("copy, coalesced", "copy", patterns("copy", n + 32, n, n // 256, 256, 0)),
        ("copy, offset by one float", "copy", patterns("copy", n + 32, n, n // 256, 256, 1)),
        ("strided copy, stride 2", "strided_copy", patterns("strided_copy", 2 * n, n, n // 256, 256, 2)),
        ("strided copy, stride 8", "strided_copy", patterns("strided_copy", 8 * (n // 8), n // 8, n // 8 // 256, 256, 8)),
        ("shared, stride 2", "shared_strided", patterns("shared_strided", 1, 32 * 1024, 1024, 32, 2)),
        ("shared, stride 32", "shared_strided", patterns("shared_strided", 1, 32 * 1024, 1024, 32, 32)),
        ("broadcast", "broadcast", patterns("broadcast", 1, 32 * 1024, 1024, 32)),
        ("transpose, naive", "transpose_naive",
         patterns("transpose_naive", square * square, 0, (square // 32, square // 32), (32, 8),
                  shape_in=(square, square), shape_out=(square, square))),
        ("transpose, shared tile", "transpose_shared",
         patterns("transpose_shared", square * square, 0, (square // 32, square // 32), (32, 8),
                  shape_in=(square, square), shape_out=(square, square))),
        ("fragment read (16-byte loads)", "fragment_read", patterns("fragment_read", 128, 32 * 1024, 1024, 32)),
    ]


def _launch(make, device):
    call, _ = make(device)
    return call


def model_side(blocks=1, warps=0):
    """{case: metrics} from the access profiler (run with NUMBA_ENABLE_CUDASIM=1)."""
    from dcgan_cuda.kernels import access_profiler
    out = {}
    for name, _, make in cases():
        call = _launch(make, np.asarray)
        with access_profiler.tracing(blocks=blocks, warps=warps) as launches:
            call()
        out[name] = {k: float(v) for k, v in access_profiler.combine(launches).items()}
        print(f"model: {name}", flush=True)
    return out


def gpu_side():
    """Run every case once on the GPU (under ncu, which profiles these launches)."""
    import cupy
    for name, _, make in cases():
        call = _launch(make, cupy.asarray)
        call()
        cupy.cuda.Device().synchronize()
        print(f"ran: {name}", flush=True)


def parse_ncu_csv(text):
    """[(kernel name, {metric: value})] from ncu's --csv output, in launch order: either
    one row per (kernel, metric) ("Metric Name"/"Metric Value" columns) or, with
    --page raw, one row per kernel with a column per metric (and a row of units)."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    if not lines:
        return []
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    kernels = {}
    order = []

    def number(value):
        try:
            return float(str(value).replace(",", ""))
        except ValueError:
            return None
    if rows and "Metric Name" in rows[0]:
        for row in rows:
            key = (row.get("ID"), row.get("Kernel Name"))
            if key not in kernels:
                kernels[key] = {}
                order.append(key)
            value = number(row.get("Metric Value"))
            if value is not None:
                kernels[key][row["Metric Name"]] = value
    else:
        for row in rows:
            if number(row.get("ID")) is None:      # the units row
                continue
            key = (row.get("ID"), row.get("Kernel Name"))
            kernels[key] = {k: number(v) for k, v in row.items() if k in METRICS and number(v) is not None}
            order.append(key)
    return [(key[1], kernels[key]) for key in order]


def compare(model, measured):
    """Rows (case, metric, model, ncu, ratio, verdict) for every metric either side has."""
    rows = []
    for case, theirs in measured.items():
        ours = model.get(case, {})
        for metric in METRICS:
            if metric not in theirs:
                continue
            source = MODEL_FOR.get(metric, metric)
            mine = ours.get(source)
            if mine is not None and source != metric:    # distinct sectors -> bytes
                mine = 32 * mine
            ncu = theirs[metric]
            if mine is None:
                verdict, ratio = "no model figure", None
            elif ncu == mine == 0:
                verdict, ratio = "agrees", 1.0
            else:
                ratio = mine / ncu if ncu else float("inf")
                close = abs(mine - ncu) <= TOLERANCE * max(abs(ncu), 1.0) or abs(mine - ncu) <= 1
                verdict = "agrees" if close else "DIFFERS"
                if metric.startswith("dram__"):
                    verdict = "bound holds" if mine <= ncu * (1 + TOLERANCE) else "BOUND BROKEN"
            rows.append(dict(case=case, metric=metric, model=mine, ncu=ncu, ratio=ratio, verdict=verdict))
    return rows


def markdown(rows):
    lines = ["| case | metric | model | ncu | model / ncu | |", "|---|---|---|---|---|---|"]
    for r in rows:
        model = "-" if r["model"] is None else f"{r['model']:.6g}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(f"| {r['case']} | `{r['metric']}` | {model} | {r['ncu']:.6g} | {ratio} | {r['verdict']} |")
    return "\n".join(lines)


def match_cases(kernels):
    """{case: ncu metrics}: the profiled launches in order, one per case (the script
    launches each case once; a kernel name that does not match is skipped)."""
    measured = {}
    queue = list(kernels)
    for name, function, _ in cases():
        for position, (kernel_name, metrics) in enumerate(queue):
            if names_kernel(kernel_name or "", function):
                measured[name] = metrics
                del queue[:position + 1]
                break
    return measured


def names_kernel(kernel_name, function):
    """Whether ncu's kernel name is ``function``: mangled (Numba's Itanium names carry the
    function's length before it: _ZN...4copyB2v1...) or demangled (copy(Array<...>))."""
    import re
    return f"{len(function)}{function}" in kernel_name or re.search(rf"(^|[\s:]){re.escape(function)}\(",
                                                                    kernel_name) is not None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for the three result files")
    p.add_argument("--model-only", action="store_true", help="only the simulator's side (no GPU needed)")
    p.add_argument("--model-json", help=argparse.SUPPRESS)       # internal: the simulator child writes here
    p.add_argument("--run-cases", action="store_true", help=argparse.SUPPRESS)   # internal: ncu's child
    p.add_argument("--ncu", default=shutil.which("ncu") or "ncu", help="the Nsight Compute command line tool")
    args = p.parse_args(argv)
    if args.model_json:
        with open(args.model_json, "w") as f:
            json.dump(model_side(), f)
        return 0
    if args.run_cases:
        gpu_side()
        return 0
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "ncu_compare.json")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--model-json", model_path], env=env)
    if child.returncode:
        print("the model's side failed (see above)")
        return 1
    with open(model_path) as f:
        model = json.load(f)
    if args.model_only:
        for case, metrics in model.items():
            print(case, {k: metrics.get(k) for k in METRICS if metrics.get(k)})
        return 0
    names = "|".join(sorted({function for _, function, _ in cases()}))
    command = [args.ncu, "--csv", "--page", "raw", "--metrics", ",".join(METRICS), "--kernel-name", f"regex:{names}",
               sys.executable, os.path.abspath(__file__), "--run-cases"]
    print(" ".join(command), flush=True)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    with open(os.path.join(args.out, "ncu_raw.csv"), "w") as f:
        f.write(proc.stdout + "\n# stderr\n" + proc.stderr)
    if proc.returncode:
        print(f"ncu failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return 1
    measured = match_cases(parse_ncu_csv(proc.stdout))
    rows = compare(model, measured)
    table = markdown(rows)
    print(table)
    with open(os.path.join(args.out, "ncu_compare.md"), "w") as f:
        f.write(table + "\n")
    with open(model_path, "w") as f:
        json.dump({"model": model, "ncu": measured, "rows": rows}, f, indent=1)
    differ = [r for r in rows if r["verdict"] in ("DIFFERS", "BOUND BROKEN")]
    print(f"{len(rows) - len(differ)} figures agree, {len(differ)} differ (reported above, not adjusted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
