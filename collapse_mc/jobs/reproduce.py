"""Reproduce one paper experiment: run its shipped sweep spec into a store, then draw its figures.

Used by the scripts in ``scripts/`` (one per experiment of SCIENCE.md section 5). ``--quick`` keeps the grid
but cuts trials and training steps (``QUICK_TRIALS``, ``QUICK_STEPS``), so CI can run every experiment end to
end in seconds per cell; quick cells differ from the full ones (steps are part of a cell's identity) and do not
mix with them in the store.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from typing import Callable

QUICK_TRIALS = {"born_dead": 2000, "trained": 48}
QUICK_STEPS = 300
# quick runs keep each experiment's key comparison but fewer cells (compilation dominates a quick run)
QUICK_GRID = {
    "paper2_born_dead": {"width": [3, 5, 10]},                 # paper 2's three read-outs
    "paper1_targets_losses": {"target": ["abs", "xsin5x"]},    # mean vs median needs x sin(5x); both losses
    "paper2_he_vs_rai_1d": {"depth": [9], "target": ["abs"]},  # He vs RAI on the papers' main setting
    "paper2_he_vs_rai_f4": {"width": [2]},
}


def quick_spec_data(data: dict) -> dict:
    """A copy of a parsed spec with quick trials / steps / block size and (``QUICK_GRID``) a smaller grid."""
    data = {k: dict(v) for k, v in data.items()}
    data["grid"] = {**data.get("grid", {}), **QUICK_GRID.get(data["sweep"].get("name"), {})}
    kind = data["sweep"]["kind"]
    trials = min(int(data["sweep"]["trials"]), QUICK_TRIALS[kind])
    data["sweep"]["trials"] = trials
    data["sweep"]["block_size"] = trials
    data["sweep"]["name"] = data["sweep"].get("name", "spec") + "_quick"
    if kind == "trained":
        data.setdefault("train", {})
        data["train"]["steps"] = min(int(data["train"].get("steps", QUICK_STEPS)), QUICK_STEPS)
    return data


def load(name: str, quick: bool):
    from ..sweep.spec import packaged_specs, parse_spec
    shipped = packaged_specs()
    data = tomllib.loads(shipped[name + ".toml"].read_text())
    if quick:
        data = quick_spec_data(data)
    return parse_spec(data, origin=name + (" (quick)" if quick else ""))


def main(name: str, argv: list[str] | None = None, after: Callable | None = None) -> int:
    """Command-line driver: ``script [--quick] [--db PATH] [--out DIR] [--json]``."""
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
    ap = argparse.ArgumentParser(description=f"Reproduce {name} (spec collapse_mc/specs/{name}.toml): run or "
                                             "resume it into a store, then draw its figures.")
    ap.add_argument("--quick", action="store_true", help="a small run (same grid, few trials and steps)")
    ap.add_argument("--db", default=None, help=f"store (default results/{name}[_quick].sqlite)")
    ap.add_argument("--out", default=None, help=f"figures folder (default figures/{name}[_quick])")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    db = args.db or os.path.join("results", f"{name}{suffix}.sqlite")
    out = args.out or os.path.join("figures", f"{name}{suffix}")
    os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)

    from ..figures.regenerate import regenerate
    from ..progress import Progress
    from ..store import Store
    from ..sweep import run_sweep

    spec = load(name, args.quick)
    with Progress(1, name) as bar:
        summary = run_sweep(spec, db, progress=bar)
    extra = after(spec, db, args.quick) if after else None
    with Store(db) as store:
        files = regenerate(store, out)
    results = summary["results"]
    if args.json:
        json.dump({"spec": name, "quick": args.quick, "db": db, "results": results, "files": files,
                   "extra": extra}, sys.stdout, default=str)
        print()
    else:
        keys = [k for k in ("width", "depth", "layers", "init", "target", "loss", "d_in") if k in results[0]]
        for r in results:
            what = " ".join(f"{k}={r[k]}" for k in keys)
            line = f"{what}: trials {r['trials']}, P(born dead) {r['p_born_dead']:.3f}"
            if r.get("collapsed") is not None:
                line += f", P(collapse) {r['p']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            print(line)
        print("figures: " + ", ".join(files))
    return 0
