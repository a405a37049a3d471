"""The hottest loop of every multiply-add kernel, counted in PTX instructions; no GPU needed.

    python bench/ptx_hot_loop.py [--cc 90] [--json FILE] [NAME ...]

NAME: kernel-name prefixes; by default the matrix-multiply families, conv2d and linear.

A register-blocked GEMM is fast when its innermost loop is almost nothing but FMAs: each
shared-memory load and each integer instruction in it takes an issue slot that an FMA
could have had. This script compiles each kernel to PTX for the chosen compute capability
(as tests/test_ptx.py does), finds its innermost loops (a label and the backward branch
to it, with no other loop inside), takes the one with the most fma.rn.f32, and counts one
trip of it: FMAs, shared-memory loads (and the floats they bring: ld.shared.v4.f32 brings
4), and everything else. The FMA share is FMAs / all instructions of the trip. "Global
loads in flight" are those issued after the barrier that precedes the loop and before
it: their latency hides behind the loop (a prefetch; otherwise 0). "Around it" counts
what one trip of the enclosing loop spends outside it: for a GEMM, a slice's gathers,
stores to shared memory and barriers, paid once per BK multiply steps.

PTX is the virtual ISA: ptxas still schedules it, turns each 64-bit integer add into two
32-bit ones and may strength-reduce address arithmetic, so these are the compiler's
starting point, not SASS counts. They are exact about what the source asked for: e.g. a
signed index into a shared array makes Numba emit Python's negative-index wraparound
(and, shr, add per load), and an unrolled or vectorised loop shows as such.
"""
from __future__ import annotations

import os
import re
import sys

from dcgan_cuda.cli import Parser, output_file, reports_errors

LABEL = re.compile(r"^\$(\w+):")
BACK_BRANCH = re.compile(r"\bbra(?:\.uni)?\s+\$(\w+);")
SHARED_LOAD = re.compile(r"^ld\.shared(?:\.v(\d))?\.")


def instructions(lines):
    """The instructions among PTX lines: no labels, braces, comments or directives."""
    for line in lines:
        text = line.strip()
        if text and not text.startswith(("$", "//", "{", "}", ".")):
            yield text


def loops(ptx):
    """(lines, [(first line, last line)] of every loop: a label and a backward branch to it)."""
    lines = ptx.splitlines()
    labels = {m.group(1): n for n, line in enumerate(lines) if (m := LABEL.match(line.strip()))}
    found = []
    for n, line in enumerate(lines):
        m = BACK_BRANCH.search(line)
        if m and m.group(1) in labels and labels[m.group(1)] < n:
            found.append((labels[m.group(1)], n))
    return lines, found


def innermost(found):
    """Those of the loops `found` with no other loop inside them."""
    return [(a, b) for a, b in found if not any((a, b) != (c, d) and a <= c and d <= b for c, d in found)]


def hot_loop(ptx):
    """Counts for one trip of the innermost loop with the most FMAs, or None without one.

    Also `loads_in_flight`: the global loads issued between the last barrier before the
    loop and the loop itself, whose latency the loop's FMAs can hide (a prefetch); and
    `around`: the instructions of one trip of the smallest loop enclosing it, less the
    loop itself (a GEMM's slice loop: its gathers, stores and barriers), or None.
    """
    lines, found = loops(ptx)
    best = None
    for a, b in innermost(found):
        body = list(instructions(lines[a:b + 1]))
        fma = sum(text.startswith("fma.rn.f32") for text in body)
        if fma and (best is None or fma > best["fma"]):
            loads = [SHARED_LOAD.match(text) for text in body]
            loads = [m for m in loads if m]
            barrier = max([n for n in range(a) if "bar.sync" in lines[n]], default=a)  # none: nothing counted
            best = {"instructions": len(body), "fma": fma, "shared_loads": len(loads),
                    "shared_floats": sum(int(m.group(1) or 1) for m in loads),
                    "vector_loads": sum(m.group(1) is not None for m in loads),
                    "loads_in_flight": sum(text.startswith("ld.global") or " ld.global" in text
                                           for text in instructions(lines[barrier:a])),
                    "span": (a, b)}
    if best:
        a, b = best.pop("span")
        enclosing = [(c, d) for c, d in found if c <= a and b <= d and (c, d) != (a, b)]
        best["around"] = None
        if enclosing:
            c, d = min(enclosing, key=lambda span: span[1] - span[0])
            best["around"] = len(list(instructions(lines[c:a]))) + len(list(instructions(lines[b + 1:d + 1])))
        best["other"] = best["instructions"] - best["fma"] - best["shared_loads"]
        best["fma_share"] = best["fma"] / best["instructions"]
    return best


GEMM_FAMILIES = ("conv2d.", "linear.")


def report(cc=90, prefixes=GEMM_FAMILIES):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ptxas_report import all_kernels
    rows = []
    for k in all_kernels():
        if not k.name.startswith(tuple(prefixes)):
            continue
        counts = hot_loop(k.ptx(cc=(cc // 10, cc % 10))[0])
        if counts:
            rows.append(dict(kernel=k.name, **counts))
    return rows


@reports_errors()
def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common
    p = Parser(prog="python bench/ptx_hot_loop.py", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="only kernels whose name starts with one of these, e.g. conv2d.forward")
    p.add_argument("--cc", type=common.compute_capability, default=90,
                   help="compute capability, e.g. 90 for H100")
    p.add_argument("--json", type=output_file, default=None)
    args = p.parse_args(argv)
    if args.names:     # a name that matches no kernel would give an empty table, not an error
        from ptxas_report import all_kernels
        known = [k.name for k in all_kernels()]
        unknown = [n for n in args.names if not any(k.startswith(n) for k in known)]
        if unknown:
            p.error(f"no kernel's name starts with {', '.join(map(repr, unknown))} "
                    f"(kernels are named like {known[0]})")
    rows = report(args.cc, args.names or GEMM_FAMILIES)
    print(f"hottest loop per kernel, one trip, PTX for sm_{args.cc}")
    print(common.table(rows, [("kernel", "kernel", "{}"), ("fma", "FMA", "{}"),
                              ("shared_loads", "shared loads", "{}"), ("vector_loads", "vector", "{}"),
                              ("shared_floats", "floats loaded", "{}"), ("other", "other", "{}"),
                              ("fma_share", "FMA share", "{:.0%}"),
                              ("loads_in_flight", "global loads in flight", "{}"),
                              ("around", "around it", "{}")]))
    if args.json:
        common.write_json(args.json, {"cc": args.cc, "kernels": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
