"""The DCGAN generator and discriminator, in two topologies.

``pytorch`` (default) is pytorch/examples' dcgan: 4x4 kernels, stride 2, padding 1; G
projects z with a 4x4 transposed convolution from 1x1, D ends in a 4x4 valid convolution.
Its parameter names and shapes equal those of that example's netG/netD (at 64x64; other
sizes add or remove middle blocks with the same pattern of names).

``paper`` follows Radford et al.'s own code: 5x5 kernels with stride 2 and padding 2
(output_padding 1 in G so each layer exactly doubles), a dense projection of z to a
4x4x(8*ngf) volume (at 64x64) followed by batchnorm and ReLU, and D ending in flatten
then dense.

Both: batchnorm everywhere but G's output and D's input, ReLU in G, LeakyReLU(0.2) in D,
tanh output; D returns logits, one per image (the loss applies the sigmoid). Widths
double at every halving of resolution, so at the 4x4 end there are width * 2^(blocks-1)
channels, where blocks = log2(imageSize / 4).
"""
from __future__ import annotations

import numpy as np

from . import nn, ops

ARCHS = ("pytorch", "paper")
IMAGE_SIZES = (16, 32, 64, 128)


class ModelConfigError(ValueError):
    pass


def _blocks(image_size):
    if image_size not in IMAGE_SIZES:
        raise ModelConfigError(f"image size {image_size} is not supported: choose one of "
                               f"{', '.join(map(str, IMAGE_SIZES))}")
    return int(np.log2(image_size // 4))


def _check(arch, nc, nz, width):
    if arch not in ARCHS:
        raise ModelConfigError(f"unknown architecture {arch!r}: choose {' or '.join(ARCHS)}")
    if nc not in (1, 3):
        raise ModelConfigError(f"images must have 1 or 3 channels, got {nc}")
    if nz < 1 or width < 1:
        raise ModelConfigError(f"nz and the widths must be positive, got nz={nz}, width={width}")


class Generator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3, image_size=64, arch="pytorch"):
        super().__init__()
        _check(arch, nc, nz, ngf)
        blocks = _blocks(image_size)
        self.nz, self.ngf, self.nc, self.image_size, self.arch = nz, ngf, nc, image_size, arch
        width = ngf * 2 ** (blocks - 1)  # channels of the 4x4 volume
        if arch == "pytorch":
            layers = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False)]
            up = dict(kernel_size=4, stride=2, padding=1)
        else:
            layers = [nn.Linear(nz, width * 16, bias=False), nn.Unflatten((width, 4, 4))]
            up = dict(kernel_size=5, stride=2, padding=2, output_padding=1)
        layers += [nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(blocks - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, bias=False, **up),
                       nn.BatchNorm2d(width // 2), nn.ReLU()]
            width //= 2
        layers += [nn.ConvTranspose2d(width, nc, bias=False, **up), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        """z (N, nz, 1, 1) or (N, nz) -> images (N, nc, S, S) in [-1, 1]."""
        if z.ndim not in (2, 4) or z.shape[1] != self.nz or (z.ndim == 4 and z.shape[2:] != (1, 1)):
            raise ops.OpError(f"Generator: z must have shape (N, {self.nz}, 1, 1) or (N, {self.nz}), "
                              f"got {z.shape}")
        if self.arch == "pytorch":
            z = ops.reshape(z, (z.shape[0], self.nz, 1, 1))
        else:
            z = ops.reshape(z, (z.shape[0], self.nz))
        return self.main(z)

    def sample_noise(self, n, rng):
        """Host noise as each topology's authors drew it: N(0, 1) (pytorch) or U(-1, 1) (paper)."""
        if self.arch == "paper":
            z = rng.uniform(-1.0, 1.0, size=(n, self.nz, 1, 1))
        else:
            z = rng.standard_normal((n, self.nz, 1, 1))
        return z.astype(np.float32)


class Discriminator(nn.Module):
    def __init__(self, ndf=64, nc=3, image_size=64, arch="pytorch"):
        super().__init__()
        _check(arch, nc, 1, ndf)
        blocks = _blocks(image_size)
        self.ndf, self.nc, self.image_size, self.arch = ndf, nc, image_size, arch
        down = dict(kernel_size=4, stride=2, padding=1) if arch == "pytorch" else \
            dict(kernel_size=5, stride=2, padding=2)
        width = ndf
        layers = [nn.Conv2d(nc, width, bias=False, **down), nn.LeakyReLU(0.2)]
        for _ in range(blocks - 1):
            layers += [nn.Conv2d(width, width * 2, bias=False, **down),
                       nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        if arch == "pytorch":
            layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        else:
            layers += [nn.Flatten(), nn.Linear(width * 16, 1)]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        """images (N, nc, S, S) -> logits (N,)."""
        want = (self.nc, self.image_size, self.image_size)
        if x.ndim != 4 or x.shape[1:] != want:
            raise ops.OpError(f"Discriminator: images must have shape (N, {want[0]}, {want[1]}, {want[2]}), "
                              f"got {x.shape}")
        out = self.main(x)
        return ops.reshape(out, (x.shape[0],))

    def features(self, x):
        """The outputs of every convolution (before its batchnorm/activation), in order."""
        feats = []
        for layer in self.main:
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                feats.append(x)
        return feats


def init_weights(module, rng):
    """DCGAN's initialisation: conv/linear weights ~ N(0, 0.02); BN weight ~ N(1, 0.02), bias 0.

    Drawn on the host in a fixed (name) order from ``rng``, so every backend starts from the
    same numbers for the same seed.
    """
    for _, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            m.weight.data = m.backend.asarray(rng.normal(0.0, 0.02, m.weight.shape))
            if m.bias is not None:
                m.bias.data = m.backend.zeros(m.bias.shape)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data = m.backend.asarray(rng.normal(1.0, 0.02, m.weight.shape))
            m.bias.data = m.backend.zeros(m.bias.shape)
    return module


def build_models(arch="pytorch", image_size=64, nc=3, nz=100, ngf=64, ndf=64, seed=0, backend=None):
    """A freshly initialised (G, D) pair on ``backend`` (default NumPy)."""
    rng = np.random.default_rng(seed)
    netG = init_weights(Generator(nz, ngf, nc, image_size, arch), rng)
    netD = init_weights(Discriminator(ndf, nc, image_size, arch), rng)
    if backend is not None:
        netG.to(backend)
        netD.to(backend)
    return netG, netD
