"""Tests for dcgan_cuda.data: every dataset, with exact pixel values where they are known.

Files are built inside the tests (images with Pillow, IDX and pickle batches by hand), so
nothing is downloaded and the expected values are known by construction.
"""
import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dcgan_cuda import data
from dcgan_cuda.data import (DATASETS, DEFAULT_CHANNELS, Dataset, DatasetError, load_dataset,
                             to_channels)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------- helpers

def save(path, im, fmt=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)
    return path


def solid(mode, size, colour):
    return Image.new(mode, size, colour)


def png_header_only(width, height):
    """A tiny PNG whose header claims width x height pixels (a decompression bomb shape):
    valid signature and IHDR, a few bytes of IDAT, IEND."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def pixels(ds, i):
    """Image i of a dataset as (S, S, C) for easy per-pixel comparison."""
    return ds.images[i].transpose(1, 2, 0)


# --------------------------------------------------------------------------- arguments

def test_interface_constants():
    assert DATASETS == ("digits", "folder", "cifar10", "mnist", "fake", "lsun", "imagenet", "lfw")
    assert DEFAULT_CHANNELS == {"digits": 1, "mnist": 1, "folder": 3, "cifar10": 3, "fake": 3,
                                "lsun": 3, "imagenet": 3, "lfw": 3}
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize("kwargs", [
    dict(name="celeba"), dict(image_size=0), dict(image_size=-8), dict(image_size=3.5),
    dict(image_size=True), dict(image_size="64"), dict(nc=2), dict(nc=4), dict(nc=0),
    dict(split="val"), dict(max_images=0), dict(max_images=-1), dict(max_images=2.5),
])
def test_bad_arguments_raise_dataset_error(kwargs):
    kwargs = {"name": "fake", **kwargs}
    with pytest.raises(DatasetError):
        load_dataset(**kwargs)


def test_image_size_need_not_be_power_of_two():
    assert load_dataset("fake", image_size=24, max_images=3).images.shape == (3, 3, 24, 24)
    assert load_dataset("digits", image_size=np.int64(13)).images.shape[2:] == (13, 13)


# --------------------------------------------------------------------------- Dataset.batch

def test_batch_maps_0_to_minus_1_and_255_to_plus_1():
    images = np.array([0, 127, 128, 255], np.uint8).reshape(1, 1, 2, 2)
    ds = Dataset(images, None, "t")
    b = ds.batch([0])
    assert b.dtype == np.float32 and b.shape == (1, 1, 2, 2) and b.flags.c_contiguous
    # x / 127.5 - 1, to float32 precision (the arithmetic is done in float32)
    np.testing.assert_allclose(b.ravel(), [-1.0, 127 / 127.5 - 1, 128 / 127.5 - 1, 1.0],
                               rtol=0, atol=1e-7)
    assert b.ravel()[0] == -1.0 and b.ravel()[3] == 1.0  # exactly, not approximately


def test_batch_indexing_forms_agree_and_do_not_alias():
    ds = load_dataset("fake", image_size=8)
    np.testing.assert_array_equal(ds.batch(slice(2, 5)), ds.batch([2, 3, 4]))
    np.testing.assert_array_equal(ds.batch(np.array([4, 2])), ds.batch([4, 2]))
    b = ds.batch([0])
    b[:] = 0
    assert ds.images[0].min() != ds.images[0].max()  # the dataset is untouched


# --------------------------------------------------------------------------- digits

def test_digits_splits_partition_all_images():
    tr = load_dataset("digits", image_size=8, split="train")
    te = load_dataset("digits", image_size=8, split="test")
    al = load_dataset("digits", image_size=8, split="all")
    assert (len(tr), len(te), len(al)) == (1437, 360, 1797)
    for ds in (tr, te, al):
        assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (1, 8, 8)
        assert ds.labels.dtype == np.int64 and set(ds.labels.tolist()) == set(range(10))
        assert ds.classes == [str(d) for d in range(10)] and ds.skipped == 0

    # train + test is exactly all, as a multiset of (image, label) rows
    def rows(ds):
        return sorted(x.tobytes() + bytes([y]) for x, y in zip(ds.images, ds.labels))
    assert sorted(rows(tr) + rows(te)) == rows(al)
    # and no row of test appears in train (digits has no exact duplicates across the split)
    assert not set(rows(tr)) & set(rows(te))


def test_digits_split_ignores_seed():
    a = load_dataset("digits", image_size=8, split="test", seed=0)
    b = load_dataset("digits", image_size=8, split="test", seed=123)
    np.testing.assert_array_equal(a.images, b.images)


def test_digits_native_size_values_are_scaled_sklearn_values():
    from sklearn.datasets import load_digits
    raw = load_digits()
    ds = load_dataset("digits", image_size=8, split="all")
    np.testing.assert_array_equal(ds.images[:, 0], np.rint(raw.images * 255 / 16))
    np.testing.assert_array_equal(ds.labels, raw.target)
    assert ds.images.min() == 0 and ds.images.max() == 255


def test_digits_resized_to_64_keeps_content():
    small = load_dataset("digits", image_size=8, split="all")
    big = load_dataset("digits", split="all")
    assert big.images.shape == (1797, 1, 64, 64) and big.images.dtype == np.uint8
    assert big.images.min() == 0 and big.images.max() == 255
    # Upscaling preserves each image's mean brightness (the filter weights sum to 1)...
    diff = big.images.mean(axis=(1, 2, 3)) - small.images.mean(axis=(1, 2, 3))
    assert np.abs(diff).max() < 6
    # ...and bicubic interpolates: at each source pixel's centre (between output pixels
    # 8i+3 and 8i+4) the upscaled image has about the source value.
    b = big.images[:, 0].astype(float)
    at_centres = (b[:, 3::8, 3::8] + b[:, 4::8, 3::8] + b[:, 3::8, 4::8] + b[:, 4::8, 4::8]) / 4
    err = np.abs(at_centres - small.images[:, 0])
    assert err.mean() < 3 and err.max() < 16
    x = big.batch(slice(None))
    assert x.min() == -1.0 and x.max() == 1.0


def test_digits_cold_load_is_fast():
    data._digits_raw.cache_clear()
    data._digits_resized.cache_clear()
    t = time.perf_counter()
    load_dataset("digits", image_size=64, split="all")
    assert time.perf_counter() - t < 5.0  # typically ~0.3 s, most of it reading sklearn's csv


def test_digits_cache_cannot_be_corrupted_by_callers():
    ds = load_dataset("digits", split="all")
    original = ds.images[0].copy()
    ds.images[:] = 7
    np.testing.assert_array_equal(load_dataset("digits", split="all").images[0], original)


def test_digits_nc3_repeats_the_grey_channel():
    g = load_dataset("digits", image_size=16)
    c = load_dataset("digits", image_size=16, nc=3)
    assert c.images.shape == (1437, 3, 16, 16)
    for ch in range(3):
        np.testing.assert_array_equal(c.images[:, ch], g.images[:, 0])


def test_digits_max_images_is_a_seeded_ordered_subset():
    full = load_dataset("digits", image_size=8)
    a = load_dataset("digits", image_size=8, max_images=10, seed=3)
    b = load_dataset("digits", image_size=8, max_images=10, seed=3)
    assert len(a) == 10
    np.testing.assert_array_equal(a.images, b.images)
    rows = [x.tobytes() for x in full.images]
    pos = [rows.index(x.tobytes()) for x in a.images]
    assert pos == sorted(pos)
    assert len(load_dataset("digits", image_size=8, max_images=10**6)) == 1437


# --------------------------------------------------------------------------- fake

def test_fake_is_deterministic_per_seed():
    a = load_dataset("fake", image_size=16, seed=1, split="all")
    b = load_dataset("fake", image_size=16, seed=1, split="all")
    c = load_dataset("fake", image_size=16, seed=2, split="all")
    assert a.images.shape == (1000, 3, 16, 16) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.labels.dtype == np.int64 and a.labels.min() == 0 and a.labels.max() == 9
    assert a.images.min() == 0 and a.images.max() == 255
    tr = load_dataset("fake", image_size=16, seed=1)
    te = load_dataset("fake", image_size=16, seed=1, split="test")
    assert (len(tr), len(te)) == (800, 200)
    assert load_dataset("fake", image_size=16, nc=1).images.shape == (800, 1, 16, 16)


# --------------------------------------------------------------------------- channels

def test_to_channels_matches_pillow_luminance_exactly():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 40, 40), dtype=np.uint8)
    rgb[:, 0, 0], rgb[:, 0, 1] = 255, 0  # the extremes
    grey = to_channels(rgb[None], 1)[0, 0]
    pil = np.asarray(Image.fromarray(rgb.transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(grey, pil)
    np.testing.assert_array_equal(to_channels(grey[None, None], 3)[0],
                                  np.stack([grey] * 3))


# --------------------------------------------------------------------------- folder: modes

S = 16  # most test images are S x S, so no resampling and exact values can be checked


def _good_files(root):
    """Write one image of every mode the loader must handle; return name -> check(pixels)."""
    checks = {}
    exact = np.testing.assert_array_equal

    def approx(expected, tol):
        return lambda p: np.testing.assert_allclose(
            p.astype(int), np.broadcast_to(expected, p.shape), atol=tol)

    save(root / "rgb.png", solid("RGB", (40, 30), (10, 20, 30)))
    checks["rgb.png"] = lambda p: exact(p, np.broadcast_to([10, 20, 30], p.shape))

    save(root / "grey.png", solid("L", (S, S), 77))
    checks["grey.png"] = lambda p: exact(p, np.full(p.shape, 77))

    save(root / "photo.jpg", solid("RGB", (50, 40), (200, 100, 50)), quality=95)
    checks["photo.jpg"] = approx([200, 100, 50], 4)

    pal = Image.new("P", (S, S), 1)
    pal.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
    save(root / "palette.png", pal)
    checks["palette.png"] = lambda p: exact(p, np.broadcast_to([12, 34, 56], p.shape))

    # palette with a transparent entry: left half opaque red (index 0), right half index 1,
    # marked transparent, whose colour (white) must not show through
    pal_t = Image.new("P", (S, S), 0)
    pal_t.putpalette([255, 0, 0, 255, 255, 255] + [0] * 762)
    pal_t.paste(1, (S // 2, 0, S, S))
    save(root / "palette_t.png", pal_t, transparency=1)

    def check_pal_t(p):
        exact(p[:, :S // 2], np.broadcast_to([255, 0, 0], (S, S // 2, 3)))
        exact(p[:, S // 2:], np.zeros((S, S // 2, 3)))
    checks["palette_t.png"] = check_pal_t

    rgba = np.zeros((S, S, 4), np.uint8)
    rgba[:, :S // 2] = [200, 100, 50, 128]  # half transparent: composited over black
    rgba[:, S // 2:] = [255, 255, 255, 0]   # fully transparent white: black
    save(root / "rgba.png", Image.fromarray(rgba, "RGBA"))

    def check_rgba(p):
        # round(c * 128 / 255): 200 -> 100.4 -> 100, 100 -> 50.2 -> 50, 50 -> 25.1 -> 25
        exact(p[:, :S // 2], np.broadcast_to([100, 50, 25], (S, S // 2, 3)))
        exact(p[:, S // 2:], np.zeros((S, S // 2, 3)))
    checks["rgba.png"] = check_rgba

    la = np.zeros((S, S, 2), np.uint8)
    la[:S // 2] = [200, 128]
    la[S // 2:] = [255, 255]
    save(root / "la.png", Image.fromarray(la, "LA"))

    def check_la(p):
        exact(p[:S // 2], np.full((S // 2, S, 3), 100))
        exact(p[S // 2:], np.full((S // 2, S, 3), 255))
    checks["la.png"] = check_la

    # 16-bit grey: k * 257 must become exactly k (convert("L") would clip to 255)
    g16 = (np.arange(S * S, dtype=np.uint16) * 257).reshape(S, S)
    save(root / "grey16.png", Image.fromarray(g16))
    checks["grey16.png"] = lambda p: exact(p, np.repeat(np.arange(S * S).reshape(S, S, 1), 3, 2))

    # 16-bit PGM opens in mode "I"; 32768 -> round(127.5) = 128, 65535 -> 255, 256 -> 1
    pgm = np.array([[0, 256, 32768, 65535]] * 4, np.uint16)
    save(root / "grey16.pgm", Image.fromarray(pgm))
    checks["grey16.pgm"] = None  # 4x4: resized; checked separately below

    bits = (np.indices((S, S)).sum(0) % 2).astype(bool)
    save(root / "onebit.png", Image.fromarray(bits))
    checks["onebit.png"] = lambda p: exact(p[..., 0], np.where(bits, 255, 0))

    save(root / "cmyk.jpg", solid("CMYK", (S, S), (0, 255, 255, 0)), quality=95)
    checks["cmyk.jpg"] = approx([255, 0, 0], 8)

    save(root / "tiny.png", solid("RGB", (1, 1), (1, 2, 3)))
    checks["tiny.png"] = lambda p: exact(p, np.broadcast_to([1, 2, 3], p.shape))

    save(root / "big.jpg", solid("RGB", (3000, 2000), (90, 160, 220)), quality=90)
    checks["big.jpg"] = approx([90, 160, 220], 4)

    save(root / "anim.gif", solid("RGB", (20, 20), (255, 255, 0)))
    checks["anim.gif"] = approx([255, 255, 0], 0)

    save(root / "pic.webp", solid("RGB", (S, S), (0, 128, 255)), lossless=True)
    checks["pic.webp"] = lambda p: exact(p, np.broadcast_to([0, 128, 255], p.shape))

    save(root / "cmyk.tiff", solid("CMYK", (S, S), (0, 0, 0, 0)))
    checks["cmyk.tiff"] = lambda p: exact(p, np.full(p.shape, 255))
    return checks


def _bad_files(root):
    """Write files with image names that cannot be decoded; return their names."""
    bad = []
    rng = np.random.default_rng(5)

    (root / "noise.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    bad.append("noise.png")

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    bad.append("truncated.jpg")

    (root / "empty.jpg").write_bytes(b"")
    bad.append("empty.jpg")

    (root / "letter.png").write_text("Dear user, this is not a picture.\n")
    bad.append("letter.png")

    os.symlink(root / "no-such-target.png", root / "dangling.png")
    bad.append("dangling.png")

    os.mkfifo(root / "pipe.png")  # must be skipped without opening (it would block)
    bad.append("pipe.png")

    (root / "bomb.png").write_bytes(png_header_only(100_000, 100_000))  # Pillow refuses
    (root / "bomb2.png").write_bytes(png_header_only(10_000, 10_000))   # our own limit
    bad += ["bomb.png", "bomb2.png"]

    if not IS_ROOT:  # root reads a mode-000 file anyway
        (root / "locked.png").write_bytes((root / "noise.png").read_bytes())
        os.chmod(root / "locked.png", 0)
        bad.append("locked.png")

    # ignored silently, not counted: other extensions and hidden files
    (root / "notes.txt").write_text("not an image")
    (root / "labels.csv").write_text("a,b\n")
    (root / ".hidden.png").write_bytes(b"junk")
    return bad


def test_folder_loads_every_mode_and_skips_bad_files(tmp_path):
    checks = _good_files(tmp_path)
    bad = _bad_files(tmp_path)
    messages = []
    ds = load_dataset("folder", tmp_path, image_size=S, warn=messages.append)

    names = sorted(checks)
    assert len(ds) == len(names)
    assert ds.skipped == len(bad)
    assert ds.images.shape == (len(names), 3, S, S) and ds.images.dtype == np.uint8
    assert ds.labels is None and ds.classes is None and ds.name == "folder"
    for i, name in enumerate(names):
        if checks[name] is not None:
            try:
                checks[name](pixels(ds, i))
            except AssertionError as e:
                raise AssertionError(f"{name}: {e}") from None

    # one summary line with the count and a few examples
    assert len(messages) == 1
    assert f"skipped {len(bad)}" in messages[0]
    assert any(b in messages[0] for b in bad)


def test_folder_16bit_grey_is_scaled_not_clipped(tmp_path):
    # values at native size: 0, 256, 32768, 65535 -> 0, 1, 128, 255
    pgm = np.array([[0, 256, 32768, 65535]] * 4, np.uint16)
    save(tmp_path / "g.pgm", Image.fromarray(pgm))
    assert Image.open(tmp_path / "g.pgm").mode in ("I", "I;16", "I;16B")
    ds = load_dataset("folder", tmp_path, image_size=4, nc=1)
    np.testing.assert_array_equal(ds.images[0, 0], [[0, 1, 128, 255]] * 4)


@pytest.mark.parametrize("mode,raw,expected", [
    ("I;16", np.array([[0, 257, 32768, 65535]], "<u2"), [[0, 1, 128, 255]]),
    ("I;16B", np.array([[0, 257, 32768, 65535]], ">u2"), [[0, 1, 128, 255]]),
    ("I", np.array([[-5, 514, 65535, 70000]], "<i4"), [[0, 2, 255, 255]]),
    ("F", np.array([[-1.0, 0.5, 1.0, np.nan]], "<f4"), [[0, 128, 255, 0]]),
])
def test_high_bit_depth_modes_to_8bit(mode, raw, expected):
    im = Image.frombytes(mode, (raw.shape[1], raw.shape[0]), raw.tobytes())
    out = data._to_8bit(im)
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), expected)


def test_folder_unreadable_file_as_non_root(tmp_path):
    if IS_ROOT:
        pytest.skip("root can read a file with mode 000")
    save(tmp_path / "ok.png", solid("RGB", (4, 4), (1, 2, 3)))
    save(tmp_path / "locked.png", solid("RGB", (4, 4), (1, 2, 3)))
    os.chmod(tmp_path / "locked.png", 0)
    messages = []
    ds = load_dataset("folder", tmp_path, image_size=4, warn=messages.append)
    assert (len(ds), ds.skipped) == (1, 1)
    assert "locked.png" in messages[0] and "permission" in messages[0].lower()


def test_folder_pixel_limit(tmp_path, monkeypatch):
    save(tmp_path / "small.png", solid("L", (10, 10), 5))
    save(tmp_path / "large.png", solid("L", (200, 100), 5))
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 10_000)
    messages = []
    ds = load_dataset("folder", tmp_path, image_size=8, warn=messages.append)
    assert (len(ds), ds.skipped) == (1, 1)
    assert "large.png" in messages[0] and "200x100" in messages[0]


# Decodes one crafted PNG (a few KB declaring 2048 x 2048 pixels) in a fresh process and
# prints the growth of its peak resident memory (Linux's VmHWM, reset just before) and the
# bound data._decode_bytes states for it.
_PEAK_MEMORY_OF_A_DECODE = """
import json, struct, sys, zlib
from dcgan_cuda import data
path, mode, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
colour_type, bands = {"RGBA": (6, 4), "L": (0, 1)}[mode]
def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
packer = zlib.compressobj(9)
row = bytes([0]) + bytes([200]) * (side * bands)
body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
with open(path, "wb") as f:
    f.write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")   # resets VmHWM to the present resident size
before = status("VmRSS:")
image = data._decode_file(path, 64, 3)
assert image.shape == (3, 64, 64) and (image == 200 if mode == "L" else image == 157).all()
print(json.dumps({"peak": status("VmHWM:") - before, "bound": data._decode_bytes(mode, side * side)}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="measures memory through Linux's /proc")
@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_decoding_a_huge_declared_image_takes_bounded_memory(tmp_path, mode):
    """A PNG of a few KB can declare millions of pixels. Decoding it takes at most what
    _decode_bytes says: the pixels and one copy, 8 bytes a pixel with alpha (the RGBA
    composite used to take 46) and 2 in grey, plus DECODE_OVERHEAD."""
    side = 2048
    proc = subprocess.run([sys.executable, "-c", _PEAK_MEMORY_OF_A_DECODE, str(tmp_path / "big.png"), mode,
                           str(side)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout)
    per_pixel = 8 if mode == "RGBA" else 2
    assert measured["bound"] == per_pixel * side * side + data.DECODE_OVERHEAD
    assert 0 < measured["peak"] <= measured["bound"]


def test_decoding_threads_share_a_memory_budget(tmp_path, monkeypatch):
    """With a budget that fits one image's decode, no two decodes hold memory at once,
    however many threads there are; every image still loads."""
    rng = np.random.default_rng(4)
    for k in range(6):
        save(tmp_path / f"{k}.png", Image.fromarray(rng.integers(0, 256, (96, 96, 4), dtype=np.uint8), "RGBA"))
    one = data._decode_bytes("RGBA", 96 * 96)
    budgets = []

    class Recorded(data._MemoryBudget):
        def __init__(self, limit):
            super().__init__(limit)
            self.shares = []
            budgets.append(self)

        def acquire(self, nbytes):
            share = super().acquire(nbytes)
            self.shares.append(share)
            return share
    monkeypatch.setattr(data, "_MemoryBudget", Recorded)
    monkeypatch.setattr(data, "DECODE_MEMORY_BUDGET", one * 3 // 2)
    monkeypatch.setattr(data, "_workers", lambda: 3)
    ds = load_dataset("folder", tmp_path, image_size=8)
    (budget,) = budgets
    assert len(ds) == 6 and budget.shares == [one] * 6
    assert budget.peak == one and budget.in_use == 0


def test_folder_nc1_is_luminance(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (S, S, 3), dtype=np.uint8)
    save(tmp_path / "c.png", Image.fromarray(rgb))
    ds = load_dataset("folder", tmp_path, image_size=S, nc=1)
    assert ds.images.shape == (1, 1, S, S)
    np.testing.assert_array_equal(ds.images[0, 0],
                                  np.asarray(Image.fromarray(rgb).convert("L")))


# --------------------------------------------------------------------------- folder: geometry

def _three_panels(horizontal, side=100, centre=None):
    """Red | centre | blue panels of side x side (stacked vertically if not horizontal)."""
    red = np.broadcast_to(np.array([255, 0, 0], np.uint8), (side, side, 3))
    blue = np.broadcast_to(np.array([0, 0, 255], np.uint8), (side, side, 3))
    if centre is None:
        centre = np.broadcast_to(np.array([0, 255, 0], np.uint8), (side, side, 3))
    return np.concatenate([red, centre, blue], axis=1 if horizontal else 0)


@pytest.mark.parametrize("horizontal", [True, False])
def test_centre_crop_at_native_scale_is_exact(tmp_path, horizontal):
    centre = np.random.default_rng(2).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    save(tmp_path / "wide.png", Image.fromarray(_three_panels(horizontal, centre=centre)))
    ds = load_dataset("folder", tmp_path, image_size=100)
    np.testing.assert_array_equal(pixels(ds, 0), centre)


@pytest.mark.parametrize("horizontal", [True, False])
def test_centre_crop_then_downscale(tmp_path, horizontal):
    save(tmp_path / "x.png", Image.fromarray(_three_panels(horizontal)))
    p = pixels(load_dataset("folder", tmp_path, image_size=20), 0)
    # Shrinking 5x, the bicubic filter reaches 10 source pixels: output columns (or rows)
    # 2..17 see only the green centre; the outer two may mix in a little red / blue, as
    # Resize-then-CenterCrop would.
    inner = p[:, 2:18] if horizontal else p[2:18]
    np.testing.assert_array_equal(inner, np.broadcast_to([0, 255, 0], inner.shape))
    assert p[..., 1].min() > 200 and p[..., 0].mean() < 30 and p[..., 2].mean() < 30


def test_upscale_of_small_non_square_image(tmp_path):
    im = np.zeros((3, 5), np.uint8)
    im[:, 1:4] = 200  # the central 3x3 square is uniform
    save(tmp_path / "s.png", Image.fromarray(im))
    p = load_dataset("folder", tmp_path, image_size=12, nc=1).images[0, 0]
    assert p.shape == (12, 12) and p[:, 3:9].min() >= 190


# --------------------------------------------------------------------------- folder: labels

def test_subfolders_become_sorted_class_labels(tmp_path):
    save(tmp_path / "dog" / "c.png", solid("L", (4, 4), 30))
    save(tmp_path / "cat" / "a.png", solid("L", (4, 4), 10))
    save(tmp_path / "cat" / "deep" / "b.png", solid("L", (4, 4), 20))
    save(tmp_path / "bird" / ".ipynb_checkpoints" / "x.png", solid("L", (4, 4), 99))
    (tmp_path / "empty_class").mkdir()
    ds = load_dataset("folder", tmp_path, image_size=4, nc=1)
    assert ds.classes == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1] and ds.labels.dtype == np.int64
    assert ds.images[:, 0, 0, 0].tolist() == [10, 20, 30]  # cat/a, cat/deep/b, dog/c

    # images next to the sub-folders form the class "." placed first
    save(tmp_path / "z.png", solid("L", (4, 4), 40))
    ds = load_dataset("folder", tmp_path, image_size=4, nc=1)
    assert ds.classes == [".", "cat", "dog"]
    assert ds.labels.tolist() == [1, 1, 2, 0]
    assert ds.images[:, 0, 0, 0].tolist() == [10, 20, 30, 40]


def test_directory_named_like_an_image_is_a_folder(tmp_path):
    save(tmp_path / "a.png", solid("L", (4, 4), 1))
    save(tmp_path / "weird.png" / "b.png", solid("L", (4, 4), 2))
    messages = []
    ds = load_dataset("folder", tmp_path, image_size=4, warn=messages.append)
    assert (len(ds), ds.skipped, messages) == (2, 0, [])
    assert ds.classes == [".", "weird.png"] and ds.labels.tolist() == [0, 1]


def test_symlink_loop_terminates(tmp_path):
    save(tmp_path / "d" / "a.png", solid("L", (4, 4), 1))
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    assert len(load_dataset("folder", tmp_path, image_size=4)) == 1


def test_folder_splits_and_max_images(tmp_path):
    for k in range(6):
        save(tmp_path / f"{k}.png", solid("L", (4, 4), 10 * k))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    full = load_dataset("folder", tmp_path, image_size=4, nc=1, warn=lambda m: None)
    assert len(full) == 6 and full.skipped == 1
    np.testing.assert_array_equal(
        load_dataset("folder", tmp_path, image_size=4, split="all", warn=lambda m: None).images,
        load_dataset("folder", tmp_path, image_size=4, split="train", warn=lambda m: None).images)
    with pytest.raises(DatasetError, match="no test split"):
        load_dataset("folder", tmp_path, split="test")

    subsets = set()
    for seed in range(8):
        a = load_dataset("folder", tmp_path, image_size=4, nc=1, max_images=3, seed=seed,
                         warn=lambda m: None)
        b = load_dataset("folder", tmp_path, image_size=4, nc=1, max_images=3, seed=seed,
                         warn=lambda m: None)
        assert len(a) == 3
        np.testing.assert_array_equal(a.images, b.images)
        values = a.images[:, 0, 0, 0].tolist()
        assert values == sorted(values) and set(values) <= {0, 10, 20, 30, 40, 50}
        subsets.add(tuple(values))
    assert len(subsets) > 1


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="--dataroot"):
        load_dataset("folder", None)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("folder", tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is a file"):
        load_dataset("folder", tmp_path / "file.png")

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"no image files .*found 1 other"):
        load_dataset("folder", empty)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"junk")
    (broken / "b.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"found 2 image files and all 2 .*unreadable"):
        load_dataset("folder", broken)


def test_folder_is_deterministic(tmp_path):
    rng = np.random.default_rng(3)
    for k in range(40):
        save(tmp_path / f"d{k % 3}" / f"{k}.png",
             Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)))
    a = load_dataset("folder", tmp_path, image_size=8)
    b = load_dataset("folder", tmp_path, image_size=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


# --------------------------------------------------------------------------- folder: fuzz

_FORMATS = {  # format -> (extension, modes Pillow can write in it)
    "PNG": (".png", ["RGB", "L", "RGBA", "LA", "P", "1", "I;16"]),
    "JPEG": (".jpg", ["RGB", "L", "CMYK"]),
    "BMP": (".bmp", ["RGB", "L", "P", "1"]),
    "GIF": (".gif", ["P", "L", "RGB"]),
    "TIFF": (".tif", ["RGB", "L", "RGBA", "LA", "CMYK", "I;16", "F"]),
    "WEBP": (".webp", ["RGB", "RGBA"]),
}


@st.composite
def valid_image_file(draw):
    fmt = draw(st.sampled_from(sorted(_FORMATS)))
    ext, modes = _FORMATS[fmt]
    mode = draw(st.sampled_from(modes))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "F":
        im = Image.fromarray(rng.random((h, w), dtype=np.float32))
    else:
        channels = len(Image.new(mode, (1, 1)).getbands())
        arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        im = Image.fromarray(arr[..., 0] if channels == 1 else arr,
                             "L" if mode in ("L", "1", "P") else mode).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return ext, buf.getvalue()


@st.composite
def folder_contents(draw):
    files = draw(st.lists(st.one_of(
        st.tuples(st.just("valid"), valid_image_file()),
        st.tuples(st.just("junk"), st.tuples(st.sampled_from([".png", ".jpg", ".gif", ".tif"]),
                                             st.binary(max_size=64))),
        st.tuples(st.just("cut"), valid_image_file().flatmap(
            lambda f: st.tuples(st.just(f[0]), st.integers(0, max(0, len(f[1]) - 1)).map(
                lambda n: f[1][:n])))),
    ), min_size=1, max_size=8))
    return files


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(folder_contents())
def test_folder_loader_never_raises_unexpectedly(files):
    with tempfile.TemporaryDirectory() as root:
        for k, (kind, (ext, blob)) in enumerate(files):
            with open(os.path.join(root, f"{k:02d}_{kind}{ext}"), "wb") as f:
                f.write(blob)
        n_valid = sum(kind == "valid" for kind, _ in files)
        messages = []
        try:
            ds = load_dataset("folder", root, image_size=8, warn=messages.append)
        except DatasetError:
            assert n_valid == 0
            return
        assert len(ds) + ds.skipped == len(files)
        assert len(ds) >= n_valid
        assert ds.images.shape == (len(ds), 3, 8, 8) and ds.images.dtype == np.uint8
        assert len(messages) == (1 if ds.skipped else 0)


# --------------------------------------------------------------------------- mnist

def idx_bytes(array, magic=None):
    array = np.asarray(array, np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    return (struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.tobytes())


def write_mnist(folder, n_train=12, n_test=5, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(idx_bytes(a)))
        else:
            (folder / name).write_bytes(idx_bytes(a))
    return arrays


def test_mnist_plain_files_exact(tmp_path):
    arrays = write_mnist(tmp_path)
    tr = load_dataset("mnist", tmp_path, image_size=28)
    te = load_dataset("mnist", tmp_path, image_size=28, split="test")
    al = load_dataset("mnist", tmp_path, image_size=28, split="all")
    assert tr.images.shape == (12, 1, 28, 28) and (len(te), len(al)) == (5, 17)
    np.testing.assert_array_equal(tr.images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(tr.labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(te.images[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert tr.labels.dtype == np.int64 and tr.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(al.images, np.concatenate([tr.images, te.images]))
    rgb = load_dataset("mnist", tmp_path, image_size=28, nc=3)
    np.testing.assert_array_equal(rgb.images, np.repeat(tr.images, 3, axis=1))
    big = load_dataset("mnist", tmp_path, image_size=32)
    assert big.images.shape == (12, 1, 32, 32)
    sub = load_dataset("mnist", tmp_path, image_size=28, max_images=4, seed=1)
    rows = [x.tobytes() for x in tr.images]
    assert len(sub) == 4 and all(x.tobytes() in rows for x in sub.images)


@pytest.mark.parametrize("layout", ["raw", "MNIST/raw"])
def test_mnist_gz_in_torchvision_layout(tmp_path, layout):
    arrays = write_mnist(tmp_path / layout, gz=True)
    ds = load_dataset("mnist", tmp_path, image_size=28, split="all")
    np.testing.assert_array_equal(ds.images[:12, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.labels[12:], arrays["t10k-labels-idx1-ubyte"])


def test_mnist_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="--dataroot"):
        load_dataset("mnist", None)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", tmp_path, split="all")
    msg = str(e.value)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "http"):
        assert name in msg
    write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    assert len(load_dataset("mnist", tmp_path)) == 12  # train needs only train files
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as e:
        load_dataset("mnist", tmp_path, split="test")
    assert "t10k-images" not in str(e.value)


def test_mnist_corrupt_files(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()

    images.write_bytes(struct.pack(">I", 0x0801) + good[4:])  # labels' magic number
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.*not an IDX"):
        load_dataset("mnist", tmp_path)

    images.write_bytes(good[:-100])  # truncated
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)

    images.write_bytes(b"")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)

    images.write_bytes(good)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11)))
    with pytest.raises(DatasetError, match="12 images but .* 11 labels"):
        load_dataset("mnist", tmp_path)

    os.remove(tmp_path / "train-labels-idx1-ubyte")
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", tmp_path)


# --------------------------------------------------------------------------- cifar10

CIFAR_NAMES = [f"class{k}" for k in range(10)]


def cifar_batches(n_per_batch=4, n_test=3, seed=0):
    """name -> pickle bytes, shaped like the official Python-2 files (bytes keys, proto 2)."""
    rng = np.random.default_rng(seed)
    out, arrays = {}, {}
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [
            ("test_batch", n_test)]:
        d = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        arrays[name] = (d, y)
        out[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": y, b"data": d,
                                  b"filenames": [b"x.png"] * n}, protocol=2)
    out["batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in CIFAR_NAMES], b"num_vis": 3072}, protocol=2)
    return out, arrays


def write_cifar_dir(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (folder / name).write_bytes(blob)


def write_cifar_tar(path, files, skip=()):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            if name in skip:
                continue
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar10_from_folder_exact(tmp_path):
    files, arrays = cifar_batches()
    write_cifar_dir(tmp_path / "cifar-10-batches-py", files)
    tr = load_dataset("cifar10", tmp_path, image_size=32)
    te = load_dataset("cifar10", tmp_path, image_size=32, split="test")
    al = load_dataset("cifar10", tmp_path, image_size=32, split="all")
    assert tr.images.shape == (20, 3, 32, 32) and (len(te), len(al)) == (3, 23)
    d, y = arrays["data_batch_2"]
    # row layout: 1024 red, 1024 green, 1024 blue, each 32x32 row-major
    np.testing.assert_array_equal(tr.images[4, 1, 3, 5], d[0, 1024 + 3 * 32 + 5])
    np.testing.assert_array_equal(tr.images[4:8], d.reshape(4, 3, 32, 32))
    assert tr.labels[4:8].tolist() == y and tr.labels.dtype == np.int64
    np.testing.assert_array_equal(te.images, arrays["test_batch"][0].reshape(3, 3, 32, 32))
    assert tr.classes == CIFAR_NAMES
    grey = load_dataset("cifar10", tmp_path, image_size=32, nc=1)
    hwc = tr.images[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(grey.images[0, 0],
                                  np.asarray(Image.fromarray(hwc).convert("L")))
    assert load_dataset("cifar10", tmp_path).images.shape == (20, 3, 64, 64)


def test_cifar10_flat_folder_and_archive_agree(tmp_path):
    files, _ = cifar_batches()
    write_cifar_dir(tmp_path / "flat", files)
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", files)
    a = load_dataset("cifar10", tmp_path / "flat", image_size=32, split="all")
    b = load_dataset("cifar10", tmp_path, image_size=32, split="all")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.classes == CIFAR_NAMES
    assert not (tmp_path / "cifar-10-batches-py").exists()  # read in place, not extracted


def test_cifar10_missing_and_damaged(tmp_path):
    with pytest.raises(DatasetError, match="--dataroot"):
        load_dataset("cifar10", None)
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    for part in ("data_batch_1", "data_batch_5", "cifar-10-python.tar.gz", str(tmp_path),
                 "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"):
        assert part in msg

    files, _ = cifar_batches()
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", files, skip=("data_batch_3",))
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)
    assert len(load_dataset("cifar10", tmp_path, split="test")) == 3

    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset("cifar10", tmp_path)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    files, _ = cifar_batches()
    marker = tmp_path / "pwned"
    files["data_batch_1"] = pickle.dumps({b"data": _Evil(str(marker)), b"labels": []},
                                         protocol=2)
    write_cifar_dir(tmp_path, files)
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()

    files["data_batch_1"] = pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                          b"labels": [0, 1]}, protocol=2)
    write_cifar_dir(tmp_path, files)
    with pytest.raises(DatasetError, match="not a CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_accepts_modern_pickles(tmp_path):
    # a batch re-pickled by Python 3 with protocol 5 and str keys still loads
    files, arrays = cifar_batches()
    d, y = arrays["data_batch_1"]
    files["data_batch_1"] = pickle.dumps({"data": d, "labels": y}, protocol=5)
    write_cifar_dir(tmp_path, files)
    ds = load_dataset("cifar10", tmp_path, image_size=32)
    np.testing.assert_array_equal(ds.images[:4], d.reshape(4, 3, 32, 32))
