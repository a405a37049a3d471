"""``python -m dcgan_cuda.probe``: sections 5.1 and 5.2 of the DCGAN paper; see experiments/probe.py."""
import sys

from .experiments.probe import main

if __name__ == "__main__":
    sys.exit(main())
