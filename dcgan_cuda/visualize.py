"""``python -m dcgan_cuda.visualize``: section 6.2 of the DCGAN paper; see experiments/visualize.py."""
import sys

from .experiments.visualize import main

if __name__ == "__main__":
    sys.exit(main())
