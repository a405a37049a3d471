"""A training run survives faults: kills, divergence, failing writes, bad checkpoints.

Runs train a tiny DCGAN (digits at 16x16, ngf = ndf = 8) on the NumPy backend, where the
arithmetic is deterministic, so "the same" means bitwise the same.
"""
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_cuda import checkpoint, train
from dcgan_cuda.checkpoint import read_tensors

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--device", "cpu", "--imageSize", "16", "--ngf", "8", "--ndf", "8", "--nz", "16",
        "--batchSize", "16", "--max-images", "80", "--manualSeed", "3", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def no_loss_curves():
    """Drawing loss_curve.png with matplotlib takes most of a tiny run's time and nothing
    here looks at it (tests/test_train_cli.py does): runs in this process skip it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "plot_losses", lambda rows, path: None)
        yield


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


# Every way a run can stop, each at a boundary the fault hook (dcgan_cuda/faults.py) hits
# on every run: (DCGAN_CUDA_FAULT, extra flags, exit status, iteration of the checkpoint
# left behind). The uninterrupted run has 5 iterations an epoch, 15 in all; 128 + N is
# the status of a process ended by signal N (130 SIGINT, 143 SIGTERM).
IN_PROCESS_STOPS = {
    "ctrl-c": ("int@iteration:7", [], 130, 7),               # finish iteration 7, save, stop
    "ctrl-c at an epoch's end": ("int@iteration:5", [], 130, 5),
    "ctrl-c twice": ("int2@iteration:7", ["--save-every", "3"], 130, 6),   # abort: iteration 6's save stays
    "sigterm": ("term@iteration:7", [], 143, 7),
    # Disk full at epoch 1's end, whose last batch --save-every 5 had saved: the resume
    # starts with an epoch that has no batch left to run.
    "disk full": ("full@write:checkpoint.safetensors:2", ["--save-every", "5"], 2, 5),
    "failed write": ("eio@write:netG_epoch_1.safetensors:1", [], 2, 5),
}
KILLS = {   # SIGKILL: only a separate process can take one. All before epoch 1's end, so the
            # killed process never draws a loss curve (matplotlib is most of its start-up).
    "mid-epoch": ("kill@iteration:3", ["--save-every", "2"], 2),
    # Right after --save-every saved an epoch's last batch, before the epoch's own save.
    "after the save of an epoch's last batch": ("kill@save:1", ["--save-every", "5"], 5),
    # While the second checkpoint is being written: the first stays, the temporary file is left.
    "during a checkpoint write": ("kill@write:checkpoint.safetensors:2", ["--save-every", "1"], 1),
}


def resume(outf, *extra):
    """--resume with nothing else: the run's folder, --niter and flags come from the checkpoint."""
    return train.main(["--resume", str(Path(outf) / "checkpoint.safetensors"), "--no-progress", *extra])


def assert_resume_finishes_the_uninterrupted_run(out, uninterrupted, checkpoint_iteration):
    assert read_tensors(str(out / "checkpoint.safetensors"))[1]["progress"]["iteration"] == checkpoint_iteration
    assert resume(out) == 0
    assert_same_state(final_state(out), final_state(uninterrupted))
    assert metric_rows(out) == metric_rows(uninterrupted)


@pytest.mark.parametrize("way", IN_PROCESS_STOPS)
def test_every_way_of_stopping_then_resume_is_the_uninterrupted_run(way, tmp_path, uninterrupted, monkeypatch):
    fault, extra, status, checkpoint_iteration = IN_PROCESS_STOPS[way]
    out = tmp_path / "run"
    monkeypatch.setenv("DCGAN_CUDA_FAULT", fault)
    assert run(out, "--niter", "3", *extra) == status
    monkeypatch.delenv("DCGAN_CUDA_FAULT")
    assert_resume_finishes_the_uninterrupted_run(out, uninterrupted, checkpoint_iteration)


@pytest.mark.parametrize("when", KILLS)
def test_sigkill_then_resume_is_the_uninterrupted_run(when, tmp_path, uninterrupted):
    fault, extra, checkpoint_iteration = KILLS[when]
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-m", "dcgan_cuda.train"] + TINY + ["--outf", str(out), "--niter", "3"]
                          + extra, cwd=ROOT, env={**os.environ, "DCGAN_CUDA_FAULT": fault},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftovers = [p.name for p in out.iterdir() if ".dcgan_cuda-tmp-" in p.name]
    if "write" in fault:
        assert len(leftovers) == 1 and leftovers[0].startswith(".checkpoint.safetensors.")
    else:
        assert leftovers == []
    assert_resume_finishes_the_uninterrupted_run(out, uninterrupted, checkpoint_iteration)
    assert not [p.name for p in out.iterdir() if ".dcgan_cuda-tmp-" in p.name]   # removed at the start


def test_a_stop_mid_epoch_draws_its_grid_without_touching_the_state(tmp_path, monkeypatch):
    """The grid of the unfinished epoch is drawn after the save, and G's batchnorm buffers
    (running statistics, num_batches_tracked) are what the iteration left."""
    out = tmp_path / "run"
    monkeypatch.setenv("DCGAN_CUDA_FAULT", "int@iteration:7")
    kept = {}
    real_samples = train.Run.save_samples

    def samples_and_state(self, epoch, keep_state=False):
        before = self.netG.state_dict()
        real_samples(self, epoch, keep_state)
        kept.update(before=before, after=self.netG.state_dict(), keep_state=keep_state)
    monkeypatch.setattr(train.Run, "save_samples", samples_and_state)
    assert run(out, "--niter", "3") == 130
    assert kept["keep_state"] and (out / "fake_samples_epoch_001.png").is_file()
    saved = {k[len("netG."):]: v for k, v in final_state(out).items() if k.startswith("netG.")}
    assert_same_state(kept["after"], kept["before"])
    assert_same_state(saved, kept["before"])


def test_resume_refuses_a_folder_dataset_whose_size_changed(tmp_path, monkeypatch, capsys):
    """A folder that lost images between the stop and the resume: the batches of the run
    cannot continue, so the resume says so (it used to end in an UnboundLocalError when
    the checkpoint sat at the end of an epoch)."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    for i, picture in enumerate(pixels):
        Image.fromarray(picture).save(images / f"{i:02d}.png")
    out = tmp_path / "run"
    monkeypatch.setenv("DCGAN_CUDA_FAULT", "full@write:checkpoint.safetensors:2")
    assert train.main(["--dataset", "folder", "--dataroot", str(images), "--device", "cpu", "--imageSize", "16",
                       "--ngf", "4", "--ndf", "4", "--nz", "8", "--batchSize", "5", "--manualSeed", "1",
                       "--niter", "2", "--save-every", "4", "--no-progress", "--outf", str(out)]) == 2
    monkeypatch.delenv("DCGAN_CUDA_FAULT")
    progress = read_tensors(str(out / "checkpoint.safetensors"))[1]["progress"]
    assert (progress["epoch"], progress["batch"]) == (0, 4)   # the end of epoch 1, not yet closed
    for name in sorted(os.listdir(images))[12:]:
        os.unlink(images / name)
    capsys.readouterr()
    assert resume(out) == 2
    err = capsys.readouterr().err
    assert "had 20 images" in err and "now holds 12" in err and "Traceback" not in err


def test_a_used_outf_takes_a_new_run_only_with_overwrite(tmp_path, uninterrupted, monkeypatch, capsys):
    """One run per folder: its metrics.jsonl and loss curve never mix two runs. A run
    aborted before its first checkpoint is started again with --overwrite, and its log
    then holds each iteration once."""
    out = tmp_path / "run"
    monkeypatch.setenv("DCGAN_CUDA_FAULT", "int2@iteration:2")
    assert run(out, "--niter", "3") == 130
    monkeypatch.delenv("DCGAN_CUDA_FAULT")
    assert not (out / "checkpoint.safetensors").exists() and len(metric_rows(out)) == 2
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert run(out, "--niter", "3") == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "before its first checkpoint" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == before and len(metric_rows(out)) == 2
    assert run(out, "--niter", "3", "--overwrite") == 0
    assert_same_state(final_state(out), final_state(uninterrupted))
    assert metric_rows(out) == metric_rows(uninterrupted)
    # A folder with a checkpoint: the refusal says how to continue it.
    assert run(out, "--niter", "3") == 2
    assert f"--resume {out / 'checkpoint.safetensors'}" in capsys.readouterr().err
    # Another run's checkpoint continued into this folder would mix the two logs.
    assert train.main(["--resume", str(uninterrupted / "checkpoint.safetensors"), "--outf", str(out)]) == 2
    assert "another run's files" in capsys.readouterr().err
    assert metric_rows(out) == metric_rows(uninterrupted)


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".dcgan_cuda.lock", "w") as held:   # what a running training holds
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run(out, "--niter", "1") == 2
        err = capsys.readouterr().err
        assert "in use by another training run (process 4242)" in err and "Traceback" not in err
        assert [p.name for p in out.iterdir()] == [".dcgan_cuda.lock"]
    assert run(out, "--niter", "1") == 0     # the lock ended with its holder


def test_ctrl_c_while_a_folder_dataset_loads_stops_at_once_in_one_line(tmp_path, monkeypatch, capsys):
    """SIGINT at the 3rd decoded image of 60: the decodes already queued are dropped, the
    ones running finish, and the program says one line (no traceback from the pool)."""
    from dcgan_cuda import data
    images = tmp_path / "images"
    images.mkdir()
    for i, picture in enumerate(np.random.default_rng(1).integers(0, 256, (60, 6, 6, 3), dtype=np.uint8)):
        Image.fromarray(picture).save(images / f"{i:02d}.png")
    decoded = []
    real_decode = data._decode_file

    def counted(*args, **kwargs):
        decoded.append(1)
        return real_decode(*args, **kwargs)
    monkeypatch.setattr(data, "_decode_file", counted)
    monkeypatch.setenv("DCGAN_CUDA_FAULT", "int@decode:3")
    out = tmp_path / "run"
    assert train.main(["--dataset", "folder", "--dataroot", str(images), "--device", "cpu", "--imageSize", "16",
                       "--ngf", "4", "--ndf", "4", "--nz", "8", "--niter", "1", "--no-progress", "--outf", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "[dcgan_cuda] interrupted during start-up, before training began"
    assert len(decoded) <= 3 + data.DECODES_IN_FLIGHT * data._workers()
    assert [p.name for p in out.iterdir()] == [".dcgan_cuda.lock"]


def test_ctrl_c_while_the_program_loads_its_modules_is_one_line():
    """python -m dcgan_cuda.train interrupted while it imports NumPy: SIGINT is sent from
    the import system the moment NumPy is asked for."""
    program = (
        "import os, runpy, signal, sys\n"
        "class InterruptAtNumpy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, InterruptAtNumpy())\n"
        "sys.argv = ['dcgan_cuda.train', '--help']\n"
        "runpy.run_module('dcgan_cuda.train', run_name='__main__', alter_sys=True)\n")
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "[dcgan_cuda] interrupted during start-up; nothing was written"
    assert proc.stdout == ""


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
    assert not [p for p in out.iterdir() if ".dcgan_cuda-tmp-" in p.name]


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


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_s_permissions(tmp_path, umask):
    """As any file a program opens for writing: 0o666 less the umask (not mkstemp's 0o600)."""
    target = tmp_path / "state.safetensors"
    previous = os.umask(umask)
    try:
        checkpoint.atomic_write_bytes(str(target), b"payload")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_only_the_temporary_files_of_writers_that_are_gone_are_removed(tmp_path):
    never_a_process = 2**31 - 1    # beyond every system's largest process id
    stale = f".checkpoint.safetensors.dcgan_cuda-tmp-{never_a_process}-0123abcd"
    kept = [f".metrics.jsonl.dcgan_cuda-tmp-{os.getpid()}-89abcdef",   # a write in progress: ours
            ".tmp-checkpoint.safetensors.x1y2z3ab",                  # not a name we write
            f"checkpoint.safetensors.dcgan_cuda-tmp-{never_a_process}-0123abcd",   # not hidden
            "notes.txt"]
    for name in [stale] + kept:
        (tmp_path / name).write_bytes(b"x")
    assert checkpoint.remove_stale_temporaries(str(tmp_path)) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_resumed_run_keeps_its_keep_list_and_refuses_another(tmp_path, capsys):
    """The images a run trains on are part of its record: a resume without --keep-list
    continues on the same images, and one naming another list is refused."""
    keep, other = tmp_path / "keep.txt", tmp_path / "other.txt"
    keep.write_text("\n".join(str(i) for i in range(0, 200, 2)) + "\n")
    other.write_text("\n".join(str(i) for i in range(1, 200, 2)) + "\n")
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run(whole, "--niter", "2", "--keep-list", str(keep)) == 0
    assert run(stopped, "--niter", "1", "--keep-list", str(keep)) == 0
    state = str(stopped / "checkpoint.safetensors")
    refused = train.main(["--resume", state, "--niter", "2", "--keep-list", str(other), "--no-progress"])
    assert refused != 0 and "--keep_list" in capsys.readouterr().err
    assert train.main(["--resume", state, "--niter", "2", "--no-progress"]) == 0
    assert_same_state(final_state(stopped), final_state(whole))
