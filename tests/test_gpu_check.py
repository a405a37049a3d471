"""bench/gpu_check.sh, the script a lent GPU machine runs, checked on a machine without one.

Its dry run goes through the same stages in the same order (the GPU-only ones say they
were skipped), without a network where this machine can cut it off, and must leave in $OUT
only the few files a lent machine sends back, holding what the real run would."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
FILES_THAT_COME_BACK = {"summary.txt", "gpu_check.log", "gpu_tests.txt", "conv_bench.json", "train_bench.json",
                        "train_bench_unfused.json", "fake_samples_gpu.png", "extra.txt"}
STAGES = ["install", "versions", "gpu-training", "gpu-kernels", "conv-bench", "train-bench",
          "train-bench-unfused", "train", "sanitizer", "ncu"]


def without_network():
    """A command prefix that runs without a network (a new network namespace), if allowed here."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    scratch = tmp_path_factory.mktemp("tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "PYTHONPATH")}
    env.update(OUT=str(out), TMPDIR=str(scratch))
    proc = subprocess.run(without_network() + ["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    return proc, out, scratch


def test_the_dry_run_succeeds_and_writes_only_what_comes_back_into_OUT(dry_run):
    proc, out, scratch = dry_run
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    written = {p.name for p in out.iterdir()}
    assert written <= FILES_THAT_COME_BACK and len(written) <= 8, written
    assert {"summary.txt", "gpu_check.log", "gpu_tests.txt", "train_bench.json", "fake_samples_gpu.png"} <= written
    assert list(scratch.iterdir()) == [], "scratch left behind"


def test_the_summary_has_every_stage_in_order_and_the_training_runs_last_metrics(dry_run):
    proc, out, _ = dry_run
    summary = (out / "summary.txt").read_text()
    outcomes = re.findall(r"^([\w-]+)\s+(ok|skipped: no GPU \(dry run\))", summary, re.M)
    assert [name for name, _ in outcomes] == STAGES
    skipped = {name for name, outcome in outcomes if outcome.startswith("skipped")}
    assert skipped == {"conv-bench", "sanitizer", "ncu"}
    for line in ("numpy ", "numba-cuda ", "libNVVM ", "PTX ISA of our kernels ", "no GPU: "):
        assert re.search(rf"^{line}", summary, re.M), line
    metrics = re.search(r"^training run, last metrics line: (\{.*\})$", summary, re.M)
    assert json.loads(metrics.group(1))["iteration"] == 4         # 64 images, batches of 16, one epoch
    assert summary in proc.stdout                                 # the console's tail ends with it


def test_every_gpu_test_has_its_line_and_the_benchmarks_their_json(dry_run):
    _, out, _ = dry_run
    lines = (out / "gpu_tests.txt").read_text().splitlines()
    assert len(lines) > 20
    assert all(re.match(r"SKIPPED\s+\d+\.\d+s  tests/\S+::.+  \| .*needs a CUDA GPU", line) for line in lines), lines[0]
    for name in ("train_bench.json", "train_bench_unfused.json"):
        report = json.loads((out / name).read_text())
        assert report["complete"] is True and report["failed"] == [] and report["results"][0]["ms"] > 0
    assert (out / "fake_samples_gpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_stage_limits_and_their_grace_fit_the_budget():
    """The script must run twice in a 15-minute lease: every stage's limit plus its kill
    grace adds up to at most the budget, and the budget is at most 8 minutes."""
    script = SCRIPT.read_text()
    budget = int(re.search(r"^BUDGET=(\d+)", script, re.M).group(1))
    grace = int(re.search(r"^GRACE=(\d+)", script, re.M).group(1))
    limits = dict(re.findall(r"^(?:gpu_)?stage ([\w-]+) (\d+) ", script, re.M))
    optional = dict(re.findall(r"^optional_stage ([\w-]+) (\d+) ", script, re.M))
    assert list(limits) + list(optional) == STAGES
    assert budget <= 8 * 60
    assert sum(int(v) for v in limits.values()) + grace * len(limits) <= budget
    # an optional stage gets only what the others left: checked at run time against the budget
    assert 'left=$((BUDGET - ($(date +%s) - START) - GRACE))' in script


def test_the_install_needs_no_network_and_uses_python3():
    script = SCRIPT.read_text()
    assert "--no-index --no-deps" in script
    assert not re.search(r"(^|[\s(])python\s", script, re.M), "the GPU machine promises python3"


def test_each_outcome_line_is_written_with_its_reason(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_right(): assert 2 + 2 == 4\n"
        "def test_wrong(): assert 2 + 2 == 5, 'arithmetic broke'\n"
        "@pytest.mark.skip(reason='no GPU here')\n"
        "def test_skipped(): pass\n")
    (tmp_path / "test_broken.py").write_text("import a_module_that_is_not_there\n")
    outcomes = tmp_path / "outcomes.txt"
    env = dict(os.environ, GPU_CHECK_OUTCOMES=str(outcomes), PYTHONPATH=str(ROOT / "bench"))
    subprocess.run(["python3", "-m", "pytest", "-p", "pytest_outcomes", "-p", "no:cacheprovider", "-q",
                    "--continue-on-collection-errors", "test_sample.py", "test_broken.py"],
                   cwd=tmp_path, env=env, capture_output=True, timeout=120)
    lines = outcomes.read_text().splitlines()
    # pytest collects every module before it runs any test
    assert [line.split()[0] for line in lines] == ["ERROR", "PASSED", "FAILED", "SKIPPED"]
    assert "collecting test_broken.py" in lines[0] and "a_module_that_is_not_there" in lines[0]
    assert lines[2].endswith("test_sample.py::test_wrong  | AssertionError: arithmetic broke")
    assert lines[3].endswith("| Skipped: no GPU here")
