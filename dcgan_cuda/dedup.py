"""``python -m dcgan_cuda.dedup``: find near-duplicate images, as section 4.1.1 of the DCGAN
paper did before training on LSUN.

The authors fitted a de-noising, dropout-regularised ReLU autoencoder to 32x32 center crops
of the training images, binarised its code by thresholding the ReLU activations ("semantic
hashing": similar images get the same bit string) and treated images whose codes collide
as near-duplicates. This tool does the same with our own stack (layers, autograd, Adam; the
NumPy reference on a CPU, our kernels on a GPU):

  input x (32x32 center crop, flattened, in [-1, 1])
    -> x + Gaussian noise (the denoising corruption; training only)
    -> Linear -> ReLU -> Dropout -> Linear -> ReLU = the code (code_bits units)
    -> Dropout -> Linear -> ReLU -> Linear -> tanh = the reconstruction of the clean x
  loss: mean squared error; hash: bit k = code_k > threshold.

Images are grouped by their hash in a dictionary (linear in the number of images, no pairs
compared). Outputs in --outf: groups.json (every group of two or more, largest first),
groups.png (the largest groups, one row each) and, with --write-keep FILE, the names of
the images to keep (one per group, the first in dataset order, and every image not in a
group), which ``python -m dcgan_cuda.train --keep-list FILE`` reads.

--plant N measures instead of trusting: N near-duplicates of random images are added
(exact copies, shifts by 1-2 pixels, Gaussian noise, brightness changes), and the hash
collisions are scored against that truth (precision and recall over pairs), next to the
perceptual hashes a user would otherwise reach for (imagehash's average and difference
hash), and next to pairs of different images that merely look alike (nearest neighbours in
pixel space), which should not collide.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

from . import cli
from .autograd import Tensor, no_grad
from .backend import BackendUnavailable, get_backend
from .checkpoint import atomic_write_bytes
from .cli import MAX_COUNT, MAX_SEED, Parser, integer, output_file, path, real
from .data import DATASETS, DEFAULT_CHANNELS, DatasetError, load_dataset, read_keep_list
from .dropout import CounterKeys, Dropout, gaussian_noise, squared_error
from .images import make_grid, png_bytes, to_uint8
from .nn import Linear, Module
from . import ops
from .optim import Adam

IMAGE_SIZE = 32       # the paper's 32x32 downsampled center crops
PLANT_KINDS = ("copy", "shift", "noise", "brightness")
LOOK_ALIKE_PAIRS = 100   # closest distinct pairs scored as "look alike, not duplicates"
LOOK_ALIKE_SAMPLE = 2000  # images searched for them (all pairs of a sample: bounded cost)


class DedupError(ValueError):
    """The tool cannot run as asked; the message says why."""


# ------------------------------------------------------------------ the autoencoder
class Autoencoder(Module):
    def __init__(self, inputs, hidden, code_bits, dropout, seed):
        super().__init__()
        self.enc1, self.enc2 = Linear(inputs, hidden), Linear(hidden, code_bits)
        self.dec1, self.dec2 = Linear(code_bits, hidden), Linear(hidden, inputs)
        # each dropout its own seed: their masks must not be the same numbers
        self.drop_hidden = Dropout(dropout, seed=2 * seed + 1)
        self.drop_code = Dropout(dropout, seed=2 * seed + 2)
        rng = np.random.default_rng([seed, 0xAE])
        for layer in (self.enc1, self.enc2, self.dec1, self.dec2):
            # PyTorch's default for Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            bound = 1.0 / np.sqrt(layer.shape[1])
            layer.weight.data = rng.uniform(-bound, bound, layer.shape).astype(np.float32)
            layer.bias.data = rng.uniform(-bound, bound, layer.shape[0]).astype(np.float32)

    def encode(self, x):
        return ops.relu(self.enc2(self.drop_hidden(ops.relu(self.enc1(x)))))

    def forward(self, x):
        code = self.encode(x)
        return ops.tanh(self.dec2(ops.relu(self.dec1(self.drop_code(code))))), code


# ------------------------------------------------------------------ planted duplicates
class Planted:
    """A dataset with ``count`` near-duplicates of random images appended after its own:
    image n + j is a changed copy of image ``sources[j]`` (kind ``kinds[j]``). Works on any
    dataset with ``batch`` and ``name_of``, streamed ones included."""

    def __init__(self, base, count, seed):
        if count > len(base):
            raise DedupError(f"--plant {count}: the dataset has only {len(base)} images to copy")
        rng = np.random.default_rng([seed, 0x9A])
        self.base, self.n = base, len(base)
        self.sources = np.sort(rng.choice(self.n, size=count, replace=False))
        self.kinds = [PLANT_KINDS[j % len(PLANT_KINDS)] for j in range(count)]
        self.num_channels, self.image_size = base.num_channels, base.image_size

    def __len__(self):
        return self.n + len(self.sources)

    def name_of(self, i):
        if i < self.n:
            return self.base.name_of(i)
        j = i - self.n
        return f"planted/{j}-{self.kinds[j]}-of-{self.base.name_of(int(self.sources[j]))}"

    def _changed(self, j, image):
        """image (C, S, S) in [-1, 1], changed as kinds[j] says, with numbers of (seed, j)."""
        rng = np.random.default_rng([int(self.sources[j]), j, 0x5EED])
        kind = self.kinds[j]
        if kind == "shift":
            dy, dx = rng.choice([-2, -1, 1, 2], size=2)
            padded = np.pad(image, ((0, 0), (2, 2), (2, 2)), mode="edge")
            s = self.image_size
            return padded[:, 2 + dy:2 + dy + s, 2 + dx:2 + dx + s]
        if kind == "noise":      # about 5 grey levels of 255
            return np.clip(image + rng.normal(0, 0.04, image.shape), -1, 1).astype(np.float32)
        if kind == "brightness":  # +-13 grey levels
            return np.clip(image + rng.choice([-0.1, 0.1]), -1, 1).astype(np.float32)
        return image.copy()

    def batch(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), self.num_channels, self.image_size, self.image_size), np.float32)
        own = idx < self.n
        if own.any():
            out[own] = self.base.batch(idx[own])
        for k in np.flatnonzero(~own):
            j = int(idx[k]) - self.n
            out[k] = self._changed(j, self.base.batch([int(self.sources[j])])[0])
        return out

    def truth(self, exact_groups):
        """A truth label per image: images with one label are duplicates of each other
        (a planted copy gets its source's label; exact copies already in the data share)."""
        label = np.array(exact_groups, dtype=np.int64)
        return np.concatenate([label, label[self.sources]])


# ------------------------------------------------------------------ hashing and scoring
def buckets(hashes):
    """{hash: [indices]} in one pass: linear in the number of images."""
    table = defaultdict(list)
    for i, h in enumerate(hashes):
        table[h].append(i)
    return table


def pair_count(k):
    return k * (k - 1) // 2


def score(table, truth):
    """Precision and recall over pairs: a pair collides when its images share a bucket, and
    is a true duplicate when they share a truth label. Linear: counted per bucket."""
    colliding = sum(pair_count(len(m)) for m in table.values())
    correct = sum(pair_count(c) for m in table.values()
                  for c in np.unique(truth[m], return_counts=True)[1])
    true_pairs = sum(pair_count(c) for c in np.unique(truth, return_counts=True)[1])
    return {"colliding_pairs": int(colliding), "true_pairs": int(true_pairs),
            "found_pairs": int(correct),
            "precision": correct / colliding if colliding else 1.0,
            "recall": correct / true_pairs if true_pairs else 1.0}


def look_alikes(images_flat, truth, seed):
    """The LOOK_ALIKE_PAIRS closest pairs (L2) of images with different truth labels, among
    a sample of at most LOOK_ALIKE_SAMPLE images: different pictures that look alike."""
    rng = np.random.default_rng([seed, 0x1A])
    sample = np.sort(rng.choice(len(images_flat), min(len(images_flat), LOOK_ALIKE_SAMPLE), replace=False))
    x = images_flat[sample].astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2 * x @ x.T
    same = truth[sample][:, None] == truth[sample][None, :]
    d2[same | np.tri(len(x), dtype=bool)] = np.inf
    flat = np.argsort(d2, axis=None)[:LOOK_ALIKE_PAIRS]
    a, b = np.unravel_index(flat, d2.shape)
    return [(int(sample[i]), int(sample[j])) for i, j in zip(a, b) if np.isfinite(d2[i, j])]


def collided(hashes, pairs):
    return sum(hashes[a] == hashes[b] for a, b in pairs)


def _imagehash():
    try:
        import imagehash
    except ImportError:
        raise DedupError("--plant compares with the imagehash library, which is not installed: "
                         "pip install 'dcgan-cuda[dedup]' (or pip install imagehash)") from None
    return imagehash


def imagehash_codes(images_u8):
    """imagehash's average and difference hashes (8x8: 64 bits) of uint8 (N, C, S, S)."""
    imagehash = _imagehash()
    from PIL import Image

    out = {"imagehash average_hash": [], "imagehash dhash": []}
    for im in images_u8:
        pil = Image.fromarray(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0))
        out["imagehash average_hash"].append(str(imagehash.average_hash(pil)))
        out["imagehash dhash"].append(str(imagehash.dhash(pil)))
    return out


# ------------------------------------------------------------------ the tool
def build_parser():
    p = Parser(prog="python -m dcgan_cuda.dedup",
               description="Section 4.1.1 of the DCGAN paper: find near-duplicate images with a "
                           "denoising, dropout-regularised ReLU autoencoder trained by our own stack, "
                           "hashing each image by thresholding its code.")
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="as python -m dcgan_cuda.train")
    p.add_argument("--dataroot", type=path, default=None, help="the dataset's files, as for training")
    p.add_argument("--classes", default=None, help="lsun categories, as for training")
    p.add_argument("--nc", type=int, choices=(1, 3), default=None,
                   help="channels the images are hashed in (default: the dataset's)")
    p.add_argument("--max-images", type=integer(1, MAX_COUNT), default=None,
                   help="use a random subset of this many images")
    p.add_argument("--keep-list", type=path, default=None, help="use only the images this list names")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "sim"),
                   help="cpu: the NumPy reference; cuda: our kernels; auto: cuda if usable")
    p.add_argument("--seed", type=integer(0, MAX_SEED), default=0)
    p.add_argument("--epochs", type=integer(1, 10_000), default=15)
    p.add_argument("--batch-size", type=integer(1, 100_000), default=64)
    p.add_argument("--hidden", type=integer(1, 65_536), default=256, help="units of the hidden layers")
    p.add_argument("--code-bits", type=integer(1, 4096), default=64, help="units of the code: bits of the hash")
    p.add_argument("--threshold", type=real(0, None), default=0.25,
                   help="bit k of the hash is 1 where the code's ReLU activation k exceeds this")
    p.add_argument("--dropout", type=real(0, 1, high_open=True), default=0.2)
    p.add_argument("--noise", type=real(0, 10), default=0.1, help="sigma of the denoising Gaussian noise")
    p.add_argument("--lr", type=real(0, 1, low_open=True), default=1e-3)
    p.add_argument("--plant", type=integer(0, MAX_COUNT), default=0,
                   help="add this many near-duplicates and score the hashes against them (and imagehash's)")
    p.add_argument("--top-groups", type=integer(1, 1000), default=16, help="groups drawn in groups.png")
    p.add_argument("--outf", type=path, default="dedup", help="folder for groups.json and groups.png")
    p.add_argument("--write-keep", type=output_file, default=None,
                   help="write the names of the images to keep (one per group, and the rest) to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class _Stage:
    """Wall-clock and process CPU seconds of the tool's stages."""

    def __init__(self, wall, cpu):
        self.wall, self.cpu = wall, cpu

    def start(self):
        self.t_wall, self.t_cpu = time.perf_counter(), time.process_time()

    def stop(self, name):
        self.wall[name] = time.perf_counter() - self.t_wall
        self.cpu[name] = time.process_time() - self.t_cpu


def train_autoencoder(ae, data, backend, args, log):
    """Adam on the denoising reconstruction error, in seeded shuffled batches."""
    opt = Adam(ae.parameters(), args.lr, (0.9, 0.999))
    noise_keys = CounterKeys(args.seed * 2 + 3)
    n, dims = len(data), data.num_channels * IMAGE_SIZE * IMAGE_SIZE
    epochs = range(args.epochs)
    if not args.no_progress:
        from tqdm import tqdm
        epochs = tqdm(epochs, desc="dedup: training the autoencoder", unit=" epochs", leave=False)
    loss = float("nan")
    for epoch in epochs:
        order = np.random.default_rng([args.seed, epoch]).permutation(n)
        total = 0.0
        for start in range(0, n, args.batch_size):
            idx = np.sort(order[start:start + args.batch_size])
            clean = backend.asarray(data.batch(idx).reshape(len(idx), dims))
            noisy = gaussian_noise(Tensor(clean, backend), args.noise, noise_keys.next())
            out, _ = ae(noisy)
            err = squared_error(out, clean)
            opt.zero_grad()
            err.backward()
            opt.step()
            total += err.item() * len(idx)
        loss = total / n
    log(f"dedup: autoencoder trained for {args.epochs} epochs, reconstruction error {loss:.4f} "
        "(mean squared, on [-1, 1] pixels)")
    return loss


def hashes_of(ae, data, backend, args):
    """Each image's hash (bytes of its packed bits) and, for the picture, nothing else."""
    ae.eval()
    dims = data.num_channels * IMAGE_SIZE * IMAGE_SIZE
    out = []
    with no_grad():
        for start in range(0, len(data), 1024):
            idx = np.arange(start, min(len(data), start + 1024))
            x = Tensor(backend.asarray(data.batch(idx).reshape(len(idx), dims)), backend)
            code = ae.encode(x).numpy()
            bits = np.packbits(code > args.threshold, axis=1)
            out.extend(row.tobytes() for row in bits)
    return out


def groups_picture(data, groups, top, path):
    rows = groups[:top]
    width = min(8, max(len(g) for g in rows))
    blank = np.zeros((data.num_channels, IMAGE_SIZE, IMAGE_SIZE), np.float32)   # grey: "no image"
    tiles = []
    for g in rows:
        members = data.batch(np.array(g[:width]))
        tiles.extend(list(members) + [blank] * (width - len(members)))
    picture = make_grid(np.stack(tiles), nrow=width, padding=2)
    atomic_write_bytes(path, png_bytes(picture.repeat(2, axis=0).repeat(2, axis=1)))


@cli.reports_errors(DatasetError, DedupError, BackendUnavailable, OSError)
def main(argv=None):
    args = build_parser().parse_args(argv)
    log = print
    nc = args.nc or DEFAULT_CHANNELS[args.dataset]
    keep = read_keep_list(args.keep_list) if args.keep_list else None
    if args.plant:
        _imagehash()   # missing: say so now, not after the training
    backend = get_backend(args.device, announce=log)
    timings, cpu_timings = {}, {}
    stage = _Stage(timings, cpu_timings)
    stage.start()
    base = load_dataset(args.dataset, args.dataroot, IMAGE_SIZE, nc, split="all" if args.dataset in
                        ("digits", "fake", "cifar10", "mnist") else "train", max_images=args.max_images,
                        seed=args.seed, warn=log, classes=args.classes, keep=keep)
    data = Planted(base, args.plant, args.seed) if args.plant else base
    stage.stop("load")
    log(f"dedup: {len(data)} images of {args.dataset} at {nc}x{IMAGE_SIZE}x{IMAGE_SIZE}"
        + (f" ({args.plant} of them planted near-duplicates)" if args.plant else ""))
    os.makedirs(args.outf, exist_ok=True)

    ae = Autoencoder(nc * IMAGE_SIZE * IMAGE_SIZE, args.hidden, args.code_bits, args.dropout,
                     args.seed).to(backend)
    stage.start()
    loss = train_autoencoder(ae, data, backend, args, log)
    stage.stop("train")
    stage.start()
    hashes = hashes_of(ae, data, backend, args)
    table = buckets(hashes)
    groups = sorted((m for m in table.values() if len(m) > 1), key=lambda m: (-len(m), m[0]))
    stage.stop("hash_and_group")
    in_groups = sum(len(g) for g in groups)
    log(f"dedup: {len(table)} distinct hashes; {len(groups)} groups of near-duplicates hold "
        f"{in_groups} images; keeping {len(data) - in_groups + len(groups)}")

    report = {"dataset": args.dataset, "dataroot": args.dataroot, "classes": args.classes,
              "images": len(data), "image_size": IMAGE_SIZE, "nc": nc, "code_bits": args.code_bits,
              "threshold": args.threshold, "hidden": args.hidden, "dropout": args.dropout,
              "noise": args.noise, "epochs": args.epochs, "seed": args.seed,
              "reconstruction_error": loss, "distinct_hashes": len(table),
              "groups": [{"size": len(g), "names": [data.name_of(i) for i in g]} for g in groups]}
    if args.plant:
        report["planted"] = evaluate_planted(data, hashes, args, log, stage)
    # wall and CPU (all threads) seconds per stage: on a shared machine the CPU time is
    # the better basis for estimating a larger run
    report["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    report["cpu_seconds"] = {k: round(v, 3) for k, v in cpu_timings.items()}
    log("dedup: seconds per stage (wall / CPU): " + ", ".join(
        f"{k} {timings[k]:.1f} / {cpu_timings[k]:.1f}" for k in timings))
    atomic_write_bytes(os.path.join(args.outf, "groups.json"),
                       (json.dumps(report, indent=1) + "\n").encode())
    if groups:
        groups_picture(data, groups, args.top_groups, os.path.join(args.outf, "groups.png"))
    if args.write_keep:
        drop = {i for g in groups for i in g[1:]}
        lines = [f"# images kept by python -m dcgan_cuda.dedup --dataset {args.dataset}: one of each "
                 f"group of near-duplicates ({len(groups)} groups), and every other image"]
        lines += [data.name_of(i) for i in range(len(data)) if i not in drop]
        atomic_write_bytes(args.write_keep, ("\n".join(lines) + "\n").encode())
        log(f"dedup: wrote {len(lines) - 1} names to keep to {args.write_keep}")
    log(f"dedup: groups in {os.path.join(args.outf, 'groups.json')}")
    return 0


def evaluate_planted(data, hashes, args, log, stage):
    """Precision/recall of the autoencoder's hash and imagehash's, and look-alike collisions."""
    dims = data.num_channels * IMAGE_SIZE * IMAGE_SIZE
    images = data.batch(np.arange(len(data)))
    flat = images.reshape(len(data), dims)
    # exact copies already in the data count as duplicates too
    first_of = {}
    exact = [first_of.setdefault(flat[i].tobytes(), i) for i in range(data.n)]
    truth = data.truth(exact)
    pairs = look_alikes(flat[:data.n], truth[:data.n], args.seed)
    stage.start()
    baselines = imagehash_codes(to_uint8(images))
    stage.stop("imagehash_both")
    results = {}
    for name, codes in [("autoencoder", hashes)] + list(baselines.items()):
        row = score(buckets(codes), truth)
        row["look_alike_collisions"] = f"{collided(codes, pairs)}/{len(pairs)}"
        # recall by kind of change: the planted copy shares its source's hash
        row["found_by_kind"] = {
            kind: f"{sum(codes[data.n + j] == codes[int(data.sources[j])] for j in range(len(data.sources)) if data.kinds[j] == kind)}"
                  f"/{data.kinds.count(kind)}" for kind in PLANT_KINDS}
        results[name] = row
        log(f"dedup: {name:24s} precision {row['precision']:.3f} recall {row['recall']:.3f} "
            f"({row['found_pairs']}/{row['true_pairs']} duplicate pairs, {row['colliding_pairs']} "
            f"colliding); by kind {row['found_by_kind']}; look-alikes colliding {row['look_alike_collisions']}")
    return results


if __name__ == "__main__":
    sys.exit(main())
