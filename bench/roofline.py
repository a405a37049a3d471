"""PREDICTED time of every kernel version at the DCGAN shapes, from its traced memory figures.

    python bench/roofline.py --trace [--json FILE]     profile in the simulator (minutes), then predict
    python bench/roofline.py [--json FILE]             predict from the figures traced before
    python bench/roofline.py --trace --versions 5 --layers D2 --directions fwd    one version, one layer

Nothing here is measured on a GPU: every time is PREDICTED, from a model, until
bench/conv_bench.py runs on one and prints the measurement beside it.

The figures. kernels/access_profiler.py runs each launch of a kernel version at the real
DCGAN shapes (batch 128, 64x64, ngf = ndf = 64, pytorch arch) under the simulator, with
the GPU's tile sizes and grids (kernels/gpu_shaped.py), and counts what it asks of the
memory system: global sectors, shared-memory wavefronts, the distinct bytes it touches.
Python runs a GPU thread about a million times slower than a GPU, so two shortcuts:
  * blocks and warps are sampled (dcgan_sample: a grid-stride loop's first, middle and
    last block; a grid of tiles, splits or phases only the first and last along each axis;
    in a block the first and last warp, or the first alone in a matrix multiply's), each
    standing for its share;
  * the reduction that every output sums over (a convolution's input channels for the
    forward pass, output channels for the data gradient, the batch for the weight
    gradient) is shortened to two small lengths r1 < r2 whose launches have exactly the
    real launch's kernels and grids, and every count is extrapolated linearly to the real
    length (each trip of the reduction loop asks the same of memory). A tiled kernel walks
    the reduction in slices of 8 or 16 and pays for a whole slice however little of it is
    used, so r1 and r2 are multiples of the step that fills whole slices (slice_period: 4
    channels where a data gradient's phase brings 4 taps per channel). A helper launch over
    an array the shortening shrinks (the weights regrouped before a data gradient) is
    extrapolated too, less exactly: on a tiny layer it can be off by 2x; it is small
    beside the matrix multiply it prepares.
tests/sim/test_roofline.py checks both against a full run on shapes small enough to run.

The model (an H100 SXM; each constant below says where it comes from). A launch needs
at least as long as each of its resources takes for its work, at full speed:
    compute   FLOPs / 67 TFLOP/s (FP32, no tensor cores: Numba has none)
    L1/shared data path: (shared wavefronts + global passes) / (one 128-byte pass a clock per SM)
              a global request passes the same path: at least once, once per 4 sectors
    DRAM      distinct bytes / 3.35 TB/s (every byte once: a perfect L2); if what the
              launch touches exceeds L2 (50 MB), every requested sector may come from DRAM
    launch    10 us per kernel launch from Python (cited, see H100_SXM below)
A grid with fewer blocks than SMs only uses that many SMs. The launch takes at least the
largest of these (everything overlapped: the "bound" is that resource) and, if nothing
overlaps, their sum: the PREDICTED range. What the model cannot see: cache hits between
L1 and L2 beyond "all or nothing", how warps are scheduled and how much latency they
hide (occupancy, registers), instruction issue (integer and address arithmetic compete
with FMAs for issue slots: bench/ptx_hot_loop.py counts them), and tail effects of the
last wave. The sum is therefore not a hard upper bound: a latency-bound kernel can be
slower. A GPU run settles it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

FIGURES = os.path.join(HERE, "results", "cpu", "traced_figures.json")

# ------------------------------------------------------------------------ the machine
# NVIDIA H100 SXM5 (the card the project targets), from NVIDIA's H100 datasheet and the
# Hopper tuning guide: 132 SMs, 1.98 GHz boost clock, FP32 67 TFLOP/s without tensor
# cores (132 SMs x 128 FP32 lanes x 2 FLOPs x 1.98 GHz), HBM3 3.35 TB/s, 50 MB of L2.
# Shared memory and L1 share one data path per SM that moves 128 bytes per clock (32
# banks x 4 bytes; the CUDA C++ Programming Guide, "Shared Memory" for compute capability
# 9.0 keeps the 32 banks of 4 bytes of earlier architectures).
# Launch: one figure, the host time to start one kernel from Python, 10 us: the glossary's
# "launch cost" in kernels/README.md, cited, not measured by us. In numba-cuda pull request
# #288 (github.com/NVIDIA/numba-cuda/pull/288) a maintainer timed an empty, eagerly compiled
# kernel at 6.6 us with no argument and 10.6 us with one array; our kernels take 1-14
# arguments, and jit.py's direct launch skips most of Numba's work per argument. The host
# starts one launch at a time, so even with everything overlapped (the low end) no launch
# takes less; with nothing overlapped (the high end) it adds to the rest. bench/train_bench.py
# measures it on a GPU (host_us_per_launch); the per-family tables print that measurement
# beside this figure once a GPU run has recorded one.
H100_SXM = {
    "name": "H100 SXM (PREDICTED)",
    "sms": 132,
    "clock_hz": 1.98e9,
    "fp32_flops": 66.9e12,
    "dram_bytes_per_s": 3.35e12,
    "l2_bytes": 50e6,
    "l1_bytes_per_clock_per_sm": 128,
    "launch_s": 10e-6,
}


def predict(metrics, flops, blocks, machine=H100_SXM):
    """PREDICTED seconds for one launch: each resource's time at full speed, the largest
    (the bound, everything overlapped) and the sum (nothing overlapped).

    metrics: the access profiler's figures of the launch (ncu names); flops: its useful
    floating-point operations; blocks: its grid size (fewer blocks than SMs use fewer SMs)."""
    sms = min(machine["sms"], max(1, int(blocks)))
    per_second = sms * machine["clock_hz"]
    # Global requests pass the same data path: at least one pass each, and one per 128
    # bytes of sectors (a request of 1 sector costs a pass; of 32 sectors, 8 or more).
    line = machine["l1_bytes_per_clock_per_sm"]
    global_passes = sum(max(metrics.get(f"l1tex__t_requests_pipe_lsu_mem_global_op_{op}.sum", 0),
                            metrics.get(f"l1tex__t_sectors_pipe_lsu_mem_global_op_{op}.sum", 0) * 32 / line)
                        for op in ("ld", "st", "atom"))
    wavefronts = sum(metrics.get(f"l1tex__data_pipe_lsu_wavefronts_mem_shared_op_{op}.sum", 0) for op in ("ld", "st"))
    wavefronts += metrics.get("smsp__sass_inst_executed_op_shared_atom.sum", 0)
    passes = wavefronts + global_passes
    dram_min = metrics.get("model__dram_bytes_min", 0)
    dram_max = dram_min if dram_min <= machine["l2_bytes"] else max(dram_min, metrics.get("model__dram_bytes_no_reuse", 0))
    compute = flops / (machine["fp32_flops"] * sms / machine["sms"])
    l1 = passes / per_second
    low = {"compute": compute, "L1/shared": l1, "DRAM": dram_min / machine["dram_bytes_per_s"],
           "launch": machine["launch_s"]}
    high = dict(low, DRAM=dram_max / machine["dram_bytes_per_s"])
    bound = max(low, key=low.get)
    return {"bound": bound, "low_s": low[bound], "high_s": sum(high.values()), "resources_s": low,
            "sms_used": sms}


# ------------------------------------------------------------------ tracing (simulator)
REDUCTION_AXIS = {"fwd": "cin", "bwd-data": "cout", "bwd-weight": "batch"}


def _conv_inputs(conv2d, layer):
    """Zero-filled x, w, dy for a layer (the addresses a kernel touches do not depend on
    the values, and zeros cost nothing to make)."""
    out_h, out_w = conv2d.layer_output_size(layer)
    x = np.zeros((layer.batch, layer.cin) + tuple(layer.size), np.float32)
    w_shape = ((layer.cin, layer.cout) if layer.transposed else (layer.cout, layer.cin)) + tuple(layer.kernel)
    w = np.zeros(w_shape, np.float32)
    dy = np.zeros((layer.batch, layer.cout, out_h, out_w), np.float32)
    return x, w, dy


def conv_launcher(conv2d, layer, direction, version):
    """A zero-argument call of one direction of one layer by one version (as cases.run,
    through the duality for a transposed layer), on fresh zero inputs."""
    x, w, dy = _conv_inputs(conv2d, layer)
    s, p = layer.stride, layer.padding
    out = np.zeros({"fwd": dy.shape, "bwd-data": x.shape, "bwd-weight": w.shape}[direction], np.float32)
    if layer.transposed:
        calls = {"fwd": lambda: conv2d.backward_data(x, w, out, s, p, version),
                 "bwd-data": lambda: conv2d.forward(dy, w, out, s, p, version),
                 "bwd-weight": lambda: conv2d.backward_weight(dy, x, out, s, p, version)}
    else:
        calls = {"fwd": lambda: conv2d.forward(x, w, out, s, p, version),
                 "bwd-data": lambda: conv2d.backward_data(dy, w, out, s, p, version),
                 "bwd-weight": lambda: conv2d.backward_weight(x, dy, out, s, p, version)}
    return calls[direction]


def planned(call):
    """The launches a call makes, without running any, as what must stay the same when the
    reduction is shortened: each kernel's name and block, and its grid, except the length
    of a one-dimensional grid. A 1-D grid is a grid-stride loop over some array (jit.grid_1d:
    conv2d's weights regrouped for a shorter reduction are a shorter array), whose counts
    stay linear in the reduction however many blocks share the loop; a split-K count (the
    grid's z) or a grid of tiles must not change."""
    from dcgan_cuda.kernels import access_profiler
    with access_profiler.tracing(dry=True) as launches:
        call()
    return [(launch.name, tuple(launch.block),
             "1-D" if tuple(launch.grid[1:]) == (1, 1) else tuple(launch.grid)) for launch in launches]


def planned_signatures(call):
    """The launches a call makes, with their argument shapes: what a training step's
    launches are matched against."""
    from dcgan_cuda.kernels import access_profiler
    with access_profiler.tracing(dry=True) as launches:
        call()
    return [signature(launch) for launch in launches]


def signature(launch):
    return [launch.name, list(launch.grid), list(launch.block), [list(s) if s else None for s in launch.shapes]]


def reduced_lengths(plan_at, real, period=1):
    """(r1, r2): the two shortest reduction lengths below ``real``, multiples of ``period``,
    whose launches are the real ones (same kernels, same grids: a split-K count, for one,
    depends on the length), or None if fewer than two shorter lengths have them. The two
    are as short as can be, because tracing costs in proportion.

    A tiled kernel walks its reduction in slices (slice_depth); a length that ends inside a
    slice still pays for the whole slice's shared-memory traffic, so counts are linear in
    the length only between lengths that fill whole slices: ``period`` (slice_period) is the
    step that keeps them whole. Between such lengths each further slice asks the same of
    memory, so two of them give the slope exactly."""
    target = plan_at(real)
    matching = []
    short = list(range(period, min(real, 65 * period), period))
    longer = list(range(short[-1] + 8 * period if short else 72 * period, real, 8 * period))
    for r in short + longer:
        if plan_at(r) == target:
            matching.append(r)
            if len(matching) == 2:
                return tuple(matching)
    return None


def slice_depth(package):
    """The depth every reduction slice of a tiled family divides, in elements of the GEMM's
    reduction K: the least common multiple of the slice depths its loaded modules use (each
    module's TILING.bk, BK or TILE, as configured: GPU_TILING and SIM_TILING are the two
    choices, TILING the one in force)."""
    depths = {1}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package.__name__ or name.startswith(package.__name__ + ".")):
            continue
        names = vars(module)
        if isinstance(getattr(names.get("TILING"), "bk", None), int):
            depths.add(names["TILING"].bk)
        depths.update(names[key] for key in ("BK", "TILE") if isinstance(names.get(key), int))
    return math.lcm(*depths)


def slice_period(per_unit, depth):
    """The shortest step of a reduced axis that keeps K whole in slices of ``depth``, when
    each unit of the axis adds ``per_unit`` elements to K (a channel of a 4x4 kernel: 16)."""
    return depth // math.gcd(depth, max(1, per_unit))


def conv_k_per_unit(conv2d, layer, direction):
    """Elements of the GEMM's reduction K per unit of the axis the direction shortens
    (REDUCTION_AXIS), for the conv2d kernel the direction runs (a transposed layer runs the
    dual one): a channel brings kh*kw taps to the forward GEMM, and to backward_data only
    the taps of one sub-pixel phase (the fewest, whichever phase: conservative for versions
    that do not split by phase); an image brings its output pixels to backward_weight (for a
    transposed layer, its input pixels)."""
    kernel = direction
    if layer.transposed and direction != "bwd-weight":
        kernel = {"fwd": "bwd-data", "bwd-data": "fwd"}[direction]
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    if kernel == "fwd":
        return kh * kw
    if kernel == "bwd-data":
        def taps(k, s, p):
            return [-(-(k - (r + p) % s) // s) for r in range(s) if (r + p) % s < k]
        products = [a * b for a in taps(kh, sh, ph) for b in taps(kw, sw, pw)]
        return math.gcd(*products) if products else 1
    if layer.transposed:
        return layer.size[0] * layer.size[1]
    out_h, out_w = conv2d.layer_output_size(layer)
    return out_h * out_w


def _extrapolate(low, high, r1, r2, real):
    """Each count, linear in the reduction length through (r1, low) and (r2, high), at real."""
    out = {}
    for key, a in low.items():
        b = high.get(key, a)
        if key.endswith((".ratio", ".pct")) or key.startswith("launch__"):
            continue
        out[key] = max(0.0, a + (b - a) * (real - r1) / (r2 - r1))
    return _with_ratios(out, low)


def _with_ratios(counts, like):
    out = dict(counts)
    for key in like:
        if key.startswith("launch__"):
            out[key] = like[key]
    for op in ("ld", "st", "atom"):
        req = out.get(f"l1tex__t_requests_pipe_lsu_mem_global_op_{op}.sum", 0)
        sec = out.get(f"l1tex__t_sectors_pipe_lsu_mem_global_op_{op}.sum", 0)
        out[f"l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_{op}.ratio"] = sec / req if req else 0.0
        if op != "atom":
            requested = out.get(f"model__bytes_requested_mem_global_op_{op}.sum", 0)
            out[f"smsp__sass_average_data_bytes_per_sector_mem_global_op_{op}.pct"] = \
                100.0 * requested / (32 * sec) if sec else 0.0
    return out


def dcgan_sample(grid):
    """The blocks traced at the DCGAN shapes, as interior counts per grid axis: a 1-D grid
    (a grid-stride loop, whose first blocks may take one trip more) its first, middle and
    last block; a grid of tiles (x) by split-K splits or sub-pixel phases (z) only the
    first and last along each axis, the first standing for the interior ones, which do the
    same work (the last tile or split is the ragged one)."""
    return (1, 1, 1) if tuple(grid[1:]) == (1, 1) else (0, 0, 0)


def dcgan_warps(grid, block):
    """The warps traced in each sampled block at the DCGAN shapes: in a grid of tiles
    (a matrix multiply: every warp of a block does the same work on its own rows) the
    first warp for all; elsewhere the first and the last."""
    return 0 if tuple(grid[1:]) == (1, 1) else -1


def traced_launches(call, blocks=1, warps=0):
    """[{name, grid, block, metrics, per_thread, sampled}] of every launch ``call`` makes."""
    from dcgan_cuda.kernels import access_profiler
    with access_profiler.tracing(blocks=blocks, warps=warps) as launches:
        call()
    return [{"name": p.name, "grid": list(p.grid), "block": list(p.block), "metrics": dict(p.metrics),
             "per_thread": dict(p.per_thread), "sampled": p.sampled, "vectors": p.ptx_status}
            for p in launches]


def trace_reduced(call_at, real, flops, blocks=1, warps=0, period=1):
    """(launches, method): the traced launches of call_at(real), a call whose reduction has
    length ``real`` (call_at(r) builds the same call with length r), sampled and, where two
    shorter lengths make the same launches, extrapolated from those (module docstring).
    The multiply-adds (``flops``) go to the launch that does them: the one with the most
    loads (the others regroup weights or add split-K partial sums)."""
    real_plan = planned_signatures(call_at(real))
    lengths = reduced_lengths(lambda r: planned(call_at(r)), real, period)
    if lengths is None:
        launches = traced_launches(call_at(real), blocks, warps)
        method = {"lengths": [real], "real": real}
    else:
        r1, r2 = lengths
        low = traced_launches(call_at(r1), blocks, warps)
        high = traced_launches(call_at(r2), blocks, warps)
        launches = []
        for a, b in zip(low, high):
            launches.append(dict(a, metrics=_extrapolate(a["metrics"], b["metrics"], r1, r2, real),
                                 per_thread={k: max(0.0, a["per_thread"][k] + (b["per_thread"][k] - a["per_thread"][k])
                                                    * (real - r1) / (r2 - r1)) for k in a["per_thread"]}))
        method = {"lengths": [r1, r2], "real": real}
    loads = [l["metrics"].get("l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum", 0)
             + l["metrics"].get("smsp__sass_inst_executed_op_shared_ld.sum", 0) for l in launches]
    for i, launch in enumerate(launches):
        launch["flops"] = flops if i == int(np.argmax(loads)) else 0
        launch["signature"] = real_plan[i] if i < len(real_plan) else None
    return launches, method


def trace_conv(conv2d, layer, direction, version, blocks=1, warps=0):
    """The traced figures of one direction of one layer by one version, at the real shape:
    sampled, and extrapolated along the reduction (see the module docstring)."""
    axis = REDUCTION_AXIS[direction]
    started = time.perf_counter()
    period = slice_period(conv_k_per_unit(conv2d, layer, direction), slice_depth(conv2d))
    launches, method = trace_reduced(
        lambda r: conv_launcher(conv2d, layer._replace(**{axis: r}), direction, version),
        getattr(layer, axis), conv2d.layer_flops(layer), blocks, warps, period)
    return {"family": "conv2d", "version": version, "layer": layer.name,
            "label": conv2d.layer_label(layer, direction), "direction": direction, "launches": launches,
            "method": dict(method, reduction=axis), "seconds_to_trace": round(time.perf_counter() - started, 1)}


# A dense layer's GEMMs: y (N, out) = x (N, in) @ w (out, in).T and its two gradients; each
# direction sums over a different axis.
DENSE_REDUCTION = {"fwd": "fan_in", "bwd-data": "fan_out", "bwd-weight": "batch"}


def linear_launcher(linear, dims, direction, version):
    batch, fan_in, fan_out = dims["batch"], dims["fan_in"], dims["fan_out"]
    x, w, dy = (np.zeros(shape, np.float32) for shape in ((batch, fan_in), (fan_out, fan_in), (batch, fan_out)))
    out = np.zeros({"fwd": dy.shape, "bwd-data": x.shape, "bwd-weight": w.shape}[direction], np.float32)
    return {"fwd": lambda: linear.forward(x, w, out, version),
            "bwd-data": lambda: linear.backward_data(dy, w, out, version),
            "bwd-weight": lambda: linear.backward_weight(x, dy, out, version)}[direction]


def trace_linear(linear, label, dims, direction, version, blocks=1, warps=0):
    """One direction of one dense shape by one version, as trace_conv does a convolution."""
    axis = DENSE_REDUCTION[direction]
    started = time.perf_counter()
    launches, method = trace_reduced(
        lambda r: linear_launcher(linear, dict(dims, **{axis: r}), direction, version),
        dims[axis], 2 * dims["batch"] * dims["fan_in"] * dims["fan_out"], blocks, warps,
        slice_period(1, slice_depth(linear)))
    return {"family": "linear", "version": version, "layer": label, "label": f"{label} {direction}",
            "direction": direction, "launches": launches, "method": dict(method, reduction=axis),
            "seconds_to_trace": round(time.perf_counter() - started, 1)}


def trace_family_case(module, family, version, label, make_inputs, blocks=1, warps=0):
    """Traced figures of one GPU case of a kernel file that is not a convolution: run as
    harness.main runs it, sampled (no reduction to extrapolate: each block's work is short)."""
    from dcgan_cuda.kernels.harness import to_device
    started = time.perf_counter()
    inputs = make_inputs(np.random.default_rng(0))
    ours, _, _, _, flops, _ = module.run(version, label, inputs, to_device)
    launches = traced_launches(ours, blocks, warps)
    loads = [l["metrics"].get("l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum", 0) for l in launches]
    for i, launch in enumerate(launches):
        launch["flops"] = flops if launches and i == int(np.argmax(loads)) else 0
    return {"family": family, "version": version, "layer": label, "label": label, "direction": "",
            "launches": launches, "method": {"reduction": None}, "seconds_to_trace": round(time.perf_counter() - started, 1)}


def source_fingerprint(family="conv2d"):
    """A hash of the code a family's kernels are built from: its file (or folder), jit.py,
    and every kernel file they import, each hashed as its syntax tree without docstrings.
    Comments are not in the tree either, so an edit of prose keeps the traced figures valid
    and any edit of code flags them stale."""
    import ast
    import hashlib
    kernels = os.path.join(os.path.dirname(HERE), "kernels")
    todo, seen = [family, "jit"], set()
    digest = hashlib.sha1()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        folder, single = os.path.join(kernels, name), os.path.join(kernels, name + ".py")
        in_folder = os.path.isdir(folder)
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py")) \
            if in_folder else ([single] if os.path.exists(single) else [])
        for path in paths:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and body \
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
            digest.update(ast.dump(tree).encode())
            # A relative import one level above this file's package names another kernel
            # file or folder: from .jit (in kernels/) or from ..linear.v7 (in kernels/conv2d/).
            top_level = 2 if in_folder else 1
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == top_level:
                    todo += [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------ predicting (anywhere)
def predict_row(row, machine=H100_SXM):
    """The PREDICTED range and bound of one traced row (all its launches, one after another)."""
    low = high = 0.0
    bounds = []
    for launch in row["launches"]:
        blocks = int(np.prod(launch["grid"]))
        p = predict(launch["metrics"], launch.get("flops", 0), blocks, machine)
        launch["predicted"] = p
        low += p["low_s"]
        high += p["high_s"]
        bounds.append((p["low_s"], p["bound"], launch["name"]))
    dominant = max(bounds) if bounds else (0, "-", "-")
    flops = sum(l.get("flops", 0) for l in row["launches"])
    return {"low_ms": low * 1e3, "high_ms": high * 1e3, "bound": dominant[1], "bound_kernel": dominant[2],
            "flops": flops, "launches": len(row["launches"])}


def figures_row(row):
    """The traced figures of a row, summed over its launches, for the tables."""
    total = {}
    for launch in row["launches"]:
        for k, v in launch["metrics"].items():
            if not (k.endswith((".ratio", ".pct")) or k.startswith("launch__")):
                total[k] = total.get(k, 0) + v
    m = _with_ratios(total, {})
    shared_req = m.get("smsp__sass_inst_executed_op_shared_ld.sum", 0) + m.get("smsp__sass_inst_executed_op_shared_st.sum", 0)
    shared_wf = m.get("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum", 0) + \
        m.get("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum", 0)
    return {"gld_req": m.get("l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum", 0),
            "gld_spr": m["l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio"],
            "gst_spr": m["l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_st.ratio"],
            "sld_req": m.get("smsp__sass_inst_executed_op_shared_ld.sum", 0),
            "shared_wpr": shared_wf / shared_req if shared_req else None,
            "conflicts": m.get("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum", 0)
            + m.get("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum", 0),
            "dram_min_mb": m.get("model__dram_bytes_min", 0) / 1e6,
            "no_reuse_mb": m.get("model__dram_bytes_no_reuse", 0) / 1e6}


def load(path=FIGURES):
    with open(path) as f:
        return json.load(f)


def stale(figures, family="conv2d"):
    """Whether a family's kernels changed since its figures were traced (or it cannot be told)."""
    try:
        return figures.get("sources", {}).get(family) != source_fingerprint(family)
    except OSError:
        return True


def predicted_table(figures, family="conv2d", machine=H100_SXM):
    """Rows (version, layer label, direction, bound, PREDICTED low/high ms) of one family."""
    rows = []
    for row in figures["rows"]:
        if row["family"] != family:
            continue
        p = predict_row(row, machine)
        rows.append(dict(version=row["version"], label=row["label"], direction=row["direction"],
                         layer=row["layer"], **p))
    return rows


def progression(rows):
    """Per version: the PREDICTED range summed over every (layer, direction) it was traced on."""
    out = {}
    for r in rows:
        v = out.setdefault(r["version"], {"version": r["version"], "low_ms": 0.0, "high_ms": 0.0, "rows": 0,
                                          "bounds": {}})
        v["low_ms"] += r["low_ms"]
        v["high_ms"] += r["high_ms"]
        v["rows"] += 1
        v["bounds"][r["bound"]] = v["bounds"].get(r["bound"], 0) + 1
    return [out[k] for k in sorted(out)]


def print_predictions(figures, family="conv2d", names=None, out=None):
    import common
    out = out or sys.stdout
    rows = predicted_table(figures, family)
    if not rows:
        return rows
    print(f"PREDICTED on an {H100_SXM['name'].split(' (')[0]} (model: bench/roofline.py; no GPU measured these), "
          f"{family}, from figures traced {figures.get('date', '?')}"
          + (f"  [STALE: the {family} kernels changed since; rerun python bench/roofline.py --trace]"
             if stale(figures, family) else ""),
          file=out)
    print(common.table(rows, [("version", "v", "{}"), ("label", "layer", "{}"),
                              ("bound", "bound", "{}"), ("low_ms", "PREDICTED ms (low)", "{:.3f}"),
                              ("high_ms", "(high)", "{:.3f}"), ("launches", "launches", "{}")]), file=out)
    print("\nPREDICTED progression (sum over the layers and directions above):", file=out)
    prog = progression(rows)
    for p in prog:
        name = (names or {}).get(p["version"], "")
        bounds = ", ".join(f"{k} {n}" for k, n in sorted(p["bounds"].items(), key=lambda kv: -kv[1]))
        print(f"  v{p['version']:<3} {name:<18} {p['low_ms']:9.3f} - {p['high_ms']:9.3f} ms PREDICTED  "
              f"({p['rows']} rows; bound by {bounds})", file=out)
    return rows


# ------------------------------------------- one table per family (kernels/README.md)
README = os.path.join(os.path.dirname(HERE), "kernels", "README.md")
RESULTS = os.path.join(HERE, "results")
TABLES_START = "<!-- predicted-tables:start -->"
TABLES_END = "<!-- predicted-tables:end -->"
# The reading order of kernels/README.md, with the two matrix-multiply families last, so
# that conv2d's table sits right above the paragraph that reads it.
TABLE_ORDER = ("lesson0_threads", "elementwise", "reduction", "batchnorm", "loss", "adam", "pool", "dropout",
               "linear", "conv2d")
FAMILY_NOTES = {
    "conv2d": "G's transposed convolutions are conv2d's kernels run through the duality "
              "(conv_transpose2d launches none of its own)",
    "adam": "each tensor launched on its own, as the file's checks run it (training launches once over a "
            "flat buffer per model)",
}
DCGAN_BENCH_SHAPES = {"batch": 128, "image_size": 64, "ngf": 64, "ndf": 64, "arch": "pytorch"}


def case_kind(label, direction, family):
    """The column a traced case is summed into: its direction (a matrix multiply's fwd,
    bwd-data, bwd-weight), else the words of its label that name an operation rather than a
    size ('train+relu G 128x64x32x32' -> 'train+relu G'), else the family's name."""
    if direction:
        return direction
    words = [w for w in label.split() if any(c.isalpha() for c in w) and not any(c.isdigit() for c in w)]
    return " ".join(words) or family


def case_name(label, direction, layer, family):
    """What tells a case from the others of its column: its layer, or its sizes."""
    if direction:
        return layer
    kind = case_kind(label, direction, family).split()
    return " ".join(w for w in label.split() if w not in kind) or label


def version_names(family):
    """{version: name} from the family's kernel file."""
    import importlib
    module = importlib.import_module(f"dcgan_cuda.kernels.{family}")
    return {v: getattr(entry, "name", str(entry)) for v, entry in module.VERSIONS.items()}


def _read_measurement(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def measured_runs(results=RESULTS):
    """Every GPU run recorded under results/<folder>/ (bash bench/gpu_check.sh's files), in
    folder order: {folder, card, rows: {(family, version, layer, direction): ms}, launch_us:
    {launch path: host us per launch}}. conv_bench.json counts where it was measured on a GPU
    (it has "results"; without a GPU it has "numpy_results") at the DCGAN shapes the figures
    were traced at; train_bench.json where it measured the host cost of one launch."""
    runs = []
    if not os.path.isdir(results):
        return runs
    for folder in sorted(os.listdir(results)):
        where = os.path.join(results, folder)
        if not os.path.isdir(where):
            continue
        run = {"folder": folder, "card": None, "rows": {}, "launch_us": {}}
        conv = _read_measurement(os.path.join(where, "conv_bench.json"))
        if conv and isinstance(conv.get("results"), list) and \
                all(conv.get(k) == v for k, v in DCGAN_BENCH_SHAPES.items()):
            for row in conv["results"]:
                if isinstance(row, dict) and isinstance(row.get("ms"), (int, float)):
                    layer = str(row.get("layer", "")).split(" ")[0]      # "D2 conv 64->128 ..." -> "D2"
                    run["rows"][("conv2d", row.get("version"), layer, row.get("direction"))] = float(row["ms"])
            run["card"] = conv.get("machine")
        train = _read_measurement(os.path.join(where, "train_bench.json"))
        if train and isinstance(train.get("host_us_per_launch"), dict):
            run["launch_us"] = {path: float(us) for path, us in train["host_us_per_launch"].items()
                                if isinstance(us, (int, float))}
            run["card"] = run["card"] or train.get("machine")
        if run["rows"] or run["launch_us"]:
            run["card"] = run["card"] or folder
            runs.append(run)
    return runs


def _ms(value, decimals):
    return f"{value:.{decimals}f}"


def family_table(figures, family, names=None, runs=()):
    """One family's PREDICTED table, markdown: a row per version (every version the family
    has, named; one without traced figures says so), a column per kind of case (the sum over
    that column's cases, low - high ms), the sum over all, the bound of most rows, and what a
    GPU run measured for the same cases (the card named; "-" until one has)."""
    rows = predicted_table(figures, family)
    names = names or {}
    kinds = list(dict.fromkeys(case_kind(r["label"], r["direction"], family) for r in rows))
    versions = sorted(set(names) | {r["version"] for r in rows})
    sums = {}
    for r in rows:
        key = (r["version"], case_kind(r["label"], r["direction"], family))
        sums[key] = sums.get(key, 0.0) + r["low_ms"]
    # Enough decimals for the smallest cell to show two digits.
    smallest = min([x for x in sums.values() if x > 0] or [1.0])
    decimals = 2 if smallest >= 0.1 else 3 if smallest >= 0.01 else 4
    lines = ["| version | " + " | ".join(f"{k} (PREDICTED ms)" for k in kinds)
             + " | all (PREDICTED ms) | bound of most rows | measured (ms, card) |",
             "|---|" + "---|" * (len(kinds) + 3)]
    totals = {p["version"]: p for p in progression(rows)}
    for v in versions:
        title = f"{v} {names.get(v, '')}".rstrip()
        mine = [r for r in rows if r["version"] == v]
        if not mine:
            lines.append(f"| {title} | " + " | ".join("-" for _ in kinds)
                         + " | not traced yet | - | - |")
            continue
        cells = []
        for k in kinds:
            cell = [r for r in mine if case_kind(r["label"], r["direction"], family) == k]
            cells.append(f"{_ms(sum(r['low_ms'] for r in cell), decimals)} - "
                         f"{_ms(sum(r['high_ms'] for r in cell), decimals)}" if cell else "-")
        total = totals[v]
        bound = max(total["bounds"], key=total["bounds"].get)
        measured = []
        for run in runs:
            found = [run["rows"][key] for key in ((family, v, r["layer"], r["direction"]) for r in mine)
                     if key in run["rows"]]
            if found:
                part = "" if len(found) == len(mine) else f" over {len(found)} of {len(mine)}"
                measured.append(f"{_ms(sum(found), decimals)}{part} ({run['card']})")
        lines.append(f"| {title} | " + " | ".join(cells)
                     + f" | {_ms(total['low_ms'], decimals)} - {_ms(total['high_ms'], decimals)} | "
                       f"{bound} ({total['bounds'][bound]} of {total['rows']}) | "
                     + ("; ".join(measured) or "-") + " |")
    return "\n".join(lines)


def case_summary(figures, family):
    """Which cases each column sums, in words."""
    columns = {}
    for row in figures["rows"]:
        if row["family"] == family:
            cases = columns.setdefault(case_kind(row["label"], row["direction"], family), [])
            name = case_name(row["label"], row["direction"], row["layer"], family)
            if name not in cases:
                cases.append(name)
    groups = list(columns.values())
    if len(groups) > 1 and all(g == groups[0] for g in groups):
        if len(groups[0]) == 1:
            return f"each of {', '.join(columns)} on {groups[0][0]}"
        return (f"each of {', '.join(columns)} summed over the same {len(groups[0])} cases "
                f"({', '.join(groups[0])})")
    return "; ".join(f"{kind} summed over {len(cases)} cases ({', '.join(cases)})" if len(cases) > 1
                     else f"{kind} on {cases[0]}" for kind, cases in columns.items())


def launch_cost_sentence(runs):
    """The one launch-cost figure the model uses, its source, and what a GPU run measured."""
    text = (f"Launch cost in every PREDICTED time: {H100_SXM['launch_s'] * 1e6:.0f} us per launch, the "
            f"glossary's launch cost in kernels/README.md (cited from numba-cuda pull request #288, not measured "
            f"by us); no launch is PREDICTED faster (the low end), and the high end adds it to the rest. "
            f"Measured: ")
    measured = [run for run in runs if run["launch_us"]]
    if not measured:
        return text + "none yet (no GPU run)."
    return text + "; ".join(", ".join(f"{us:.1f} us {path}" for path, us in sorted(run["launch_us"].items()))
                            + f" per launch ({run['card']}, bench/results/{run['folder']}/train_bench.json)"
                            for run in measured) + "."


def readme_tables(figures, runs=None, names=None):
    """The block between kernels/README.md's predicted-tables markers: the launch cost, then
    per family a sentence saying what was summed and the table. ``runs``: measured_runs()
    by default; ``names``: {family: {version: name}}, by default from each kernel file."""
    runs = measured_runs() if runs is None else runs
    parts = [f"Figures traced {str(figures.get('date', '?'))[:10]} (`bench/results/cpu/traced_figures.json`); "
             f"`python bench/roofline.py` says STALE beside a family whose kernels changed since. "
             + launch_cost_sentence(runs)]
    for family in TABLE_ORDER:
        if not any(row["family"] == family for row in figures["rows"]):
            continue
        family_names = version_names(family) if names is None else names.get(family, {})
        note = f"; {FAMILY_NOTES[family]}" if family in FAMILY_NOTES else ""
        timed = [run for run in runs if any(key[0] == family for key in run["rows"])]
        if timed:
            measured = "measured: the same cases summed, from " + ", ".join(
                f"bench/results/{run['folder']}/conv_bench.json ({run['card']})" for run in timed)
        elif runs:
            measured = "measured: none yet (no GPU run has timed this family)"
        else:
            measured = "measured: none yet (no GPU run)"
        parts.append(f"**{family}**, PREDICTED at the DCGAN shapes on an H100 SXM (bench/roofline.py's model, "
                     f"not a measurement): {case_summary(figures, family)}{note}. Each cell is PREDICTED "
                     f"low - high ms; {measured}.\n\n"
                     + family_table(figures, family, family_names, runs))
    return "\n\n".join(parts)


def readme_block(text, path=README):
    """What a README holds between the predicted-tables markers."""
    start, end = text.find(TABLES_START), text.find(TABLES_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {TABLES_START} ... {TABLES_END} block")
    return text[start + len(TABLES_START):end].strip("\n")


def write_readme_tables(path, tables):
    """Put ``tables`` (readme_tables()) between the markers of ``path``; the rest of the file
    is kept, and a file without the markers is left untouched."""
    with open(path) as f:
        text = f.read()
    readme_block(text, path)
    start, end = text.find(TABLES_START) + len(TABLES_START), text.find(TABLES_END)
    with open(path, "w") as f:
        f.write(text[:start] + "\n" + tables + "\n" + text[end:])


def figures_markdown(figures):
    """The traced figures of every row as a markdown table (bench/results/cpu/traced_figures.md)."""
    lines = ["| family | v | layer / case | launches | global ld requests | ld sectors/req | st sectors/req | "
             "shared ld requests | shared wavefronts/req | bank conflicts | distinct MB | requested MB | "
             "PREDICTED ms | bound |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in figures["rows"]:
        f = figures_row(row)
        p = predict_row(row)
        wpr = f"{f['shared_wpr']:.2f}" if f["shared_wpr"] is not None else "-"
        lines.append(f"| {row['family']} | {row['version']} | {row['label']} | {len(row['launches'])} | "
                     f"{f['gld_req']:.3g} | {f['gld_spr']:.2f} | {f['gst_spr']:.2f} | {f['sld_req']:.3g} | {wpr} | "
                     f"{f['conflicts']:.3g} | {f['dram_min_mb']:.1f} | {f['no_reuse_mb']:.1f} | "
                     f"{p['low_ms']:.3f}-{p['high_ms']:.3f} | {p['bound']} |")
    return "\n".join(lines)


# ------------------------------------------------------------------- a training step
STEP = os.path.join(HERE, "results", "cpu", "step_prediction.json")


def trace_step(figures, versions=("default",), blocks=1, warps=0):
    """Every launch of one DCGAN training step (pytorch arch, batch 128, 64x64, ngf = ndf =
    64) with the GPU's sizes, PREDICTED. The step runs once under the simulator in a dry
    run (kernels/access_profiler.py: each launch recorded with its arguments, none run);
    each convolution launch then takes its figures from the conv2d rows of ``figures``
    (matched by kernel, grid, block and argument shapes), every other launch is traced
    (sampled) on the arrays the dry run recorded, identical launches once."""
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.backend import get_backend
    from dcgan_cuda.kernels import access_profiler, gpu_shaped
    from dcgan_cuda.models import build_models
    from dcgan_cuda.optim import Adam
    from dcgan_cuda.train import step_on_device
    access_profiler.COUNT_LOCAL = False
    backend = get_backend("sim", announce=lambda *a, **k: None)
    chosen = backend.choose_versions(list(versions))
    backend.k = {name: gpu_shaped.load(name) for name in backend.k}    # the GPU's tiles and grids
    netG, netD = build_models("pytorch", 64, 3, 100, 64, 64, seed=0)
    rng = np.random.default_rng(0)
    # Setting up launches kernels too (the optimisers' moments are filled with zeros): in
    # the dry run as well, where they cost nothing; only the step's launches are kept.
    with access_profiler.tracing(dry=True) as planned:
        netG.to(backend)
        netD.to(backend)
        optG = Adam(netG.parameters(), 2e-4, (0.5, 0.999))
        optD = Adam(netD.parameters(), 2e-4, (0.5, 0.999))
        real = backend.asarray(rng.uniform(-1, 1, (128, 3, 64, 64)).astype(np.float32))
        noise = backend.asarray(netG.sample_noise(128, rng))
        setup = len(planned)
        step_on_device(netG, netD, optG, optD, Tensor(real, backend), Tensor(noise, backend))
    planned = planned[setup:]
    conv = {}
    for row in figures["rows"]:
        if row["family"] == "conv2d" and row["version"] == chosen["conv2d"]:
            for launch in row["launches"]:
                if launch.get("signature"):
                    conv[json.dumps(launch["signature"])] = (launch, row["label"])
    traced, rows = {}, []
    started = time.perf_counter()
    for launch in planned:
        key = json.dumps(signature(launch))
        if key not in traced:
            if key in conv:
                found, label = conv[key]
                traced[key] = dict(found, source=f"conv2d table: {label}")
            elif launch.name.startswith("conv2d."):
                traced[key] = None           # not in the table: traced there, not here (too slow)
            else:
                began = time.perf_counter()
                p = access_profiler.profile_planned(launch, blocks, warps)
                traced[key] = {"name": p.name, "grid": list(p.grid), "block": list(p.block),
                               "metrics": dict(p.metrics), "flops": 0, "source": "traced in the step"}
                print(f"step: {launch.name} {list(launch.grid)} x {list(launch.block)} traced in "
                      f"{time.perf_counter() - began:.1f}s", flush=True)
        entry = traced[key]
        rows.append({"name": launch.name, "grid": list(launch.grid), "block": list(launch.block),
                     "signature": signature(launch), "traced": entry is not None,
                     "source": entry["source"] if entry else "no conv2d row with these shapes"})
        if entry is not None:
            p = predict(entry["metrics"], entry.get("flops", 0), int(np.prod(launch.grid)))
            rows[-1].update(low_ms=p["low_s"] * 1e3, high_ms=p["high_s"] * 1e3, bound=p["bound"])
    return {"versions": chosen, "launches": rows, "seconds_to_trace": round(time.perf_counter() - started, 1),
            "conv_figures_date": figures.get("date")}


def print_step(step, out=None, top=12):
    """The PREDICTED step: per kernel family and the launches that dominate it."""
    import common
    out = out or sys.stdout
    rows = step["launches"]
    done = [r for r in rows if r["traced"]]
    low, high = sum(r["low_ms"] for r in done), sum(r["high_ms"] for r in done)
    print(f"PREDICTED training step on an H100 SXM (bench/roofline.py; no GPU measured this), kernel versions "
          f"{', '.join(f'{k} {v}' for k, v in sorted(step['versions'].items()))}: {len(rows)} launches, "
          f"{low:.2f} - {high:.2f} ms" + (f" ({len(rows) - len(done)} launches without figures)"
                                          if len(done) < len(rows) else ""), file=out)
    families = {}
    for r in done:
        f = families.setdefault(r["name"].split(".")[0], {"family": r["name"].split(".")[0], "launches": 0,
                                                           "low": 0.0, "high": 0.0})
        f["launches"] += 1
        f["low"] += r["low_ms"]
        f["high"] += r["high_ms"]
    print(common.table(sorted(families.values(), key=lambda f: -f["low"]),
                       [("family", "family", "{}"), ("launches", "launches", "{}"),
                        ("low", "PREDICTED ms (low)", "{:.3f}"), ("high", "(high)", "{:.3f}")]), file=out)
    kernels = {}
    for r in done:
        k = kernels.setdefault((r["name"], r["source"]), {"kernel": r["name"], "launches": 0, "low": 0.0,
                                                          "high": 0.0, "bound": r["bound"], "source": r["source"]})
        k["launches"] += 1
        k["low"] += r["low_ms"]
        k["high"] += r["high_ms"]
    print(f"\nThe {top} launches that dominate it (PREDICTED, by the low end):", file=out)
    print(common.table(sorted(kernels.values(), key=lambda k: -k["low"])[:top],
                       [("kernel", "kernel", "{}"), ("source", "shapes", "{}"), ("launches", "n", "{}"),
                        ("low", "ms (low)", "{:.3f}"), ("high", "(high)", "{:.3f}"), ("bound", "bound", "{}")]),
          file=out)


# ------------------------------------------------------------------------------ main
FAMILIES = ("lesson0_threads", "elementwise", "reduction", "batchnorm", "loss", "adam", "linear", "pool", "dropout")


def trace_all(args):
    """Profile every selected (family, version, layer/case, direction) in the simulator."""
    from dcgan_cuda.kernels import access_profiler, gpu_shaped, jit
    from dcgan_cuda.kernels.access_profiler import prefetch_vector_widths
    access_profiler.COUNT_LOCAL = False      # registers: not in the model, and half the tracing time
    conv2d = gpu_shaped.load("conv2d")
    families = args.families
    # Every kernel's vector widths in one compiler run before tracing starts.
    for name in families:
        gpu_shaped.load(name)
    prefetch_vector_widths(gpu_shaped.registered())
    rows = []
    done = set()
    if args.resume and args.json and os.path.exists(args.json):
        rows = [r for r in load(args.json)["rows"] if r["family"] in families]
        done = {(r["family"], r["version"], r["label"]) for r in rows}
        print(f"resuming: {len(rows)} rows already traced in {args.json}")
    if "conv2d" in families:
        layers = [l for l in conv2d.dcgan_layers(batch=args.batch) if not args.layers or l.name in args.layers]
        versions = args.versions or sorted(conv2d.VERSIONS)
        for layer in layers:
            for direction in args.directions:
                for version in versions:
                    if ("conv2d", version, conv2d.layer_label(layer, direction)) in done:
                        continue
                    row = trace_conv(conv2d, layer, direction, version, args.blocks, args.warps)
                    rows.append(row)
                    p = predict_row(row)
                    print(f"conv2d v{version:<3} {row['label']:<36} traced in {row['seconds_to_trace']:5.1f}s "
                          f"(reduction {row['method']['reduction']} at {row['method']['lengths']} of "
                          f"{row['method']['real']}): PREDICTED {p['low_ms']:.3f}-{p['high_ms']:.3f} ms, "
                          f"{p['bound']}-bound", flush=True)
                    if args.json:
                        save(args, rows, complete=False)
    if "linear" in families:
        linear = gpu_shaped.load("linear")
        for label, make_inputs in linear.cases(False):
            x, w, _ = make_inputs(np.random.default_rng(0))
            dims = {"batch": x.shape[0], "fan_in": x.shape[1], "fan_out": w.shape[0]}
            for direction in args.directions:
                for version in [v for v in (args.versions or sorted(linear.VERSIONS)) if v in linear.VERSIONS]:
                    if ("linear", version, f"{label} {direction}") in done:
                        continue
                    row = trace_linear(linear, label, dims, direction, version, args.blocks, args.warps)
                    rows.append(row)
                    p = predict_row(row)
                    print(f"linear v{version:<3} {row['label']:<44} traced in {row['seconds_to_trace']:5.1f}s "
                          f"(reduction {row['method']['reduction']} at {row['method']['lengths']} of "
                          f"{row['method']['real']}): PREDICTED {p['low_ms']:.3f}-{p['high_ms']:.3f} ms, "
                          f"{p['bound']}-bound", flush=True)
                    if args.json:
                        save(args, rows, complete=False)
    for name in families:
        if name in ("conv2d", "linear"):
            continue
        module = gpu_shaped.load(name)
        versions = [v for v in (args.versions or sorted(module.VERSIONS)) if v in module.VERSIONS]
        for label, make_inputs in module.cases(False):
            for version in versions:
                if (name, version, label) in done:
                    continue
                try:
                    row = trace_family_case(module, name, version, label, make_inputs, args.blocks, args.warps)
                except Exception as error:     # one family's failure must not lose the others' figures
                    print(f"{name} v{version} {label}: not traced ({type(error).__name__}: {error})", flush=True)
                    continue
                rows.append(row)
                p = predict_row(row)
                print(f"{name} v{version:<3} {label:<40} traced in {row['seconds_to_trace']:5.1f}s: "
                      f"PREDICTED {p['low_ms']:.3f}-{p['high_ms']:.3f} ms, {p['bound']}-bound", flush=True)
                if args.json:
                    save(args, rows, complete=False)
    del jit
    return rows


def save(args, rows, complete=True):
    import common
    sources = {family: source_fingerprint(family) for family in sorted({row["family"] for row in rows})}
    common.write_json(args.json, {"machine_model": H100_SXM, "batch": args.batch, "sources": sources,
                                  "blocks_interior_per_axis": args.blocks if isinstance(args.blocks, tuple)
                                  else args.blocks.__name__,
                                  "warps_interior": getattr(args.warps, "__name__", args.warps),
                                  "rows": rows, "complete": complete})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trace", action="store_true", help="profile in the simulator first (else read --json)")
    p.add_argument("--json", default=None, help=f"traced figures to write (--trace) or read (default {FIGURES})")
    p.add_argument("--markdown", default=None, help="also write the traced figures as a markdown table")
    p.add_argument("--readme-tables", nargs="?", const=README, default=None, metavar="README",
                   help="rewrite the per-family PREDICTED tables (and any GPU measurement under bench/results/) "
                        "between the predicted-tables markers of README (default kernels/README.md)")
    p.add_argument("--resume", action="store_true", help="with --trace: keep the rows --json already has")
    p.add_argument("--families", nargs="*", default=["conv2d"], choices=("conv2d",) + FAMILIES)
    p.add_argument("--versions", nargs="*", type=int, default=None)
    p.add_argument("--layers", nargs="*", default=None, help="conv2d layers, e.g. D2 G3 (default: all)")
    p.add_argument("--directions", nargs="*", default=["fwd", "bwd-data", "bwd-weight"],
                   choices=("fwd", "bwd-data", "bwd-weight"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--step", action="store_true",
                   help="also predict one training step's launches (traced under the simulator; needs the conv2d "
                        "figures) into --step-json")
    p.add_argument("--step-json", default=STEP)
    p.add_argument("--step-versions", nargs="*", default=["default", "newest"],
                   help="the kernel versions to predict a step with, one prediction each: 'default', 'newest' "
                        "or train_bench's --versions items joined by commas (newest,conv2d=6)")
    p.add_argument("--blocks", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="interior blocks sampled along each grid axis (0: the first block stands for them); "
                        "default: DCGAN_SAMPLE's rule")
    p.add_argument("--warps", type=int, default=None,
                   help="interior warps sampled per block, likewise (-1: the first alone); default: dcgan_warps")
    args = p.parse_args(argv)
    args.blocks = tuple(args.blocks) if args.blocks else dcgan_sample
    args.warps = dcgan_warps if args.warps is None else args.warps
    if min(args.blocks if isinstance(args.blocks, tuple) else (0,)) < 0 or args.batch < 1:
        p.error("--blocks and --warps must be at least 0, --batch at least 1")
    if (args.trace or args.step) and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    if args.trace:
        rows = trace_all(args)
        if args.json:
            save(args, rows)
        figures = {"rows": rows, "date": "now",
                   "sources": {family: source_fingerprint(family) for family in {row["family"] for row in rows}}}
    else:
        path = args.json or FIGURES
        if not os.path.exists(path):
            p.error(f"no traced figures at {path}: run python bench/roofline.py --trace --json {path}")
        figures = load(path)
    if args.markdown or args.readme_tables:
        try:
            tables = readme_tables(figures)
        except ValueError as error:           # a measured file that cannot be read
            p.error(str(error))
    if args.markdown:
        traced_by = figures.get("command", " ".join(["python", "bench/roofline.py"] + sys.argv[1:]))
        with open(args.markdown, "w") as f:
            f.write(f"# Traced memory figures and PREDICTED times at the DCGAN shapes\n\n"
                    f"Figures traced by `{traced_by}`, tables made from them by "
                    f"`{' '.join(['python', 'bench/roofline.py'] + sys.argv[1:])}` "
                    f"({figures.get('date', 'now')}; AMD EPYC, 2 cores, no GPU: the figures come from "
                    f"Numba's simulator, the times from bench/roofline.py's model of an H100 SXM; nothing here "
                    f"was measured on a GPU). Each row sums the launches of one layer, direction and version "
                    f"(batch 128, 64x64, ngf = ndf = 64, pytorch arch); sampled and extrapolated as roofline.py "
                    f"says.\n\n## PREDICTED, one table per family (as in kernels/README.md)\n\n"
                    + tables + "\n\n## Every row\n\n"
                    + figures_markdown(figures) + "\n")
    if args.readme_tables:
        try:
            write_readme_tables(args.readme_tables, tables)
        except (OSError, ValueError) as error:
            p.error(str(error))
        print(f"{args.readme_tables}: the per-family PREDICTED tables rewritten")
    for family in ["conv2d"] + list(FAMILIES):
        print_predictions(figures, family)
    if args.step:
        import common
        steps = []
        for choice in args.step_versions:
            steps.append(trace_step(figures, choice.split(","), args.blocks, args.warps))
            common.write_json(args.step_json, {"steps": steps})
            print()
            print_step(steps[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
