"""Datasets for DCGAN training: images in, uint8 arrays out.

Every dataset but LSUN is loaded whole into memory as one ``(N, C, S, S)`` uint8 array
(``S`` = ``image_size``), already cropped and resized, so a training step only has to index it and
scale it to float32 in [-1, 1] (:meth:`Dataset.batch`). Keeping uint8 rather than float32
takes 4x less memory, and decoding/resizing once up front keeps image codecs out of the
training loop.

Datasets (``load_dataset(name, ...)``):

``digits``   scikit-learn's bundled UCI hand-written digits (1797 images of 8x8, 10 classes).
             Needs no files and no network, so it is the default: the project runs anywhere.
``folder``   every image file under ``dataroot`` (recursively), like torchvision's
             ImageFolder; sub-folders become class labels.
``cifar10``  the official "python version" pickle batches, or their .tar.gz archive.
``mnist``    the IDX files (plain or .gz), in the layouts people usually have them in.
``fake``     1000 random images, for smoke tests (like torchvision's FakeData).
``imagenet``, ``lfw``  folders of images, read exactly like ``folder`` (pytorch/examples
             reads all three with ImageFolder and the same resize and crop).
``lsun``     the LSUN scene databases as distributed: one LMDB database per category and
             split (``bedroom_train_lmdb/``), whose values are encoded images, chosen with
             ``classes`` as pytorch/examples' ``--classes``. Read with the ``lmdb`` package
             (the ``lsun`` extra). This one is streamed, not loaded: see :class:`LmdbDataset`.

Geometry follows pytorch/examples' dcgan (``Resize(S)`` then ``CenterCrop(S)``): the
central square of the image is scaled to ``S x S``. We do it as one Pillow call, scaling the
central square directly (``resize(box=...)``); that is the same geometry, but the crop
stays exactly centred instead of being rounded to whole pixels, and we never build the
intermediate resized image.

Resampling filter: bicubic everywhere. For the 8x upscale of the 8x8 digits, bilinear
leaves visible diamond-shaped artefacts along the source pixel grid and Lanczos rings
around strokes; bicubic gives smooth strokes with only a slight overshoot, which the uint8
result clips. For downscaling, Pillow widens the filter to the scale factor (it
antialiases), so bicubic is also a good downscaler.

Only :class:`DatasetError` leaves this module for a problem with the data or the
arguments; its message says what is wrong and what to do.
"""
from __future__ import annotations

import collections
import concurrent.futures
import gzip
import io
import os
import pickle
import posixpath
import re
import stat
import struct
import tarfile
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from . import faults

__all__ = [
    "DATASETS", "DEFAULT_CHANNELS", "FOLDER_DATASETS", "SPLITS", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS",
    "DatasetError", "Dataset", "LmdbDataset", "load_dataset", "read_keep_list", "to_channels",
]

DATASETS = ("digits", "folder", "cifar10", "mnist", "fake", "lsun", "imagenet", "lfw")
DEFAULT_CHANNELS = {"digits": 1, "mnist": 1, "folder": 3, "cifar10": 3, "fake": 3, "lsun": 3,
                    "imagenet": 3, "lfw": 3}
# Datasets that are folders of image files, read by the one folder loader.
FOLDER_DATASETS = ("folder", "imagenet", "lfw")
SPLITS = ("train", "test", "all")

# File name endings the folder loader tries to decode (compared in lower case). Other files
# (notes, CSVs, archives) are ignored without a word: they are not meant as images.
IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpe", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm",
    ".tif", ".tiff", ".webp",
)

# The largest image (width * height, from the file header) the folder loader decodes.
# A small file can declare an enormous image (a "decompression bomb") and exhaust memory
# when decoded. Pillow's own guard only warns up to 89 M pixels and fails above 179 M; we
# reject earlier, at 2**26 = 67 M pixels (8192 x 8192; a 48-megapixel photo still fits),
# and skip the file like any other unreadable one instead of aborting the whole load.
MAX_IMAGE_PIXELS = 1 << 26

# Memory for decoding. An image is resampled to the target size in the mode it was decoded
# in (colour over alpha premultiplied first, so averaging then compositing over black is
# compositing then averaging), and converted to 8 bits only then: at full size a file
# costs its decoded pixels plus one copy, at most 4 + 4 bytes a pixel (Pillow keeps RGB in
# 4 bytes) and 1 + 1 for grey, which _decode_bytes states. The worker threads together
# hold at most DECODE_MEMORY_BUDGET: enough for the largest image MAX_IMAGE_PIXELS lets
# through (an 8192 x 8192 RGBA PNG: 512 MiB), which then decodes alone, while ordinary
# photos (decoded at 1/2 to 1/8 scale by JPEG's draft mode) go 8 at a time. A decode also
# holds DECODE_OVERHEAD of the decoder's buffers, a band of rows and the resampled image.
DECODE_OVERHEAD = 4 << 20
DECODE_MEMORY_BUDGET = 8 * MAX_IMAGE_PIXELS + DECODE_OVERHEAD
# Decodes queued or running at once, per worker thread: enough to keep the threads busy,
# few enough that a Ctrl-C (or having enough images, with max_images) drops the rest at once.
DECODES_IN_FLIGHT = 2

# Digits (and fake) train/test split: a fixed permutation, independent of the training seed, so the
# held-out images stay held out whatever seed a run uses. 1511 is the arXiv number of the
# DCGAN paper (1511.06434), an arbitrary but memorable constant.
_SPLIT_SEED = 1511
_TRAIN_FRACTION = 0.8
_FAKE_COUNT = 1000

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]

_MNIST_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_MNIST_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror) "
               "or http://yann.lecun.com/exdb/mnist/")

# Pillow >= 9.1 names filters in Image.Resampling; older versions only as Image.BICUBIC.
_BICUBIC = getattr(Image, "Resampling", Image).BICUBIC


class DatasetError(ValueError):
    """A dataset cannot be loaded as asked; the message says why and what to do.

    Subclasses ValueError so callers that validate arguments generically still catch it;
    the training CLI prints the message without a traceback.
    """


@dataclass
class Dataset:
    """A whole dataset in memory, ready for training.

    ``images`` is ``(N, C, S, S)`` uint8, already cropped and resized; ``labels`` is ``(N,)``
    int64 class indices into ``classes``, or None when the dataset has no labels; ``skipped``
    counts files that could not be read (folder dataset only). ``names`` says which image
    of the source each one is, in words that do not depend on ``max_images`` or the seed:
    a folder image's path relative to ``dataroot``, otherwise its index in the source's
    split as a decimal string. A keep list (``load_dataset(keep=...)``) holds these names.
    """

    images: np.ndarray
    labels: np.ndarray | None
    name: str
    classes: list[str] | None = None
    skipped: int = 0
    names: list[str] | None = None

    def __post_init__(self):
        # Cheap checks that catch a loader bug here rather than deep inside training.
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise TypeError(f"images must be (N, C, S, S) uint8, got {self.images.dtype} "
                            f"{self.images.shape}")
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} does not match "
                             f"{len(self.images)} images")
        if self.names is not None and len(self.names) != len(self.images):
            raise ValueError(f"{len(self.names)} names for {len(self.images)} images")

    def name_of(self, i: int) -> str:
        """The source's name of image ``i`` (see the class docstring)."""
        return str(i) if self.names is None else self.names[i]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    def batch(self, indices) -> np.ndarray:
        """The images at ``indices`` (a slice, or a list/array of ints) as a float32
        ``(B, C, S, S)`` C-contiguous batch scaled to [-1, 1] by ``x / 127.5 - 1``: the range
        of the generator's tanh output. 0 maps to exactly -1 and 255 to exactly +1
        (127.5 is exact in binary and 255 / 127.5 rounds to 2.0).
        """
        return _to_unit_range(self.images[indices])


def _to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 images as a float32 C-contiguous array in [-1, 1] (see Dataset.batch)."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return x


def load_dataset(name: str, dataroot=None, image_size: int = 64, nc: int | None = None,
                 split: str = "train", max_images: int | None = None, seed: int = 0,
                 warn: Callable[[str], object] = print, classes: str | None = None,
                 keep: Sequence[str] | None = None) -> Dataset | LmdbDataset:
    """Load dataset ``name`` as a :class:`Dataset` of ``image_size`` x ``image_size`` images.

    nc          channels wanted: None for the dataset's default (``DEFAULT_CHANNELS``), 1
                (colour images become luminance, ITU-R 601-2 as in Pillow's ``convert("L")``)
                or 3 (grey images repeated into R, G and B).
    split       "train", "test" or "all". digits and fake: a fixed 80/20 split; cifar10 and
                mnist: their official train and test files; folder: "train" and "all" are
                every image, "test" is an error (a folder has no held-out part: put test
                images in a folder of their own and load it as split "all").
    max_images  keep at most this many images, a subset drawn with ``seed`` (kept in dataset
                order), chosen before decoding and resizing so smoke tests stay fast.
    seed        seeds the ``max_images`` subset and the fake images; never the digits split.
    warn        called once with a summary line when some files had to be skipped.
    classes     lsun only: comma-separated categories as pytorch/examples' ``--classes``
                ("bedroom" or "bedroom_train"; default "bedroom"); see _lsun_databases.
    keep        names of the images to use (``Dataset.names``, as a keep list written by
                ``python -m dcgan_cuda.dedup --write-keep`` holds them), applied before
                ``max_images``; None keeps every image.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    # bool is an int subclass, but image_size=True is surely a mistake.
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise DatasetError(f"image_size must be a positive integer, got {image_size!r}")
    image_size = int(image_size)
    if nc is None:
        nc = DEFAULT_CHANNELS[name]
    if isinstance(nc, bool) or nc not in (1, 3):
        raise DatasetError(f"nc (number of channels) must be 1 (grey) or 3 (RGB), got {nc!r}")
    nc = int(nc)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if max_images is not None and (isinstance(max_images, bool)
                                   or not isinstance(max_images, (int, np.integer))
                                   or max_images < 1):
        raise DatasetError(f"max_images must be a positive integer or None, got {max_images!r}")

    if classes is not None and name != "lsun":
        raise DatasetError(f"classes chooses LSUN categories: it needs the lsun dataset, not {name}")
    keeper = _Keeper(keep, warn)

    if name == "digits":
        dataset = _load_digits(image_size, nc, split, max_images, seed, keeper)
    elif name == "fake":
        dataset = _load_fake(image_size, nc, split, max_images, seed, keeper)
    elif name in FOLDER_DATASETS:
        dataset = _load_folder(dataroot, image_size, nc, split, max_images, seed, warn, keeper, name)
    elif name == "cifar10":
        dataset = _load_cifar10(dataroot, image_size, nc, split, max_images, seed, keeper)
    elif name == "lsun":
        dataset = _load_lsun(dataroot, classes, image_size, nc, split, max_images, seed, warn, keeper)
    else:
        dataset = _load_mnist(dataroot, image_size, nc, split, max_images, seed, keeper)
    if len(dataset) == 0:   # well-formed files can hold no image: nothing to train or compare on
        raise DatasetError(f"the {name} dataset in {dataroot} holds no images (split {split}); "
                           "its files are empty")
    return dataset


# --------------------------------------------------------------------------- array helpers

def to_channels(images: np.ndarray, nc: int) -> np.ndarray:
    """Convert uint8 ``(N, C, H, W)`` images with C in {1, 3} to ``nc`` channels.

    3 -> 1 is luminance L = (299 R + 587 G + 114 B) / 1000 in the same 16-bit fixed point
    (with rounding) as Pillow's ``convert("L")``, so an array dataset and a folder of the
    same pictures give the same grey values. 1 -> 3 repeats the channel.
    """
    c = images.shape[1]
    if c == nc:
        return images
    if c == 1 and nc == 3:
        return np.repeat(images, 3, axis=1)
    if c == 3 and nc == 1:
        rgb = images.astype(np.uint32)
        lum = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
        return lum.astype(np.uint8)[:, None]
    raise ValueError(f"cannot convert {c} channels to {nc}")


def _resize_one(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 (C, H, W) image -> (C, size, size): central square, bicubic."""
    c, h, w = image.shape
    pil = Image.fromarray(image[0] if c == 1 else image.transpose(1, 2, 0))
    out = np.asarray(_square_resize(pil, size))
    return out[None] if c == 1 else out.transpose(2, 0, 1)


def _resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``(N, C, H, W)`` images (C in {1, 3}) to ``(N, C, size, size)``.

    Skipped when the images already have that size. Otherwise one Pillow call per image,
    spread over threads: Pillow releases the GIL while it resamples, so the resampling runs
    in parallel, though the per-image Python overhead does not (measured on 2 cores: 1.2x
    faster than one thread at 64x64, 1.4x at 128x128; CIFAR-10's 60000 images to 64x64 take
    about 4 s).
    """
    n, c, h, w = images.shape
    if h == w == size:
        return images
    out = np.empty((n, c, size, size), np.uint8)

    def work(lo_hi):
        for i in range(*lo_hi):
            out[i] = _resize_one(images[i], size)

    _run_chunks(work, n)
    return out


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _run_chunks(work: Callable[[tuple[int, int]], None], n: int) -> None:
    """Call ``work((lo, hi))`` on contiguous chunks of range(n), in a thread pool."""
    if n == 0:
        return
    chunks = min(n, _workers() * 4)
    bounds = np.linspace(0, n, chunks + 1).astype(int)
    ranges = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if len(ranges) == 1:
        work(ranges[0])
        return
    with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
        for f in [pool.submit(work, r) for r in ranges]:
            f.result()  # re-raises a worker's exception here


def read_keep_list(path) -> list[str]:
    """The image names in a keep list: one per line, as ``dedup --write-keep`` writes them;
    blank lines and lines starting with "#" are comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read the keep list {path}: "
                           f"{getattr(e, 'strerror', None) or e}") from None
    names = [line for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise DatasetError(f"the keep list {path} names no image (one name a line, as "
                           "python -m dcgan_cuda.dedup --write-keep writes them)")
    return names


class _Keeper:
    """Applies a keep list to a loader's candidate images, by name, before max_images."""

    def __init__(self, keep: Sequence[str] | None, warn: Callable[[str], object]):
        self.keep = None if keep is None else set(keep)
        self.warn = warn

    def indices(self, names: Sequence[str]) -> np.ndarray:
        """Positions in ``names`` (the candidates, in dataset order) that the list keeps."""
        if self.keep is None:
            return np.arange(len(names))
        kept = np.array([i for i, n in enumerate(names) if n in self.keep], dtype=np.int64)
        if len(kept) == 0:
            raise DatasetError(f"the keep list names {len(self.keep)} images and none of them "
                               "is in this dataset: it was written for another dataset or split")
        if len(kept) < len(self.keep):
            self.warn(f"keep list: {len(self.keep) - len(kept)} of its {len(self.keep)} names "
                      "are not in this dataset; using the other "
                      f"{len(kept)}")
        return kept


def _subset(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """Indices of the images to keep: all of them, or ``max_images`` drawn with ``seed`` and
    sorted, so a subset keeps the dataset's order (and class mix, on average)."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))


def _fixed_split(n: int, split: str, split_seed: int) -> np.ndarray:
    """Indices of ``split`` under a fixed permutation of range(n): the first 80% "train",
    the rest "test", "all" everything. Each part is sorted into dataset order."""
    if split == "all":
        return np.arange(n)
    perm = np.random.default_rng(split_seed).permutation(n)
    n_train = int(_TRAIN_FRACTION * n)
    return np.sort(perm[:n_train] if split == "train" else perm[n_train:])


# --------------------------------------------------------------------------- digits / fake

@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (1797, 8, 8) in 0..255 and int64 labels."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    digits = load_digits()
    # Values are 0..16 (counts of set pixels in 4x4 blocks of the original 32x32 bitmaps).
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images.setflags(write=False)
    labels = digits.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=4)
def _digits_resized(image_size: int) -> np.ndarray:
    """All 1797 digits resized to image_size, cached: a training run, its evaluation and
    the tests all ask for the same size. ~50 ms to compute at 64x64."""
    images = _resize_array(_digits_raw()[0][:, None], image_size)
    images.setflags(write=False)  # shared by every caller; load_dataset hands out copies
    return images


def _load_digits(image_size, nc, split, max_images, seed, keeper) -> Dataset:
    images = _digits_resized(image_size)
    labels = _digits_raw()[1]
    idx = _fixed_split(len(images), split, _SPLIT_SEED)
    idx = idx[keeper.indices([str(i) for i in idx])]
    idx = idx[_subset(len(idx), max_images, seed)]
    # Fancy indexing copies, so the cached arrays are never handed out.
    return Dataset(to_channels(images[idx], nc), labels[idx], "digits",
                   classes=[str(d) for d in range(10)], names=[str(i) for i in idx])


def _load_fake(image_size, nc, split, max_images, seed, keeper) -> Dataset:
    """1000 uniformly random images and labels 0..9, the same for the same seed."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(_FAKE_COUNT, nc, image_size, image_size),
                          dtype=np.uint8)
    labels = rng.integers(0, 10, size=_FAKE_COUNT).astype(np.int64)
    idx = _fixed_split(_FAKE_COUNT, split, _SPLIT_SEED)
    idx = idx[keeper.indices([str(i) for i in idx])]
    idx = idx[_subset(len(idx), max_images, seed)]
    return Dataset(images[idx], labels[idx], "fake", classes=[str(d) for d in range(10)],
                   names=[str(i) for i in idx])


# --------------------------------------------------------------------------- folder

class _Unreadable(Exception):
    """A file the folder loader skips; the message is the reason shown to the user."""


def _square_resize(im: Image.Image, size: int) -> Image.Image:
    """Scale the central square of ``im`` to ``size`` x ``size`` (Resize + CenterCrop).

    ``box`` selects the source region, so the crop is exactly centred (fractional when the
    sides differ by an odd number of pixels). ``reducing_gap=3`` first shrinks big images
    by an integer factor with a box filter, which is much faster and, per Pillow's docs,
    indistinguishable from full resampling at a gap of 3.
    """
    w, h = im.size
    if (w, h) == (size, size):
        return im
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((size, size), _BICUBIC, box=(left, top, left + side, top + side),
                     reducing_gap=3.0)


def _decode_bytes(mode: str, pixels: int) -> int:
    """The most memory _decode_file holds at once for an image of ``pixels`` pixels decoded
    in ``mode``: the decoded image and one full-size copy (an EXIF rotation, or one of the
    conversions of _resizable), each at most 4 bytes a pixel (1 for grey)."""
    return pixels * (2 if mode in ("1", "L") else 8) + DECODE_OVERHEAD


class _MemoryBudget:
    """Bytes that decoding threads may hold at once: a thread waits for its share, so a
    few huge images decode one or two at a time while small ones share the pool."""

    def __init__(self, limit: int):
        self.limit, self.in_use, self.peak = limit, 0, 0
        self._changed = threading.Condition()

    def acquire(self, nbytes: int) -> int:
        nbytes = min(nbytes, self.limit)   # one that alone exceeds the budget runs alone
        with self._changed:
            while self.in_use + nbytes > self.limit:
                self._changed.wait()
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
        return nbytes

    def release(self, nbytes: int) -> None:
        with self._changed:
            self.in_use -= nbytes
            self._changed.notify_all()


_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}
_BAND_ROWS = 64


def _rows_to_8bit(im: Image.Image, convert: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """An 8-bit "L" or "RGB" image made by ``convert`` (pixels of some rows -> uint8 rows),
    a band of rows at a time: beyond the result, no full-size temporary is ever made."""
    w, h = im.size
    out = None
    for top in range(0, h, _BAND_ROWS):
        band = im.crop((0, top, w, min(h, top + _BAND_ROWS)))
        try:
            rows = np.asarray(band)
        except Exception:   # big-endian 16-bit and other layouts NumPy cannot take directly
            rows = np.asarray(band.convert("I"))
        rows = convert(rows)
        if out is None:
            out = np.empty((h,) + rows.shape[1:], np.uint8)
        out[top:top + len(rows)] = rows
    return Image.fromarray(out, "L" if out.ndim == 2 else "RGB")


def _sixteen_bits_to_8(rows: np.ndarray) -> np.ndarray:
    # 16-bit grey (and "I", in which older Pillow opens 16-bit PNGs). convert("L") would
    # clip every value above 255 to white, so scale 0..65535 to 0..255 ourselves, rounding
    # half up: v * 255 / 65535 = v / 257, and floor((2v + 257) / 514) is round(v / 257) in
    # integers. Values of "I" outside 0..65535 are clipped.
    arr = np.clip(rows.astype(np.int64), 0, 65535)
    return ((arr * 2 + 257) // 514).astype(np.uint8)


def _float_to_8(rows: np.ndarray) -> np.ndarray:
    # 32-bit float images (TIFF): assume the usual [0, 1] convention; NaN is black.
    arr = np.nan_to_num(rows.astype(np.float64), nan=0.0)
    return np.rint(np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8)


def _premultiplied_to_grey(rows: np.ndarray) -> np.ndarray:
    # The luminance of the composite over black, as convert("L") of that RGB image gives it.
    return to_channels(np.ascontiguousarray(rows[..., :3].transpose(2, 0, 1)[None]), 1)[0, 0]


def _resizable(im: Image.Image) -> Image.Image:
    """The conversions that come before resampling: to "L", "RGB", or, with alpha, "RGBa"
    or "La" (Pillow's premultiplied modes), each in at most one more full-size image.

    Alpha is composited over black: the colour under a transparent pixel is arbitrary
    (often black, sometimes white or leftover paint), so dropping alpha could reveal
    garbage, while black is well defined, and it is -1, the generator's "empty" value.
    Premultiplied colour (colour * alpha / 255, rounded, as "RGBa" holds it) is exactly
    that composite, and resampling it averages what the composite shows.
    """
    mode = im.mode
    if mode == "1":
        return im.convert("L")  # 0 / 255
    if mode == "P":
        # A palette can mark entries as transparent ("transparency" in info); resolve it
        # to RGBA so it is composited like any alpha channel, instead of being ignored.
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in _PREMULTIPLIED:
        return im.convert(_PREMULTIPLIED[im.mode])
    if im.mode in ("L", "RGB", "RGBa", "La"):
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return _to_8bit(im)
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: Pillow's own conversion to RGB.
    return im.convert("RGB")


def _small_to_8bit(im: Image.Image) -> Image.Image:
    """A resampled image of _resizable's modes as 8-bit "L" or "RGB"."""
    if im.mode in ("RGBa", "La"):
        arr = np.asarray(im)   # premultiplied: the colour channels are the composite
        return Image.fromarray(np.ascontiguousarray(arr[..., :3] if im.mode == "RGBa" else arr[..., 0]),
                               "RGB" if im.mode == "RGBa" else "L")
    return im


def _to_8bit(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit "L" or "RGB", keeping grey images grey."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return _rows_to_8bit(im, _sixteen_bits_to_8)
    if im.mode == "F":
        return _rows_to_8bit(im, _float_to_8)
    return _small_to_8bit(_resizable(im))


def _decode_file(path: str, image_size: int, nc: int,
                 budget: _MemoryBudget | None = None) -> np.ndarray:
    """Decode one file into a uint8 (nc, S, S) array, or raise _Unreadable with the reason.

    Any exception from Pillow becomes _Unreadable: a folder of real-world images contains
    every kind of broken file, and one of them must not stop training on the others.
    budget: shared by the loader's threads; this decode waits for its share of it.
    """
    try:
        st = os.stat(path)  # follows symlinks: a dangling link fails here
    except OSError as e:
        raise _Unreadable(e.strerror or type(e).__name__) from None
    if not stat.S_ISREG(st.st_mode):
        # Never open a FIFO or device: reading it could block forever.
        raise _Unreadable("not a regular file")
    if st.st_size == 0:
        raise _Unreadable("empty file")
    return _decode_image(path, image_size, nc, budget)


def _decode_image(source, image_size: int, nc: int,
                  budget: _MemoryBudget | None = None) -> np.ndarray:
    """Decode a path or a file-like object (an LMDB record's bytes) as _decode_file does,
    under the same pixel limit and memory budget."""
    held = 0
    im = None
    try:
        im = Image.open(source)
        w, h = im.size  # from the header; nothing is decoded yet
        if w * h > MAX_IMAGE_PIXELS:
            raise _Unreadable(f"{w}x{h} pixels is more than the limit of "
                              f"{MAX_IMAGE_PIXELS} (possible decompression bomb)")
        if im.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (its DCT can do that almost
            # for free) while both sides stay >= image_size: big photos decode many
            # times faster. Grey output asks it to decode only the luminance plane.
            im.draft("L" if nc == 1 and im.mode == "RGB" else None, (image_size, image_size))
        if budget is not None:
            held = budget.acquire(_decode_bytes(im.mode, im.size[0] * im.size[1]))
        im.load()
        try:
            # Phone photos store "rotate me" in EXIF instead of rotating the pixels;
            # apply it so the crop is the picture the user sees (in place: no extra copy
            # is kept).
            ImageOps.exif_transpose(im, in_place=True)
        except Exception:
            pass  # bad EXIF does not make the pixels unreadable
        im = _resizable(im)
        # Colour to grey before resampling (as grey files are resampled); grey to colour
        # after, which gives the same pixels in a third of the memory.
        if nc == 1 and im.mode == "RGB":
            im = im.convert("L")
        elif nc == 1 and im.mode == "RGBa":
            im = _rows_to_8bit(im, _premultiplied_to_grey)
        small = _small_to_8bit(_square_resize(im, image_size))
        im = None
        if nc == 1 and small.mode == "RGB":
            small = small.convert("L")
        elif nc == 3 and small.mode == "L":
            small = small.convert("RGB")   # grey repeated: the same after resampling as before
        out = np.asarray(small)
    except _Unreadable:
        raise
    except Exception as e:
        reason = str(e).strip() or type(e).__name__
        if "Permission denied" in reason or isinstance(e, PermissionError):
            reason = "permission denied"
        raise _Unreadable(f"{type(e).__name__}: {reason}"[:200]) from None
    finally:
        if im is not None:
            im.close()
        if held:
            budget.release(held)
    faults.reached("decode")
    return out[None] if nc == 1 else out.transpose(2, 0, 1)


def _find_images(root: Path) -> tuple[list[str], int]:
    """Relative paths (POSIX style, sorted) of image files under ``root``, and the number of
    other files ignored.

    Follows symlinked folders (datasets are often linked in), remembering each folder's
    (device, inode) so a link loop cannot make the walk endless. Hidden entries (names
    starting with ".") are skipped: they are editor, notebook or macOS metadata
    (".ipynb_checkpoints", "._photo.jpg"), not images.
    """
    found, ignored = [], 0
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for f in filenames:
            if f.startswith("."):
                continue
            if f.lower().endswith(IMAGE_EXTENSIONS):
                found.append((rel_dir / f).as_posix())
            else:
                ignored += 1
    # Sort by path components, not by string: "a/b.png" and "a.png" then order the same
    # way on every file system, whatever order os.walk visits them in.
    found.sort(key=lambda p: p.split("/"))
    return found, ignored


def _load_folder(dataroot, image_size, nc, split, max_images, seed, warn, keeper,
                 name="folder") -> Dataset:
    """Every image under dataroot; see the module docstring and load_dataset.

    Labels: when images sit in sub-folders, the label is the index of the top-level
    sub-folder's name in sorted order (``classes``), like torchvision's ImageFolder; images
    deeper down belong to their top-level folder. Images directly in dataroot, next to
    such sub-folders, form a class named "." placed first. With no sub-folders at all the
    dataset is unlabelled: labels and classes are None.
    """
    if dataroot is None:
        raise DatasetError(f"the {name} dataset needs --dataroot: it must point to a folder "
                           "of images (sub-folders become class labels)")
    root = Path(dataroot).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"--dataroot {root} {what}: it must point to a folder of images "
                           f"(sub-folders become class labels)")
    if split == "test":
        raise DatasetError(f"the {name} dataset has no test split: every image is training "
                           "data. Put held-out images in a folder of their own and load it "
                           "with split 'all'")

    paths, ignored = _find_images(root)
    if keeper.keep is not None and paths:
        paths = [paths[i] for i in keeper.indices(paths)]
    top = sorted({p.split("/")[0] for p in paths if "/" in p})
    if top:
        classes = (["."] if any("/" not in p for p in paths) else []) + top
        index = {c: i for i, c in enumerate(classes)}
        all_labels = np.array([index[p.split("/")[0] if "/" in p else "."] for p in paths],
                              dtype=np.int64)
    else:
        classes, all_labels = None, None

    # With max_images, decode files in a seeded random order until enough have loaded, so a
    # smoke test on a huge folder decodes little more than it keeps.
    order = np.arange(len(paths)) if max_images is None \
        else np.random.default_rng(seed).permutation(len(paths))
    want = len(paths) if max_images is None else min(max_images, len(paths))
    loaded: dict[int, np.ndarray] = {}
    failures: list[tuple[str, str]] = []
    pos = tried = 0
    with warnings.catch_warnings():
        # We enforce our own pixel limit (MAX_IMAGE_PIXELS); Pillow's warning for images
        # between its two thresholds would only be noise. The filters are set here, once,
        # because warning filters are process-wide and not safe to change from threads.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow also warns about damage it works around ("Corrupt EXIF data", ...), once
        # per file: in a folder of 100k photos that would drown the one summary we print.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        # Decode in parallel (Pillow releases the GIL while decoding and resizing), a few
        # files queued ahead of the threads, never all of them: what is queued is what a
        # Ctrl-C, or having enough images with max_images, drops at once. Results are
        # taken in `order`, so the images kept do not depend on the threads' timing.
        pool = concurrent.futures.ThreadPoolExecutor(_workers())
        budget = _MemoryBudget(DECODE_MEMORY_BUDGET)
        in_flight: collections.deque = collections.deque()
        try:
            while len(loaded) < want:
                while pos < len(order) and len(in_flight) < DECODES_IN_FLIGHT * _workers() \
                        and len(loaded) + len(in_flight) < want:
                    i = int(order[pos])
                    pos += 1
                    in_flight.append((i, pool.submit(_decode_file, str(root / paths[i]), image_size,
                                                     nc, budget)))
                if not in_flight:
                    break
                i, fut = in_flight.popleft()
                tried += 1
                try:
                    loaded[i] = fut.result()
                except _Unreadable as e:
                    failures.append((paths[i], str(e)))
        finally:
            # However the loop ended (done, a Ctrl-C, an error), queued decodes are dropped
            # and the running ones end with their image.
            pool.shutdown(wait=True, cancel_futures=True)

    if not loaded:
        if not paths:
            raise DatasetError(
                f"no image files in {root} (found {ignored} other files; looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}): --dataroot must point to a folder of images")
        raise DatasetError(
            f"no usable image in {root}: found {len(paths)} image files and all "
            f"{len(failures)} that were tried are unreadable, e.g. "
            + "; ".join(f"{p} ({r})" for p, r in failures[:3]))
    if failures:
        examples = "; ".join(f"{p} ({r})" for p, r in failures[:3])
        warn(f"{name} dataset: skipped {len(failures)} unreadable image files of "
             f"{tried} tried in {root}, e.g. {examples}")

    keep = sorted(loaded)
    images = np.stack([loaded[i] for i in keep])
    labels = None if all_labels is None else all_labels[keep]
    return Dataset(images, labels, name, classes=classes, skipped=len(failures),
                   names=[paths[i] for i in keep])


# --------------------------------------------------------------------------- lsun

LSUN_SPLITS = ("train", "val", "test")
LSUN_DEFAULT_CLASSES = "bedroom"
_LSUN_DOWNLOAD = "the LSUN project's download.py (github.com/fyu/lsun)"
_KEY_CHUNK = 1 << 16  # keys gathered per step of the start-up scan


def _import_lmdb():
    try:
        import lmdb
    except ImportError:
        raise DatasetError("the lsun dataset needs the lmdb package to read its databases: "
                           "pip install 'dcgan-cuda[lsun]' (or pip install lmdb)") from None
    return lmdb


def _lsun_databases(root: Path, classes: str | None) -> list[tuple[str, Path]]:
    """(name, folder) of each database that ``classes`` asks for, in the order given.

    pytorch/examples' ``--classes bedroom,kitchen`` means the databases bedroom_train_lmdb
    and kitchen_train_lmdb (it appends "_train"); torchvision's LSUN takes names with their
    split. Both spellings are accepted: a name that already ends in _train, _val or _test is
    used as it is, any other gets "_train".
    """
    text = LSUN_DEFAULT_CLASSES if classes is None else classes
    names = [c.strip() for c in str(text).split(",")]
    if not all(names):
        raise DatasetError(f"--classes {text!r}: expected comma-separated LSUN categories, "
                           "e.g. bedroom or bedroom_train,church_outdoor_train")
    found = sorted(p.name for p in root.glob("*_lmdb") if p.is_dir())
    databases = []
    for name in names:
        if not name.replace("_", "").isalnum():
            raise DatasetError(f"--classes: {name!r} is not an LSUN category name (letters, "
                               "digits and _ only, e.g. bedroom_train)")
        if not name.endswith(tuple("_" + s for s in LSUN_SPLITS)):
            name += "_train"
        folder = root / f"{name}_lmdb"
        if not folder.is_dir():
            have = (f"it holds {', '.join(found)}" if found else "it holds no *_lmdb folder")
            raise DatasetError(f"LSUN category {name} not found: no folder {folder.name} in "
                               f"{root} ({have}). Download it with {_LSUN_DOWNLOAD} and unzip "
                               "it there")
        if name not in (n for n, _ in databases):
            databases.append((name, folder))
    return databases


def _open_database(lmdb, name: str, folder: Path):
    """A read-only LMDB environment. lock=False: the lock file (lock.mdb) is neither needed
    nor created, so a copy without it or on a read-only disk opens all the same."""
    data_file = folder / "data.mdb"
    if not data_file.is_file():
        raise DatasetError(f"{folder} has no data.mdb: it is not an LMDB database, or its "
                           "download or unzip is incomplete")
    # The lmdb package refuses to open one database twice in a process (a training run and
    # its evaluation both load the dataset): an open one is shared, unless its file changed.
    where = os.path.realpath(folder)
    st = data_file.stat()
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    known = _OPEN_DATABASES.get(where)
    if known is not None and known[0] == identity:
        return known[1]
    if known is not None:
        known[1].close()
    try:
        env = lmdb.open(str(folder), readonly=True, lock=False, readahead=False,
                        meminit=False, max_readers=1)
    except lmdb.Error as e:
        raise DatasetError(f"{folder} is not a readable LMDB database ({e}); download "
                           f"{name} again") from None
    _OPEN_DATABASES[where] = (identity, env)
    return env


_OPEN_DATABASES: dict = {}   # real path -> (identity of data.mdb, open environment)


def _key_array(chunks: list[list[bytes]]) -> np.ndarray:
    """Keys as one fixed-width bytes array (about a third of the memory of Python bytes
    objects: LSUN's 3 million bedroom keys take 120 MB), or an object array when a key ends
    in a zero byte, which a fixed-width array would cut off."""
    keys = [k for chunk in chunks for k in chunk]
    if any(k.endswith(b"\0") for k in keys):
        out = np.empty(len(keys), dtype=object)
        out[:] = keys
        return out
    return np.array(keys, dtype=bytes) if keys else np.empty(0, dtype="S1")


def _scan_keys(lmdb, env, name: str, folder: Path) -> np.ndarray:
    """Every key of a database, in the database's (sorted) order, with a progress bar when
    the scan takes more than a second (millions of keys take tens of seconds)."""
    from tqdm import tqdm

    try:
        entries = env.stat()["entries"]
        chunks, chunk = [], []
        with env.begin(buffers=False) as txn, \
                tqdm(total=entries, desc=f"lsun: listing {name}", unit=" images",
                     unit_scale=True, delay=1.0, leave=False, disable=None) as bar:
            for key in txn.cursor().iternext(keys=True, values=False):
                chunk.append(key)
                if len(chunk) == _KEY_CHUNK:
                    chunks.append(chunk)
                    chunk = []
                    bar.update(_KEY_CHUNK)
            chunks.append(chunk)
    except lmdb.Error as e:
        raise DatasetError(f"{folder} is damaged ({e}); download {name} again") from None
    return _key_array(chunks)


def _key_name(key: bytes) -> str:
    """A key as text for names and keep lists: itself when it is plain printable ASCII
    (LSUN's are 40 hex digits), else 0x and its hex digits."""
    if key and all(33 <= b < 127 for b in key) and not key.startswith(b"0x"):
        return key.decode("ascii")
    return "0x" + key.hex()


class LmdbDataset:
    """LSUN, streamed: only the keys are read at start-up; a batch reads its records and
    decodes them when it is asked for.

    Decoding all of LSUN up front is out of the question (bedroom_train alone holds 3
    million images: 36 GB as 64x64 uint8), so memory is the keys (about 40 bytes an image)
    plus 12 bytes of index an image, and one batch being decoded, under the folder
    loader's decode bounds (MAX_IMAGE_PIXELS, DECODE_MEMORY_BUDGET). The same interface as
    :class:`Dataset` for training: ``len``, ``batch``, ``labels`` (the category of each
    image, indices into ``classes``), ``name_of``.

    A record that does not decode (a damaged or non-image value) is replaced by the next
    readable record in dataset order, and named once through ``warn``: the dataset keeps its
    length, so epochs, batches and a resumed run stay as they were, and the substitution
    depends only on the data.
    """

    name = "lsun"

    def __init__(self, databases, envs, keys, db_of, pos_of, image_size, nc, warn):
        self.classes = [name for name, _ in databases]
        self._folders = [folder for _, folder in databases]
        self._envs, self._keys = envs, keys
        self._db_of, self._pos_of = db_of, pos_of
        self._image_size, self._nc, self._warn = image_size, nc, warn
        self._budget = _MemoryBudget(DECODE_MEMORY_BUDGET)
        self._substitute: dict[int, int] = {}   # unreadable record -> the one used instead
        self._unreadable: set[int] = set()
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._db_of)

    @property
    def labels(self) -> np.ndarray:
        return self._db_of.astype(np.int64)

    @property
    def num_channels(self) -> int:
        return self._nc

    @property
    def image_size(self) -> int:
        return self._image_size

    def name_of(self, i: int) -> str:
        db = int(self._db_of[i])
        return f"{self.classes[db]}/{_key_name(bytes(self._keys[db][self._pos_of[i]]))}"

    def _read(self, lmdb, i: int) -> bytes | None:
        db = int(self._db_of[i])
        key = bytes(self._keys[db][self._pos_of[i]])
        try:
            with self._envs[db].begin(buffers=False) as txn:
                return txn.get(key)
        except lmdb.Error as e:
            raise DatasetError(f"{self._folders[db]} is damaged ({e}); download "
                               f"{self.classes[db]} again") from None

    def _decode(self, value: bytes | None) -> np.ndarray:
        if not value:
            raise _Unreadable("empty record")
        try:
            return _decode_image(io.BytesIO(value), self._image_size, self._nc, self._budget)
        except _Unreadable as e:   # Pillow names the in-memory file by its address: say "record"
            raise _Unreadable(re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the record",
                                     str(e))) from None

    def _decode_index(self, lmdb, i: int) -> np.ndarray:
        """Record i decoded, or the first readable record after it (see the class doc)."""
        j = self._substitute.get(i, i)
        for _ in range(len(self)):
            try:
                image = self._decode(self._read(lmdb, j))
                break
            except _Unreadable as e:
                if j not in self._unreadable:
                    self._unreadable.add(j)
                    self.skipped += 1
                    self._warn(f"lsun: record {self.name_of(j)} is not a readable image ({e}); "
                               "the next readable record is used in its place")
                j = (j + 1) % len(self)
        else:
            raise DatasetError(f"no record of {', '.join(self.classes)} is a readable image")
        if j != i:
            self._substitute[i] = j
        return image

    def uint8_batch(self, indices) -> np.ndarray:
        """The images at ``indices`` as uint8 ``(B, C, S, S)``, decoded now, in parallel."""
        lmdb = _import_lmdb()
        idx = np.arange(len(self))[indices] if isinstance(indices, slice) \
            else np.asarray(indices, dtype=np.int64).reshape(-1)
        values = [self._read(lmdb, int(i)) for i in idx]   # LMDB reads stay on this thread
        out = np.empty((len(idx), self._nc, self._image_size, self._image_size), np.uint8)

        def work(k):
            try:
                out[k] = self._decode(values[k])
                return True
            except _Unreadable:
                return False

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
                decoded = list(pool.map(work, range(len(idx))))
            for k in np.flatnonzero(~np.array(decoded, dtype=bool)):
                out[k] = self._decode_index(lmdb, int(idx[k]))
        return out

    def batch(self, indices) -> np.ndarray:
        """As :meth:`Dataset.batch`: float32 in [-1, 1]."""
        return _to_unit_range(self.uint8_batch(indices))


def _load_lsun(dataroot, classes, image_size, nc, split, max_images, seed, warn,
               keeper) -> LmdbDataset:
    if dataroot is None:
        raise DatasetError("the lsun dataset needs --dataroot: the folder holding the "
                           "category databases (bedroom_train_lmdb/ ...), from "
                           f"{_LSUN_DOWNLOAD}")
    root = Path(dataroot).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"--dataroot {root} {what}: it must be the folder holding the LSUN "
                           "databases (bedroom_train_lmdb/ ...)")
    if split == "test":
        raise DatasetError("the lsun dataset has no test split of its own: name the held-out "
                           "databases in --classes (e.g. bedroom_val) and load them with split all")
    lmdb = _import_lmdb()
    databases = _lsun_databases(root, classes)
    envs, keys = [], []
    for name, folder in databases:
        env = _open_database(lmdb, name, folder)
        envs.append(env)
        keys.append(_scan_keys(lmdb, env, name, folder))
        if len(keys[-1]) == 0:
            raise DatasetError(f"{folder} is an empty database (no records): its download "
                               f"or conversion did not finish; download {name} again")
    db_of = np.concatenate([np.full(len(k), d, np.int32) for d, k in enumerate(keys)])
    pos_of = np.concatenate([np.arange(len(k), dtype=np.int64) for k in keys])
    if keeper.keep is not None:
        names = [f"{databases[d][0]}/{_key_name(bytes(keys[d][p]))}" for d, p in zip(db_of, pos_of)]
        kept = keeper.indices(names)
        db_of, pos_of = db_of[kept], pos_of[kept]
    chosen = _subset(len(db_of), max_images, seed)
    return LmdbDataset(databases, envs, keys, db_of[chosen], pos_of[chosen], image_size, nc, warn)


# --------------------------------------------------------------------------- cifar10

class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch contains: dicts, lists, strings and numpy arrays.

    A pickle can name any Python callable and the loader calls it, so a doctored file
    "data_batch_1" could run arbitrary code. CIFAR's format is pickle, so we cannot avoid
    the format, but we can refuse every global except the few numpy needs.
    """

    _allowed = None

    @classmethod
    def _allowed_globals(cls):
        if cls._allowed is None:
            import codecs

            try:  # numpy >= 2 moved numpy.core to numpy._core
                from numpy._core import multiarray, numeric
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core import multiarray, numeric
            cls._allowed = {
                ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
                ("numpy._core.multiarray", "scalar"): multiarray.scalar,
                ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
                ("numpy", "ndarray"): np.ndarray,
                ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles
            }
        return cls._allowed

    def find_class(self, module, name):
        key = (module.replace("numpy.core.", "numpy._core."), name)
        allowed = self._allowed_globals()
        if key not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return allowed[key]


def _unpickle(data: bytes, where: str) -> dict:
    try:
        # encoding="bytes": the official batches are Python 2 pickles of byte strings.
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise DatasetError(f"{where} is not a readable CIFAR-10 batch ({e}); delete it and "
                           f"download {CIFAR10_URL} again") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where} is not a CIFAR-10 batch (no dict inside)")
    # Keys are bytes in the official Python-2 files, str if someone re-pickled them.
    return {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch -> uint8 (N, 3, 32, 32) images and int64 labels."""
    d = _unpickle(data, where)
    try:
        images = np.asarray(d["data"])
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{where} is not a CIFAR-10 batch (needs 'data' and 'labels'; "
                           f"CIFAR-100 files have 'fine_labels')") from None
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32 \
            or labels.shape != (len(images),):
        raise DatasetError(f"{where} is not a CIFAR-10 batch: data {images.dtype} "
                           f"{images.shape}, {labels.size} labels")
    # Each row is 1024 red, 1024 green, then 1024 blue values, each plane row-major: that
    # is exactly (3, 32, 32), our NCHW layout.
    return images.reshape(-1, 3, 32, 32), labels


def _cifar_classes(meta: bytes | None, where: str) -> list[str]:
    if meta is None:
        return list(_CIFAR_CLASSES)
    names = _unpickle(meta, where).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        return list(_CIFAR_CLASSES)
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _read_cifar_files(root: Path, needed: Sequence[str]) -> tuple[dict[str, bytes], str]:
    """Bytes of each needed file (and batches.meta if present), from the extracted folder
    or straight from the archive (no extraction to disk), and where they came from."""
    for folder in (root / _CIFAR_DIR, root):
        if all((folder / f).is_file() for f in needed):
            files = {f: (folder / f).read_bytes() for f in needed}
            if (folder / "batches.meta").is_file():
                files["batches.meta"] = (folder / "batches.meta").read_bytes()
            return files, str(folder)
    archive = root / _CIFAR_ARCHIVE
    if archive.is_file():
        files = {}
        try:
            # One sequential pass: gzip cannot seek, so reading members in archive order
            # decompresses the 163 MB once.
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    base = posixpath.basename(member.name)
                    if member.isfile() and (base in needed or base == "batches.meta"):
                        files[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DatasetError(f"{archive} is damaged ({e}); delete it and download "
                               f"{CIFAR10_URL} again") from None
        missing = [f for f in needed if f not in files]
        if missing:
            raise DatasetError(f"{archive} lacks {', '.join(missing)}; it is not the "
                               f"CIFAR-10 python archive from {CIFAR10_URL}")
        return files, str(archive)
    raise DatasetError(
        f"CIFAR-10 not found: expected {', '.join(needed)} in {root / _CIFAR_DIR} or {root}, "
        f"or the archive {_CIFAR_ARCHIVE} in {root}. Download {CIFAR10_URL} (163 MB) into "
        f"{root}; it is read as it is, no need to extract it")


def _load_cifar10(dataroot, image_size, nc, split, max_images, seed, keeper) -> Dataset:
    if dataroot is None:
        raise DatasetError(f"the cifar10 dataset needs --dataroot: a folder holding "
                           f"{_CIFAR_ARCHIVE} (download {CIFAR10_URL}) or its extracted "
                           f"{_CIFAR_DIR}/ folder")
    root = Path(dataroot).expanduser()
    needed = {"train": _CIFAR_TRAIN, "test": _CIFAR_TEST, "all": _CIFAR_TRAIN + _CIFAR_TEST}
    names = needed[split]
    files, where = _read_cifar_files(root, names)
    parts = [_cifar_batch(files[f], f"{f} (in {where})") for f in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    idx = keeper.indices([str(i) for i in range(len(images))])
    idx = idx[_subset(len(idx), max_images, seed)]
    # Channels first (3 -> 1 is cheaper before resizing); then resize.
    images = _resize_array(to_channels(images[idx], nc), image_size)
    classes = _cifar_classes(files.get("batches.meta"), f"batches.meta (in {where})")
    return Dataset(images, labels[idx], "cifar10", classes=classes, names=[str(i) for i in idx])


# --------------------------------------------------------------------------- mnist

def _find_mnist_file(root: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in root, root/raw or root/MNIST/raw (torchvision's layout).
    Also accepts "train-images.idx3-ubyte", the spelling some mirrors use."""
    alt = name.replace("-idx", ".idx")
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for candidate in (name, name + ".gz", alt, alt + ".gz"):
            if (folder / candidate).is_file():
                return folder / candidate
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions, checking its header.

    Format: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
    then each dimension as a big-endian uint32, then the data. MNIST images are
    0x00000803 (N, 28, 28), labels 0x00000801 (N,).
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"cannot read {path} ({e}); delete it and download it again") \
            from None
    header = 4 + 4 * ndim
    expected_magic = 0x0800 | ndim
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != expected_magic:
        magic = data[:4].hex() if len(data) >= 4 else "missing"
        raise DatasetError(f"{path} is not an IDX file of {ndim}-D unsigned bytes (magic "
                           f"number {magic}, expected {expected_magic:08x}); delete it and "
                           f"download it again")
    if len(data) < header:
        raise DatasetError(f"{path} is truncated (header incomplete)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) != header + size:
        raise DatasetError(f"{path} has {len(data) - header} data bytes but its header "
                           f"declares {dims} = {size}: the file is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _load_mnist(dataroot, image_size, nc, split, max_images, seed, keeper) -> Dataset:
    needed = {"train": [_MNIST_TRAIN], "test": [_MNIST_TEST],
              "all": [_MNIST_TRAIN, _MNIST_TEST]}[split]
    names = [n for pair in needed for n in pair]
    if dataroot is None:
        raise DatasetError(f"the mnist dataset needs --dataroot: a folder holding "
                           f"{', '.join(names)} (optionally .gz), from {_MNIST_URLS}")
    root = Path(dataroot).expanduser()
    found = {n: _find_mnist_file(root, n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise DatasetError(
            f"MNIST not found: missing {', '.join(missing)} (plain or .gz) in {root}, "
            f"{root / 'raw'} or {root / 'MNIST' / 'raw'}. Download them from {_MNIST_URLS}, "
            f"or let torchvision.datasets.MNIST(root, download=True) fetch them")
    images, labels = [], []
    for image_name, label_name in needed:
        x = _read_idx(found[image_name], 3)
        y = _read_idx(found[label_name], 1)
        if len(x) != len(y):
            raise DatasetError(f"{found[image_name]} has {len(x)} images but "
                               f"{found[label_name]} has {len(y)} labels: one of them is "
                               f"from another download")
        images.append(x)
        labels.append(y)
    x = np.concatenate(images)
    y = np.concatenate(labels).astype(np.int64)
    idx = keeper.indices([str(i) for i in range(len(x))])
    idx = idx[_subset(len(idx), max_images, seed)]
    x = _resize_array(x[idx][:, None], image_size)
    return Dataset(to_channels(x, nc), y[idx], "mnist", classes=[str(d) for d in range(10)],
                   names=[str(i) for i in idx])
