#!/usr/bin/env python
"""Reproduce the experiment of collapse_mc/specs/paper2_he_vs_rai_1d.toml (see its header for the paper's setting and
numbers) and draw its figures.  Usage: python scripts/paper2_he_vs_rai_1d.py [--quick] [--db PATH] [--out DIR] [--json];
with --protocols [--quick] [--trials N]: He vs RAI under several training protocols (jobs/protocols.py)"""
import sys

from collapse_mc.jobs.example_fits import store_example_fits
from collapse_mc.jobs.reproduce import main

if __name__ == "__main__":
    if "--protocols" in sys.argv[1:]:  # He vs RAI under several training protocols (collapse_mc/jobs/protocols.py)
        from collapse_mc.jobs.protocols import main as protocols_main
        sys.exit(protocols_main("paper2_he_vs_rai_1d", sys.argv[1:]))
    sys.exit(main("paper2_he_vs_rai_1d", sys.argv[1:], after=store_example_fits))
