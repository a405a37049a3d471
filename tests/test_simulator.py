"""Runs tests/sim (our kernels under Numba's CUDA simulator) in a process of its own.

NUMBA_ENABLE_CUDASIM must be set before numba is imported, which this process has done
already, so the simulator suite gets a fresh interpreter.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_kernels_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/sim", "-q", "-p", "no:cacheprovider",
                           "--no-header", "-rfE"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    print(proc.stdout[-20000:], proc.stderr[-5000:])
    assert proc.returncode == 0, "simulator tests failed:\n" + proc.stdout[-20000:] + proc.stderr[-5000:]
