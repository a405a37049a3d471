"""A training run survives faults: kills, divergence, failing writes, bad checkpoints.

Runs train a tiny DCGAN (digits at 16x16, ngf = ndf = 8) on the NumPy backend, where the
arithmetic is deterministic, so "the same" means bitwise the same.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dcgan_cuda import checkpoint, train
from dcgan_cuda.checkpoint import read_tensors

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--device", "cpu", "--imageSize", "16", "--ngf", "8", "--ndf", "8", "--nz", "16",
        "--batchSize", "16", "--max-images", "80", "--manualSeed", "3", "--no-progress"]


def run(outf, *extra):
    return train.main(TINY + ["--outf", str(outf)] + list(extra))


def final_state(outf):
    return read_tensors(str(Path(outf) / "checkpoint.safetensors"))[0]


def metric_rows(outf):
    rows = [json.loads(line) for line in open(Path(outf) / "metrics.jsonl")]
    return [{k: v for k, v in r.items() if k != "step_ms"} for r in rows]


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{name} differs"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """3 epochs of 5 iterations, never stopped: the run every other run must reproduce."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert run(out, "--niter", "3") == 0
    return out


def test_resume_from_iteration_k_is_bitwise_the_uninterrupted_run(tmp_path, uninterrupted, monkeypatch):
    """Keep the checkpoint written at iteration 7 (mid-epoch 2), resume from it, finish."""
    first = tmp_path / "first"
    kept = tmp_path / "iteration7.safetensors"
    real_save = train.Run.save_state

    def save_and_keep(self):
        real_save(self)
        if self.iteration == 7:
            kept.write_bytes(Path(self.state_path).read_bytes())
    monkeypatch.setattr(train.Run, "save_state", save_and_keep)
    assert run(first, "--niter", "3", "--save-every", "1") == 0
    monkeypatch.undo()

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "checkpoint.safetensors").write_bytes(kept.read_bytes())
    # The log of the first 7 iterations travels with the checkpoint, as in a real outf.
    lines = (first / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert train.main(["--resume", str(resumed / "checkpoint.safetensors"), "--niter", "3",
                       "--outf", str(resumed), "--no-progress"]) == 0
    assert_same_state(final_state(resumed), final_state(uninterrupted))
    assert metric_rows(resumed) == metric_rows(uninterrupted)


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint_and_resume_finishes_the_run(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dcgan_cuda.train"] + TINY + [
        "--outf", str(out), "--niter", "3", "--save-every", "1"]
    state = out / "checkpoint.safetensors"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    # Let it run into the middle of further iterations and checkpoint writes, then kill.
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), proc.stderr.read().decode()[-2000:]
    tensors, meta = read_tensors(str(state))  # loadable: old or new, never torn
    k = meta["progress"]["iteration"]
    assert 1 <= k <= 15
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    # A kill during a write may leave its temporary file; it never replaces the checkpoint.
    assert all(name.startswith(".tmp-checkpoint") or name.startswith(".tmp-") for name in leftovers)
    assert train.main(["--resume", str(state), "--niter", "3", "--outf", str(out), "--no-progress"]) == 0
    assert_same_state(final_state(out), final_state(uninterrupted))
    assert metric_rows(out) == metric_rows(uninterrupted)


def test_divergence_stops_with_the_iteration_and_never_writes_nan(tmp_path, monkeypatch, capsys):
    real_step = train.train_step
    calls = []

    def poisoned_step(netG, netD, optG, optD, real, noise):
        calls.append(1)
        if len(calls) == 8:  # iteration 8: a weight of D turns into NaN (as after an Inf gradient)
            w = netD.main[0].weight
            host = w.numpy()
            host.flat[0] = np.nan
            w.data = w.backend.asarray(host)
        return real_step(netG, netD, optG, optD, real, noise)
    monkeypatch.setattr(train, "train_step", poisoned_step)
    out = tmp_path / "nan"
    assert run(out, "--niter", "3") == 2
    err = capsys.readouterr().err
    assert "diverged at iteration 8" in err
    assert str(out / "checkpoint.safetensors") in err  # the last good checkpoint is named
    for f in out.glob("*.safetensors"):
        tensors, _ = read_tensors(str(f))
        assert all(np.isfinite(v).all() for v in tensors.values() if v.dtype.kind == "f"), f.name
    assert read_tensors(str(out / "checkpoint.safetensors"))[1]["progress"]["iteration"] == 5


def test_a_failing_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "full"
    assert run(out, "--niter", "1") == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    assert train.main(["--resume", str(out / "checkpoint.safetensors"), "--niter", "2",
                       "--outf", str(out), "--no-progress"]) == 2
    monkeypatch.setattr(os, "fsync", real_fsync)
    err = capsys.readouterr().err
    assert "No space left on device" in err and "previous checkpoint" in err
    assert (out / "checkpoint.safetensors").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_an_unusable_outf_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert run(blocker / "sub", "--niter", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoints_are_refused(tmp_path, uninterrupted, damage, capsys):
    good = (uninterrupted / "checkpoint.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes({"truncated": good[: len(good) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    assert train.main(["--resume", str(bad), "--outf", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and "Traceback" not in err
    assert run(tmp_path / "o2", "--niter", "1", "--netG", str(bad)) == 2


def test_mismatched_checkpoints_say_what_differs(tmp_path, uninterrupted, capsys):
    netG_file = str(uninterrupted / "netG_epoch_2.safetensors")
    # Wrong image size
    assert train.main(TINY[:2] + ["--imageSize", "32", "--ngf", "8", "--ndf", "8", "--nz", "16",
                                  "--netG", netG_file, "--outf", str(tmp_path / "a"), "--dry-run",
                                  "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "image_size=16" in err and "image_size=32" in err
    # Wrong architecture
    assert train.main(TINY + ["--arch", "paper", "--netG", netG_file, "--outf", str(tmp_path / "b"),
                              "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "arch=pytorch" in err and "arch=paper" in err
    # A generator file given as the discriminator
    assert run(tmp_path / "c", "--netD", netG_file, "--dry-run") == 2
    assert "error:" in capsys.readouterr().err
    # Resuming with a contradicting flag
    assert train.main(["--resume", str(uninterrupted / "checkpoint.safetensors"), "--batchSize", "32",
                       "--outf", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "--batchSize" in capsys.readouterr().err


def test_checkpoint_write_is_atomic_even_if_the_payload_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "state.safetensors"
    checkpoint.atomic_write_bytes(str(target), b"old")

    class Boom(Exception):
        pass

    def explode(fd):
        raise Boom
    monkeypatch.setattr(os, "fsync", explode)
    with pytest.raises(Boom):
        checkpoint.atomic_write_bytes(str(target), b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]
