#!/usr/bin/env python
"""Deep narrow vs shallow wide networks on MNIST-1D, He vs RAI: test accuracy and collapse to a constant
prediction (collapse_mc/jobs/mnist1d.py). `--quick` for a one-minute check; needs `pip install -e '.[mnist1d]'`."""
import sys

from collapse_mc.jobs.mnist1d import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
