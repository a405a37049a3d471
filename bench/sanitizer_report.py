"""compute-sanitizer over one training step: which of our kernels are clean.

    python3 bench/sanitizer_report.py [--tools memcheck racecheck]     (on a GPU machine)

Runs one DCGAN training step with each family's newest kernel versions (batch 16, 32x32,
ngf = ndf = 16: small, because the sanitizer slows every launch by orders of magnitude)
in a child process under NVIDIA's compute-sanitizer, once per tool: memcheck (out-of-bounds
and misaligned accesses to global memory) and racecheck (two threads of a block touching
the same shared-memory word without a barrier between them). Prints, per tool, every
kernel the step launched and whether the sanitizer reported anything in it.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

MARKER = "kernels launched: "


def sanitizer():
    found = shutil.which("compute-sanitizer")
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidate = os.path.join(cuda_home, "bin", "compute-sanitizer")
    return found or (candidate if os.path.exists(candidate) else None)


def one_step():
    """The child: one training step on our kernels; prints the kernels it launched."""
    import numpy as np

    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.backend import get_backend
    from dcgan_cuda.kernels.jit import LAUNCHES
    from dcgan_cuda.models import build_models
    from dcgan_cuda.optim import Adam
    from dcgan_cuda.train import train_step
    backend = get_backend("cuda")
    backend.choose_versions(["newest"])
    netG, netD = build_models("pytorch", 32, 3, 100, 16, 16, seed=0, backend=backend)
    optG, optD = (Adam(net.parameters(), 2e-4, (0.5, 0.999)) for net in (netG, netD))
    rng = np.random.default_rng(0)
    real = backend.asarray(rng.uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32))
    noise = backend.asarray(netG.sample_noise(16, rng))
    LAUNCHES.clear()
    train_step(netG, netD, optG, optD, Tensor(real, backend), Tensor(noise, backend))
    backend.synchronize()
    print(MARKER + json.dumps(sorted(LAUNCHES)))


def kernels_reported(output, launched):
    """{kernel: number of sanitizer report lines naming it}: a kernel's symbol holds its
    Python function's name, mangled (length first) or demangled."""
    counts = {name: 0 for name in launched}
    for line in output.splitlines():
        if not line.startswith("=========") or not re.search(r"\bat\b|kernel", line):
            continue
        for name in launched:
            function = name.split(".", 1)[1]
            # mangled: the name preceded by its length ("15relu_forward_v1B2v1..."); demangled: a word
            if f"{len(function)}{function}" in line or re.search(rf"\b{function}\b", line):
                counts[name] += 1
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", nargs="+", default=["memcheck", "racecheck"],
                        choices=["memcheck", "racecheck", "initcheck", "synccheck"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        one_step()
        return 0
    tool_path = sanitizer()
    if tool_path is None:
        print("skipped: compute-sanitizer is not on this machine")
        return 0
    dirty = False
    for tool in args.tools:
        proc = subprocess.run([tool_path, "--tool", tool, "--print-limit", "200", "--error-exitcode", "9",
                               sys.executable, os.path.abspath(__file__), "--child"],
                              capture_output=True, text=True)
        output = proc.stdout + proc.stderr
        launched_line = next((line for line in output.splitlines() if line.startswith(MARKER)), None)
        summary = next((line for line in reversed(output.splitlines()) if "ERROR SUMMARY" in line), "no summary")
        if launched_line is None:
            print(f"{tool}: the step did not finish (exit {proc.returncode}); {summary}")
            print("\n".join(output.splitlines()[-30:]))
            dirty = True
            continue
        counts = kernels_reported(output, json.loads(launched_line[len(MARKER):]))
        clean = proc.returncode == 0
        dirty |= not clean
        print(f"{tool}: {'clean' if clean else 'NOT CLEAN'} ({summary.strip('= ')}), {len(counts)} kernels launched")
        for name, n in counts.items():
            print(f"  {name:<44} {'clean' if n == 0 else f'{n} reports'}")
        if not clean:
            print("\n".join([line for line in output.splitlines() if line.startswith("=========")][:60]))
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
