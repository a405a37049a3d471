"""python -m dcgan_cuda.kernels.conv2d [--sim] [--version N]: validate (and time) every version."""
import sys

from dcgan_cuda.kernels import conv2d, harness

sys.exit(harness.main(conv2d))
