"""diagrams — the course's pictures of who touches what, drawn by the kernels themselves.

Each picture in ``kernels/figures/`` comes from one small launch of a real kernel under
Numba's simulator, traced by ``access_profiler.py``: every load and store of every thread
is recorded, and the picture is made from those records, not drawn by hand. So a picture
cannot show a mapping the code does not have: change a kernel and the picture changes.

    python -m dcgan_cuda.kernels.diagrams --sim              # redraw every picture into kernels/figures/
    python -m dcgan_cuda.kernels.diagrams --sim --check      # are the PNGs there still what the kernels do?
    python -m dcgan_cuda.kernels.diagrams --sim --out DIR lesson0_map reduction_tree

The launches use the simulator's sizes (blocks of 32 threads, 8 x 8 and 16 x 16 tiles,
where a GPU would use 256 threads and 128 x 128 tiles): the same code with smaller
constants, so the same pattern at a size that fits on a page.

How a picture stays honest. Each is computed in two steps: ``trace_*`` runs the launch and
reduces its records to a few small integer arrays (which thread stored each element, which
slots a tree step read, ...); ``draw_*`` turns those arrays into a PNG. The PNG carries a
fingerprint of its arrays (a SHA-256 in its text metadata), and ``--check`` (and
``tests/sim/test_diagrams.py``) traces again and compares: a kernel whose mapping changed
without its picture being redrawn fails there. The tests also check every array against
the mapping each kernel's docstring claims, computed independently of the profiler.

The pictures:

    lesson0_map        lesson 0, versions 1-5: the thread that computed each element of
                       y = a*x + b, and the elements of warp 0's first load (coalesced or not)
    lesson0_grid_2d    lesson 0, version 6: a 2-D grid of 2-D blocks over a matrix, the guards
    reduction_tree     reduction version 1's block_sum: which slot of shared memory each
                       thread adds into which, step by step
    gemm_tiles         linear rung 3: the tiles of A and B one block copies into shared
                       memory for its first slice of K, thread by thread, and the C it owns
    register_blocks    linear rungs 5 and 7: the elements of C each thread keeps in registers
    sub_pixel_phases   conv2d version 4: each pixel of dx written by the block of its phase,
                       and the only taps of w each phase reads
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections import namedtuple

import numpy as np

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
FINGERPRINT_KEY = "Description"            # a PNG text key matplotlib writes and Pillow reads
UNTOUCHED = -1                             # an element no thread of the picture touched

Diagram = namedtuple("Diagram", "trace draw")


# ----------------------------------------------------------------------------- tracing
def _traced(launch):
    """Run ``launch()`` with every simulated launch inside it traced; their Profiles."""
    from .access_profiler import tracing
    with tracing(vectors=False) as launches:     # who touches what: vector widths do not matter
        launch()
    return launches


def _columns(profile, array_name, kinds):
    """The accesses of one launch to one array: (element index, global thread number in
    the launch, block ordinal, thread in block, occurrence, site), one entry per access."""
    a = profile.accesses
    array_id = [i for i, info in enumerate(profile.arrays) if info.name == array_name]
    assert array_id, f"{profile.name} has no array {array_name}"
    info = profile.arrays[array_id[0]]
    chosen = (a["array"] == array_id[0]) & np.isin(a["kind"], kinds)
    threads_in_block = int(np.prod(profile.block))
    block_linear = np.array([bx + profile.grid[0] * (by + profile.grid[1] * bz)
                             for bx, by, bz in profile.blocks_run], np.int64)
    ordinal = a["block"][chosen]
    thread = a["thread"][chosen]
    return {"element": a["address"][chosen] // info.itemsize, "context": a["context"][chosen],
            "global_thread": block_linear[ordinal] * threads_in_block + thread,
            "block": ordinal, "block_linear": block_linear[ordinal], "thread": thread,
            "occurrence": a["occurrence"][chosen], "site": a["site"][chosen], "shape": info.shape}


def _rank_within_thread(columns):
    """Each access's position among the same thread's accesses in ``columns``, in the order
    the thread made them (the profiler keeps each thread's records in program order)."""
    key = columns["block"] * (1 << 32) + columns["thread"]
    order = np.argsort(key, kind="stable")
    rank = np.empty(len(key), np.int64)
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    position = np.arange(len(key)) - np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    rank[order] = position
    return rank


def _first_request(columns, warp):
    """A mask of the accesses in the first warp request of ``warp`` of the first block: the
    request lane 0's first access is part of. Lanes of one warp are in one request when they
    run the same instruction (site) in the same loop trip (context) the same time (occurrence):
    the profiler's rule, and the hardware's."""
    from .access_profiler import WARP
    in_warp = (columns["block"] == 0) & (columns["thread"] // WARP == warp)
    lane0 = np.flatnonzero(in_warp & (columns["thread"] == warp * WARP))[0]
    return in_warp & np.logical_and.reduce([columns[key] == columns[key][lane0]
                                            for key in ("site", "context", "occurrence")])


def _owner_map(columns, who, chosen=None):
    """The array's shape, holding ``who`` (one value per access) at each element accessed
    (only the ``chosen`` accesses, if given; the last wins: each picture's accesses touch an
    element once), UNTOUCHED elsewhere."""
    chosen = slice(None) if chosen is None else chosen
    owner = np.full(int(np.prod(columns["shape"])), UNTOUCHED, np.int64)
    owner[columns["element"][chosen]] = who[chosen]
    return owner.reshape(columns["shape"])


def _stores_by(profile, array_name, who="global_thread"):
    from .access_profiler import GLOBAL_ST, SHARED_ST
    cols = _columns(profile, array_name, (GLOBAL_ST, SHARED_ST))
    return _owner_map(cols, cols[who])


# lesson 0 -------------------------------------------------------------------
LESSON0_N = 160          # five rows of 32: one row is what one warp covers when coalesced
LESSON0_ROW = 32
LESSON0_MATRIX = (5, 40)  # version 6: not a multiple of its (32, 2) blocks along either axis


def trace_lesson0_map():
    from . import lesson0_threads as lesson
    from .access_profiler import GLOBAL_LD, SECTOR
    data = {}
    for version in range(1, 6):
        x = np.arange(LESSON0_N, dtype=np.float32)
        y = np.zeros_like(x)
        who = np.zeros(LESSON0_N, np.int32)
        (profile,) = _traced(lambda: lesson.scale_shift(x, y, 2.0, 1.0, who, version=version))
        data[f"v{version}_thread"] = _stores_by(profile, "y").reshape(-1, LESSON0_ROW)
        loads = _columns(profile, "x", (GLOBAL_LD,))
        first = _first_request(loads, warp=0)
        data[f"v{version}_first_load_lane"] = _owner_map(loads, loads["thread"], first).reshape(-1, LESSON0_ROW)
        data[f"v{version}_first_load_sectors"] = np.array(
            len(np.unique(loads["element"][first] * x.itemsize // SECTOR)))
    return data


def trace_lesson0_grid_2d():
    from . import lesson0_threads as lesson
    x = np.zeros(LESSON0_MATRIX, np.float32)
    y = np.zeros_like(x)
    who = np.zeros(LESSON0_MATRIX, np.int32)
    (profile,) = _traced(lambda: lesson.scale_shift(x, y, 2.0, 1.0, who, version=6))
    return {"thread": _stores_by(profile, "y"), "block": _stores_by(profile, "y", "block_linear"),
            "block_shape": np.array(profile.block[:2]), "grid_shape": np.array(profile.grid[:2])}


# reduction ------------------------------------------------------------------
def trace_reduction_tree():
    """block_sum's tree, from reduction version 1 over one channel of 2 * THREADS values.
    Level 0 is each thread's private sum stored into its slot; level k (k >= 1) the slots
    stored at tree step k, and for each the two slots it read (of level k - 1)."""
    from . import reduction
    from .access_profiler import SHARED_LD, SHARED_ST
    threads = reduction.THREADS
    x = np.arange(2 * threads, dtype=np.float32).reshape(1, 1, 2 * threads)   # N = 1, C = 1
    out = np.zeros(1, np.float32)
    (profile,) = _traced(lambda: reduction.channel_sum(x, out, version=1))
    stores = _columns(profile, "partial", (SHARED_ST,))
    loads = _columns(profile, "partial", (SHARED_LD,))
    # A thread's first store is its private sum (level 0), its k-th store after that the
    # tree's step k. Its loads come in pairs, one pair per step (its own slot, then the
    # partner's), and one last load of partial[0], the total, which is no edge of the tree.
    level = _rank_within_thread(stores)
    levels = int(level.max()) + 1
    stored_by = np.full((levels, threads), UNTOUCHED, np.int64)
    stored_by[level, stores["element"]] = stores["thread"]
    rank = _rank_within_thread(loads)
    loads_per_thread = np.bincount(loads["thread"])[loads["thread"]]
    in_tree = rank < loads_per_thread - 1
    edges = np.unique(np.stack([rank[in_tree] // 2 + 1, loads["thread"][in_tree], loads["element"][in_tree]],
                               axis=1), axis=0)
    return {"stored_by": stored_by, "edges": edges, "sum": out.astype(np.float64),
            "expected_sum": np.array([x.astype(np.float64).sum()])}


# linear ---------------------------------------------------------------------
def _gemm_trace(version, m, n, k):
    from . import linear
    a = np.zeros((m, k), np.float32)
    b = np.zeros((k, n), np.float32)
    c = np.zeros((m, n), np.float32)
    (profile,) = _traced(lambda: linear.gemm(a, b, c, False, False, version=version))
    return profile


def trace_gemm_tiles():
    """Rung 3 on a 2 x 2 grid of TILE x TILE blocks with K = 2 TILE: block (0, 0)'s first slice."""
    from .access_profiler import GLOBAL_LD, GLOBAL_ST, SHARED_ST
    from .linear import v3_smem_tiles as rung
    tile = rung.TILE
    profile = _gemm_trace(3, 2 * tile, 2 * tile, 2 * tile)
    data = {"tile": np.array(tile)}
    for operand, shared in (("a", "a_tile"), ("b", "b_tile")):
        loads = _columns(profile, operand, (GLOBAL_LD,))
        for key, columns in ((f"{operand}_first_slice", _columns(profile, operand, (GLOBAL_LD,))),
                             (f"{shared}_first_slice", _columns(profile, shared, (SHARED_ST,)))):
            first = (columns["block"] == 0) & (_rank_within_thread(columns) == 0)   # one element per slice
            data[key] = _owner_map(columns, columns["thread"], first)
    c = _columns(profile, "c", (GLOBAL_ST,))
    data["c_block0"] = _owner_map(c, c["thread"], c["block"] == 0)
    return data


def trace_register_blocks():
    """The C of one block of rung 5 (TM x TN interleaved) and rung 7 (in runs of VEC)."""
    from .linear import v5_register_2d as rung5
    from .linear import v7_vector_loads as rung7
    data = {"tm_tn": np.array([rung5.TM, rung5.TN]), "threads": np.array(rung5.THREADS),
            "vec": np.array(rung7.TILING.vec)}
    for version in (5, 7):
        profile = _gemm_trace(version, rung5.BM, rung5.BN, rung5.BK)
        data[f"v{version}_c"] = _stores_by(profile, "c", "thread")
    return data


# conv2d ---------------------------------------------------------------------
PHASES_STRIDE, PHASES_PAD, PHASES_KERNEL = 2, 1, 4   # every DCGAN layer: k4 s2 pad 1


def trace_sub_pixel_phases():
    """backward_data of a k4 s2 pad 1 convolution, 8 x 8 dx, by version 4: one phase per blockIdx.z."""
    from . import conv2d
    from .access_profiler import GLOBAL_LD, GLOBAL_ST
    s, k = PHASES_STRIDE, PHASES_KERNEL
    dx = np.zeros((1, 2, 8, 8), np.float32)
    w = np.zeros((2, 2, k, k), np.float32)         # (cout, cin, kh, kw)
    dy = np.zeros((1, 2, 4, 4), np.float32)
    (profile,) = _traced(lambda: conv2d.backward_data(dy, w, dx, (s, s), (PHASES_PAD, PHASES_PAD), version=4))
    z_of_block = np.array([bz for _, _, bz in profile.blocks_run], np.int64)
    stores = _columns(profile, "dx", (GLOBAL_ST,))
    phase = _owner_map(stores, z_of_block[stores["block"]])[0, 0]
    loads = _columns(profile, "w", (GLOBAL_LD,))
    tap = loads["element"] % (k * k)
    taps_read = np.zeros((s * s, k, k), np.int64)     # 1 where phase z read tap (i, j)
    taps_read[z_of_block[loads["block"]], tap // k, tap % k] = 1
    return {"phase": phase, "taps_read": taps_read}


# ----------------------------------------------------------------------------- drawing
def _figure(rows, cols, width, height):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(rows, cols, figsize=(width, height), squeeze=False)


def _grid(ax, values, title, highlight=None, cmap="viridis", numbers=True, fontsize=6, vmax=None, ticks=False):
    """One panel: a cell per element, coloured by its value and labelled with it; untouched
    cells white; cells where ``highlight`` is set outlined in red."""
    import matplotlib.patches as patches
    values = np.asarray(values)
    shown = np.ma.masked_equal(values, UNTOUCHED)
    ax.imshow(shown, cmap=cmap, interpolation="nearest", aspect="equal", vmin=0,
              vmax=vmax if vmax is not None else max(1, values.max()))
    if numbers:
        for (r, c), v in np.ndenumerate(values):
            if v != UNTOUCHED:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=fontsize,
                        color="white" if v < 0.6 * (vmax or max(1, values.max())) else "black")
    if highlight is not None:
        for (r, c), v in np.ndenumerate(np.asarray(highlight)):
            if v != UNTOUCHED:
                ax.add_patch(patches.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2))
    ax.set_title(title, fontsize=9, loc="left")
    if ticks:                # small arrays: number the rows and columns
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
        ax.tick_params(labelsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


LESSON0_TITLES = {
    1: "1 one-thread [1, 1]: thread 0 computes everything",
    2: "2 chunked-block [1, 32]: thread t takes 5 neighbours",
    3: "3 strided-block [1, 32]: thread t takes t, t + 32, ...",
    4: "4 guarded-grid [5, 32]: one thread per element",
    5: "5 grid-stride [4, 32]: 128 threads, then again from i + 128",
}


def draw_lesson0_map(data):
    fig, axes = _figure(5, 1, 10, 11)
    for version in range(1, 6):
        sectors = int(data[f"v{version}_first_load_sectors"])
        lanes = int((data[f"v{version}_first_load_lane"] != UNTOUCHED).sum())
        _grid(axes[version - 1, 0], data[f"v{version}_thread"],
              f"{LESSON0_TITLES[version]}.  Red: warp 0's first load of x, {lanes} "
              f"lane{'s' if lanes != 1 else ''} in {sectors} sector{'s' if sectors != 1 else ''} of 32 bytes",
              highlight=data[f"v{version}_first_load_lane"], vmax=LESSON0_N - 1)
    fig.suptitle(f"lesson 0: y = a*x + b over {LESSON0_N} elements (rows of 32); each cell: the thread "
                 "that computed it (blockIdx.x * blockDim.x + threadIdx.x)", fontsize=10)
    return fig


def draw_lesson0_grid_2d(data):
    rows, cols = data["thread"].shape
    bx, by = (int(v) for v in data["block_shape"])
    gx, gy = (int(v) for v in data["grid_shape"])
    fig, axes = _figure(2, 1, 12, 5.5)
    for ax, key, title, cmap, fontsize, vmax in (
            (axes[0, 0], "block", f"the block that computed each element (blockIdx.y * gridDim.x + blockIdx.x): "
             f"{gx} blocks across, {gy} down", "tab10", 7, 9),
            (axes[1, 0], "thread", f"the thread in the whole grid, blocks of {bx} x {by} threads", "viridis", 4.5,
             None)):
        _grid(ax, data[key], title, cmap=cmap, fontsize=fontsize, vmax=vmax)
        # The grid covers more than the matrix: the threads outside fail the guard.
        ax.set_xlim(-0.5, gx * bx - 0.5)
        ax.set_ylim(gy * by - 0.5, -0.5)
        ax.set_facecolor("#d9d9d9")
        ax.plot([cols - 0.5, cols - 0.5, -0.5], [-0.5, rows - 0.5, rows - 0.5], color="black", linewidth=1.5)
    fig.suptitle(f"lesson 0, version 6: a {rows} x {cols} matrix, col = blockIdx.x * blockDim.x + threadIdx.x, "
                 "row = blockIdx.y * blockDim.y + threadIdx.y.\nGrey: threads of the grid outside the matrix "
                 f"(col >= {cols} or row >= {rows}); the guard stops them before they touch memory.", fontsize=10)
    return fig


def draw_reduction_tree(data):
    stored_by = data["stored_by"]
    levels, slots = stored_by.shape
    fig, axes = _figure(1, 1, 12, 0.9 * levels + 1.2)
    ax = axes[0, 0]
    for level, written, read in data["edges"]:
        colour = "tab:blue" if read == written else "tab:orange"
        ax.plot([read, written], [level - 1, level], color=colour, linewidth=0.8, zorder=1)
    used = np.argwhere(stored_by != UNTOUCHED)
    ax.scatter(used[:, 1], used[:, 0], s=110, c=stored_by[used[:, 0], used[:, 1]], cmap="viridis",
               vmin=0, vmax=slots - 1, zorder=2, edgecolors="black", linewidths=0.4)
    for level, slot in used:
        ax.text(slot, level, str(stored_by[level, slot]), ha="center", va="center", fontsize=5.5,
                color="white" if stored_by[level, slot] < slots * 0.6 else "black", zorder=3)
    ax.set_yticks(range(levels), ["private sums"] + [f"step {k}: half = {slots >> k}" for k in range(1, levels)])
    ax.set_ylim(levels - 0.5, -0.5)
    ax.set_xticks(range(0, slots, 4))
    ax.set_xlabel("slot of the shared array partial[] (each circle: the thread that stored it)")
    ax.set_title(f"reduction version 1, block_sum: {slots} threads, {levels - 1} steps. At each step thread "
                 "t < half adds partial[t + half] (orange) into partial[t] (blue);\nthe others wait at the "
                 f"barrier. partial[0] ends with the block's sum: {data['sum'][0]:g} "
                 f"(NumPy: {data['expected_sum'][0]:g})", fontsize=9, loc="left")
    return fig


def draw_gemm_tiles(data):
    tile = int(data["tile"])
    last = tile * tile - 1
    fig, axes = _figure(1, 5, 17, 4.6)
    panels = (("a_first_slice", "A (M x K): what block (0, 0)\nloads for k0 = 0"),
              ("a_tile_first_slice", f"a_tile in shared memory\n({tile} x {tile}, + 1 padding column)"),
              ("b_first_slice", "B (K x N): what block (0, 0)\nloads for k0 = 0"),
              ("b_tile_first_slice", "b_tile in shared memory"),
              ("c_block0", "C (M x N): block (0, 0)'s tile,\none element per thread"))
    for ax, (key, title) in zip(axes[0], panels):
        _grid(ax, data[key], title, fontsize=5, vmax=last)
    fig.suptitle(f"GEMM rung 3, smem-tiles: {tile} x {tile} threads (number = threadIdx.y * {tile} + threadIdx.x) "
                 "each copy one element of A and one of B into shared memory, wait at a barrier,\nthen each "
                 f"reads a row of a_tile and a column of b_tile. The next slice (k0 = {tile}) takes A's tile one "
                 "tile to the right and B's one tile down.", fontsize=9)
    return fig


def draw_register_blocks(data):
    tm, tn = (int(v) for v in data["tm_tn"])
    threads = int(data["threads"])
    fig, axes = _figure(1, 2, 12, 6)
    one_thread = 5
    for ax, version, how in ((axes[0, 0], 5, "rung 5, 2d-blocking: its rows and columns are each "
                                             f"{threads // tm} apart"),
                             (axes[0, 1], 7, f"rung 7, vector-loads: in runs of VEC = {int(data['vec'])} neighbours")):
        owner = data[f"v{version}_c"]
        mine = np.where(owner == one_thread, owner, UNTOUCHED)
        _grid(ax, owner, f"{how}\n(red: the {tm * tn} elements thread {one_thread} keeps)", highlight=mine,
              cmap="tab20", fontsize=6, vmax=threads - 1)
    fig.suptitle(f"register blocking: one block's {owner.shape[0]} x {owner.shape[1]} tile of C, {threads} threads, "
                 f"each owning a {tm} x {tn} block of it in registers (number = threadIdx.x)", fontsize=10)
    return fig


def draw_sub_pixel_phases(data):
    s, k = PHASES_STRIDE, PHASES_KERNEL
    fig, axes = _figure(1, 1 + s * s, 15, 4.2)
    _grid(axes[0, 0], data["phase"], "dx[0, 0] (8 x 8): the phase (blockIdx.z)\nof the block that wrote each pixel",
          cmap="tab10", fontsize=8, vmax=9, ticks=True)
    for z in range(s * s):
        taps = np.where(data["taps_read"][z] == 1, z, UNTOUCHED)
        _grid(axes[0, 1 + z], taps, f"phase {z} (rows {'even' if z // s == 0 else 'odd'}, "
              f"columns {'even' if z % s == 0 else 'odd'}):\nthe taps (i, j) of w it reads", cmap="tab10",
              fontsize=8, vmax=9, ticks=True)
    fig.suptitle(f"conv2d version 4, sub-pixel phases: backward_data of a {k} x {k}, stride {s}, padding "
                 f"{PHASES_PAD} convolution. Each phase is a stride-1 GEMM over only the "
                 f"{(k // s) ** 2} taps that land on its pixels", fontsize=10)
    return fig


DIAGRAMS = {
    "lesson0_map": Diagram(trace_lesson0_map, draw_lesson0_map),
    "lesson0_grid_2d": Diagram(trace_lesson0_grid_2d, draw_lesson0_grid_2d),
    "reduction_tree": Diagram(trace_reduction_tree, draw_reduction_tree),
    "gemm_tiles": Diagram(trace_gemm_tiles, draw_gemm_tiles),
    "register_blocks": Diagram(trace_register_blocks, draw_register_blocks),
    "sub_pixel_phases": Diagram(trace_sub_pixel_phases, draw_sub_pixel_phases),
}


# ------------------------------------------------------------------------- fingerprints
def fingerprint(data):
    """SHA-256 of a picture's arrays (names, dtypes made int64/float64, shapes, values)."""
    digest = hashlib.sha256()
    for name in sorted(data):
        value = np.asarray(data[name])
        value = value.astype(np.float64 if value.dtype.kind == "f" else np.int64)
        digest.update(f"{name}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def stored_fingerprint(path):
    """The fingerprint a PNG written by ``render`` carries, or None."""
    from PIL import Image
    with Image.open(path) as image:
        text = image.text.get(FINGERPRINT_KEY, "")
    prefix = "dcgan-cuda diagram sha256="
    return text[len(prefix):] if text.startswith(prefix) else None


def render(name, directory=FIGURES, data=None):
    """Trace (unless ``data`` is given) and draw one picture; returns its path."""
    import matplotlib.pyplot as plt
    diagram = DIAGRAMS[name]
    data = diagram.trace() if data is None else data
    path = os.path.join(directory, name + ".png")
    fig = diagram.draw(data)
    fig.tight_layout()
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={FINGERPRINT_KEY: f"dcgan-cuda diagram sha256={fingerprint(data)}",
                                         "Software": None})
    plt.close(fig)
    return path


def stale(names=None, directory=FIGURES):
    """The pictures whose PNG is missing or no longer matches what the kernels do now."""
    out = []
    for name in names or DIAGRAMS:
        path = os.path.join(directory, name + ".png")
        if not os.path.exists(path) or stored_fingerprint(path) != fingerprint(DIAGRAMS[name].trace()):
            out.append(name)
    return out


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m dcgan_cuda.kernels.diagrams",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sim", action="store_true", help="run under Numba's CUDA simulator (required: it traces)")
    parser.add_argument("--out", default=FIGURES, help="folder for the PNGs (default: kernels/figures)")
    parser.add_argument("--check", action="store_true", help="draw nothing; exit 1 if a PNG no longer matches")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"pictures to make (default all): {', '.join(DIAGRAMS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in DIAGRAMS]
    if unknown:
        parser.error(f"no picture named {', '.join(unknown)}; the pictures are {', '.join(DIAGRAMS)}")
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        if not args.sim:
            parser.error("the pictures are traced in the simulator: add --sim")
        from .jit import restart_in_simulator
        restart_in_simulator("dcgan_cuda.kernels.diagrams")
    from . import jit  # noqa: F401  (the simulator's fixes)
    names = args.names or list(DIAGRAMS)
    if args.check:
        out_of_date = stale(names, args.out)
        for name in out_of_date:
            path = os.path.join(args.out, name + ".png")
            why = "no longer shows what its kernel does" if os.path.exists(path) else "is missing"
            print(f"{name}: {path} {why}; redraw with: python -m dcgan_cuda.kernels.diagrams --sim",
                  file=sys.stderr)
        print(f"{len(names) - len(out_of_date)} of {len(names)} pictures match their kernels")
        return 1 if out_of_date else 0
    for name in names:
        print(f"wrote {render(name, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
