"""``python -m dcgan_cuda.arithmetic``: section 6.3.2 of the DCGAN paper; see experiments/arithmetic.py."""
import sys

from .experiments.arithmetic import main

if __name__ == "__main__":
    sys.exit(main())
