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


def test_conv_bench_progression_and_best_version_geomean():
    sys.path.insert(0, BENCH)
    try:
        import conv_bench
    finally:
        sys.path.remove(BENCH)
    # two convolutions, two versions; v2 is twice as fast as cuDNN on the first, half on the second
    rows = [dict(layer="D2", direction="fwd", version=1, ms=4.0, gflops=1000.0, cudnn_fp32_ms=1.0, x_cudnn_fp32=0.25),
            dict(layer="D2", direction="fwd", version=2, ms=0.5, gflops=8000.0, cudnn_fp32_ms=1.0, x_cudnn_fp32=2.0),
            dict(layer="G5", direction="fwd", version=1, ms=1.0, gflops=1000.0, cudnn_fp32_ms=0.5, x_cudnn_fp32=0.5),
            dict(layer="G5", direction="fwd", version=2, ms=2.0, gflops=500.0, cudnn_fp32_ms=0.5, x_cudnn_fp32=0.25)]
    table = conv_bench.progression(rows, {1: "naive", 2: "tiles"}, peak=50.0)
    v1, v2 = table
    assert v1["ms"] == 5.0 and v2["ms"] == 2.5
    # FLOPs: 4 GFLOP + 1 GFLOP in both versions -> 5 GFLOP over 5 ms and over 2.5 ms
    assert abs(v1["gflops"] - 1000.0) < 1e-9 and abs(v2["gflops"] - 2000.0) < 1e-9
    assert abs(v2["pct_peak"] - 4.0) < 1e-9                  # 2 TFLOP/s of 50
    assert abs(v1["x_cudnn_fp32"] - 1.5 / 5.0) < 1e-12 and abs(v2["x_cudnn_fp32"] - 1.5 / 2.5) < 1e-12
    assert abs(v2["geomean_x_cudnn_fp32"] - (2.0 * 0.25) ** 0.5) < 1e-12
    # best per convolution: 2.0 (v2 on D2) and 0.5 (v1 on G5)
    assert abs(conv_bench.best_version_geomean(rows) - 1.0) < 1e-12
    markdown = conv_bench.progression_markdown(table)
    assert markdown.splitlines()[2].startswith("| 1 | naive | 5.00 | 1000 | 2.0 | 0.30 | 0.35 |")
    # what the JSON gets, after every layer and at the end: the same numbers, named by conv2d
    result = conv_bench.summary(rows, [1, 2], "a card", 50.0)
    assert result["results"] == rows and result["machine"] == "a card"
    assert [row["name"] for row in result["progression"]] == ["naive", "smem-tiles"]
    assert result["geomean_x_cudnn_fp32"][2] == v2["geomean_x_cudnn_fp32"]
    assert result["best_version_geomean_x_cudnn_fp32"] == conv_bench.best_version_geomean(rows)


def test_write_json_replaces_the_file_whole(tmp_path):
    """A benchmark rewrites its JSON as results come in: each write replaces the file by a
    complete one (through a renamed temporary file) and leaves nothing else behind."""
    import json
    sys.path.insert(0, BENCH)
    try:
        import common
    finally:
        sys.path.remove(BENCH)
    path = tmp_path / "out" / "bench.json"
    common.write_json(str(path), {"results": [1], "complete": False})
    common.write_json(str(path), {"results": [1, 2], "complete": True})
    saved = json.loads(path.read_text())
    assert saved["results"] == [1, 2] and saved["complete"] and "date" in saved and "command" in saved
    assert os.listdir(path.parent) == ["bench.json"]


def test_conv_bench_gives_slow_kernels_fewer_calls():
    from types import SimpleNamespace
    sys.path.insert(0, BENCH)
    try:
        import conv_bench
    finally:
        sys.path.remove(BENCH)
    args = SimpleNamespace(warmup=3, reps=20, budget_ms=500.0)
    assert conv_bench.calls_within_budget(0.1, args) == (3, 20)      # fast: all asked for
    assert conv_bench.calls_within_budget(30.0, args) == (3, 16)     # 16 calls fit in 500 ms
    assert conv_bench.calls_within_budget(100.0, args) == (1, 5)     # slow: the minimum
    assert conv_bench.calls_within_budget(5000.0, args) == (1, 5)


def test_kernel_backend_choose_versions():
    from types import SimpleNamespace

    from dcgan_cuda.kernel_backend import KernelBackend
    backend = KernelBackend.__new__(KernelBackend)       # no simulator needed for the table
    backend.k = {"conv2d": SimpleNamespace(VERSIONS={1: 0, 2: 0, 3: 0}, DEFAULT_VERSION=1),
                 "adam": SimpleNamespace(VERSIONS={1: 0}, DEFAULT_VERSION=1),
                 "reduction": SimpleNamespace(VERSIONS={1: 0, 2: 0, 3: 0}, DEFAULT_VERSION=1, NONDETERMINISTIC={3})}
    backend.versions = {"conv2d": 1, "adam": 1, "reduction": 1}
    # newest: the highest version that trains deterministically (not reduction's atomic 3)
    assert backend.choose_versions(["newest"]) == {"conv2d": 3, "adam": 1, "reduction": 2}
    assert backend.versions == {"conv2d": 3, "adam": 1, "reduction": 2}
    assert backend.choose_versions(["newest", "conv2d=2"]) == {"conv2d": 2, "adam": 1, "reduction": 2}
    assert backend.choose_versions(["default"]) == {"conv2d": 1, "adam": 1, "reduction": 1}
    for bad in (["conv2d=4"], ["nope=1"], ["conv2d"], ["reduction=3"]):
        with pytest.raises(ValueError, match="families and their versions") as refused:
            backend.choose_versions(bad)
        assert "reduction [1, 2]" in str(refused.value)
        assert ("not deterministic" in str(refused.value)) == (bad == ["reduction=3"])
    assert backend.versions == {"conv2d": 1, "adam": 1, "reduction": 1}   # a refused choice changes nothing
