"""python -m dcgan_cuda.dedup: scoring by hand-made cases, planted copies, every output file,
the keep list read back by training, and bad input in one line."""
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from dcgan_cuda import dedup, train
from dcgan_cuda.data import load_dataset

TINY = ["--device", "cpu", "--epochs", "2", "--hidden", "16", "--code-bits", "8", "--no-progress",
        "--seed", "4"]


def test_buckets_and_pair_scores_by_hand():
    table = dedup.buckets([b"a", b"b", b"a", b"a", b"c", b"b"])
    assert dict(table) == {b"a": [0, 2, 3], b"b": [1, 5], b"c": [4]}
    truth = np.array([0, 1, 0, 2, 3, 4])
    # colliding pairs: (0,2) (0,3) (2,3) (1,5); true pairs: (0,2) only, which collides
    assert dedup.score(table, truth) == {"colliding_pairs": 4, "true_pairs": 1, "found_pairs": 1,
                                         "precision": 0.25, "recall": 1.0}
    assert dedup.collided([b"a", b"b", b"a"], [(0, 2), (0, 1)]) == 1


def test_planted_copies_are_the_changes_they_claim():
    base = load_dataset("digits", image_size=32, split="all", max_images=40, seed=1)
    planted = dedup.Planted(base, 8, seed=2)
    assert len(planted) == 48 and planted.kinds[:4] == list(dedup.PLANT_KINDS)
    x = planted.batch(np.arange(48))
    src = base.batch(planted.sources)
    copies = x[40:]
    np.testing.assert_array_equal(copies[0], src[0])                     # copy
    diff = copies[2] - src[2]                                             # noise: small, everywhere
    assert 0.02 < diff.std() < 0.06 and np.abs(diff).max() < 0.3
    assert np.allclose(np.abs(copies[3] - src[3])[np.abs(src[3]) < 0.85], 0.1, atol=1e-6)  # brightness
    # shift: the copy is the source moved by whole pixels (edges repeated)
    moved = [np.array_equal(copies[1][0, 2:-2, 2:-2], np.pad(src[1][0], 2, mode="edge")[2 + dy:-2 + dy or None, 2 + dx:-2 + dx or None][2:-2, 2:-2])
             for dy in (-2, -1, 1, 2) for dx in (-2, -1, 1, 2)]
    assert any(moved)
    assert planted.name_of(41).startswith("planted/1-shift-of-")
    truth = planted.truth(list(range(40)))
    assert truth[40 + 5] == truth[planted.sources[5]]


def test_digits_run_writes_groups_picture_and_keep_list_that_training_reads(tmp_path, capsys):
    keep = tmp_path / "keep.txt"
    assert dedup.main(TINY + ["--dataset", "digits", "--max-images", "60", "--plant", "8",
                              "--outf", str(tmp_path / "d"), "--write-keep", str(keep)]) == 0
    report = json.loads((tmp_path / "d" / "groups.json").read_text())
    assert report["images"] == 68 and report["code_bits"] == 8
    planted = report["planted"]
    # an exact copy has its source's hash whatever the network learnt: always found
    for method in ("autoencoder", "imagehash average_hash", "imagehash dhash"):
        assert planted[method]["found_by_kind"]["copy"] == "2/2"
        assert 0 <= planted[method]["precision"] <= 1 and planted[method]["recall"] >= 2 / planted[method]["true_pairs"]
    groups = report["groups"]
    assert groups and all(g["size"] == len(g["names"]) >= 2 for g in groups)
    assert Image.open(tmp_path / "d" / "groups.png").size[0] > 64
    names = [n for n in keep.read_text().splitlines() if not n.startswith("#")]
    dropped = sum(g["size"] - 1 for g in groups)
    assert len(names) == 68 - dropped and len(set(names)) == len(names)
    # training reads the list: the planted names are not in the digits, the rest are
    real = [n for n in names if not n.startswith("planted/")]
    assert train.main(["--device", "cpu", "--imageSize", "16", "--ngf", "4", "--ndf", "4", "--nz", "4",
                       "--batchSize", "8", "--dry-run", "--no-progress", "--manualSeed", "1",
                       "--keep-list", str(keep), "--outf", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    n_train = int(out.split("digits: ")[1].split()[0])
    assert 0 < n_train <= len(real)


def test_exact_duplicates_in_a_folder_and_in_lsun_are_grouped(tmp_path):
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(6)]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(pictures):
        im.save(folder / f"{i}.png")
    pictures[2].save(folder / "again.png")
    assert dedup.main(TINY + ["--dataset", "folder", "--dataroot", str(folder), "--outf", str(tmp_path / "f")]) == 0
    groups = json.loads((tmp_path / "f" / "groups.json").read_text())["groups"]
    # (an untrained tiny network may put other images in the same group too: the copy must be there)
    assert any({"2.png", "again.png"} <= set(g["names"]) for g in groups)

    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(tmp_path / "church_train_lmdb"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i, im in enumerate(pictures + [pictures[4]]):
            buf = io.BytesIO()
            im.save(buf, "PNG")
            txn.put(b"k%02d" % i, buf.getvalue())
    env.close()
    assert dedup.main(TINY + ["--dataset", "lsun", "--dataroot", str(tmp_path), "--classes", "church",
                              "--outf", str(tmp_path / "l")]) == 0
    groups = json.loads((tmp_path / "l" / "groups.json").read_text())["groups"]
    assert any({"church_train/k04", "church_train/k06"} <= set(g["names"]) for g in groups)


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    assert dedup.main(["--dataset", "folder", "--outf", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: the folder dataset needs --dataroot")
    assert dedup.main(["--plant", "5000", "--device", "cpu", "--outf", str(tmp_path)]) == 2
    assert "has only 1797 images" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "imagehash", None)
    assert dedup.main(TINY + ["--max-images", "20", "--plant", "2", "--epochs", "1", "--outf", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'dcgan-cuda[dedup]'" in err


@pytest.mark.gpu
def test_on_a_gpu_the_kernels_train_the_autoencoder_like_the_numpy_reference():
    """The same step as tests/sim/test_dedup_step.py, at the tool's real sizes, on CuPy arrays."""
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.backend import get_backend
    from dcgan_cuda.dropout import gaussian_noise, squared_error

    def step(device):
        backend = get_backend(device, announce=lambda line: None)
        ae = dedup.Autoencoder(1024, 256, 32, dropout=0.2, seed=1).to(backend)
        opt = dedup.Adam(ae.parameters(), 1e-3, (0.9, 0.999))
        clean = backend.asarray(load_dataset("digits", image_size=32, max_images=64).batch(slice(None)).reshape(64, -1))
        out, code = ae(gaussian_noise(Tensor(clean, backend), 0.1, 5))
        loss = squared_error(out, clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), code.numpy(), ae.state_dict()

    gpu, cpu = step("cuda"), step("cpu")
    assert abs(gpu[0] - cpu[0]) <= 1e-5 * max(1.0, cpu[0])
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-4, atol=1e-5)   # 1024-term float32 sums
    for name, expected in cpu[2].items():
        np.testing.assert_allclose(gpu[2][name], expected, rtol=0, atol=1e-5, err_msg=name)
