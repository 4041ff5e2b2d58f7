#!/usr/bin/env python
"""Reproduce the experiment of collapse_mc/specs/paper2_he_vs_rai_f4.toml (see its header for the paper's setting and numbers)
and draw its figures: the same as `collapse-mc reproduce paper2_he_vs_rai_f4 [--quick] [--db PATH] [--out DIR] [--json]`.
With --protocols [--quick] [--trials N]: He vs RAI under several training protocols (jobs/protocols.py)."""
import sys

from collapse_mc.cli import main

if __name__ == "__main__":
    if "--protocols" in sys.argv[1:]:  # He vs RAI under several training protocols (collapse_mc/jobs/protocols.py)
        from collapse_mc.jobs.protocols import main as protocols_main
        sys.exit(protocols_main("paper2_he_vs_rai_f4", sys.argv[1:]))
    sys.exit(main(["reproduce", "paper2_he_vs_rai_f4", *sys.argv[1:]]))
