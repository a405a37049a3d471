"""gpu_shaped — a kernel file as a GPU configures it, loaded into the simulator (or back).

Every kernel file picks its tile sizes and launch shapes from ``jit.SIMULATOR``: under the
simulator (one OS thread per GPU thread) blocks are tiny, so that tests stay fast; on a
GPU they are the real ones (256 threads, 128 x 128 tiles, ...). To see how the GPU's
configuration uses the memory system without a GPU, the access profiler needs the GPU's
sizes *and* the simulator's execution. ``load("conv2d")`` gives exactly that: a second
copy of kernels/conv2d/, imported from the same source files into a package of its own
(``dcgan_cuda.kernels._as_gpu``) whose ``jit`` says SIMULATOR = False to the sizes and
grid_1d, while every launch still goes through the running process's launcher (the
simulator, when it is on). ``load("conv2d", sizing="sim")`` is the reverse, used in a
process without the simulator to compile the simulator's sizes to PTX.

The copies are separate modules: their kernels are not in jit.REGISTRY (which lists the
project's kernels once) but in their package's own registry (``registered()``), and
their launches count in jit.LAUNCHES under the same names.
"""
from __future__ import annotations

import importlib
import os
import sys
import types

PACKAGES = {"gpu": "dcgan_cuda.kernels._as_gpu", "sim": "dcgan_cuda.kernels._as_sim"}
_HERE = os.path.dirname(os.path.abspath(__file__))


def _package(sizing):
    """The package whose modules see jit.SIMULATOR == (sizing == "sim"), made once."""
    name = PACKAGES[sizing]
    if name in sys.modules:
        return sys.modules[name]
    from . import jit as real
    package = types.ModuleType(name, f"kernels/ with the {sizing} sizes")
    package.__path__ = [_HERE]
    package.__package__ = name
    shim = types.ModuleType(name + ".jit", real.__doc__)
    shim.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    shim.__file__, shim.__package__ = real.__file__, name
    simulated = sizing == "sim"
    shim.SIMULATOR = simulated
    threads, cap = (real.SIM_THREADS, real.SIM_MAX_BLOCKS) if simulated else (real.THREADS, real.MAX_BLOCKS)

    def grid_1d(n):
        """jit.grid_1d with this package's sizes."""
        return max(1, min(cap, -(-n // threads))), threads

    registry = []

    def kernel(*signatures):
        """jit.kernel, registering the Kernel in this package only."""
        def wrap(py_func):
            made = real.Kernel(py_func, signatures)
            real.REGISTRY.remove(made)
            registry.append(made)
            return made
        return wrap

    shim.grid_1d, shim.kernel, shim.REGISTRY = grid_1d, kernel, registry
    sys.modules[name] = package
    sys.modules[name + ".jit"] = shim
    package.jit = shim
    return package


def load(module, sizing="gpu"):
    """kernels/<module> (a file, or a folder such as "conv2d"; or one file of a folder,
    "linear.v3_smem_tiles") with the given sizes."""
    _package(sizing)
    return importlib.import_module(f"{PACKAGES[sizing]}.{module}")


def is_shaped(module_name):
    return module_name.startswith(tuple(p + "." for p in PACKAGES.values()))


def import_module(module_name):
    """A shaped module by its full name (as a kernel's __module__ gives it)."""
    for sizing, package in PACKAGES.items():
        if module_name.startswith(package + "."):
            return load(module_name[len(package) + 1:], sizing)
    raise ValueError(f"{module_name} is not a shaped kernel module")


def registered():
    """Every Kernel made by the shaped copies loaded so far."""
    return [k for name in PACKAGES.values() if name + ".jit" in sys.modules for k in sys.modules[name + ".jit"].REGISTRY]


def as_sized(module_name):
    """The name under which another process finds ``module_name`` with the sizes it has in
    this one: a project kernel module imported normally under the simulator has the
    simulator's sizes, which a process without the simulator gets from the "sim" copy."""
    from .jit import SIMULATOR
    prefix = __package__ + "."
    if module_name.startswith(prefix) and not is_shaped(module_name) and SIMULATOR:
        return PACKAGES["sim"] + "." + module_name[len(prefix):]
    return module_name
