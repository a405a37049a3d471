"""Measured sample quality on the embedded digits: ``python -m dcgan_cuda.evaluate --netG CKPT``.

Looking at sample grids tells you whether a GAN works; numbers tell you by how much, and
whether a change made it better. This module scores a generator with a digits classifier
that the project trains itself (our layers, autograd, ``ops.cross_entropy`` and Adam), and
puts every figure next to its floor and its ceiling:

``generated``      N images from the checkpoint's generator (fixed noise seed);
``real held-out``  the 360 images of the digits TEST split: the images the figures are
                   measured against, never seen by the classifier or the GAN;
``real train``     N images of the TRAIN split vs the held-out ones: the floor. A generator
                   that reproduced its training distribution perfectly would score this,
                   small-sample noise and the train/test gap included;
``untrained``      N images from a freshly initialised generator of the same architecture:
                   the ceiling, what training starts from.

The figures (each row, computed on the row's images):

Fréchet distance   between Gaussians fitted to the classifier's penultimate features (64
                   dims) of the row's images and of the held-out images,
                   ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`` (FID's formula,
                   with a digits classifier in place of Inception). It sees both quality and
                   variety: a generator that draws one perfect "3" scores badly.
classes covered    a digit counts as covered when at least 1% of the row's images are
                   classified as it with softmax confidence >= 0.5: a few lucky blobs do
                   not cover a class, a rare but real mode does.
KL from uniform    KL(histogram of predicted classes || uniform over 10), in nats: 0 for a
                   perfectly balanced generator, ln 10 = 2.30 for one that draws one digit.
confidence         the mean of the classifier's top softmax probability: how digit-like
                   the images look to it.

Choices, and why:

* **The classifier** is trained once per (image size, channels, seed) on the TRAIN split, on
  the NumPy backend with BLAS on one thread, so its weights are a function of the seed (up
  to the last bits of a CPU's own BLAS kernels) whatever backend the generator uses, and
  cached as safetensors (see :func:`cache_dir`). Its features are read with eval-mode
  batchnorm, so an image's features do not depend on the batch it arrived in.
* **The generator's batchnorm runs in train mode** (batch statistics, batches of 64), as in
  training and in the ``fake_samples_epoch_NNN.png`` grids that ``train`` writes (which
  follow pytorch/examples): the figures describe the images the user is shown. Early in
  training the running averages lag behind G's fast-moving activations, so eval-mode
  images can look quite different; ``--bn-mode eval`` measures those instead. Either way
  G's running statistics are restored afterwards: evaluating does not change the model.
* **Features are computed on the host** whatever backend generated the images: the
  classifier's forward pass over a few thousand small images is cheap, and one feature
  extractor for every backend keeps the figures of a CPU and a GPU run comparable.
* **Sample sizes**: the Fréchet distance estimated from finite samples is biased upwards,
  more so for fewer images; the floor therefore uses as many training images as there
  are generated ones (up to all 1437), so both carry the same bias.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time

import numpy as np

from . import nn, ops
from .autograd import Tensor, no_grad
from .backend import BackendUnavailable, get_backend, numpy_backend
from .checkpoint import FORMAT_STATE, CheckpointError, load_network, read_tensors, save_tensors
from .cli import MAX_SEED, Parser, UsageError, check_environment, integer, out_of_memory
from .data import DatasetError, load_dataset
from .models import IMAGE_SIZES, Generator, ModelConfigError, init_weights
from .optim import Adam
from .sampling import SamplingError, generate

NUM_CLASSES = 10
FEATURES = 64               # width of the last convolution = dimension of the FD features
CLASSIFIER_FORMAT = "dcgan-cuda-digits-classifier"
# Bump when anything that changes the trained weights changes (architecture, data,
# augmentation, optimiser, schedule): cached classifiers of another version are retrained.
RECIPE_VERSION = 1
RECIPE = dict(epochs=10, batch_size=64, lr=2e-3, decay_after=7, max_shift=0.0625)

COVER_FRACTION = 0.01       # a class is covered by >= 1% of the images ...
COVER_CONFIDENCE = 0.5      # ... classified as it with at least this confidence
SAMPLE_SEED = 0             # noise for the generated images
UNTRAINED_SEED = 0          # initial weights of the untrained generator
REAL_SUBSAMPLE_SEED = 0     # which training images form the floor when N < 1437
MAX_SAMPLES = 100_000       # --n-samples: 100,000 images of 128x128x3 are 20 GB of floats
TARGET_RATIO = 5.0          # the target: FD at least 5x closer to the floor than to untrained


class EvaluationError(ValueError):
    """The evaluation cannot be done as asked; the message says why."""


# =========================================================================== statistics
def gaussian_stats(features):
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise EvaluationError(f"need at least 2 feature vectors of shape (N, D), got {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))  # (1, 1), not 0-d, for D = 1


def _psd_sqrt(s):
    """The symmetric square root of a symmetric positive semi-definite matrix.

    Rounding can leave tiny negative eigenvalues in a covariance; they are clipped to 0
    (the exact matrix has none), so no square root of a negative number appears.
    """
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """The Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

        ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^1/2 S2 S1^1/2)^1/2)

    The last trace equals Tr((S1 S2)^1/2), the usual way of writing it, because S1 S2 is
    similar to S1^1/2 S2 S1^1/2. We take the symmetric form: it is positive semi-definite,
    so a symmetric eigendecomposition gives its square root's trace exactly, where a
    general matrix square root of the non-symmetric S1 S2 can return complex rounding
    noise (and is slow). Reported as a squared distance, like FID.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    middle = (middle + middle.T) / 2  # symmetric up to rounding; make it exactly so for eigvalsh
    tr_cross = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_cross
    # The exact value is >= 0; rounding can push identical inputs a hair below it.
    return float(max(value, 0.0))


def class_histogram(probs):
    """How many of the images the classifier assigns to each class (argmax), (K,) ints."""
    probs = np.asarray(probs)
    return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])


def classes_covered(probs, fraction=COVER_FRACTION, confidence=COVER_CONFIDENCE):
    """The classes that at least ``fraction`` of the images (and at least one) are
    confidently (top probability >= ``confidence``) classified as, sorted."""
    probs = np.asarray(probs)
    confident = probs.max(axis=1) >= confidence
    counts = np.bincount(probs.argmax(axis=1)[confident], minlength=probs.shape[1])
    need = max(1, math.ceil(fraction * len(probs)))
    return [int(k) for k in np.flatnonzero(counts >= need)]


def kl_from_uniform(histogram):
    """KL(p || uniform) in nats for a histogram of counts: sum_k p_k ln(K p_k).

    0 when every class is equally frequent; ln K when one class has everything. Empty
    classes contribute 0 (p ln p -> 0), so the value stays finite.
    """
    h = np.asarray(histogram, dtype=np.float64)
    if h.sum() <= 0:
        raise EvaluationError("KL of an empty histogram is undefined")
    p = h / h.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(len(p) * p[nz])))


# =========================================================================== classifier
class DigitsClassifier(nn.Module):
    """A small convnet: blocks of (4x4 stride-2 convolution, batchnorm, ReLU), global max
    pooling, a linear layer to 10 logits.

    The convolutions halve the image down to 4x4, like the discriminator's, so there are
    log2(S/4) of them; their widths double on the way down to ``FEATURES`` (64) channels.
    Global max pooling turns the last block into 64 features whatever the image size
    ("is this stroke pattern anywhere in the image"); those are what the Fréchet distance
    compares. Flattening the 4x4x64 volume instead would give 1024 dimensions, far too
    many for covariances estimated from 360 held-out images; 64 keeps the estimate sound
    (and the classifier trains in seconds: 97.8% held-out accuracy at 16px, 98.3% at 32px).
    """

    def __init__(self, image_size, nc):
        super().__init__()
        if image_size not in IMAGE_SIZES:
            raise EvaluationError(f"no classifier for image size {image_size}: choose one of "
                                  f"{', '.join(map(str, IMAGE_SIZES))}")
        if nc not in (1, 3):
            raise EvaluationError(f"no classifier for {nc}-channel images (1 or 3)")
        self.image_size, self.nc = image_size, nc
        blocks = int(np.log2(image_size // 4))
        layers, width_in = [], nc
        for i in range(blocks):
            width = FEATURES >> (blocks - 1 - i)
            layers += [nn.Conv2d(width_in, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            width_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURES, NUM_CLASSES)

    def features(self, x):
        """Images (N, nc, S, S) in [-1, 1] -> features (N, 64)."""
        return ops.flatten(ops.adaptive_max_pool2d(self.body(x), 1))

    def forward(self, x):
        """Images (N, nc, S, S) in [-1, 1] -> logits (N, 10)."""
        return self.head(self.features(x))


def _init_classifier(net, rng):
    """He-normal convolutions (each is followed by batchnorm and ReLU), PyTorch's default
    uniform init for the linear head; drawn in name order so a seed fixes every weight."""
    for _, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            fan_in = int(np.prod(m.weight.shape[1:]))
            m.weight.data = m.backend.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), m.weight.shape))
        elif isinstance(m, nn.Linear):
            bound = 1.0 / np.sqrt(m.weight.shape[1])
            m.weight.data = m.backend.asarray(rng.uniform(-bound, bound, m.weight.shape))
            m.bias.data = m.backend.asarray(rng.uniform(-bound, bound, m.bias.shape))
    return net


def _one_blas_thread():
    """Run BLAS on one thread inside the block.

    OpenBLAS splits a float32 product differently for different thread counts, so the
    rounding, and after a few hundred Adam steps the weights, would depend on how many
    cores the machine has. The classifier's matrices are small (batches of 64) and gain
    little from threads anyway; on a busy shared machine one thread is even much faster.
    threadpoolctl comes with scikit-learn, which the digits already need.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _shift(images, rng, max_shift):
    """Translate each image by a random whole number of pixels (up to ``max_shift`` of its
    size) in x and y, filling with background (-1).

    Generated digits are rarely centred exactly as the scans were, and the classifier
    should judge their shape, not their position. (It also generalises better: 98.3%
    held-out accuracy at 32px with shifts of up to 2 pixels, 97.5% without.)
    """
    n, _, s, _ = images.shape
    m = int(round(max_shift * s))
    if m == 0:
        return images
    padded = np.pad(images, ((0, 0), (0, 0), (m, m), (m, m)), constant_values=-1.0)
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, n))
    out = np.empty_like(images)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s]
    return out


def train_classifier(image_size, nc=1, seed=0, epochs=None, max_images=None, log=None):
    """Train a :class:`DigitsClassifier` on the digits TRAIN split, on the NumPy backend.

    Returns ``(net, test_accuracy)`` with the net in eval mode. The recipe is ``RECIPE``:
    Adam at lr 2e-3, batches of 64, random shifts, lr / 10 for the last 3 of 10 epochs (a
    short final annealing, so the weights settle instead of jittering at the end of the
    last epoch). Everything random comes
    from ``seed``, so the same seed gives the same weights. ``epochs`` and ``max_images``
    shorten the recipe, for tests.
    """
    epochs = RECIPE["epochs"] if epochs is None else epochs
    backend = numpy_backend()
    train = load_dataset("digits", image_size=image_size, nc=nc, split="train", max_images=max_images)
    rng = np.random.default_rng([seed, 0xC1A55])
    net = _init_classifier(DigitsClassifier(image_size, nc), rng)
    opt = Adam(net.parameters(), lr=RECIPE["lr"], betas=(0.9, 0.999))
    n, bs = len(train), RECIPE["batch_size"]
    t0 = time.perf_counter()
    with _one_blas_thread():
        for epoch in range(epochs):
            opt.lr = RECIPE["lr"] * (0.1 if epoch >= RECIPE["decay_after"] else 1.0)
            order = rng.permutation(n)
            for lo in range(0, n, bs):
                idx = order[lo:lo + bs]
                if len(idx) < 2:  # train-mode batchnorm needs two images
                    continue
                x = _shift(train.batch(idx), rng, RECIPE["max_shift"])
                labels = Tensor(backend.asarray(train.labels[idx], dtype=np.int32), backend)
                loss = ops.cross_entropy(net(Tensor(x, backend)), labels)
                opt.zero_grad()
                loss.backward()
                opt.step()
    net.eval()
    test = load_dataset("digits", image_size=image_size, nc=nc, split="test")
    _, probs = classify(net, test.batch(slice(None)))
    accuracy = float(np.mean(probs.argmax(axis=1) == test.labels))
    if log:
        log(f"[evaluate] trained the {image_size}x{image_size}x{nc} digits classifier (seed {seed}) "
            f"in {time.perf_counter() - t0:.1f}s: held-out accuracy {accuracy:.2%}")
    return net, accuracy


def classify(net, images, batch_size=256):
    """Features (N, 64) and softmax probabilities (N, 10), float64 host arrays, of images
    (N, nc, S, S) float in [-1, 1], with eval-mode batchnorm and no graph recorded."""
    backend = numpy_backend()
    training = net.training
    net.eval()
    feats, probs = [], []
    try:
        with no_grad(), _one_blas_thread():  # the same features whatever the core count
            for lo in range(0, len(images), batch_size):
                x = Tensor(backend.asarray(images[lo:lo + batch_size]), backend)
                f = net.features(x)
                feats.append(f.numpy().astype(np.float64))
                z = net.head(f).numpy().astype(np.float64)
                z -= z.max(axis=1, keepdims=True)
                p = np.exp(z)
                probs.append(p / p.sum(axis=1, keepdims=True))
    finally:
        net.train(training)
    return np.concatenate(feats), np.concatenate(probs)


def cache_dir():
    """Where trained classifiers are kept: ``$DCGAN_CUDA_CACHE``, else
    ``$XDG_CACHE_HOME/dcgan_cuda``, else ``~/.cache/dcgan_cuda``."""
    if os.environ.get("DCGAN_CUDA_CACHE"):
        return os.environ["DCGAN_CUDA_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dcgan_cuda")


def classifier_path(image_size, nc, seed):
    return os.path.join(cache_dir(), f"digits_classifier_{image_size}px_{nc}ch_seed{seed}"
                                     f"_v{RECIPE_VERSION}.safetensors")


def _read_cached(path, image_size, nc, seed):
    """(classifier, accuracy, None) from the cache, or (None, None, why not)."""
    if not os.path.exists(path):
        return None, None, "none cached"
    try:
        tensors, meta = read_tensors(path)
        want = dict(format=CLASSIFIER_FORMAT, recipe_version=RECIPE_VERSION,
                    image_size=image_size, nc=nc, seed=seed)
        wrong = [k for k, v in want.items() if meta.get(k) != v]
        if wrong:
            raise CheckpointError(f"its metadata differs in {', '.join(wrong)}")
        net = DigitsClassifier(image_size, nc)
        net.load_state_dict(tensors)
        accuracy = float(meta["test_accuracy"])
    except (CheckpointError, ValueError, KeyError, TypeError) as exc:
        return None, None, f"the cached classifier {path} is unusable ({exc})"
    return net.eval(), accuracy, None


def load_classifier(image_size, nc=1, seed=0, log=print):
    """The digits classifier for this image size and channel count: from the cache, or
    trained now (and cached, atomically). A missing, corrupt or outdated cache file is
    retrained, never fatal; failing to *write* the cache only costs a warning.

    Returns ``(net, info)``, info = {path, seed, recipe_version, test_accuracy, cached}.
    """
    path = classifier_path(image_size, nc, seed)
    net, accuracy, why_not = _read_cached(path, image_size, nc, seed)
    cached = net is not None
    if not cached:
        if log and why_not != "none cached":
            log(f"[evaluate] {why_not}; retraining")
        elif log:
            log(f"[evaluate] training the digits classifier for {image_size}x{image_size}x{nc} "
                f"images (once; cached in {cache_dir()})")
        net, accuracy = train_classifier(image_size, nc, seed, log=log)
        meta = dict(format=CLASSIFIER_FORMAT, recipe_version=RECIPE_VERSION, image_size=image_size,
                    nc=nc, seed=seed, test_accuracy=accuracy, recipe=RECIPE)
        try:
            os.makedirs(cache_dir(), exist_ok=True)
            save_tensors(path, net.state_dict(), meta)
        except OSError as exc:
            if log:
                log(f"[evaluate] warning: cannot cache the classifier in {path} ({exc}); "
                    "it will be retrained next time")
    info = dict(path=path, seed=seed, recipe_version=RECIPE_VERSION, test_accuracy=accuracy,
                cached=cached)
    return net, info


# ============================================================================ generation
def untrained_like(netG, seed=UNTRAINED_SEED):
    """A freshly initialised generator with netG's architecture, on netG's backend."""
    fresh = Generator(netG.nz, netG.ngf, netG.nc, netG.image_size, netG.arch)
    return init_weights(fresh, np.random.default_rng(seed)).to(netG.backend)


# ============================================================================ evaluation
class Evaluator:
    """Scores images and generators against the held-out digits at one image size.

    Holds the classifier and the held-out reference statistics, so a training run that
    evaluates every few epochs pays for them once. The floor and ceiling rows are cached
    per sample count.
    """

    def __init__(self, image_size, nc=1, classifier_seed=0, log=print):
        self.image_size, self.nc, self.log = image_size, nc, log
        self.classifier, self.classifier_info = load_classifier(image_size, nc, classifier_seed, log)
        self.heldout = load_dataset("digits", image_size=image_size, nc=nc, split="test")
        feats, probs = classify(self.classifier, self.heldout.batch(slice(None)))
        self.reference = gaussian_stats(feats)
        self.heldout_row = self._row(feats, probs, frechet=0.0)
        self.heldout_row["accuracy"] = float(np.mean(probs.argmax(axis=1) == self.heldout.labels))
        self._cache = {}

    def _row(self, feats, probs, frechet=None):
        hist = class_histogram(probs)
        covered = classes_covered(probs)
        if frechet is None:
            frechet = frechet_distance(*gaussian_stats(feats), *self.reference)
        return {"images": int(len(probs)), "frechet_distance": frechet,
                "classes_covered": len(covered), "covered": covered,
                "kl_uniform": kl_from_uniform(hist), "mean_confidence": float(probs.max(axis=1).mean()),
                "histogram": [int(c) for c in hist]}

    def score_images(self, images):
        """The figures for images (N, nc, S, S) float in [-1, 1] against the held-out set."""
        images = np.asarray(images, dtype=np.float32)
        want = (self.nc, self.image_size, self.image_size)
        if images.ndim != 4 or images.shape[1:] != want:
            raise EvaluationError(f"images must have shape (N, {want[0]}, {want[1]}, {want[2]}), "
                                  f"got {images.shape}")
        return self._row(*classify(self.classifier, images))

    def score_generator(self, netG, n, seed=SAMPLE_SEED, bn_mode="train", batch_size=64):
        self.check_generator(netG)
        return self.score_images(generate(netG, n, seed=seed, bn_mode=bn_mode, batch_size=batch_size))

    def real_floor(self, n):
        """Training images (``n``, or all if fewer) against the held-out ones."""
        if ("real", n) not in self._cache:
            train = load_dataset("digits", image_size=self.image_size, nc=self.nc, split="train",
                                 max_images=n, seed=REAL_SUBSAMPLE_SEED)
            self._cache["real", n] = self.score_images(train.batch(slice(None)))
        return self._cache["real", n]

    def untrained(self, netG, n, seed=SAMPLE_SEED, bn_mode="train", batch_size=64):
        key = ("untrained", n, seed, bn_mode, batch_size, netG.arch, netG.nz, netG.ngf,
               netG.backend.name)
        if key not in self._cache:
            self._cache[key] = self.score_generator(untrained_like(netG), n, seed, bn_mode, batch_size)
        return self._cache[key]

    def check_generator(self, netG):
        if (netG.nc, netG.image_size) != (self.nc, self.image_size):
            raise EvaluationError(f"this evaluator measures {self.nc}-channel {self.image_size}px images; "
                                  f"the generator makes {netG.nc}-channel {netG.image_size}px ones")


def closeness_ratio(fd_generated, fd_floor, fd_untrained):
    """How many times closer the generated FD is to the floor than to the untrained one:
    (untrained - generated) / (generated - floor). None when generated <= floor (closer
    than the floor: as good as this measurement can tell)."""
    gap = fd_generated - fd_floor
    return None if gap <= 0 else (fd_untrained - fd_generated) / gap


def evaluate_generator(netG, backend=None, n_samples=1000, seed=SAMPLE_SEED, bn_mode="train",
                       batch_size=64, classifier_seed=0, evaluator=None, log=print):
    """Every figure for ``netG`` and its floor and ceiling, as a JSON-able dict.

    netG generates on ``backend`` (default: the one it lives on; it must live there).
    Keys: ``generated``, ``real_heldout``, ``real_train`` (the floor), ``untrained`` (the
    ceiling) — each {images, frechet_distance, classes_covered, covered, kl_uniform,
    mean_confidence, histogram} — plus ``ratio`` (:func:`closeness_ratio`), ``target_met``
    (10 classes covered and ratio >= 5), ``classifier`` (its cache path and held-out
    accuracy) and the settings used.
    """
    if backend is not None and netG.backend is not backend:
        raise EvaluationError(f"the generator lives on the {netG.backend.name} backend, not on "
                              f"{backend.name}: move it with netG.to(backend) first")
    # The images first: a generator that cannot make finite ones is refused before the
    # classifier is loaded (or trained, the first time: tens of seconds).
    images = generate(netG, n_samples, seed=seed, bn_mode=bn_mode, batch_size=batch_size)
    if evaluator is None:
        evaluator = Evaluator(netG.image_size, netG.nc, classifier_seed, log)
    evaluator.check_generator(netG)
    generated = evaluator.score_images(images)
    floor = evaluator.real_floor(n_samples)
    untrained = evaluator.untrained(netG, n_samples, seed, bn_mode, batch_size)
    ratio = closeness_ratio(generated["frechet_distance"], floor["frechet_distance"],
                            untrained["frechet_distance"])
    return {
        "image_size": netG.image_size, "nc": netG.nc, "arch": netG.arch,
        "backend": netG.backend.name, "n_samples": n_samples, "seed": seed, "bn_mode": bn_mode,
        "classifier": evaluator.classifier_info,
        "generated": generated, "real_heldout": evaluator.heldout_row, "real_train": floor,
        "untrained": untrained, "ratio": ratio,
        "target_met": (generated["classes_covered"] == NUM_CLASSES
                       and (ratio is None or ratio >= TARGET_RATIO)),
    }


# ============================================================================ checkpoints
def check_trained_on_digits(path, meta):
    """A training state records its dataset: these figures mean something for digits only."""
    if meta.get("format") == FORMAT_STATE:
        progress = meta.get("progress")
        config = progress.get("config") if isinstance(progress, dict) else None
        dataset = config.get("dataset") if isinstance(config, dict) else None
        if dataset not in (None, "digits"):
            raise EvaluationError(f"{path} was trained on {dataset!r}; these figures measure "
                                  "against the digits dataset only")


# ============================================================================ the CLI
COLUMNS = (("generated", "generated"), ("real held-out", "real_heldout"),
           ("real train (floor)", "real_train"), ("untrained (ceiling)", "untrained"))


def format_table(result):
    """The result as a table, one row per image source, with what each row means."""
    head = (f"{'source':<20} {'images':>6}  {'Fréchet dist.':>13}  {'classes':>7}  "
            f"{'KL(h||unif)':>11}  {'confidence':>10}")
    lines = [head, "-" * len(head)]
    for label, key in COLUMNS:
        r = result[key]
        fd = "(reference)" if key == "real_heldout" else f"{r['frechet_distance']:.3f}"
        lines.append(f"{label:<20} {r['images']:>6}  {fd:>13}  {r['classes_covered']:>4}/10  "
                     f"{r['kl_uniform']:>11.4f}  {r['mean_confidence']:>10.4f}")
    ratio = result["ratio"]
    closeness = ("at or below the floor" if ratio is None
                 else f"{ratio:.1f}x closer to the floor than to the untrained generator")
    histogram = "  ".join(f"{k}:{c}" for k, c in enumerate(result["generated"]["histogram"]))
    lines += ["",
              f"generated images per predicted digit: {histogram}",
              "",
              "Fréchet distance: between the classifier features of the row's images and of the",
              "  held-out ones (lower is better).",
              "classes: digits that >= 1% of the images are classified as, with confidence >= 0.5.",
              "KL(h||unif): of the predicted-digit histogram from uniform, in nats (0: balanced,",
              "  2.30: a single digit).",
              "",
              f"generated FD is {closeness}; target (10/10 classes, >= {TARGET_RATIO:g}x): "
              + ("met" if result["target_met"] else "not met")]
    return "\n".join(lines)


def build_parser():
    p = Parser(
        prog="python -m dcgan_cuda.evaluate",
        description="Measure a digits generator's samples: Fréchet distance in the features of "
                    "a digits classifier trained by this project, classes covered, KL of the class "
                    "histogram from uniform, classifier confidence; beside the same figures for "
                    "real and for untrained-generator images.")
    p.add_argument("--netG", "--net-g", dest="netG", required=True,
                   help="generator to evaluate: a netG_epoch_N.safetensors file or checkpoint.safetensors")
    p.add_argument("--n-samples", "--nSamples", dest="n_samples", type=integer(2, MAX_SAMPLES), default=1000,
                   help="images to generate (also the size of the real-train floor, up to 1437)")
    p.add_argument("--seed", type=integer(0, MAX_SEED), default=SAMPLE_SEED, help="seed of the generator's noise")
    p.add_argument("--bn-mode", choices=("train", "eval"), default="train",
                   help="generator batchnorm: train (batch statistics, as training's sample grids) "
                        "or eval (running averages)")
    p.add_argument("--batch-size", "--batchSize", dest="batch_size", type=integer(2, MAX_SAMPLES), default=64,
                   help="generation batch size (matters for train-mode batchnorm)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "sim"),
                   help="where the generator runs; the classifier always runs on the CPU")
    p.add_argument("--classifier-seed", type=integer(0, MAX_SEED), default=0, help="seed of the digits classifier")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    return p


def main(argv=None):
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 -- stdout is for the result
    try:
        check_environment()
        args = build_parser().parse_args(argv)
        # The file is read first, so a bad one is refused before any device work.
        netG, meta = load_network(args.netG, "generator")
        check_trained_on_digits(args.netG, meta)
        backend = get_backend(args.device, announce=log)
        netG.to(backend)
        result = evaluate_generator(netG, backend, args.n_samples, args.seed, args.bn_mode,
                                    args.batch_size, args.classifier_seed, log=log)
    except (UsageError, EvaluationError, CheckpointError, ModelConfigError, DatasetError,
            BackendUnavailable, ops.OpError, SamplingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print("error: " + out_of_memory(exc, "--n-samples and --batch-size"), file=sys.stderr)
        return 2
    result["checkpoint"] = args.netG
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        info = result["classifier"]
        print(f"{args.netG}: {result['n_samples']} samples ({result['arch']}, "
              f"{result['nc']}x{result['image_size']}x{result['image_size']}, backend {result['backend']}, "
              f"batchnorm {result['bn_mode']} mode, seed {result['seed']})")
        print(f"classifier: held-out accuracy {info['test_accuracy']:.2%} ({info['path']})\n")
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
