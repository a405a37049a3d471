"""python -m dcgan_cuda.kernels.reduction [--sim] [--version N]: validate (and time) every version."""
import sys

from dcgan_cuda.kernels import harness, reduction

sys.exit(harness.main(reduction))
