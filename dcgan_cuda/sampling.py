"""Images from a generator: the one ``generate`` that the API, evaluate and the experiments use.

Batchnorm decides what a sample means. In **eval** mode every layer normalises with the
running statistics gathered in training, so each image is a function of its own z alone
(what the paper's experiments need: an interpolation's end point is G(z0) whatever else
shares its batch). In **train** mode each batch is normalised with its own statistics, as
during training and in the ``fake_samples_epoch_NNN.png`` grids that train writes (after
pytorch/examples); an image then depends on its batch, so the batches are cut to
near-equal sizes, never one image alone (a single image has no batch statistics).

Either way the generator is left as it was found: its train/eval flag, and the running
statistics that a train-mode forward pass would otherwise update.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .autograd import Tensor, no_grad

# The noise stream of generate(n, seed): np.random.default_rng([seed, NOISE_STREAM]), so a
# seed means the same images in every tool that samples this way (dcgan_cuda.evaluate too).
NOISE_STREAM = 0x5A3B1E
BN_MODES = ("train", "eval")


class SamplingError(ValueError):
    """generate() was asked for something it cannot do, or the generator produced NaN/Inf."""


@contextlib.contextmanager
def state_preserved(net):
    """Run a block that may update ``net``'s batchnorm buffers (train-mode forward passes)
    and put the buffers and the train/eval flag back afterwards.

    The values are copied back into the same arrays, never replaced by new ones: a step
    captured into a CUDA graph (--cuda-graph) keeps reading and writing the addresses the
    buffers had at capture."""
    training = net.training
    saved = [(m, {k: (np.array(b) if k in m._host_buffers else m.backend.copy(b))
                  for k, b in m._buffers.items()})
             for _, m in net.named_modules()]
    try:
        yield
    finally:
        for m, buffers in saved:
            for name, value in buffers.items():
                m._buffers[name][...] = value
        net.train(training)


def generate(netG, n=None, *, z=None, seed=0, bn_mode=None, batch_size=64):
    """Images G(z) as a host array (N, nc, S, S) with values in [-1, 1], in the generator's
    dtype (float32), computed on its own device (``netG.to(...)`` chooses it).

    Give either ``n``, the number of images, whose noise is drawn from ``seed`` as the
    generator's topology draws it (N(0, 1) or U(-1, 1)); or ``z``, host noise of shape
    (N, nz, 1, 1) or (N, nz) in the generator's dtype (float32 unless ``netG.double()``).
    ``bn_mode`` is "eval" or "train" for this call (see the module docstring), or None for
    the mode the generator is in (``netG.eval()`` / ``netG.train()``, as in PyTorch).
    Batches hold at most ``batch_size`` images.
    """
    if (n is None) == (z is None):
        raise SamplingError("generate: give the number of images n, or the noise z (not both)")
    if bn_mode is None:
        bn_mode = "train" if netG.training else "eval"
    if bn_mode not in BN_MODES:
        raise SamplingError(f"generate: bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise SamplingError(f"generate: batch_size must be a whole number >= 1, got {batch_size!r}")
    dtype = next(iter(netG.parameters())).dtype
    if z is None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise SamplingError(f"generate: n must be a whole number >= 0, got {n!r}")
        z = netG.sample_noise(int(n), np.random.default_rng([seed, NOISE_STREAM])).astype(dtype)
    z = np.asarray(z)
    if z.dtype != dtype:
        raise SamplingError(f"generate: z is {z.dtype} but the generator computes in {dtype}; "
                            f"pass z.astype(np.{dtype})")
    if z.ndim not in (2, 4) or z.shape[1] != netG.nz or z.shape[2:] not in ((), (1, 1)):
        raise SamplingError(f"generate: z must have shape (N, {netG.nz}, 1, 1) or (N, {netG.nz}), "
                            f"got {z.shape}")
    count = len(z)
    if count == 0:
        return np.zeros((0, netG.nc, netG.image_size, netG.image_size), dtype)
    if bn_mode == "train":
        if count < 2 or batch_size < 2:
            raise SamplingError(f"generate: train-mode batchnorm needs batches of at least 2 images "
                                f"(got {count} images, batch_size {batch_size}); use bn_mode='eval'")
        # Near-equal batches, so that none is a single image.
        chunks = np.array_split(np.arange(count), math.ceil(count / batch_size))
    else:
        chunks = [np.arange(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    backend, out = netG.backend, []
    # Overflow warnings off: the check below reports non-finite images in one line.
    with state_preserved(netG), no_grad(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        netG.train(bn_mode == "train")
        for chunk in chunks:
            part = np.ascontiguousarray(z[chunk[0]:chunk[-1] + 1])
            out.append(netG(Tensor(backend.asarray(part, dtype=dtype), backend)).numpy())
    images = np.concatenate(out)
    if not np.isfinite(images).all():
        # Finite weights can still overflow (weights of 1e30 give inf - inf in batchnorm):
        # a picture or a figure of such images would be nonsense.
        raise SamplingError("the generator's images hold NaN or Inf although its weights are "
                            "finite: its weights are far outside any trained range")
    return images
