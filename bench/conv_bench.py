"""Our convolution kernels against cuDNN, layer by layer, at the DCGAN shapes.

    python bench/conv_bench.py                          # every G and D convolution, 3 directions, all versions
    python bench/conv_bench.py --layers D2 G3 --directions fwd --versions 1 2
    python bench/conv_bench.py --batch 64 --image-size 32 --ngf 32 --json out.json

For each convolution of the generator (transposed) and discriminator at batch 128, 64x64,
ngf = ndf = 64 (pytorch/examples' DCGAN), and each direction (fwd, bwd-data, bwd-weight):
median ms of CUDA-event timings after warm-up over rotating input buffers (so inputs are
not sitting in the 50 MB L2), GFLOP/s, % of the card's FP32 peak, max error relative to the
largest reference value, and the ratio to cuDNN through PyTorch with TF32 off (the fair
FP32 yardstick) and on (labelled TF32; tensor cores, which Numba cannot use).

Without a GPU it still runs: NumPy reference timings at the same shapes, a simulator
validation of every kernel version on tiny shapes (both at once: they use different
cores), and the PREDICTED progression, version by version, layer by layer and direction
by direction, from the memory figures traced at these shapes (bench/roofline.py; stored in
bench/results/cpu/traced_figures.json, flagged STALE when the kernels changed since). On a
GPU the predicted range is printed beside each measurement: the model's test.

On a GPU, --json is rewritten after every layer ("complete": false until the last), so a
run stopped by a time limit keeps what it measured.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from dcgan_cuda import nn as our_nn  # noqa: E402
from dcgan_cuda import reference  # noqa: E402
from dcgan_cuda.cli import (MAX_COUNT, MAX_LATENT, MAX_WIDTH, Parser, integer, output_file,  # noqa: E402
                            real, reports_errors)
from dcgan_cuda.models import build_models  # noqa: E402

DIRECTIONS = ("fwd", "bwd-data", "bwd-weight")


def dcgan_convolutions(arch, batch, size, nc, nz, ngf, ndf):
    """Every convolution of G and D: name, kind, x shape, w shape, stride, padding, output shape."""
    netG, netD = build_models(arch, size, nc, nz, ngf, ndf, seed=0)
    layers = []
    for prefix, net, shape in (("G", netG, (batch, nz, 1, 1)), ("D", netD, (batch, nc, size, size))):
        index = 0
        for layer in net.main:
            if isinstance(layer, our_nn.Linear):
                shape = (batch, layer.shape[0])
            elif isinstance(layer, our_nn.Unflatten):
                shape = (batch,) + layer.shape
            elif isinstance(layer, (our_nn.Conv2d, our_nn.ConvTranspose2d)):
                index += 1
                n, cin, h, w = shape
                transposed = isinstance(layer, our_nn.ConvTranspose2d)
                kh, kw = layer.shape[2:]
                (sh, sw), (ph, pw) = layer.stride, layer.padding
                if transposed:
                    cout = layer.shape[1]
                    oph, opw = layer.output_padding
                    out = (n, cout, (h - 1) * sh - 2 * ph + kh + oph, (w - 1) * sw - 2 * pw + kw + opw)
                else:
                    cout = layer.shape[0]
                    out = (n, cout, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
                kind = "convT" if transposed else "conv"
                layers.append(dict(name=f"{prefix}{index}", kind=kind, x=shape, w=layer.shape, y=out,
                                   stride=(sh, sw), padding=(ph, pw),
                                   label=f"{prefix}{index} {kind} {cin}->{cout} {h}->{out[2]} k{kh}s{sh}p{ph}"))
                shape = out
    return layers


def macs(layer):
    n, cin, h, w = layer["x"]
    _, cout, ho, wo = layer["y"]
    kh, kw = layer["w"][2:]
    if layer["kind"] == "conv":
        return n * cout * ho * wo * cin * kh * kw
    return n * cin * h * w * cout * kh * kw


def reference_direction(layer, direction, x, w, dy):
    """The NumPy result of one direction of one layer (float32)."""
    s, p = layer["stride"], layer["padding"]
    if layer["kind"] == "conv":
        return {"fwd": lambda: reference.conv2d_forward(x, w, None, s, p),
                "bwd-data": lambda: reference.conv2d_backward_data(dy, w, x.shape, s, p),
                "bwd-weight": lambda: reference.conv2d_backward_weight(x, dy, w.shape, s, p)}[direction]()
    return {"fwd": lambda: reference.conv2d_backward_data(x, w, layer["y"], s, p),
            "bwd-data": lambda: reference.conv2d_forward(dy, w, None, s, p),
            "bwd-weight": lambda: reference.conv2d_backward_weight(dy, x, w.shape, s, p)}[direction]()


def our_launcher(layer, direction, version, x, w, dy, out):
    from dcgan_cuda.kernels import conv2d, conv_transpose2d
    module = conv2d if layer["kind"] == "conv" else conv_transpose2d
    s, p = layer["stride"], layer["padding"]
    if direction == "fwd":
        return lambda: module.forward(x, w, out, s, p, version=version)
    if direction == "bwd-data":
        return lambda: module.backward_data(dy, w, out, s, p, version=version)
    return lambda: module.backward_weight(x, dy, out, s, p, version=version)


def cudnn_launcher(layer, direction, x, w, dy):
    import torch
    import torch.nn.functional as F
    s, p = layer["stride"], layer["padding"]
    if layer["kind"] == "conv":
        return {"fwd": lambda: F.conv2d(x, w, None, s, p),
                "bwd-data": lambda: torch.nn.grad.conv2d_input(layer["x"], w, dy, s, p),
                "bwd-weight": lambda: torch.nn.grad.conv2d_weight(x, layer["w"], dy, s, p)}[direction]
    # The transposed convolution's three directions are conv2d's, read through the duality.
    return {"fwd": lambda: torch.nn.grad.conv2d_input(layer["y"], w, x, s, p),
            "bwd-data": lambda: F.conv2d(dy, w, None, s, p),
            "bwd-weight": lambda: torch.nn.grad.conv2d_weight(dy, layer["w"], x, s, p)}[direction]


def output_shape(layer, direction):
    if direction == "bwd-weight":
        return layer["w"]
    if direction == "fwd":
        return layer["y"]
    return layer["x"]


def rotating(make, count):
    """count independent copies of an input, so that successive timed runs miss in L2."""
    return [make() for _ in range(count)]


def time_once(fn):
    """Milliseconds of one fn() between two CUDA events, no warm-up: a rough first measure."""
    import cupy

    from dcgan_cuda.kernels.harness import time_with_events
    return time_with_events(fn, cupy.cuda.Event, cupy.cuda.get_elapsed_time, warmup=0, reps=1, rounds=1)


def calls_within_budget(ms_once, args):
    """(warm-up, timed calls) for one measurement: --warmup and --reps, fewer where one call
    is slow (v1 at the big layers: ~0.1 s), so that it takes at most about --budget-ms; at
    least one warm-up call and 5 timed calls (one per timing round)."""
    affordable = int(args.budget_ms / max(ms_once, 1e-3))
    return max(1, min(args.warmup, affordable // 4)), max(5, min(args.reps, affordable))


def run_gpu(args, layers, versions, save=None):
    """Times every layer, direction and version (and cuDNN); save(result), if given, gets the
    result so far after each layer, so that a run cut short keeps what it measured."""
    import cupy
    name, peak = common.gpu_description()
    print(f"GPU: {name}" + (f" (FP32 peak {peak} TFLOP/s)" if peak else ""))
    try:
        import torch
        have_torch = torch.cuda.is_available()
    except ImportError:
        have_torch = False
    if not have_torch:
        print("PyTorch with CUDA is not installed: no cuDNN comparison")
    rng = np.random.default_rng(0)
    rows = []
    for layer in layers:
        x = rng.standard_normal(layer["x"]).astype(np.float32)
        w = (rng.standard_normal(layer["w"]) * 0.05).astype(np.float32)
        dy = rng.standard_normal(layer["y"]).astype(np.float32)
        per_set = x.nbytes + w.nbytes + dy.nbytes
        sets = max(2, min(8, int(np.ceil(120e6 / per_set))))  # > 2x the L2 in total
        d_sets = rotating(lambda: tuple(cupy.asarray(a) for a in (x, w, dy)), sets)
        for direction in args.directions:
            flop = 2 * macs(layer)
            ref = reference_direction(layer, direction, x, w, dy)
            scale = float(np.abs(ref).max()) or 1.0
            cudnn = {}
            if have_torch:
                t_sets = [tuple(torch.as_tensor(a, device="cuda") for a in (x, w, dy)) for _ in range(sets)]
                for tf32 in (False, True):
                    torch.backends.cudnn.allow_tf32 = tf32
                    torch.backends.cudnn.benchmark = True
                    fns = [cudnn_launcher(layer, direction, *t) for t in t_sets]
                    counter = iter(range(10**9))
                    cudnn[tf32] = common.time_torch_cuda(lambda: fns[next(counter) % sets](),
                                                         args.warmup, args.reps)
                del t_sets
            for version in versions:
                outs = [cupy.empty(output_shape(layer, direction), dtype=cupy.float32) for _ in range(sets)]
                fns = [our_launcher(layer, direction, version, *d, o) for d, o in zip(d_sets, outs)]
                fns[0]()
                err = float(np.abs(outs[0].get() - ref).max()) / scale
                counter = iter(range(10**9))
                warmup, reps = calls_within_budget(time_once(fns[1 % sets]), args)
                ms = common.time_cuda(lambda: fns[next(counter) % sets](), warmup, reps)
                row = dict(layer=layer["label"], direction=direction, version=version, ms=ms,
                           gflops=flop / ms / 1e6, rel_err=err)
                if peak:
                    row["pct_peak"] = 100 * flop / ms / 1e9 / peak
                if cudnn:
                    row["cudnn_fp32_ms"], row["cudnn_tf32_ms"] = cudnn[False], cudnn[True]
                    row["x_cudnn_fp32"] = cudnn[False] / ms
                    row["x_cudnn_tf32"] = cudnn[True] / ms
                rows.append(row)
                print(f"{row['layer']:<34} {direction:<10} v{version} {ms:8.3f} ms {row['gflops']:8.0f} GFLOP/s"
                      + (f"  x cuDNN FP32 {row['x_cudnn_fp32']:.2f}  TF32 {row['x_cudnn_tf32']:.2f}" if cudnn else "")
                      + f"  rel err {err:.1e}", flush=True)
        del d_sets
        if save:
            save(dict(summary(rows, versions, name, peak), complete=False))
    print()
    cols = [("layer", "layer", "{}"), ("direction", "dir", "{}"), ("version", "v", "{}"),
            ("ms", "ms", "{:.3f}"), ("gflops", "GFLOP/s", "{:.0f}"), ("pct_peak", "% peak", "{:.1f}"),
            ("rel_err", "rel err", "{:.1e}"), ("cudnn_fp32_ms", "cuDNN FP32 ms", "{:.3f}"),
            ("x_cudnn_fp32", "x cuDNN FP32", "{:.2f}"), ("x_cudnn_tf32", "x cuDNN TF32", "{:.2f}")]
    print(common.table(rows, cols))
    result = summary(rows, versions, name, peak)
    print("\nThe progression (every convolution above, all its directions, one version at a time):")
    print(progression_markdown(result["progression"]))
    beside_predictions(args, rows, versions, layers)
    best = result["best_version_geomean_x_cudnn_fp32"]
    if best is not None:
        print(f"best version per convolution and direction: geometric mean speed vs cuDNN FP32 "
              f"(TF32 off) = {best:.2f}x (the fast-kernels issue's target: >= 0.8x)")
    return dict(result, complete=True)


def summary(rows, versions, machine, peak):
    """The JSON result of the measured rows: the rows, the progression, the geometric means."""
    from dcgan_cuda.kernels import conv2d
    table = progression(rows, {v: conv2d.VERSIONS[v].name for v in versions}, peak)
    return {"machine": machine, "fp32_peak_tflops": peak, "results": rows, "progression": table,
            "geomean_x_cudnn_fp32": {row["version"]: row.get("geomean_x_cudnn_fp32") for row in table},
            "best_version_geomean_x_cudnn_fp32": best_version_geomean(rows)}


def progression(rows, names, peak=None):
    """One row per version over all the measured (layer, direction) pairs: total ms, GFLOP/s
    and % of peak of the sum, the sum's speed against cuDNN FP32's sum, and the geometric
    mean of the per-convolution ratios (which weighs a small layer as much as a big one)."""
    table = []
    for version, name in names.items():
        mine = [r for r in rows if r["version"] == version]
        if not mine:
            continue
        ms = sum(r["ms"] for r in mine)
        flop = sum(r["gflops"] * r["ms"] * 1e6 for r in mine)
        row = {"version": version, "name": name, "ms": ms, "gflops": flop / ms / 1e6}
        if peak:
            row["pct_peak"] = 100 * flop / ms / 1e9 / peak
        if all("cudnn_fp32_ms" in r for r in mine):
            row["x_cudnn_fp32"] = sum(r["cudnn_fp32_ms"] for r in mine) / ms
            row["geomean_x_cudnn_fp32"] = float(np.exp(np.mean([np.log(r["x_cudnn_fp32"]) for r in mine])))
        table.append(row)
    return table


def progression_markdown(table):
    """The progression as the markdown table of kernels/README.md."""
    lines = ["| version | idea | ms | GFLOP/s | % FP32 peak | x cuDNN FP32 (sum) | x cuDNN FP32 (geomean) |",
             "|---|---|---|---|---|---|---|"]
    fmt = {"pct_peak": "{:.1f}", "x_cudnn_fp32": "{:.2f}", "geomean_x_cudnn_fp32": "{:.2f}"}
    for row in table:
        cells = [f"{row['version']}", row["name"], f"{row['ms']:.2f}", f"{row['gflops']:.0f}"]
        cells += [fmt[k].format(row[k]) if k in row else "-" for k in fmt]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_version_geomean(rows):
    """Geometric mean over (layer, direction) of the fastest version's speed vs cuDNN FP32."""
    best = {}
    for r in rows:
        if "x_cudnn_fp32" in r:
            key = (r["layer"], r["direction"])
            best[key] = max(best.get(key, 0.0), r["x_cudnn_fp32"])
    if not best:
        return None
    return float(np.exp(np.mean(np.log(list(best.values())))))


def run_cpu(args, layers, versions):
    print(f"No GPU ({args.why}): GPU timings need a GPU. Timing the NumPy reference on "
          f"{common.cpu_description()} while every kernel version is validated in the simulator.")
    validations = {}
    if not args.no_sim:
        # The simulator runs beside the NumPy timings (one process each on another core);
        # --no-profile: the memory figures come from the traced table, not from tiny shapes.
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        for module in ("conv2d", "conv_transpose2d"):
            cmd = [sys.executable, "-m", f"dcgan_cuda.kernels.{module}", "--sim", "--no-profile"]
            for v in versions:
                cmd += ["--version", str(v)]
            validations[module] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                   text=True)
    rng = np.random.default_rng(0)
    rows = []
    for layer in layers:
        x = rng.standard_normal(layer["x"]).astype(np.float32)
        w = (rng.standard_normal(layer["w"]) * 0.05).astype(np.float32)
        dy = rng.standard_normal(layer["y"]).astype(np.float32)
        for direction in args.directions:
            ms = common.time_cpu(lambda: reference_direction(layer, direction, x, w, dy), 1, args.cpu_reps)
            rows.append(dict(layer=layer["label"], direction=direction, ms=ms,
                             gflops=2 * macs(layer) / ms / 1e6))
            print(f"{layer['label']:<34} {direction:<10} numpy {ms:9.2f} ms {rows[-1]['gflops']:7.1f} GFLOP/s",
                  flush=True)
    sim = {}
    for module, proc in validations.items():
        out, _ = proc.communicate()
        print(out)
        sim[module] = proc.returncode == 0
    predicted = predicted_rows(args, layers, versions)
    return {"machine": common.cpu_description(), "numpy_results": rows, "simulator_validation": sim,
            "predicted": predicted}


def predicted_rows(args, layers, versions):
    """The PREDICTED rows (bench/roofline.py) of the selected layers, directions and
    versions, printed as the progression; [] where no figures were traced."""
    import roofline
    from dcgan_cuda.kernels import conv2d
    if args.batch != 128 or args.image_size != 64 or args.ngf != 64 or args.ndf != 64 or args.arch != "pytorch":
        print("PREDICTED times exist for the DCGAN shapes only (batch 128, 64x64, ngf = ndf = 64, pytorch arch)")
        return []
    if not os.path.exists(args.figures):
        print(f"No traced figures at {args.figures}: python bench/roofline.py --trace --json {args.figures}")
        return []
    figures = roofline.load(args.figures)
    names = {layer["name"] for layer in layers}
    figures = dict(figures, rows=[r for r in figures["rows"] if r["family"] == "conv2d" and r["layer"] in names
                                  and r["direction"] in args.directions and r["version"] in versions])
    print()
    return roofline.print_predictions(figures, "conv2d", {v: conv2d.VERSIONS[v].name for v in versions})


def beside_predictions(args, rows, versions, layers):
    """Each measured row with its PREDICTED range beside it, and whether it fell inside."""
    predicted = {(r["layer"], r["direction"], r["version"]): r for r in predicted_rows(args, layers, versions)}
    names = {layer["label"]: layer["name"] for layer in layers}
    lines = []
    for row in rows:
        p = predicted.get((names.get(row["layer"]), row["direction"], row["version"]))
        if p is None:
            continue
        row["predicted_low_ms"], row["predicted_high_ms"], row["predicted_bound"] = p["low_ms"], p["high_ms"], p["bound"]
        where = "inside" if p["low_ms"] <= row["ms"] <= p["high_ms"] else ("FASTER" if row["ms"] < p["low_ms"]
                                                                         else "SLOWER")
        row["vs_predicted"] = where
        lines.append(dict(layer=row["layer"], direction=row["direction"], version=row["version"], ms=row["ms"],
                          low=p["low_ms"], high=p["high_ms"], bound=p["bound"], where=where))
    if lines:
        print("\nMeasured against PREDICTED (bench/roofline.py's model; FASTER or SLOWER = outside its range):")
        print(common.table(lines, [("layer", "layer", "{}"), ("direction", "dir", "{}"), ("version", "v", "{}"),
                                   ("ms", "measured ms", "{:.3f}"), ("low", "PREDICTED low", "{:.3f}"),
                                   ("high", "PREDICTED high", "{:.3f}"), ("bound", "bound", "{}"),
                                   ("where", "measured is", "{}")]))


@reports_errors()
def main(argv=None):
    from dcgan_cuda.kernels import conv2d
    from dcgan_cuda.models import IMAGE_SIZES
    p = Parser(prog="python bench/conv_bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=integer(1, MAX_COUNT), default=128)
    p.add_argument("--image-size", type=int, default=64, choices=IMAGE_SIZES)
    p.add_argument("--nc", type=int, default=3, choices=(1, 3))
    p.add_argument("--nz", type=integer(1, MAX_LATENT), default=100)
    p.add_argument("--ngf", type=integer(1, MAX_WIDTH), default=64)
    p.add_argument("--ndf", type=integer(1, MAX_WIDTH), default=64)
    p.add_argument("--arch", default="pytorch", choices=("pytorch", "paper"))
    p.add_argument("--layers", nargs="*", default=None, help="e.g. G2 D3 (default: all)")
    p.add_argument("--directions", nargs="*", default=list(DIRECTIONS), choices=DIRECTIONS)
    p.add_argument("--versions", nargs="*", type=int, default=None, choices=sorted(conv2d.VERSIONS),
                   help="default: all")
    p.add_argument("--warmup", type=integer(0, MAX_COUNT), default=3)
    p.add_argument("--reps", type=integer(1, MAX_COUNT), default=20)
    p.add_argument("--budget-ms", type=real(0, 1e9, low_open=True), default=500.0,
                   help="GPU time per measurement: slow versions get fewer calls (at least 5)")
    p.add_argument("--cpu-reps", type=integer(1, MAX_COUNT), default=3,
                   help="repetitions of the NumPy timing (no GPU)")
    p.add_argument("--no-sim", action="store_true", help="without a GPU: skip the simulator validation")
    p.add_argument("--figures", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cpu",
                                                     "traced_figures.json"),
                   help="traced memory figures for the PREDICTED times (python bench/roofline.py --trace)")
    p.add_argument("--json", type=output_file, default=None)
    args = p.parse_args(argv)
    layers = dcgan_convolutions(args.arch, args.batch, args.image_size, args.nc, args.nz, args.ngf, args.ndf)
    if args.layers:
        unknown = set(args.layers) - {layer["name"] for layer in layers}
        if unknown:
            p.error(f"unknown layers {sorted(unknown)}; this model has {[l['name'] for l in layers]}")
        layers = [layer for layer in layers if layer["name"] in args.layers]
    from dcgan_cuda.backend import gpu_status
    ok, args.why = gpu_status()
    versions = args.versions or sorted(conv2d.VERSIONS)
    print(f"DCGAN ({args.arch}) convolutions at batch {args.batch}, {args.nc}x{args.image_size}x{args.image_size}, "
          f"ngf {args.ngf}, ndf {args.ndf}")
    def save(result):
        if args.json:
            common.write_json(args.json, dict(result, batch=args.batch, image_size=args.image_size,
                                              ngf=args.ngf, ndf=args.ndf, arch=args.arch))
    result = run_gpu(args, layers, versions, save) if ok else run_cpu(args, layers, versions)
    save(result)
    failed = [m for m, good in result.get("simulator_validation", {}).items() if not good]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
