"""dcgan-cuda: DCGAN trained by hand-written Numba CUDA kernels, with a NumPy reference.

``kernels/`` is installed as the subpackage ``dcgan_cuda.kernels`` (package_dir below), so
the course material sits at the top of the repository but imports as part of the package.
Install editable (``pip install -e .``): a bare checkout on PYTHONPATH does not see
``dcgan_cuda.kernels``.
"""
from setuptools import setup

setup(
    name="dcgan-cuda",
    version="0.1.0",
    description="DCGAN from the metal up: hand-written Numba CUDA kernels, our own autograd and Adam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # A kernel family written as a folder (one file per version) is a subpackage of its own.
    packages=["dcgan_cuda", "dcgan_cuda.kernels", "dcgan_cuda.kernels.linear", "dcgan_cuda.kernels.conv2d",
              "dcgan_cuda.kernels.batchnorm", "dcgan_cuda.kernels.reduction",
              "dcgan_cuda.kernels.exercises", "dcgan_cuda.kernels.exercises.solutions", "dcgan_cuda.experiments"],
    package_dir={"dcgan_cuda": "dcgan_cuda", "dcgan_cuda.kernels": "kernels",
                 "dcgan_cuda.kernels.linear": "kernels/linear", "dcgan_cuda.kernels.conv2d": "kernels/conv2d",
                 "dcgan_cuda.kernels.batchnorm": "kernels/batchnorm",
                 "dcgan_cuda.kernels.reduction": "kernels/reduction",
                 "dcgan_cuda.kernels.exercises": "kernels/exercises",
                 "dcgan_cuda.kernels.exercises.solutions": "kernels/exercises/solutions"},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "numba-cuda>=0.20",
        "pillow>=9.0",
        "scikit-learn>=1.2",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "cuda12": ["cupy-cuda12x>=13.0", "numba-cuda[cu12]>=0.20"],
        "cuda13": ["cupy-cuda13x>=13.6", "numba-cuda[cu13]>=0.20"],
        # nvidia-cuda-nvcc: ptxas, for the register and spill report (bench/ptxas_report.py).
        # wheel: bench/gpu_check.sh --dry-run checks its offline install (--no-build-isolation) in CI.
        # lmdb: the lsun dataset's databases. imagehash: dedup's baseline (perceptual hashes).
        "lsun": ["lmdb>=1.4"],
        "dedup": ["imagehash>=4.3"],
        # pytest-xdist: tests/test_simulator.py runs the simulator suite on every core.
        "test": ["pytest>=7.0", "pytest-xdist>=3.0", "hypothesis>=6.80", "wheel", "numba-cuda[cu13]>=0.20",
                 "nvidia-cuda-nvcc>=13.5", "lmdb>=1.4", "imagehash>=4.3"],
    },
)
