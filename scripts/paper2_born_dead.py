#!/usr/bin/env python
"""Reproduce the experiment of collapse_mc/specs/paper2_born_dead.toml (see its header for the paper's setting and numbers)
and draw its figures: the same as `collapse-mc reproduce paper2_born_dead [--quick] [--db PATH] [--out DIR] [--json]`."""
import sys

from collapse_mc.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "paper2_born_dead", *sys.argv[1:]]))
