"""``python -m dcgan_cuda.walk``: section 6.1 of the DCGAN paper; see experiments/walk.py."""
import sys

from .experiments.walk import main

if __name__ == "__main__":
    sys.exit(main())
