"""The kernel files of kernels/ (installed as dcgan_cuda.kernels), found on disk."""
import importlib
import pathlib

import dcgan_cuda.kernels as kernels_package

INFRASTRUCTURE = {"__init__", "jit", "harness", "simulator_warp"}
KERNEL_DIR = pathlib.Path(kernels_package.__file__).parent
KERNEL_FILES = sorted(p.stem for p in KERNEL_DIR.glob("*.py") if p.stem not in INFRASTRUCTURE)


def import_all():
    return {name: importlib.import_module(f"dcgan_cuda.kernels.{name}") for name in KERNEL_FILES}
