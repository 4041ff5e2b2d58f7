#!/usr/bin/env python
"""Reproduce the experiment of collapse_mc/specs/paper1_abs_collapse.toml (see its header for the paper's setting and numbers)
and draw its figures: the same as `collapse-mc reproduce paper1_abs_collapse [--quick] [--db PATH] [--out DIR] [--json]`."""
import sys

from collapse_mc.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "paper1_abs_collapse", *sys.argv[1:]]))
