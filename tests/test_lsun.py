"""The lsun dataset (LMDB databases as LSUN distributes them), imagenet/lfw as folders, and
keep lists. Every database is built here with the lmdb package, so the expected pixels and
the damage are known by construction."""
import io
import sys

import numpy as np
import pytest
from PIL import Image

from dcgan_cuda import train
from dcgan_cuda.data import DatasetError, LmdbDataset, load_dataset

lmdb = pytest.importorskip("lmdb", reason="the lsun extra (lmdb) is part of the test extra")

TINY_TRAIN = ["--device", "cpu", "--imageSize", "16", "--ngf", "4", "--ndf", "4", "--nz", "8",
              "--batchSize", "4", "--niter", "1", "--manualSeed", "3", "--no-progress"]


def encoded(im, fmt="PNG"):
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def banded(size, left, middle, right):
    """A wide image: the middle half one colour, the quarters at the sides others. Its
    central square (plus the resampling filter's reach) lies in the middle band, so Resize +
    CenterCrop sees only that colour, and squashing the whole image would not."""
    w, h = size
    arr = np.empty((h, w, 3), np.uint8)
    arr[:, :w // 4], arr[:, w // 4:3 * w // 4], arr[:, 3 * w // 4:] = left, middle, right
    return Image.fromarray(arr)


def make_db(root, name, records):
    """An LMDB database root/<name>_lmdb holding records (key bytes -> value bytes)."""
    env = lmdb.open(str(root / f"{name}_lmdb"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    env.close()
    return root / f"{name}_lmdb"


def key(i):
    return f"{i:040x}".encode()   # LSUN's keys are 40 hex digits


@pytest.fixture
def lsun_root(tmp_path):
    """bedroom_train: five wide images (the middle band's red channel is 10 i); kitchen_train:
    two tall ones."""
    make_db(tmp_path, "bedroom_train",
            [(key(i), encoded(banded((64, 16), (255, 255, 255), (10 * i, 50, 90), (0, 0, 0))))
             for i in range(5)])
    make_db(tmp_path, "kitchen_train",
            [(key(100 + i), encoded(Image.new("RGB", (12, 40), (200, 20 * i, 7)))) for i in range(2)])
    return tmp_path


def test_records_are_resized_and_centre_cropped_not_squashed(lsun_root):
    ds = load_dataset("lsun", lsun_root, image_size=8, classes="bedroom")
    assert isinstance(ds, LmdbDataset) and len(ds) == 5 and ds.classes == ["bedroom_train"]
    images = ds.uint8_batch(slice(None))
    assert images.shape == (5, 3, 8, 8)
    # Only the middle band: squashing the whole image into 8x8 would bring in white and black.
    for i in range(5):
        assert (images[i].reshape(3, -1).T == [10 * i, 50, 90]).all()
    np.testing.assert_array_equal(ds.batch([4, 0]), images[[4, 0]] / np.float32(127.5) - 1)
    assert ds.name_of(2) == "bedroom_train/" + key(2).decode()


def test_classes_as_pytorch_examples_and_torchvision_spell_them(lsun_root):
    a = load_dataset("lsun", lsun_root, image_size=8, classes="bedroom,kitchen")
    b = load_dataset("lsun", lsun_root, image_size=8, classes="bedroom_train, kitchen_train")
    assert a.classes == b.classes == ["bedroom_train", "kitchen_train"]
    assert a.labels.tolist() == [0] * 5 + [1] * 2
    grey = load_dataset("lsun", lsun_root, image_size=8, nc=1, classes="kitchen")
    tall = grey.uint8_batch([1])
    assert tall.shape == (1, 1, 8, 8)
    # ITU-R 601-2 luminance of (200, 20, 7), as Pillow's convert("L") rounds it
    assert (tall == (200 * 299 + 20 * 587 + 7 * 114 + 500) // 1000).all()


def test_max_images_and_a_keep_list(lsun_root):
    sub = load_dataset("lsun", lsun_root, image_size=8, classes="bedroom", max_images=2, seed=1)
    assert len(sub) == 2
    names = [sub.name_of(i) for i in range(2)]
    kept = load_dataset("lsun", lsun_root, image_size=8, classes="bedroom", keep=names)
    assert [kept.name_of(i) for i in range(len(kept))] == names
    np.testing.assert_array_equal(kept.uint8_batch(slice(None)), sub.uint8_batch(slice(None)))


def test_a_corrupt_record_is_named_once_and_the_next_readable_one_used(tmp_path):
    good = [(key(i), encoded(Image.new("RGB", (8, 8), (30 * i, 0, 0)))) for i in range(3)]
    make_db(tmp_path, "bedroom_train", good + [(key(1) + b"x", b"\xff\xd8 not a jpeg"),
                                               (key(9), b"")])
    said = []
    ds = load_dataset("lsun", tmp_path, image_size=8, classes="bedroom", warn=said.append)
    assert len(ds) == 5   # the length never changes: epochs and resumed runs stay as they were
    images = ds.uint8_batch(slice(None))
    # keys sort as 0, 1, 1..x (corrupt: replaced by the next, key 2), 2, 9 (empty: wraps to 0)
    assert images[:, 0, 0, 0].tolist() == [0, 30, 60, 60, 0]
    assert ds.skipped == 2 and len(said) == 2
    assert "not a readable image" in said[0] and "0x" not in said[0]
    ds.uint8_batch(slice(None))
    assert len(said) == 2   # each bad record is reported once


def test_a_database_without_its_lock_file_is_read(lsun_root):
    (lsun_root / "bedroom_train_lmdb" / "lock.mdb").unlink()
    ds = load_dataset("lsun", lsun_root, image_size=8, classes="bedroom")
    assert len(ds) == 5 and ds.uint8_batch([3])[0, 0, 0, 0] == 30
    assert not (lsun_root / "bedroom_train_lmdb" / "lock.mdb").exists()   # and none is made


@pytest.mark.parametrize("damage, expected", [
    ("empty", "empty database"),
    ("no data file", "has no data.mdb"),
    ("not lmdb", "not a readable LMDB database"),
    ("unknown category", "category tower_train not found: no folder tower_train_lmdb"),
    ("bad name", "is not an LSUN category name"),
    ("test split", "no test split"),
])
def test_malformed_databases_are_refused_with_the_reason(lsun_root, damage, expected):
    classes, split = "bedroom", "train"
    if damage == "empty":
        make_db(lsun_root, "church_train", [])
        classes = "bedroom,church"
    elif damage == "no data file":
        (lsun_root / "bedroom_train_lmdb" / "data.mdb").unlink()
    elif damage == "not lmdb":
        (lsun_root / "bedroom_train_lmdb" / "data.mdb").write_bytes(b"\0" * 8192)
    elif damage == "unknown category":
        classes = "tower"
    elif damage == "bad name":
        classes = "../bedroom"
    else:
        split = "test"
    with pytest.raises(DatasetError) as info:
        load_dataset("lsun", lsun_root, image_size=8, classes=classes, split=split)
    assert expected in str(info.value) and "\n" not in str(info.value)
    if damage == "unknown category":
        assert "bedroom_train_lmdb, kitchen_train_lmdb" in str(info.value)


def test_without_the_lmdb_package_the_error_names_the_extra(lsun_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)   # makes `import lmdb` fail
    with pytest.raises(DatasetError, match=r"pip install 'dcgan-cuda\[lsun\]'"):
        load_dataset("lsun", lsun_root, image_size=8)
    assert len(load_dataset("digits", image_size=8, max_images=3)) == 3   # the rest still works


def test_training_reads_lsun_as_pytorch_examples_flags_say(lsun_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(TINY_TRAIN + ["--dataset", "lsun", "--dataroot", str(lsun_root),
                                    "--classes", "bedroom_train,kitchen", "--outf", str(out)]) == 0
    assert "lsun: 7 images 3x16x16" in capsys.readouterr().out
    assert (out / "netG_epoch_0.safetensors").exists() or any(out.glob("netG*"))
    assert train.main(TINY_TRAIN + ["--dataset", "lsun", "--dataroot", str(lsun_root), "--classes", "attic",
                                    "--outf", str(tmp_path / "bad")]) == 2
    assert "category attic_train not found" in capsys.readouterr().err


def test_imagenet_and_lfw_are_folders_with_the_same_crop(tmp_path):
    banded((40, 10), (255, 0, 0), (0, 200, 0), (0, 0, 255)).save(tmp_path / "a.png")
    for name in ("imagenet", "lfw"):
        ds = load_dataset(name, tmp_path, image_size=5)
        assert ds.name == name and ds.names == ["a.png"]
        assert (ds.images[0].reshape(3, -1).T == [0, 200, 0]).all()


def test_a_keep_list_selects_by_name_before_max_images(tmp_path, capsys):
    ds = load_dataset("digits", image_size=8, split="all", keep=["5", "17", "1796", "nope"],
                      warn=print)
    assert ds.names == ["5", "17", "1796"]
    assert "1 of its 4 names are not in this dataset" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="none of them"):
        load_dataset("digits", image_size=8, keep=["x"])
    keep = tmp_path / "keep.txt"
    keep.write_text("# kept by dedup\n" + "\n".join(str(i) for i in range(0, 1797, 3)) + "\n")
    out = tmp_path / "run"
    assert train.main(TINY_TRAIN + ["--keep-list", str(keep), "--outf", str(out)]) == 0
    # 80% of the 599 listed images are in the digits' training split
    line = [s for s in capsys.readouterr().out.splitlines() if "digits:" in s][0]
    n = int(line.split("digits: ")[1].split()[0])
    assert 440 < n < 520
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert train.main(TINY_TRAIN + ["--keep-list", str(empty), "--outf", str(tmp_path / "r2")]) == 2
    assert "names no image" in capsys.readouterr().err
