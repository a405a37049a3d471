"""The training command line: pytorch/examples' flags, its outputs, and its error messages."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_cuda import train
from dcgan_cuda.checkpoint import read_tensors

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--device", "cpu", "--imageSize", "16", "--ngf", "4", "--ndf", "4", "--nz", "8",
        "--batchSize", "8", "--max-images", "24", "--manualSeed", "2", "--no-progress"]


def test_one_epoch_writes_every_output(tmp_path):
    assert train.main(TINY + ["--niter", "1", "--outf", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"real_samples.png", "fake_samples_epoch_000.png", "netG_epoch_0.safetensors",
            "netD_epoch_0.safetensors", "checkpoint.safetensors", "metrics.jsonl",
            "loss_curve.png"} <= names
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2"} <= r.keys()
        assert 0 <= r["D_x"] <= 1 and r["loss_D"] > 0
    # 24 images of 16x16 in a grid of 8 per row, 2-pixel borders
    grid = np.asarray(Image.open(tmp_path / "real_samples.png"))
    assert grid.shape == (3 * 18 + 2, 8 * 18 + 2)
    tensors, meta = read_tensors(str(tmp_path / "checkpoint.safetensors"))
    assert meta["progress"]["iteration"] == 3 and meta["progress"]["epoch"] == 1
    assert int(tensors["optG.step"]) == 3
    assert "bit_generator" in meta["progress"]["noise_rng"]


def test_kebab_case_flags_are_the_same_flags():
    a = train.parse_args(["--imageSize", "64", "--batchSize", "7", "--manualSeed", "5", "--dry-run"])
    b = train.parse_args(["--image-size", "64", "--batch-size", "7", "--manual-seed", "5", "--dry_run"])
    assert (a.imageSize, a.batchSize, a.manualSeed, a.dry_run) == (b.imageSize, b.batchSize, b.manualSeed, b.dry_run)


def test_defaults_follow_pytorch_examples_except_where_the_digits_differ():
    args = train.parse_args([])
    train.fill_defaults(args)
    assert (args.batchSize, args.nz, args.ngf, args.ndf, args.lr, args.beta1, args.arch) == \
        (64, 100, 64, 64, 2e-4, 0.5, "pytorch")
    assert (args.dataset, args.imageSize, args.nc, args.niter) == ("digits", 32, 1, 60)
    args = train.parse_args(["--dataset", "cifar10"])
    train.fill_defaults(args)
    assert (args.imageSize, args.nc, args.niter) == (64, 3, 25)


def test_dry_run_does_one_iteration(tmp_path):
    assert train.main(TINY + ["--dry-run", "--outf", str(tmp_path)]) == 0
    assert len(open(tmp_path / "metrics.jsonl").readlines()) == 1


def test_help_explains_the_flags():
    out = subprocess.run([sys.executable, "-m", "dcgan_cuda.train", "--help"], capture_output=True,
                         text=True, cwd=ROOT).stdout
    for flag in ("--dataset", "--dataroot", "--imageSize", "--batchSize", "--nz", "--ngf", "--ndf",
                 "--niter", "--lr", "--beta1", "--outf", "--manualSeed", "--netG", "--netD",
                 "--dry-run", "--device", "--arch", "--resume"):
        assert flag in out, flag


@pytest.mark.parametrize("argv,expected", [
    (["--dataset", "folder"], "--dataroot"),
    (["--dataset", "folder", "--dataroot", "/nonexistent/place"], "/nonexistent/place"),
    (["--dataset", "mnist", "--dataroot", "/nonexistent/mnist"], "train-images-idx3-ubyte"),
    (["--dataset", "cifar10", "--dataroot", "/nonexistent/c10"], "cifar-10"),
    (["--imageSize", "48"], "48"),
    (["--device", "cuda"], "no GPU"),
    (["--netG", "/nonexistent/netG.safetensors"], "does not exist"),
    (["--batchSize", "0"], "--batchSize"),
    (["--device", "cpu", "--cuda-graph"], "--cuda-graph"),
    (["--device", "cpu", "--kernels", "newest"], "--kernels"),
])
def test_bad_input_ends_in_one_clear_message(tmp_path, argv, expected):
    proc = subprocess.run([sys.executable, "-m", "dcgan_cuda.train", "--outf", str(tmp_path), "--dry-run",
                           "--no-progress"] + argv, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") or "\nerror:" in proc.stderr
    assert expected in proc.stderr


def test_a_folder_of_non_images_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(b"not an image at all")
    (tmp_path / "data" / "notes.txt").write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "dcgan_cuda.train", "--dataset", "folder", "--dataroot",
                           str(tmp_path / "data"), "--outf", str(tmp_path / "o"), "--dry-run"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no usable image" in proc.stderr.lower() or "unreadable" in proc.stderr.lower()


def test_auto_device_says_it_falls_back_to_numpy(tmp_path, capsys):
    from dcgan_cuda.backend import gpu_status
    if gpu_status()[0]:
        pytest.skip("a GPU is present: auto picks it")
    assert train.main(TINY[2:] + ["--device", "auto", "--dry-run", "--outf", str(tmp_path)]) == 0
    assert "falling back to the NumPy reference" in capsys.readouterr().out


def test_folder_dataset_trains(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(data / f"{i}.png")
    assert train.main(["--dataset", "folder", "--dataroot", str(data), "--device", "cpu", "--imageSize", "16",
                       "--ngf", "4", "--ndf", "4", "--batchSize", "5", "--niter", "1", "--outf",
                       str(tmp_path / "o"), "--no-progress"]) == 0
