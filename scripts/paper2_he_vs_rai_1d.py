#!/usr/bin/env python
"""Reproduce the experiment of collapse_mc/specs/paper2_he_vs_rai_1d.toml (see its header for the paper's setting and numbers)
and draw its figures: the same as `collapse-mc reproduce paper2_he_vs_rai_1d [--quick] [--db PATH] [--out DIR] [--json]`."""
import sys

from collapse_mc.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "paper2_he_vs_rai_1d", *sys.argv[1:]]))
