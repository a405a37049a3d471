"""Host-side helpers of training and benchmarking: the allocator setting and the CPU timer."""
import os
import platform
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_keep_freed_memory_takes_effect_on_glibc():
    # In a child process: the setting is process-wide and this one should keep its default.
    out = subprocess.run([sys.executable, "-c", "from dcgan_cuda.host_memory import keep_freed_memory;"
                          "print(keep_freed_memory())"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_time_cpu_alternating_runs_every_side_in_turns():
    sys.path.insert(0, BENCH)
    try:
        import common
    finally:
        sys.path.remove(BENCH)
    calls = []
    medians = common.time_cpu_alternating([lambda: calls.append("a"), lambda: calls.append("b")],
                                          warmup=1, reps=6, rounds=3)
    assert len(medians) == 2 and all(m >= 0 for m in medians)
    # warm-up of each, then three rounds of two calls per side, alternating
    assert "".join(calls) == "a" + "b" + "aabb" * 3
