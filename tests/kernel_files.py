"""The kernel files of kernels/ (installed as dcgan_cuda.kernels), found on disk.

A family is a file (elementwise.py) or a folder with one file per version (conv2d/, with
an __init__.py that holds the family's table of versions and its launchers).
"""
import importlib
import pathlib

import dcgan_cuda.kernels as kernels_package

INFRASTRUCTURE = {"__init__", "jit", "harness", "access_profiler", "access_patterns", "gpu_shaped",
                  "simulator_warp", "diagrams"}
NOT_FAMILIES = INFRASTRUCTURE | {"exercises", "__pycache__"}
KERNEL_DIR = pathlib.Path(kernels_package.__file__).parent
KERNEL_FILES = sorted([p.stem for p in KERNEL_DIR.glob("*.py") if p.stem not in NOT_FAMILIES]
                      + [p.parent.name for p in KERNEL_DIR.glob("*/__init__.py") if p.parent.name not in NOT_FAMILIES])


def import_all():
    return {name: importlib.import_module(f"dcgan_cuda.kernels.{name}") for name in KERNEL_FILES}
