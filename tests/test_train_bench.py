"""bench/train_bench.py keeps what it measured: its JSON is rewritten after every
measurement, and a measurement that fails is recorded as failed without losing the others."""
import json
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
TINY = ["--device", "cpu", "--batch", "4", "--image-size", "16", "--ngf", "4", "--ndf", "4",
        "--steps", "1", "--warmup", "0", "--no-torch"]


@pytest.fixture
def train_bench():
    sys.path.insert(0, BENCH)
    try:
        import train_bench
    finally:
        sys.path.remove(BENCH)
    return train_bench


def test_a_failed_measurement_is_recorded_and_the_file_written_before_it(train_bench, tmp_path, monkeypatch):
    out = tmp_path / "train_bench.json"
    seen_before = {}

    def crashing_timer(fns, warmup, reps):
        seen_before.update(json.loads(out.read_text()))     # what a kill at this moment would leave
        raise RuntimeError("the timer broke")
    monkeypatch.setattr(train_bench.common, "time_cpu_alternating", crashing_timer)
    assert train_bench.main(TINY + ["--json", str(out)]) == 1
    assert seen_before["complete"] is False and seen_before["results"] == []
    assert seen_before["batch"] == 4 and seen_before["image_size"] == 16
    report = json.loads(out.read_text())
    assert report["complete"] is True and report["results"] == []
    assert report["failed"] == [{"measurement": "the CPU steps", "error": "RuntimeError: the timer broke"}]


def test_a_clean_run_writes_its_timing(train_bench, tmp_path):
    out = tmp_path / "train_bench.json"
    assert train_bench.main(TINY + ["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["complete"] is True and report["failed"] == []
    [row] = report["results"]
    assert row["impl"] == "dcgan_cuda (numpy)" and row["ms"] > 0
    assert row["img_s"] == pytest.approx(4 / row["ms"] * 1e3)
