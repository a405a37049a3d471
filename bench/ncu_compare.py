"""The access profiler's figures against Nsight Compute's, kernel by kernel, on a GPU.

    python bench/ncu_compare.py [--out DIR]       on a GPU machine with ncu: model, ncu, side by side
    python bench/ncu_compare.py --model bench/results/cpu/ncu_model.json --out DIR
                                                  ... with the model's side traced before (no simulator)
    python bench/ncu_compare.py --model-only --save-model bench/results/cpu/ncu_model.json
                                                  without a GPU: the model's side alone

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
            return (lambda: kernel[grid, block](*args)), kernel
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
        ("relu forward, 128x64x32x32", "relu_forward_v1", relu_forward),
        ("conv2d forward D2, newest version", "forward_v", conv2d_d2_forward),
    ]


def relu_forward(device, load=None):
    """elementwise.relu_forward on D1's output (33.5 MB in, 33.5 MB out)."""
    elementwise = (load or _project_module)("elementwise")
    x = device(np.ones((128, 64, 32, 32), np.float32))
    y = device(np.zeros((128, 64, 32, 32), np.float32))
    return (lambda: elementwise.relu_forward(x, y)), None


def conv2d_d2_forward(device, load=None):
    """conv2d.forward of D2 (64 -> 128 channels, 32 -> 16) by the newest version."""
    conv2d = (load or _project_module)("conv2d")
    layer = [l for l in conv2d.dcgan_layers() if l.name == "D2"][0]
    version = max(conv2d.VERSIONS)
    x, w, dy = (device(a) for a in _zeros_like_layer(conv2d, layer))
    y = device(np.zeros(dy.shape, np.float32))
    return (lambda: conv2d.forward(x, w, y, layer.stride, layer.padding, version)), (conv2d, layer, version)


def _zeros_like_layer(conv2d, layer):
    import roofline
    return roofline._conv_inputs(conv2d, layer)


def _project_module(name):
    import importlib
    return importlib.import_module(f"dcgan_cuda.kernels.{name}")


def _launch(make, device, load=None):
    made = make(device, load) if make in (relu_forward, conv2d_d2_forward) else make(device)
    return made


def model_side(blocks=1, warps=0):
    """{case: metrics} from the access profiler (run with NUMBA_ENABLE_CUDASIM=1), with the
    GPU's sizes (gpu_shaped) for the project's kernels; the convolution through
    bench/roofline.py (sampled and extrapolated along its reduction, as its table is)."""
    import roofline

    from dcgan_cuda.kernels import access_profiler, gpu_shaped
    out = {}
    for name, _, make in cases():
        call, extra = _launch(make, np.asarray, gpu_shaped.load)
        if make is conv2d_d2_forward:
            conv2d, layer, version = extra
            row = roofline.trace_conv(conv2d, layer, "fwd", version, blocks, warps)
            total = {}
            for launch in row["launches"]:
                for k, v in launch["metrics"].items():
                    total[k] = total.get(k, 0) + v
            out[name] = total
        else:
            with access_profiler.tracing(blocks=blocks, warps=warps) as launches:
                call()
            out[name] = {k: float(v) for k, v in access_profiler.combine(launches).items()}
        print(f"model: {name}", flush=True)
    return out


def gpu_side():
    """Run every case once on the GPU (under ncu, which profiles these launches)."""
    import cupy
    for name, _, make in cases():
        call, _ = _launch(make, cupy.asarray)
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
    if function.endswith("_v"):       # any version: forward_v7, forward_v9, ...
        return re.search(rf"{re.escape(function)}\d", kernel_name) is not None
    return f"{len(function)}{function}" in kernel_name or re.search(rf"(^|[\s:]){re.escape(function)}\(",
                                                                    kernel_name) is not None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for the three result files")
    p.add_argument("--model-only", action="store_true", help="only the simulator's side (no GPU needed)")
    p.add_argument("--model", default=None,
                   help="the model's figures traced before (e.g. bench/results/cpu/ncu_model.json): "
                        "skips the simulator, which takes minutes")
    p.add_argument("--save-model", default=None, help="write the model's figures here for a later --model")
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
    if args.model:       # traced before, on any machine: the simulator's side does not need the GPU
        with open(args.model) as f:
            model = json.load(f)
        model = model.get("model", model)
    else:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--model-json", model_path], env=env)
        if child.returncode:
            print("the model's side failed (see above)")
            return 1
        with open(model_path) as f:
            model = json.load(f)
        if args.save_model:
            with open(args.save_model, "w") as f:
                json.dump(model, f, indent=1)
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
