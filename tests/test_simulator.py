"""Runs tests/sim (our kernels under Numba's CUDA simulator) in a process of its own.

NUMBA_ENABLE_CUDASIM must be set before numba is imported, which this process has done
already, so the simulator suite gets a fresh interpreter.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parallel_arguments():
    """pytest-xdist's arguments for one worker per core (up to 4), or none without it.

    The simulator runs a launch's GPU threads as OS threads of one Python process, so it uses
    one core however many threads it runs: on CI's two cores, two workers halve the suite."""
    workers = min(4, os.cpu_count() or 1)
    try:
        import xdist  # noqa: F401
    except ImportError:
        return []
    return ["-n", str(workers)] if workers > 1 else []


def test_kernels_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/sim", "-q", "-p", "no:cacheprovider",
                           "--no-header", "-rfE", *parallel_arguments()],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    print(proc.stdout[-20000:], proc.stderr[-5000:])
    assert proc.returncode == 0, "simulator tests failed:\n" + proc.stdout[-20000:] + proc.stderr[-5000:]
