"""dcgan_cuda: DCGAN from the metal up, usable from Python as well as from the command line.

Shaped like what a PyTorch user reaches for::

    import dcgan_cuda
    netG = dcgan_cuda.load_generator("out/netG_epoch_24.safetensors")  # or out/checkpoint.safetensors
    images = dcgan_cuda.generate(netG, 16, seed=0)   # host float32 (16, nc, S, S) in [-1, 1]

Loading and sampling
    load_generator, load_discriminator(path, device="cpu")  any file ``dcgan_cuda.train``
        writes (a model file or the training checkpoint), rebuilt from the file alone, in
        eval mode; CheckpointError is the one error for "this file is not what you think".
    generate(netG, n, seed=0, bn_mode=None)  images from n noise vectors (or z=...), with
        eval or train batchnorm; SamplingError when that cannot be done.
    save_model(path, net)  a model file the CLI tools read.
Building and training
    Generator, Discriminator, build_models, init_weights   the two DCGAN topologies
    Tensor, no_grad   the autograd tensor (``.backward()``, ``.grad``, ``.to(device)``)
    nn, ops           layers with PyTorch's names; the differentiable ops (OpError)
    Adam              the optimizer, PyTorch's update rule
    load_dataset, DATASETS, DatasetError   digits (embedded), folder, cifar10, mnist, fake, ...
Devices
    get_backend(device)   "cpu" (NumPy), "cuda" (our kernels on a GPU), "sim" (Numba's
        simulator), "auto"; BackendUnavailable says why one cannot be used. Anything that
        takes a device takes one of these names or a backend.
    kernels           the CUDA kernels themselves (dcgan_cuda.kernels, the course material)

The names are imported on first use, so ``import dcgan_cuda`` stays cheap and importing a
kernel module does not drag in the rest.
"""

import importlib

_EXPORTS = {
    "load_generator": "checkpoint", "load_discriminator": "checkpoint", "save_model": "checkpoint",
    "CheckpointError": "checkpoint",
    "generate": "sampling", "SamplingError": "sampling",
    "Generator": "models", "Discriminator": "models", "build_models": "models", "init_weights": "models",
    "Tensor": "autograd", "no_grad": "autograd",
    "OpError": "ops",
    "Adam": "optim",
    "load_dataset": "data", "DATASETS": "data", "DatasetError": "data",
    "get_backend": "backend", "BackendUnavailable": "backend",
}
_SUBMODULES = ("nn", "ops", "data", "models", "kernels")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value   # once looked up, an ordinary attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
