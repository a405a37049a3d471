"""Registers, spills and shared memory of every kernel, from the CUDA assembler; no GPU needed.

    python bench/ptxas_report.py [--cc 90] [--json FILE]

Each kernel of dcgan_cuda.kernels is compiled to PTX for the chosen compute capability
(as tests/test_ptx.py does), then assembled by ``ptxas -v``, which reports per kernel the
registers per thread (which bound how many threads an SM can keep resident), bytes of
local-memory spills (a kernel that spills has run out of registers: slow) and static
shared memory per block. Exit status 1 if any kernel spills.

ptxas must be at least as new as the NVVM that wrote the PTX: numba-cuda[cu13] brings
NVVM 13.x, and the nvidia-cuda-nvcc wheel of the same major version (the test extra
installs it) carries a matching ptxas at site-packages/nvidia/cu13/bin/ptxas. Set PTXAS
to use another one.
"""
from __future__ import annotations

import glob
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from dcgan_cuda.cli import Parser, UsageError, output_file, reports_errors


def find_ptxas():
    """The assembler to use, or None: $PTXAS, the nvidia-cuda-nvcc wheel's, then PATH."""
    if os.environ.get("PTXAS"):
        return os.environ["PTXAS"]
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "nvidia", "cu*", "bin", "ptxas")), reverse=True)
        if found:
            return found[0]
    return shutil.which("ptxas")


def all_kernels():
    """Every registered kernel of every family: a file of kernels/ or a folder of them
    (one file per version, imported by the folder's __init__.py)."""
    import dcgan_cuda.kernels as package
    skip = {"__init__", "jit", "harness", "exercises"}
    root = pathlib.Path(package.__file__).parent
    names = [p.stem for p in root.glob("*.py")] + [p.parent.name for p in root.glob("*/__init__.py")]
    for name in sorted(set(names) - skip):
        importlib.import_module(f"dcgan_cuda.kernels.{name}")
    from dcgan_cuda.kernels.jit import REGISTRY
    return sorted({k.name: k for k in REGISTRY}.values(), key=lambda k: k.name)


INFO = re.compile(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def assemble(ptxas, ptx, cc):
    """ptxas -v on one PTX module: {registers, smem, stack, spill_stores, spill_loads}."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas, f"-arch=sm_{cc}", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed: {text.strip()[-800:]}")
    info, spill = INFO.search(text), SPILL.search(text)
    return {"registers": int(info.group(1)), "smem": int(info.group(2) or 0),
            "stack": int(spill.group(1)), "spill_stores": int(spill.group(2)),
            "spill_loads": int(spill.group(3))}


def report(cc=90, ptxas=None):
    ptxas = ptxas or find_ptxas()
    if ptxas is None:
        raise FileNotFoundError("no ptxas: pip install 'nvidia-cuda-nvcc>=13.5' or set PTXAS")
    rows = []
    for k in all_kernels():
        for sig, ptx in zip(k.signatures, k.ptx(cc=(cc // 10, cc % 10))):
            rows.append(dict(kernel=k.name, signature=str(sig), **assemble(ptxas, ptx, cc)))
    return ptxas, rows


@reports_errors()
def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common
    p = Parser(prog="python bench/ptxas_report.py", description=__doc__.split("\n")[0])
    p.add_argument("--cc", type=common.compute_capability, default=90,
                   help="compute capability, e.g. 90 for H100")
    p.add_argument("--json", type=output_file, default=None)
    args = p.parse_args(argv)
    chosen = os.environ.get("PTXAS")
    if chosen and not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
        raise UsageError(f"PTXAS={chosen!r} is not an executable file (leave it unset to use the "
                         "nvidia-cuda-nvcc wheel's ptxas)")
    try:
        ptxas, rows = report(args.cc)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ptxas: {ptxas} (sm_{args.cc})")
    print(common.table(rows, [("kernel", "kernel", "{}"), ("registers", "regs", "{}"),
                              ("smem", "smem B", "{}"), ("stack", "stack B", "{}"),
                              ("spill_stores", "spill st B", "{}"), ("spill_loads", "spill ld B", "{}")]))
    if args.json:
        common.write_json(args.json, {"ptxas": ptxas, "cc": args.cc, "kernels": rows})
    spilling = [r["kernel"] for r in rows if r["spill_stores"] or r["spill_loads"]]
    if spilling:
        print("kernels that spill: " + ", ".join(spilling))
    return 1 if spilling else 0


if __name__ == "__main__":
    sys.exit(main())
