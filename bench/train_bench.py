"""One full DCGAN training step: ours versus PyTorch eager, same architecture, same batch.

A step is what dcgan_cuda.train does per batch: D on a real batch and on a fake batch,
D's Adam step, then G through D, G's Adam step. Both sides skip D's weight gradients in
the G step (D is frozen there), so they do the same arithmetic.

    python bench/train_bench.py --device cpu      # NumPy backend vs PyTorch CPU (32x32, batch 64)
    python bench/train_bench.py --device cuda     # our kernels vs PyTorch CUDA (64x64, batch 128),
                                                  # PyTorch in FP32 with TF32 off, and TF32 on (labelled)

Reports ms per step, images per second, and (on a GPU) the step's FLOP count against the
card's FP32 peak: the physical floor. On the kernel backends (cuda, sim) it also counts the
kernel launches of one step, by kernel family, and on a GPU measures what one launch costs
the host and times the same step captured into a CUDA graph (one launch per step;
--no-graph skips it); --no-fuse runs every batchnorm and activation as separate layers, to
see what the fusion saves.

At the DCGAN shapes it also prints the step PREDICTED by bench/roofline.py --step (every
launch of a step from its traced memory figures: bench/results/cpu/step_prediction.json),
with the launches that dominate it, and on a GPU the measured step beside that range.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from torch_twin import torch_forward, torch_twin  # noqa: E402

from dcgan_cuda import nn as our_nn  # noqa: E402
from dcgan_cuda.autograd import Tensor  # noqa: E402
from dcgan_cuda.backend import BackendUnavailable, get_backend  # noqa: E402
from dcgan_cuda.cli import (MAX_COUNT, MAX_LATENT, MAX_WIDTH, Parser, integer, output_file,  # noqa: E402
                            reports_errors)
from dcgan_cuda.host_memory import keep_freed_memory  # noqa: E402
from dcgan_cuda.models import build_models  # noqa: E402
from dcgan_cuda.optim import Adam  # noqa: E402
from dcgan_cuda.train import train_step  # noqa: E402


def step_flops(netG, netD, batch):
    """FLOPs of one training step's convolutions and dense layers (2 per multiply-add).

    Passes per layer: D on real: forward, backward-data (not the first layer), weight grads.
    D on fake: the same. G forward once. G step: D forward and backward-data through every
    layer (down to the fake images), G backward-data (not the first layer) and weight grads.
    """
    def layer_macs(net, x_shape):
        macs = []
        shape = x_shape
        for layer in net.main:
            if isinstance(layer, (our_nn.Conv2d, our_nn.ConvTranspose2d)):
                n, cin, h, w = shape
                if isinstance(layer, our_nn.Conv2d):
                    cout, _, kh, kw = layer.shape
                    (sh, sw), (ph, pw) = layer.stride, layer.padding
                    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
                    macs.append(n * cout * ho * wo * cin * kh * kw)
                else:
                    _, cout, kh, kw = layer.shape
                    (sh, sw), (ph, pw), (oh, ow) = layer.stride, layer.padding, layer.output_padding
                    ho, wo = (h - 1) * sh - 2 * ph + kh + oh, (w - 1) * sw - 2 * pw + kw + ow
                    macs.append(n * cin * h * w * cout * kh * kw)
                shape = (n, cout, ho, wo)
            elif isinstance(layer, our_nn.Linear):
                out_f, in_f = layer.shape
                macs.append(shape[0] * in_f * out_f)
                shape = (shape[0], out_f)
            elif isinstance(layer, our_nn.Unflatten):
                shape = (shape[0],) + layer.shape
            elif isinstance(layer, our_nn.Flatten):
                shape = (shape[0], int(np.prod(shape[1:])))
        return macs

    g = layer_macs(netG, (batch, netG.nz, 1, 1) if netG.arch == "pytorch" else (batch, netG.nz))
    d = layer_macs(netD, (batch, netD.nc, netD.image_size, netD.image_size))
    d_train = sum(d) + sum(d[1:]) + sum(d)          # forward, backward-data, weights
    g_step = sum(d) + sum(d) + sum(g[1:]) + sum(g)   # D forward + backward-data, G backward
    return 2 * (2 * d_train + sum(g) + g_step)


def our_step(netG, netD, optG, optD, backend, real, noise):
    return lambda: train_step(netG, netD, optG, optD, Tensor(real, backend), Tensor(noise, backend))


def torch_step(netG, netD, device, real, noise, lr, beta1):
    import torch
    G, D = torch_twin(netG).to(device), torch_twin(netD).to(device)
    optG = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, 0.999))
    loss = torch.nn.BCEWithLogitsLoss()
    real_t = torch.as_tensor(real, device=device)
    noise_t = torch.as_tensor(noise, device=device)
    ones = torch.ones(real.shape[0], device=device)
    zeros = torch.zeros(real.shape[0], device=device)

    def step():
        D.zero_grad()
        out = torch_forward(D, real_t, False)
        err_real = loss(out, ones)
        err_real.backward()
        fake = torch_forward(G, noise_t, True)
        out_fake = torch_forward(D, fake.detach(), False)
        err_fake = loss(out_fake, zeros)
        err_fake.backward()
        optD.step()
        G.zero_grad()
        D.requires_grad_(False)
        out_g = torch_forward(D, fake, False)
        err_g = loss(out_g, ones)
        err_g.backward()
        D.requires_grad_(True)
        optG.step()
        # What dcgan_cuda.train_step (like pytorch/examples' loop) reads back for its log line
        # every iteration: the same six host synchronisations on both sides.
        return (err_real.item() + err_fake.item(), err_g.item(),
                *(torch.sigmoid(o).mean().item() for o in (out, out_fake, out_g)))
    return step


def launches_of_one_step(step):
    """{family: kernel launches} of one call of step()."""
    from dcgan_cuda.kernels.jit import LAUNCHES
    LAUNCHES.clear()
    step()
    families = {}
    for name, count in LAUNCHES.items():
        family = name.split(".")[0]
        families[family] = families.get(family, 0) + count
    return dict(sorted(families.items(), key=lambda kv: -kv[1]))


def graphed_step_time(netG, netD, optG, optD, backend, real, noise, args):
    """{"ms": step time} of the step captured into a CUDA graph (dcgan_cuda/cuda_graph.py), or
    {"error": why not} (anything else it raises, train_bench records as a failed measurement). The first two calls warm up and capture; the optimizers go back to
    their usual kernel afterwards."""
    from dcgan_cuda.cuda_graph import GraphCaptureError, GraphedTrainStep
    graphed = GraphedTrainStep(netG, netD, optG, optD)
    real_d, noise_d = backend.asarray(real), backend.asarray(noise)

    def step():
        return graphed(Tensor(real_d, backend), Tensor(noise_d, backend))
    try:
        step()
        step()
        if graphed.graph is None:
            return {"error": "nothing was captured"}
        return {"ms": common.time_cuda(step, args.warmup, args.steps), "replays": graphed.replays}
    except GraphCaptureError as exc:
        return {"error": str(exc)}
    finally:
        graphed.release()


@contextlib.contextmanager
def launching_through(path):
    """Our kernels launched by jit's direct launch ("direct", the default) or by Numba's
    dispatcher ("numba") inside the block."""
    from dcgan_cuda.kernels import jit
    saved, jit.LAUNCH = jit.LAUNCH, path
    try:
        yield
    finally:
        jit.LAUNCH = saved


def direct_launch_status():
    from dcgan_cuda.kernels import jit
    return "available" if jit.DIRECT_LAUNCH_AVAILABLE else "unavailable (old numba-cuda): both paths are Numba's"


def host_cost_of_one_launch(backend, launches=2000):
    """Microseconds of host time per launch of a typical small kernel (Adam's update of a
    single element: 4 arrays and 9 scalars, like most kernels of a step), the GPU kept far
    less busy than the host: what Python, Numba's dispatcher and the driver cost per launch."""
    import time

    from dcgan_cuda.kernels import adam
    p, g, m, v = (backend.zeros((1,)) for _ in range(4))

    def launch():
        adam.adam_step(p, g, m, v, 1e-4, 0.5, 0.999, 0.001, 1e-8, 0.0)
    for _ in range(10):  # compile and warm up
        launch()
    backend.synchronize()
    t = time.perf_counter()
    for _ in range(launches):
        launch()
    host_us = (time.perf_counter() - t) / launches * 1e6
    backend.synchronize()
    return host_us


def predicted_step(arch, batch, size, ngf, ndf, versions, rows):
    """The PREDICTED step (bench/roofline.py --step: every launch of a step at the DCGAN
    shapes, from traced memory figures; no GPU measured it) for the same shapes and kernel
    versions, printed with the launches that dominate it, and beside our measured step
    where there is one; None where no prediction fits."""
    import roofline
    if (arch, batch, size, ngf, ndf) != ("pytorch", 128, 64, 64, 64) or not os.path.exists(roofline.STEP):
        return None
    with open(roofline.STEP) as f:
        steps = json.load(f).get("steps", [])
    step = next((s for s in steps if versions is None or s.get("versions") == versions), None)
    if step is None:
        print(f"\n(PREDICTED step: {roofline.STEP} has kernel versions {[s.get('versions') for s in steps]}; "
              f"python bench/roofline.py --step --step-versions ... predicts others)")
        return None
    print()
    roofline.print_step(step)
    done = [r for r in step["launches"] if r["traced"]]
    low, high = sum(r["low_ms"] for r in done), sum(r["high_ms"] for r in done)
    ours = next((r for r in rows if r["impl"].startswith("dcgan_cuda") and "graph" not in r["impl"]), None)
    if ours is not None and versions is not None:
        where = "inside" if low <= ours["ms"] <= high else ("FASTER" if ours["ms"] < low else "SLOWER")
        print(f"measured {ours['ms']:.2f} ms/step against PREDICTED {low:.2f} - {high:.2f} ms: {where}")
    return {"low_ms": low, "high_ms": high, "launches": len(step["launches"]), "file": roofline.STEP}


@reports_errors(BackendUnavailable)
def main(argv=None):
    from dcgan_cuda.models import IMAGE_SIZES
    p = Parser(prog="python bench/train_bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "sim"))
    p.add_argument("--batch", type=integer(1, MAX_COUNT), default=None,
                   help="default: 64 on cpu, 128 on cuda, 2 on sim")
    p.add_argument("--image-size", type=int, default=None, choices=IMAGE_SIZES,
                   help="default: 32 on cpu, 64 on cuda, 16 on sim")
    p.add_argument("--ngf", type=integer(1, MAX_WIDTH), default=None, help="default 64 (4 on sim)")
    p.add_argument("--ndf", type=integer(1, MAX_WIDTH), default=None, help="default 64 (4 on sim)")
    p.add_argument("--nc", type=int, default=3, choices=(1, 3))
    p.add_argument("--nz", type=integer(1, MAX_LATENT), default=100)
    p.add_argument("--arch", default="pytorch", choices=("pytorch", "paper"))
    p.add_argument("--steps", type=integer(1, MAX_COUNT), default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=integer(0, MAX_COUNT), default=3)
    p.add_argument("--no-torch", action="store_true", help="do not run the PyTorch comparison")
    p.add_argument("--no-fuse", action="store_true",
                   help="run batchnorm and the activation after it as two layers (for comparison)")
    p.add_argument("--versions", nargs="*", default=["default"], metavar="SPEC",
                   help="kernel versions on cuda/sim: 'default' (each family's DEFAULT_VERSION), "
                        "'newest' (each family's highest deterministic one), and/or FAMILY=N items, applied in order "
                        "(e.g. newest conv2d=2)")
    p.add_argument("--no-graph", action="store_true",
                   help="on cuda, do not also time the step captured into a CUDA graph")
    p.add_argument("--json", type=output_file, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.device == "cpu" and args.versions != ["default"]:
        p.error("--versions picks versions of our CUDA kernels: it needs --device cuda or sim")
    sim = args.device == "sim"
    gpu = args.device == "cuda"
    batch = args.batch or (2 if sim else 128 if gpu else 64)
    size = args.image_size or (16 if sim else 64 if gpu else 32)
    ngf, ndf = args.ngf or (4 if sim else 64), args.ndf or (4 if sim else 64)
    if sim:
        args.steps, args.warmup = min(args.steps, 1), 0

    backend = get_backend(args.device)
    versions = None
    if backend.name != "numpy":
        try:
            versions = backend.choose_versions(args.versions)
        except ValueError as exc:
            p.error(f"--versions: {exc}")
    if args.no_fuse:
        our_nn.Sequential.fuse_activations = False
    netG, netD = build_models(args.arch, size, args.nc, args.nz, ngf, ndf, seed=0)
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (batch, args.nc, size, size)).astype(np.float32)
    noise = netG.sample_noise(batch, rng)
    flops = step_flops(netG, netD, batch)

    machine = common.gpu_description() if gpu else (common.cpu_description(), None)
    name, peak = machine
    print(f"machine: {name}" + (f" (FP32 peak {peak} TFLOP/s)" if peak else ""))
    blas = None if gpu else common.blas_description()
    if blas:
        print(f"NumPy BLAS: {blas}")
    kept = keep_freed_memory()   # as python -m dcgan_cuda.train does; PyTorch, same process, shares it
    print("host allocator: " + ("glibc keeps freed memory (dcgan_cuda/host_memory.py), for both sides"
                                if kept else "default"))
    print(f"DCGAN step: arch {args.arch}, batch {batch}, {args.nc}x{size}x{size}, ngf {ngf}, ndf {ndf}: "
          f"{flops / 1e9:.1f} GFLOP")
    if versions:
        print("kernel versions: " + ", ".join(f"{family} {v}" for family, v in sorted(versions.items())))

    from dcgan_cuda.kernels import jit
    rows, failures = [], []
    report = {"machine": name, "fp32_peak_tflops": peak, "blas": blas, "host_allocator_keeps_freed_memory": kept,
              "arch": args.arch, "batch": batch, "image_size": size, "nc": args.nc, "ngf": ngf, "ndf": ndf,
              "step_gflop": flops / 1e9, "fused_activations": not args.no_fuse, "kernel_versions": versions,
              "complete": False, "results": rows, "failed": failures}

    def save():
        """Rewrite the JSON with everything measured so far: a run stopped by a time limit,
        or by a measurement that crashed the process, keeps what came before."""
        if args.json:
            common.write_json(args.json, report)

    def record(label, ms, **extra):
        row = {"impl": label, "ms": ms, "img_s": batch / ms * 1e3, "gflops": flops / ms / 1e6, **extra}
        if peak:
            row["pct_peak"] = 100 * flops / ms / 1e9 / peak
        rows.append(row)
        print(f"  {label:<34} {ms:9.2f} ms/step")

    def attempt(what, measurement):
        """measurement()'s result, or None with the failure recorded: one failed measurement
        is reported as failed and the others still run. Saves either way."""
        try:
            return measurement()
        except Exception as exc:    # noqa: BLE001  (anything a GPU, a driver or PyTorch may raise)
            failures.append({"measurement": what, "error": f"{type(exc).__name__}: {exc}"})
            print(f"  {what}: FAILED: {type(exc).__name__}: {exc}")
            return None
        finally:
            save()

    def timed(label, measurement, our_kernels=False):
        ms = attempt(label, measurement)
        if ms is not None:
            # Which way our kernels were launched, read after the timing: a direct launch
            # that failed during it has switched the process to Numba's dispatcher.
            record(label, ms, **({"launch_path": jit.launch_path()} if our_kernels else {}))
            save()

    save()
    torch_label, torch_steps = None, []
    if not args.no_torch and not sim:
        try:
            import torch
        except ImportError:
            print("  PyTorch is not installed: no comparison (pip install torch)")
        else:
            # The twin copies the models' initial weights, before our steps change them.
            if gpu:
                torch_label = f"PyTorch {torch.__version__} eager "
                torch_steps = attempt("PyTorch twin", lambda: [
                    (tf32, torch_step(netG, netD, "cuda", real, noise, 2e-4, 0.5)) for tf32 in (False, True)]) or []
            else:
                torch_label = f"PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads)"
                torch_steps = attempt("PyTorch twin", lambda: [
                    (None, torch_step(netG, netD, "cpu", real, noise, 2e-4, 0.5))]) or []

    netG.to(backend)
    netD.to(backend)
    optG = Adam(netG.parameters(), 2e-4, (0.5, 0.999))
    optD = Adam(netD.parameters(), 2e-4, (0.5, 0.999))
    step = our_step(netG, netD, optG, optD, backend, backend.asarray(real), backend.asarray(noise))
    ours = f"dcgan_cuda ({backend.name}{', unfused' if args.no_fuse else ''})"
    if gpu:
        report["direct_launch"] = direct_launch_status()
        timed(ours, lambda: common.time_cuda(step, args.warmup, args.steps), our_kernels=True)
        with launching_through("numba"):          # the same step through Numba's dispatcher
            timed(f"{ours}, Numba's dispatcher", lambda: common.time_cuda(step, args.warmup, args.steps),
                  our_kernels=True)
    else:                      # the CPU: both sides in alternating rounds (shared machines drift)
        medians = attempt("the CPU steps", lambda: common.time_cpu_alternating(
            [step] + [s for _, s in torch_steps], args.warmup, args.steps))
        for label, ms in zip([ours] + [torch_label] * len(torch_steps), medians or []):
            record(label, ms)
        save()
    launches = None
    if backend.name != "numpy":
        by_family = attempt("launches per step", lambda: launches_of_one_step(step))
        if by_family:
            launches = report["launches_per_step"] = sum(by_family.values())
            report["launches_by_family"] = by_family
            per_launch = f" ({rows[0]['ms'] * 1e3 / launches:.1f} us of step time per launch)" if rows else ""
            print(f"  kernel launches per step: {launches}{per_launch}: "
                  + ", ".join(f"{k} {v}" for k, v in by_family.items()))
            save()
    if gpu:
        launch_us = report["host_us_per_launch"] = {}
        print(f"  direct launch: {report['direct_launch']}")
        for path in ("direct", "numba"):
            with launching_through(path):
                us = attempt(f"host cost of one launch, {path}", lambda: host_cost_of_one_launch(backend))
            if us is None:
                continue
            launch_us[path] = us
            save()
            if launches:
                print(f"  host cost of one launch, {path}: {us:.1f} us -> "
                      f"{launches * us / 1e3:.2f} ms of every step is spent launching "
                      f"(the GPU idles there unless it is busy with earlier work)")
        if not args.no_graph:
            graph = report["cuda_graph"] = attempt(
                "CUDA graph", lambda: graphed_step_time(netG, netD, optG, optD, backend, real, noise, args))
            if graph and graph.get("ms") is not None:
                record(f"{ours}, CUDA graph", graph["ms"], launch_path="one CUDA graph launch")
                save()
                print(f"  with the graph: 1 graph launch per step in place of {launches} kernel launches")
            elif graph:
                print(f"  CUDA graph: {graph['error']}")
        for tf32, tstep in torch_steps:
            def torch_time(tf32=tf32, tstep=tstep):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.benchmark = True
                return common.time_torch_cuda(tstep, args.warmup, args.steps)
            timed(torch_label + ("TF32" if tf32 else "FP32"), torch_time)
    baseline = next((r for r in rows if r["impl"].startswith("PyTorch") and "TF32" not in r["impl"]), None)
    if baseline is not None:
        for row in rows:
            if row["impl"].startswith("dcgan_cuda"):
                print(f"ratio {row['impl']} / PyTorch {'FP32' if gpu else 'CPU'}: {row['ms'] / baseline['ms']:.2f}x")
    cols = [("impl", "implementation", "{}"), ("ms", "ms/step", "{:.2f}"), ("img_s", "img/s", "{:.0f}"),
            ("gflops", "GFLOP/s", "{:.0f}")] + ([("pct_peak", "% FP32 peak", "{:.1f}")] if peak else [])
    print()
    print(common.table(rows, cols))
    for failure in failures:
        print(f"FAILED {failure['measurement']}: {failure['error']}")
    predicted = attempt("PREDICTED step", lambda: predicted_step(args.arch, batch, size, ngf, ndf, versions, rows))
    if predicted:
        report["predicted_step"] = predicted
    report["complete"] = True
    save()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
