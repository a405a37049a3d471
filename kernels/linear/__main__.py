"""python -m dcgan_cuda.kernels.linear [--sim] [--version N]: validate (and time) every version."""
import sys

from dcgan_cuda.kernels import harness, linear

sys.exit(harness.main(linear))
