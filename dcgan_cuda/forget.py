"""``python -m dcgan_cuda.forget``: section 6.3.1 of the DCGAN paper; see experiments/forget.py."""
import sys

from .experiments.forget import main

if __name__ == "__main__":
    sys.exit(main())
