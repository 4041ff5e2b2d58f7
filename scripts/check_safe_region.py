#!/usr/bin/env python
"""Check a stored safe-region diagram against an independent numpy implementation, width by width.

    python scripts/check_safe_region.py [--db collapse_mc.sqlite] [--trials 20000] [--json]

For every width of the main job's born-dead grid (He normal, zero biases, d_in 1), draws --trials networks with
numpy (tests/reference.py: materialized Gaussian weights, dead when a layer outputs zero at x = +1 and x = -1),
and compares (1) every cell's probability with the store's, within 4.5 combined binomial standard errors, and
(2) for each threshold the largest depth whose numpy probability is below it with the store's boundary: it
must lie in the store's range [largest safe depth, smallest unsafe depth - 1] widened by one layer (the cells
at the boundary are the ones whose intervals touch the threshold). Exit status 1 if any check fails.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from reference import binom_se, born_dead_numpy  # noqa: E402  (the tests' independent implementation)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="collapse_mc.sqlite")
    ap.add_argument("--trials", type=int, default=20000, help="numpy networks per width")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from collapse_mc.analysis import depth_profile
    from collapse_mc.jobs.safe_region import SafeRegionJob, job_grid
    from collapse_mc.store import Store

    job = SafeRegionJob()
    with Store(args.db) as store:
        grid = job_grid(job, store)
    if grid is None:
        sys.exit(f"{args.db}: no safe-region results (run collapse-mc safe-region first)")
    D = int(grid.depths.max())
    rows, ok = [], True
    for i, w in enumerate(grid.widths):
        ref = born_dead_numpy(int(w), D, args.trials, seed=args.seed + int(w))
        p_ref = depth_profile(ref, D) / args.trials
        n = int(grid.n[i][0])
        z = np.array([abs(grid.p[i, j] - p_ref[j]) / binom_se(grid.p[i, j], n, p_ref[j], args.trials)
                      for j in range(D)])
        row = {"width": int(w), "trials_store": n, "trials_numpy": args.trials, "max_z": float(z.max()),
               "cells_ok": bool(np.all(z <= 4.5))}
        for thr in job.thresholds:
            b = grid.boundaries(thr)[i]
            ref_depth = int(np.sum(p_ref < thr))  # p increases with depth
            hi = (b.smallest_unsafe - 1) if b.smallest_unsafe else D
            agree = b.largest_safe - 1 <= ref_depth <= hi + 1
            row[f"boundary_{thr:g}"] = {"store": [b.largest_safe, hi], "numpy": ref_depth, "agree": bool(agree)}
            ok &= agree
        ok &= row["cells_ok"]
        rows.append(row)
    if args.json:
        print(json.dumps({"ok": bool(ok), "widths": rows}, indent=1))
    else:
        print(f"{args.db}: store vs numpy, {D} depths per width; boundary = largest depth below the threshold")
        for r in rows:
            bs = "  ".join(f"p<{k[9:]}: store {v['store'][0]}..{v['store'][1]} numpy {v['numpy']}"
                           f"{'' if v['agree'] else ' DISAGREE'}" for k, v in r.items() if k.startswith("boundary_"))
            print(f"width {r['width']:2d}: max |z| over depths {r['max_z']:.2f}{'' if r['cells_ok'] else ' FAIL'}  {bs}")
        print("all agree" if ok else "DISAGREEMENT")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
