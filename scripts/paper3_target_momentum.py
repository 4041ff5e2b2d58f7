#!/usr/bin/env python
"""Paper 3 (Arnekvist et al. 2020): fraction of dead ReLUs and P(dead after training) against target std,
momentum (SGD heavy ball, step-matched control, second lr, Adam beta1), depth, plain vs residual; and the
single-ReLU model's map of which starts end dead. The study lives in collapse_mc/jobs/paper3.py.

Usage: python scripts/paper3_target_momentum.py [--quick] [--out DIR] [--results PATH] [--json] [--from-json PATH]
"""
import sys

from collapse_mc.jobs.paper3 import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
