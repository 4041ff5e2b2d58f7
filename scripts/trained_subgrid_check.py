#!/usr/bin/env python
"""The trained diagram's depth search against a uniform grid (issue: widths 2-5, 8 depths, 400 networks per
cell, the main job's protocol): prints per width and threshold both boundaries and whether they agree.

    python scripts/trained_subgrid_check.py            # full size: 5000 steps (minutes on a 2-core CPU)
    python scripts/trained_subgrid_check.py --steps 100 # what the CI test runs
"""
import argparse
import json
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000, help="optimizer steps (default 5000)")
    ap.add_argument("--trials", type=int, default=400, help="networks per uniform cell (default 400)")
    ap.add_argument("--init", default="he_normal", choices=("he_normal", "rai"))
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    if not (1 <= args.steps <= 100_000 and 25 <= args.trials <= 100_000):
        print("trained_subgrid_check.py: error: --steps in 1..100000, --trials in 25..100000", file=sys.stderr)
        sys.exit(2)
    from collapse_mc.cache import enable_compilation_cache
    from collapse_mc.jobs.trained_region import uniform_agreement
    from collapse_mc.progress import Progress
    enable_compilation_cache()
    with Progress(32, f"uniform grid, {args.trials} networks per cell") as bar:
        res = uniform_agreement(trials=args.trials, steps=args.steps, init=args.init, progress=bar)
    if args.json:
        print(json.dumps(res))
        sys.exit(0)
    print(f"{res['init']}, {res['steps']} steps, {res['trials_per_cell']} networks per uniform cell")
    print("width  p     uniform: safe to / unsafe from   search: safe to / unsafe from   agree")
    for r in res["rows"]:
        print(f"{r['width']:5d}  {r['threshold']:.2f}  {r['uniform_safe_up_to']:>16} / {str(r['uniform_unsafe_from']):<12}"
              f"  {r['search_safe_up_to']:>15} / {str(r['search_unsafe_from']):<12}  {r['consistent']}")
    print(f"trials: search {res['trials_search']:,} vs uniform {res['trials_uniform']:,}")
    sys.exit(0 if res["all_consistent"] else 1)
