"""``python -m dcgan_cuda.nearest``: section 4.1 of the DCGAN paper; see experiments/nearest.py."""
import sys

from .experiments.nearest import main

if __name__ == "__main__":
    sys.exit(main())
