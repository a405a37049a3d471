"""python -m dcgan_cuda.kernels.batchnorm [--sim] [--version N]: validate (and time) every version."""
import sys

from dcgan_cuda.kernels import batchnorm, harness

sys.exit(harness.main(batchnorm))
