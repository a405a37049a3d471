"""What the GPU machine has, and whether our kernels can run on it at all.

    python3 bench/gpu_versions.py            (the first stage of bench/gpu_check.sh)

Prints the versions of everything the GPU path depends on, where libNVVM was found, the
PTX ISA version our kernels compile to, the driver's CUDA version and the card; then
launches one of our kernels and checks its result against NumPy. Exit status: 0 when the
kernel ran and was right; 3 when it could not run (no GPU, or a PTX the driver cannot
load: the rest of the GPU check would only fail test after test), with one line that says
why; 0 with "no GPU" under --no-gpu-ok (the dry run on a machine without one).
"""
import argparse
import importlib.metadata
import os
import platform
import re
import subprocess
import sys

DISTRIBUTIONS = ("numpy", "numba", "numba-cuda", "llvmlite", "cuda-core", "cuda-bindings", "cuda-pathfinder", "nvidia-nvvm",
                 "cupy-cuda13x", "cupy-cuda12x", "torch", "pytest", "hypothesis")
NO_GPU = 3


def installed_versions():
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def nvvm_location():
    """Where libNVVM is loaded from: the nvidia-nvvm wheel (its version is printed with the
    others), or a CUDA toolkit (CUDA_HOME; the resolved path names the toolkit's version)."""
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        lib = load_nvidia_dynamic_lib("nvvm")
        return f"{os.path.realpath(lib.abs_path)} (found via {lib.found_via})"
    except Exception as exc:      # noqa: BLE001  (an old cuda-pathfinder, or no NVVM at all)
        return f"not found ({type(exc).__name__}: {exc})"


def ptx_isa_of_our_kernels():
    """The `.version` line of the PTX our kernels compile to: the ISA the driver must know."""
    from dcgan_cuda.kernels import elementwise, jit
    ptx = elementwise.relu_forward_v1.ptx(cc=(9, 0))[0]
    return re.search(r"^\.version\s+(\S+)", ptx, re.M).group(1)


def driver_cuda_version():
    from numba.cuda.cudadrv.driver import driver
    return ".".join(map(str, driver.get_version()))


def run_one_kernel():
    """relu on 10,000 numbers by our kernel on the GPU, against NumPy."""
    import cupy
    import numpy as np

    from dcgan_cuda.kernels import elementwise
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    y = cupy.empty_like(cupy.asarray(x))
    elementwise.relu_forward(cupy.asarray(x), y)
    if not np.array_equal(cupy.asnumpy(y), np.maximum(x, 0)):
        raise RuntimeError("relu on the GPU differs from NumPy's")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-gpu-ok", action="store_true", help="exit 0 on a machine without a GPU (dry run)")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} ({sys.executable})")
    for name, version in installed_versions().items():
        print(f"{name} {version or 'not installed'}")
    print(f"CUDA_HOME {os.environ.get('CUDA_HOME', 'unset')}")
    print(f"libNVVM {nvvm_location()}")
    try:
        isa = ptx_isa_of_our_kernels()
    except Exception as exc:     # noqa: BLE001
        print(f"STOP: our kernels do not compile to PTX here: {type(exc).__name__}: {exc}")
        return NO_GPU
    print(f"PTX ISA of our kernels {isa}")

    from dcgan_cuda.backend import gpu_status
    usable, reason = gpu_status()
    if not usable:
        print(f"no GPU: {reason}")
        return 0 if args.no_gpu_ok else NO_GPU
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    driver = driver_cuda_version()
    print(f"device {name}, {props['multiProcessorCount']} SMs, compute capability {props['major']}.{props['minor']}")
    print(f"driver supports CUDA {driver}; CuPy's runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        print(f"nvidia-smi: {smi.stdout.strip()}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"nvidia-smi not available: {exc}")
    try:
        run_one_kernel()
    except Exception as exc:     # noqa: BLE001
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"STOP: one of our kernels (PTX ISA {isa}, libNVVM {nvvm_location()}) does not run under this "
              f"driver (CUDA {driver}): {type(exc).__name__}: {first}")
        return NO_GPU
    print("one of our kernels ran on the GPU and matched NumPy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
